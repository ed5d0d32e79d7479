"""Handoff notices: the task's name and body, what the webhook gets, and the inbox's task endpoint."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import pytest
import requests
from werkzeug.exceptions import Forbidden

from shared.adapters.webhook_notifier import NotifyRefused, NotifyRetry, WebhookNotifier
from shared.domain.notify import MAX_NOTIFY_ATTEMPTS, HandoffNotice, handoff_message, inbox_link
from shared.domain.staff import Business
from shared.inbox.app import create_app
from tests.unit.test_inbox_app import BAKERY, CLINIC, make_world

NOTICE = HandoffNotice(BAKERY, "ab" * 32, "SM0123")


def test_one_task_per_handoff_message_and_its_body_round_trips() -> None:
    assert NOTICE.task_id == f"{'ab' * 10}-SM0123-notify"
    assert HandoffNotice.from_json(NOTICE.to_json()) == NOTICE
    for bad in (b"[]", b'{"business": "x"}', b"not json", b'{"business": "", "conversation": "c", "sid": "s"}'):
        with pytest.raises(ValueError):
            HandoffNotice.from_json(bad)


def test_the_notice_links_to_the_inbox_and_carries_no_customer_data() -> None:
    message = handoff_message(NOTICE, "Panadería Sol", "https://inbox.example.com")
    assert message["link"] == inbox_link("https://inbox.example.com", BAKERY, NOTICE.conversation_id)
    assert message["link"].startswith("https://inbox.example.com/#b=whatsapp%3A%2B14155238886&c=abab")
    assert "Panadería Sol" in message["text"] and message["link"] in message["text"]
    assert set(message) == {"text", "event", "business", "conversation", "link"}


@dataclass
class FakeSession:
    status: int = 200
    error: Exception | None = None
    posted: list[tuple[str, Any, dict[str, Any]]] = field(default_factory=list)

    def post(self, url: str, json: Any = None, **kwargs: Any) -> Any:
        self.posted.append((url, json, kwargs))
        if self.error is not None:
            raise self.error
        return type("Answer", (), {"status_code": self.status})()


@pytest.mark.parametrize("status, outcome", [(200, None), (204, None), (429, NotifyRetry), (503, NotifyRetry),
                                             (404, NotifyRefused), (400, NotifyRefused)])
def test_the_webhook_answer_decides_retry_or_refusal(status: int, outcome: type[Exception] | None) -> None:
    session = FakeSession(status=status)
    notifier = WebhookNotifier(session_factory=lambda: session)  # type: ignore[arg-type, return-value]
    if outcome is None:
        assert notifier.post("https://hooks.example/x", {"text": "hi"}) == status
    else:
        with pytest.raises(outcome):
            notifier.post("https://hooks.example/x", {"text": "hi"})
    (url, body, kwargs), = session.posted
    assert body == {"text": "hi"} and kwargs["allow_redirects"] is False and kwargs["timeout"] > 0


def test_no_answer_is_retried_and_the_url_is_never_in_the_error() -> None:
    session = FakeSession(error=requests.ConnectionError("https://hooks.example/secret-token refused"))
    with pytest.raises(NotifyRetry) as failed:
        WebhookNotifier(session_factory=lambda: session).post(  # type: ignore[arg-type, return-value]
            "https://hooks.example/secret-token", {})
    assert "secret-token" not in str(failed.value)


@dataclass
class RecordingNotifier:
    fail: Exception | None = None
    posted: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)

    def post(self, url: str, payload: Mapping[str, Any]) -> int:
        self.posted.append((url, payload))
        if self.fail is not None:
            raise self.fail
        return 200


def _client(notifier: RecordingNotifier, authorized: bool = True) -> Any:
    world = make_world("https://inbox.example.com")
    world.reader.businesses = (Business(BAKERY, "Panadería Sol", (), "https://chat.example/hook"),
                               Business(CLINIC, "Clínica Norte", ()))

    def authorize(request: Any) -> str:
        if not authorized:
            raise Forbidden("caller key does not match")
        return "tasks-invoker@p.iam.gserviceaccount.com"

    return create_app(replace(world.deps, notifier=notifier, authorize_task=authorize)).test_client()


def test_the_task_endpoint_notifies_once_per_task(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    notifier = RecordingNotifier()
    client = _client(notifier)
    answer = client.post("/tasks/notify", data=NOTICE.to_json())
    assert answer.status_code == 200 and answer.get_json() == {"outcome": "sent"}
    (url, payload), = notifier.posted
    assert url == "https://chat.example/hook" and "Panadería Sol" in payload["text"]
    skipped = client.post("/tasks/notify", data=HandoffNotice(CLINIC, "cd" * 32, "SM9").to_json())
    assert skipped.get_json() == {"outcome": "skipped"} and len(notifier.posted) == 1
    assert {getattr(r, "event", "") for r in caplog.records} >= {"staff_notified", "notify_skipped"}
    assert "chat.example" not in " ".join(json.dumps(vars(r), default=str) for r in caplog.records)


def test_only_cloud_tasks_may_post_it() -> None:
    notifier = RecordingNotifier()
    answer = _client(notifier, authorized=False).post("/tasks/notify", data=NOTICE.to_json())
    assert answer.status_code == 403 and notifier.posted == []
    # Without a notifier wired the endpoint does not exist at all.
    world = make_world()
    assert world.client.post("/tasks/notify", data=NOTICE.to_json()).status_code == 404


def test_a_failing_webhook_is_retried_a_bounded_number_of_times() -> None:
    notifier = RecordingNotifier(fail=NotifyRetry("the webhook answered 503"))
    client = _client(notifier)
    assert client.post("/tasks/notify", data=NOTICE.to_json()).status_code == 503
    last = client.post("/tasks/notify", data=NOTICE.to_json(),
                       headers={"X-CloudTasks-TaskRetryCount": str(MAX_NOTIFY_ATTEMPTS - 1)})
    assert last.status_code == 200 and last.get_json() == {"outcome": "failed"}
    refused = _client(RecordingNotifier(fail=NotifyRefused("404"))).post("/tasks/notify", data=NOTICE.to_json())
    assert refused.get_json() == {"outcome": "refused"} and refused.status_code == 200
    assert _client(notifier).post("/tasks/notify", data=b"garbage").get_json() == {"outcome": "malformed"}

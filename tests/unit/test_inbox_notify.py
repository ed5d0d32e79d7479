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


def _client(notifier: RecordingNotifier, authorized: bool = True, stale: bool = False) -> Any:
    world = make_world("https://inbox.example.com")
    world.reader.businesses = (Business(BAKERY, "Panadería Sol", (), "https://chat.example/hook"),
                               Business(CLINIC, "Clínica Norte", ()))
    if stale:  # the cached directory predates the bakery's notify_webhook
        world.reader.stale = (Business(BAKERY, "Panadería Sol", ()), Business(CLINIC, "Clínica Norte", ()))

    def authorize(request: Any) -> str:
        if not authorized:
            raise Forbidden("caller key does not match")
        return "tasks-invoker@p.iam.gserviceaccount.com"

    return create_app(replace(world.deps, notifier=notifier, authorize_task=authorize)).test_client()


def test_a_webhook_newer_than_the_cached_directory_is_still_notified() -> None:
    notifier = RecordingNotifier()
    answer = _client(notifier, stale=True).post("/tasks/notify", data=NOTICE.to_json())
    assert answer.get_json() == {"outcome": "sent"} and [url for url, _ in notifier.posted] == ["https://chat.example/hook"]


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


def _handoff_world(webhook: str = "https://chat.example/hook", inbox_tasks_url: str = "https://wa-inbox.run.app"):
    from shared.adapters.profile_store import StaticProfiles, defaults_from_settings
    from shared.domain.profiles import profile_from_mapping
    from tests.unit.test_processor_controls import SETTINGS, SHOP, SHOP_PROFILE

    settings = replace(SETTINGS, inbox_tasks_url=inbox_tasks_url)
    defaults = defaults_from_settings(settings)
    raw = {**SHOP_PROFILE, **({"notify_webhook": webhook} if webhook else {})}
    return make_processor_world(settings, StaticProfiles(defaults, {SHOP: profile_from_mapping(SHOP, raw, defaults)}))


def make_processor_world(settings: Any, profiles: Any) -> Any:
    from tests.unit.test_processor_controls import make_world as processor_world

    return processor_world(settings=settings, profiles=profiles)


def _notices(w: Any) -> list[str]:
    from shared.adapters.cloud_tasks import NotifyTask

    return [k for k, t in w.deps.queue.tasks.items() if isinstance(t, NotifyTask)]


def test_a_handoff_queues_one_notice_and_nothing_else_does() -> None:
    from shared.domain.inbound import InboundMessage
    from shared.handlers.processor import process_message
    from tests.unit.test_processor_controls import SHOP, USER

    w = _handoff_world()
    hello = InboundMessage(sid=f"SM{1:032x}", sender=USER, recipient=SHOP, body="hello")
    assert process_message(hello, w.deps) == "answered" and _notices(w) == []
    agent = InboundMessage(sid=f"SM{2:032x}", sender=USER, recipient=SHOP, body="agent")
    assert process_message(agent, w.deps) == "answered"
    assert process_message(agent, w.deps) == "requeued", "a redelivery of the handoff message"
    notices = _notices(w)
    assert len(notices) == 1 and notices[0].endswith(f"SM{2:032x}-notify")
    notice = w.deps.queue.tasks[notices[0]].notice
    assert (notice.business, notice.sid) == (SHOP, f"SM{2:032x}")
    for world in (_handoff_world(webhook=""), _handoff_world(inbox_tasks_url="")):
        process_message(agent, world.deps)
        assert _notices(world) == [], "no webhook, or no inbox: no notice"


def test_the_notice_task_goes_to_the_inbox_with_the_tasks_identity() -> None:
    from shared.adapters.cloud_tasks import NotifyTask, TaskQueue

    created: list[dict[str, Any]] = []

    class Client:
        def create_task(self, request: dict[str, Any], **kwargs: Any) -> None:
            created.append(request)

    queue = TaskQueue("p", "us-central1", "q", "https://sender.run.app", "tasks@p.iam.gserviceaccount.com",
                      Client, caller_key=lambda: "the-key", inbox_url="https://inbox.run.app")
    assert queue.enqueue(NotifyTask(NOTICE))
    http = created[0]["task"]["http_request"]
    assert http["url"] == "https://inbox.run.app/tasks/notify" and http["oidc_token"]["audience"] == "https://inbox.run.app"
    assert http["headers"]["X-Caller-Key"] == "the-key" and HandoffNotice.from_json(http["body"]) == NOTICE
    assert created[0]["task"]["name"].endswith(NOTICE.task_id)

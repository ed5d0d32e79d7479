"""Business tools on the whole pipeline: each side effect exactly once, whatever is redelivered, crashes or replays.

The bakery of profiles.example.yaml, its tools pointed at the example server
the local stack starts (devstack/tool_server.py), answers on a number of its
own. The server verifies every request's signature and counts what it did,
so each test books side effects, not requests, in the session's exactly-once
ledger (its summary line: ``tool side effects=N``, ``duplicated=0``).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from devstack.stack import ROOT
from devstack.tool_server import ExampleToolServer
from devstack.twilio_stub import sign_and_post
from shared.domain.inbound import InboundMessage
from shared.domain.tool_ledger import DONE, Ledger
from tests.e2e.test_controls import admin, new_business, put_profile, replies_from, wait_replies
from tests.e2e.test_exactly_once import _dead_letter, restart, settle  # noqa: F401 - restart is a fixture
from tests.plugin import unique_user, wait_until

EXAMPLE = "whatsapp:+14155238886"
PROPOSAL = "Book a table for 2 at 20:00 on friday? Reply YES to confirm."


@pytest.fixture
def server(pipeline) -> Iterator[ExampleToolServer]:  # noqa: ANN001
    running = pipeline.stack.tool_server
    assert running is not None, "the local stack starts the example tool server"
    running.clear()
    yield running
    running.configure(fail_next=0, garbage_next=0, drop_after_booking_next=0, delay_seconds=0)


def bakery(pipeline, server: ExampleToolServer, confirm_seconds: int = 0) -> str:  # noqa: ANN001
    """A new number with the example bakery's profile, its tools only (no welcome: every reply is one message)."""
    document = yaml.safe_load((Path(ROOT) / "profiles.example.yaml").read_text())
    raw: dict[str, Any] = copy.deepcopy(document["businesses"][EXAMPLE])
    for key in ("welcome", "knowledge", "knowledge_only", "unknown_reply"):  # its documents are not applied here
        raw.pop(key, None)
    for tool in raw["tools"]:
        tool["url"] = tool["url"].replace("http://127.0.0.1:8095", server.base_url)
        if confirm_seconds and tool.get("confirm"):
            tool["confirm_seconds"] = confirm_seconds
    business = new_business()
    put_profile(pipeline, business, **raw)
    return business


def bookings_calls(server: ExampleToolServer) -> list[str]:
    """The keys of every booking request the business received (verified or not)."""
    return [c.key for c in server.calls if c.path == "/tables/book"]


def propose(pipeline, server: ExampleToolServer, user: str, business: str) -> None:  # noqa: ANN001
    pipeline.post(user, "Book a table for 2 at 20:00 on Friday", to=business)
    assert wait_replies(pipeline, user, business, 1) == [PROPOSAL]
    assert bookings_calls(server) == []


def test_a_read_tools_answer_reaches_the_user(pipeline, server, ledger) -> None:  # noqa: ANN001
    business, user = bakery(pipeline, server), unique_user()
    pipeline.post(user, "What's the status of my order 1234?", to=business)
    (reply,) = wait_replies(pipeline, user, business, 1)
    assert "order_status answered" in reply and "ready for pickup" in reply
    (call,) = server.calls
    assert call.path == "/orders/status" and call.verified and call.body == {"order_id": "1234"}
    ledger.check_side_effects(0, len(server.bookings()))


def test_a_confirmed_write_is_called_once_under_three_duplicate_webhooks(pipeline, server, ledger) -> None:  # noqa: ANN001
    business, user = bakery(pipeline, server), unique_user()
    propose(pipeline, server, user, business)
    _, sid, params = pipeline.post(user, "YES", to=business)
    o = pipeline.stack.options
    for _ in range(2):
        assert sign_and_post(pipeline.stack.webhook_url, params, o.twilio_auth_token)[0] == 200
    ledger.duplicates_injected += 2
    replies = wait_replies(pipeline, user, business, 2)
    settle()
    assert replies_from(pipeline, user, business) == replies and "book_table answered" in replies[1]
    (booking,) = server.bookings()
    assert bookings_calls(server) == [booking["key"]] and "T-0001" in replies[1]
    (call,) = pipeline.entry(user, sid, business).tool_ledger.calls
    assert (call.name, call.status, call.key, call.attempts, call.confirmed_by) == (
        "book_table", DONE, booking["key"], 1, sid)
    ledger.check_side_effects(1, len(server.bookings()))
    # make admin show and the chat page's trip view name the call and its key, never the secret or the arguments.
    shown = admin(pipeline, "show", user, "--business", business).stdout
    proposed, done = [s.strip() for s in shown.splitlines() if s.strip().startswith("tool ")]
    assert proposed.startswith("tool book_table (write) proposed") and done.startswith("tool book_table (write) done")
    assert booking["key"] in done and f"confirmed by {sid}" in done and "20:00" not in proposed + done
    assert "local-dev-tool-secret" not in shown
    assert pipeline.stack.simulator is not None
    (logged,) = pipeline.stack.simulator.trip(sid, user, business)["tools"]
    assert (logged["tool"], logged["effect"], logged["status"], logged["key"]) == ("book_table", "write", DONE,
                                                                                    booking["key"])
    # A second YES finds nothing to confirm: the model answers it, the business hears nothing.
    pipeline.post(user, "YES", to=business)
    assert len(wait_replies(pipeline, user, business, 3)) == 3
    settle()
    assert len(server.bookings()) == 1 and len(bookings_calls(server)) == 1


@pytest.mark.parametrize("point, sends", [("tool_after_result", 1), ("tool_after_call", 2)])
def test_a_processor_crash_after_or_during_the_call_books_once(pipeline, server, ledger, restart, point, sends) -> None:  # noqa: ANN001
    """After: the result is stored, the redelivery reuses it. During (the answer never stored): the redelivery
    sends the same Idempotency-Key once more, and the business answers it from its first booking."""
    business, user = bakery(pipeline, server), unique_user()
    propose(pipeline, server, user, business)
    restart("processor", TEST_FAULT_POINTS=point)
    ledger.faults_injected += 1
    _, sid, _ = pipeline.post(user, "YES", to=business)
    replies = wait_replies(pipeline, user, business, 2)
    settle()
    assert len(replies_from(pipeline, user, business)) == 2 and "book_table answered" in replies[1]
    (booking,) = server.bookings()
    assert bookings_calls(server) == [booking["key"]] * sends
    entry = pipeline.entry(user, sid, business)
    assert entry.attempts >= 2
    (call,) = entry.tool_ledger.calls
    assert (call.status, call.key, call.attempts) == (DONE, booking["key"], sends)
    ledger.check_side_effects(1, len(server.bookings()))


@pytest.mark.parametrize("answer", ["no", "YES for 4 people"])
def test_anything_but_yes_cancels_and_a_later_yes_books_nothing(pipeline, server, ledger, answer) -> None:  # noqa: ANN001
    business, user = bakery(pipeline, server), unique_user()
    propose(pipeline, server, user, business)
    pipeline.post(user, answer, to=business)
    wait_replies(pipeline, user, business, 2)
    pipeline.post(user, "YES", to=business)
    wait_replies(pipeline, user, business, 3)
    settle()
    assert bookings_calls(server) == [] and server.bookings() == []
    assert pipeline.conversation(user, business).pending_tool is None
    ledger.check_side_effects(0, len(server.bookings()))


def test_silence_past_the_time_limit_cancels(pipeline, server, ledger) -> None:  # noqa: ANN001
    limit = 30  # the shortest time to confirm a profile may give
    business, user = bakery(pipeline, server, confirm_seconds=limit), unique_user()
    propose(pipeline, server, user, business)
    time.sleep(limit + 1)
    pipeline.post(user, "YES", to=business)
    replies = wait_replies(pipeline, user, business, 2)
    settle()
    assert bookings_calls(server) == [] and "book_table answered" not in replies[1]
    ledger.check_side_effects(0, len(server.bookings()))


def test_a_failing_tool_still_ends_in_an_answer(pipeline, server, ledger) -> None:  # noqa: ANN001
    business, user = bakery(pipeline, server), unique_user()
    server.configure(fail_next=1, fail_status=503)
    ledger.faults_injected += 1
    pipeline.post(user, "status of order 5678 please", to=business)
    (reply,) = wait_replies(pipeline, user, business, 1)
    assert "order_status failed" in reply and "HTTP 503" in reply
    settle()
    assert len(replies_from(pipeline, user, business)) == 1


def _stuck_after_the_booking(pipeline, server, user: str, business: str, restart) -> str:  # noqa: ANN001
    """The YES books, then its delivery freezes after the model (an instance that stops answering, past its lease
    and below the ack deadline): the write is recorded, nothing answered. A freeze rather than crashes in a loop,
    which would make Pub/Sub slow its pushes down for every later test."""
    propose(pipeline, server, user, business)
    restart("processor", TEST_FAULT_POINTS="after_ai@90")
    _, sid, _ = pipeline.post(user, "YES", to=business)
    wait_until(lambda: [c.status for c in (pipeline.entry(user, sid, business).tool_ledger or Ledger()).calls] == [DONE],
               timeout=30, interval=0.2)
    return sid


def test_a_replayed_dead_letter_reuses_the_recorded_booking(pipeline, server, ledger, restart) -> None:  # noqa: ANN001
    business, user = bakery(pipeline, server), unique_user()
    sid = _stuck_after_the_booking(pipeline, server, user, business, restart)
    _dead_letter(pipeline, InboundMessage(sid=sid, sender=user, recipient=business, body="YES"))
    ledger.faults_injected += 1
    assert wait_until(lambda: pipeline.failure(sid), timeout=30, interval=0.2)["status"] == "dead_lettered"
    pipeline.stack.start_function("processor")
    assert "replayed" in admin(pipeline, "replay", sid).stdout
    replies = wait_replies(pipeline, user, business, 2)
    settle()
    assert "book_table answered" in replies[1] and len(replies_from(pipeline, user, business)) == 2
    assert len(bookings_calls(server)) == 1
    ledger.check_side_effects(1, len(server.bookings()))


def test_the_reconciler_closes_a_stuck_write_without_calling_again(pipeline, server, ledger, restart) -> None:  # noqa: ANN001
    business, user = bakery(pipeline, server), unique_user()
    sid = _stuck_after_the_booking(pipeline, server, user, business, restart)
    ledger.faults_injected += 1
    liveness = float(pipeline.stack.options.env["LIVENESS_SECONDS"])
    closed = wait_until(lambda: pipeline.entry(user, sid, business).status == "failed" and
                        pipeline.entry(user, sid, business), timeout=liveness + 40, interval=0.5)
    assert "tool writes book_table done" in closed.reason
    assert len(bookings_calls(server)) == 1
    ledger.check_side_effects(1, len(server.bookings()))

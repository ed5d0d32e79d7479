"""The sender's core with in-memory fakes: order, resumption, failures."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.conversation import FAILED, SENT, conversation_id
from shared.faults import FaultPoints, InjectedFault
from shared.processor import process_message
from shared.sender import SenderDeps, deliver, handle_send_request
from shared.twilio_api import SendPermanent, SendRetryable, SendUncertain
from tests.fakes import Clock, FakeTwilio
from tests.unit.test_processor import SENDER, make_deps, msg


@pytest.fixture
def world():
    clock = Clock()
    pdeps = make_deps(clock=clock)
    sdeps = SenderDeps(
        settings=Settings(send_max_attempts=3), store=pdeps.store, twilio=FakeTwilio(), faults=FaultPoints(), clock=clock
    )
    return pdeps, sdeps


def answer(pdeps, n: int, reply: str = "Hello!") -> None:
    pdeps.model._reply = reply
    process_message(msg(n), pdeps)


def task_for(pdeps, n: int):
    return next(t for t in pdeps.queue.tasks.values() if t.sid == msg(n).sid)


def test_sends_once_even_when_the_task_repeats(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1)
    task = task_for(pdeps, 1)
    assert deliver(task, sdeps) == "sent"
    assert deliver(task, sdeps) == "duplicate"
    assert [body for _, body, _ in sdeps.twilio.sent] == ["Hello!"]
    conv = pdeps.store.conversation(conversation_id(SENDER))
    assert conv.entry(task.sid)["status"] == SENT and conv.done_seq == 1


def test_a_reply_waits_for_its_predecessor(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1, "first")
    answer(pdeps, 2, "second")
    status, _ = handle_send_request(task_for(pdeps, 2).to_json(), sdeps)
    assert status == 429
    assert sdeps.twilio.sent == []
    assert deliver(task_for(pdeps, 1), sdeps) == "sent"
    assert deliver(task_for(pdeps, 2), sdeps) == "sent"
    assert [body for _, body, _ in sdeps.twilio.sent] == ["first", "second"]


def test_long_reply_is_sent_in_parts_and_resumes_after_a_retryable_error(world) -> None:
    pdeps, sdeps = world
    paragraphs = [("p%d " % i) + "word " * 300 for i in range(3)]
    answer(pdeps, 1, "\n\n".join(paragraphs))
    task = task_for(pdeps, 1)
    sdeps.twilio.script = [None, SendRetryable("twilio 500")]
    status, _ = handle_send_request(task.to_json(), sdeps)
    assert status == 503
    assert len(sdeps.twilio.sent) == 1
    assert deliver(task, sdeps) == "sent"
    bodies = [body for _, body, _ in sdeps.twilio.sent]
    assert [b.split()[0] for b in bodies] == ["p0", "p1", "p2"]
    assert all(len(b) <= 1600 for b in bodies)


def test_permanent_error_is_recorded_and_frees_the_next_reply(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1, "first")
    answer(pdeps, 2, "second")
    sdeps.twilio.script = [SendPermanent(63016, "outside the 24 hour window")]
    status, body = handle_send_request(task_for(pdeps, 1).to_json(), sdeps)
    assert status == 200 and "failed" in body
    conv = pdeps.store.conversation(conversation_id(SENDER))
    assert conv.entry(msg(1).sid)["status"] == FAILED
    assert "63016" in conv.entry(msg(1).sid)["reason"]
    assert "63016" in pdeps.store.failures[msg(1).sid]["reason"]
    assert deliver(task_for(pdeps, 2), sdeps) == "sent"


def test_retryable_errors_give_up_after_the_limit(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1)
    task = task_for(pdeps, 1)
    sdeps.twilio.script = [SendRetryable("429")] * 3
    assert handle_send_request(task.to_json(), sdeps)[0] == 503
    assert handle_send_request(task.to_json(), sdeps)[0] == 503
    assert handle_send_request(task.to_json(), sdeps)[0] == 200
    entry = pdeps.store.conversation(conversation_id(SENDER)).entry(task.sid)
    assert entry["status"] == FAILED and "gave up after 3" in entry["reason"]
    assert sdeps.twilio.sent == []


def test_crash_after_twilio_accepted_is_reconciled_not_resent(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1)
    task = task_for(pdeps, 1)
    crashing = SenderDeps(sdeps.settings, sdeps.store, sdeps.twilio, FaultPoints(("after_send",)), sdeps.clock)
    with pytest.raises(InjectedFault):
        deliver(task, crashing)
    # Within the grace period another attempt may still be waiting on Twilio.
    assert handle_send_request(task.to_json(), sdeps)[0] == 429
    sdeps.clock.advance(sdeps.in_flight_grace.total_seconds() + 1)
    assert deliver(task, sdeps) == "sent"
    assert len(sdeps.twilio.sent) == 1
    assert sdeps.twilio.lookups == 1


def test_uncertain_send_that_did_not_reach_twilio_is_sent_again(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1)
    task = task_for(pdeps, 1)
    sdeps.twilio.script = [SendUncertain("read timeout")]
    assert handle_send_request(task.to_json(), sdeps)[0] == 503
    sdeps.clock.advance(sdeps.in_flight_grace.total_seconds() + 1)
    assert deliver(task, sdeps) == "sent"
    assert len(sdeps.twilio.sent) == 1


def test_unreadable_task_is_dropped_with_an_error(world) -> None:
    _, sdeps = world
    status, body = handle_send_request(b"{nope", sdeps)
    assert status == 200 and "unreadable" in body


def test_a_failed_lookup_at_twilio_is_retried_not_resent(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1)
    task = task_for(pdeps, 1)
    sdeps.twilio.script = [SendUncertain("read timeout")]
    assert handle_send_request(task.to_json(), sdeps)[0] == 503
    sdeps.clock.advance(sdeps.in_flight_grace.total_seconds() + 1)

    def lookup_down(to, body, since):  # noqa: ANN001, ANN202
        raise SendRetryable("twilio 503 on the message list")

    sdeps.twilio.find_sent = lookup_down
    assert handle_send_request(task.to_json(), sdeps)[0] == 503
    assert sdeps.twilio.sent == []

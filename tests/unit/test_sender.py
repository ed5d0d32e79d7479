"""The sender's core with in-memory fakes: order, resumption, failures."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.adapters.twilio_api import SendPermanent, SendRetryable, SendUncertain
from shared.config import Settings
from shared.domain.lifecycle import FAILED, SENT
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.processor import process_message
from shared.handlers.sender import SenderDeps, deliver, handle_send_request
from tests.fakes import IDS, Clock, FakeTwilio, conversation_id
from tests.unit.test_processor import SENDER, make_deps, msg


@pytest.fixture
def world():
    clock = Clock()
    pdeps = make_deps(clock=clock)
    sdeps = SenderDeps(
        settings=Settings(send_max_attempts=3), store=pdeps.store, twilio=FakeTwilio(), queue=pdeps.queue,
        faults=FaultPoints(), clock=clock,
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
    assert conv.entry(task.sid).status == SENT and conv.done_seq == 1


def test_a_reply_waits_for_its_predecessor_without_an_error_answer(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1, "first")
    answer(pdeps, 2, "second")
    # Not its turn: the processor leaves the task to the hand-off.
    assert [t.sid for t in pdeps.queue.tasks.values()] == [msg(1).sid]
    # A stray task for reply 2 (a redelivery) finishes with 200 and sends nothing:
    # a 429 or 5xx would make Cloud Tasks slow down the whole queue.
    stray = replace(task_for(pdeps, 1), sid=msg(2).sid, seq=2)
    status, body = handle_send_request(stray.to_json(), sdeps)
    assert (status, body.strip()) == (200, "waiting")
    assert sdeps.twilio.sent == []
    assert deliver(task_for(pdeps, 1), sdeps) == "sent"
    handed = task_for(pdeps, 2)
    assert handed.kind == "next"
    assert deliver(handed, sdeps) == "sent"
    assert [body for _, body, _ in sdeps.twilio.sent] == ["first", "second"]


def test_a_burst_is_sent_in_order_by_hand_offs_alone(world) -> None:
    pdeps, sdeps = world
    for n in range(1, 6):
        answer(pdeps, n, f"reply {n}")
    done: set[str] = set()
    while len(done) < len(pdeps.queue.tasks):
        for task_id, task in list(pdeps.queue.tasks.items()):
            if task_id not in done:
                done.add(task_id)
                assert handle_send_request(task.to_json(), sdeps)[0] == 200
    assert [body for _, body, _ in sdeps.twilio.sent] == [f"reply {n}" for n in range(1, 6)]
    assert pdeps.store.conversation(conversation_id(SENDER)).done_seq == 5


def test_a_hand_off_lost_with_its_task_is_made_by_the_retry(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1, "first")
    answer(pdeps, 2, "second")
    pdeps.queue.error = ConnectionError("tasks down")
    status, _ = handle_send_request(task_for(pdeps, 1).to_json(), sdeps)
    assert status == 503  # sent and recorded, but the hand-off failed: retried
    pdeps.queue.error = None
    assert deliver(task_for(pdeps, 1), sdeps) == "duplicate"
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
    assert conv.entry(msg(1).sid).status == FAILED
    assert "63016" in conv.entry(msg(1).sid).reason
    assert conv.entry(msg(1).sid).parts == [] and "parts" not in pdeps.store.document(conversation_id(SENDER))["messages"][msg(1).sid]
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
    assert entry.status == FAILED and "gave up after 3" in entry.reason
    assert sdeps.twilio.sent == []


def test_crash_after_twilio_accepted_is_reconciled_not_resent(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1)
    task = task_for(pdeps, 1)
    crashing = replace(sdeps, faults=FaultPoints(("after_send",)))
    with pytest.raises(InjectedFault):
        deliver(task, crashing)
    # Another task for the same reply leaves the part to the attempt that may
    # still be waiting on Twilio, and ends without an error answer.
    other = replace(task, kind="r1")
    assert handle_send_request(other.to_json(), sdeps) == (200, "in flight\n")
    # The crashed task's own retry waits out the grace, then asks Twilio.
    assert handle_send_request(task.to_json(), sdeps)[0] == 503
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

    def lookup_down(to, body, since, exclude=frozenset(), from_="", template=""):  # noqa: ANN001, ANN202
        raise SendRetryable("twilio 503 on the message list")

    sdeps.twilio.find_sent = lookup_down
    assert handle_send_request(task.to_json(), sdeps)[0] == 503
    assert sdeps.twilio.sent == []


def test_timeouts_and_failed_lookups_count_toward_the_limit(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1)
    task = task_for(pdeps, 1)
    sdeps.twilio.script = [SendUncertain("read timeout")]
    assert handle_send_request(task.to_json(), sdeps)[0] == 503  # attempt 1

    def lookup_down(to, body, since, exclude=frozenset(), from_="", template=""):  # noqa: ANN001, ANN202
        raise SendRetryable("twilio 503 on the message list")

    sdeps.twilio.find_sent = lookup_down
    sdeps.clock.advance(sdeps.in_flight_grace.total_seconds() + 1)
    assert handle_send_request(task.to_json(), sdeps)[0] == 503  # attempt 2
    assert handle_send_request(task.to_json(), sdeps) == (200, "failed\n")  # attempt 3 = the limit
    entry = pdeps.store.conversation(conversation_id(SENDER)).entry(task.sid)
    assert entry.status == FAILED and "gave up after 3 attempts" in entry.reason
    assert pdeps.store.failures[task.sid]["stage"] == "sender"


def test_unexpected_errors_count_toward_the_limit(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1)
    task = task_for(pdeps, 1)

    def broken(to, body, from_=""):  # noqa: ANN001, ANN202
        raise KeyError("a bug")

    sdeps.twilio.send = broken
    assert handle_send_request(task.to_json(), sdeps)[0] == 500
    sdeps.clock.advance(sdeps.in_flight_grace.total_seconds() + 1)
    assert handle_send_request(task.to_json(), sdeps)[0] == 500
    sdeps.clock.advance(sdeps.in_flight_grace.total_seconds() + 1)
    assert handle_send_request(task.to_json(), sdeps) == (200, "failed\n")
    assert "unexpected error" in pdeps.store.conversation(conversation_id(SENDER)).entry(task.sid).reason


def test_a_part_sent_after_the_message_was_closed_keeps_the_closing_status(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1)
    task = task_for(pdeps, 1)
    store, cid = pdeps.store, conversation_id(SENDER)

    def close_during_the_call(to, body, from_=""):  # noqa: ANN001, ANN202
        # The reconciler closes the message while the part is in Twilio's hands.
        store.update(cid, lambda conv: conv.finish(task.sid, FAILED, sdeps.clock(), "closed by the reconciler"))
        return "SM" + "9" * 32

    sdeps.twilio.send = close_during_the_call
    assert deliver(task, sdeps) == "duplicate"
    entry = store.conversation(cid).entry(task.sid)
    assert entry.status == FAILED and entry.reason == "closed by the reconciler"
    assert entry.late_twilio_sids == ["SM" + "9" * 32]
    assert entry.sent_parts == 0


def test_identical_bodies_are_not_taken_for_each_other(world) -> None:
    pdeps, sdeps = world
    answer(pdeps, 1, "Sorry!")
    answer(pdeps, 2, "Sorry!")
    assert deliver(task_for(pdeps, 1), sdeps) == "sent"
    second = task_for(pdeps, 2)
    sdeps.twilio.script = [SendUncertain("read timeout")]
    assert handle_send_request(second.to_json(), sdeps)[0] == 503
    sdeps.clock.advance(sdeps.in_flight_grace.total_seconds() + 1)
    # Twilio never took the second "Sorry!": the first one's SID must not count for it.
    assert deliver(second, sdeps) == "sent"
    assert [body for _, body, _ in sdeps.twilio.sent] == ["Sorry!", "Sorry!"]
    entries = pdeps.store.conversation(conversation_id(SENDER)).messages
    assert entries[msg(1).sid].twilio_sids != entries[msg(2).sid].twilio_sids
    assert entries[msg(2).sid].status == SENT


def test_in_flight_grace_covers_connect_and_read_timeouts(world) -> None:
    _, sdeps = world
    assert sdeps.in_flight_grace.total_seconds() > 2 * sdeps.settings.twilio_timeout_seconds


def test_the_reply_goes_out_from_the_address_the_user_wrote_to(world) -> None:
    pdeps, sdeps = world
    from shared.domain.inbound import InboundMessage

    clinic = "whatsapp:+15550001111"
    process_message(InboundMessage(sid=msg(1).sid, sender=SENDER, recipient=clinic, body="hi clinic"), pdeps)
    assert deliver(task_for(pdeps, 1), sdeps) == "sent"
    assert sdeps.twilio.froms == [clinic]


def test_an_uncertain_template_send_is_found_and_not_sent_again() -> None:
    from shared.handlers.outbound import OutboundDeps, handle_outbound
    from tests.unit.test_outbound import TEMPLATE, request

    clock = Clock()
    pdeps = make_deps(clock=clock)
    twilio = FakeTwilio()
    sdeps = SenderDeps(settings=Settings(send_max_attempts=4), store=pdeps.store, twilio=twilio, queue=pdeps.queue,
                       faults=FaultPoints(), clock=clock)
    odeps = OutboundDeps(settings=pdeps.settings, store=pdeps.store, queue=pdeps.queue, clock=clock, ids=IDS)
    oid = handle_outbound(request(content_sid=TEMPLATE), odeps).body["id"]
    task = next(iter(pdeps.queue.tasks.values()))
    # Twilio took the template, but the answer was lost.
    twilio.lost_answers = 1
    assert handle_send_request(task.to_json(), sdeps)[0] == 503
    clock.advance(sdeps.settings.in_flight_grace_seconds + 1)
    assert deliver(task, sdeps) == "sent"
    assert len(twilio.templates) == 1 and twilio.lookups == 1
    entry = pdeps.store.conversation(conversation_id(SENDER)).entry(oid)
    assert entry.twilio_sids == twilio.template_sids

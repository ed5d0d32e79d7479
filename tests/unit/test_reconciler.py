"""The liveness net with in-memory fakes: every stalled state ends within the bound."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.adapters.twilio_api import SendUncertain
from shared.config import Settings
from shared.domain.lifecycle import ANSWERED, FAILED, PROCESSING, SENT
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.processor import process_message
from shared.handlers.reconciler import ReconcilerDeps, reconcile
from shared.handlers.sender import SenderDeps, deliver, handle_send_request
from tests.fakes import Clock, FakeTwilio, conversation_id
from tests.unit.test_processor import SENDER, make_deps, msg

SETTINGS = Settings(max_context_messages=4, liveness_seconds=900, reconcile_after_seconds=180, send_max_attempts=3)
CID = conversation_id(SENDER)


@pytest.fixture
def world():
    clock = Clock()
    pdeps = make_deps(clock=clock, settings=SETTINGS)
    sdeps = SenderDeps(settings=SETTINGS, store=pdeps.store, twilio=FakeTwilio(), queue=pdeps.queue, faults=FaultPoints(), clock=clock)
    rdeps = ReconcilerDeps(settings=SETTINGS, store=pdeps.store, queue=pdeps.queue, clock=clock)
    return pdeps, sdeps, rdeps


def run_tasks(pdeps, sdeps, done: set[str]) -> None:
    """Cloud Tasks: run every task not run yet, until none is left."""
    while True:
        pending = [(name, t) for name, t in pdeps.queue.tasks.items() if name not in done]
        if not pending:
            return
        for name, task in pending:
            done.add(name)
            handle_send_request(task.to_json(), sdeps)


def test_a_healthy_conversation_is_never_looked_at(world) -> None:
    pdeps, sdeps, rdeps = world
    process_message(msg(1), pdeps)
    assert "watch" in pdeps.store.document(CID)
    run_tasks(pdeps, sdeps, set())
    assert "watch" not in pdeps.store.document(CID)
    pdeps.clock.advance(3600)
    reads = pdeps.store.ops.reads
    assert reconcile(rdeps) == {}
    assert pdeps.store.ops.reads - reads == 1  # the query, which found nothing


def test_a_lost_send_task_is_recreated_after_the_quiet_period(world) -> None:
    pdeps, sdeps, rdeps = world
    process_message(msg(1), pdeps)
    pdeps.queue.tasks.clear()  # the task ran out of retries and is gone
    pdeps.clock.advance(60)
    assert reconcile(rdeps) == {}  # watched, but nothing is due yet
    pdeps.clock.advance(SETTINGS.reconcile_after_seconds)
    assert reconcile(rdeps) == {"conversations": 1, "nudged": 1}
    [task] = pdeps.queue.tasks.values()
    assert task.kind == "r1"
    assert deliver(task, sdeps) == "sent"
    assert [body for _, body, _ in sdeps.twilio.sent] == ["Hello!"]
    assert "watch" not in pdeps.store.document(CID)


def test_a_reply_stuck_past_the_bound_is_failed_and_lets_the_next_go(world) -> None:
    pdeps, sdeps, rdeps = world
    process_message(msg(1, "first"), pdeps)
    process_message(msg(2, "second"), pdeps)
    pdeps.queue.tasks.clear()
    sdeps.twilio.script = [SendUncertain("timeout")] * 100
    done: set[str] = set()
    # Nudges every reconcile_after; Twilio keeps timing out; the limit of attempts is not reached by nudges alone.
    for _ in range(int(SETTINGS.liveness_seconds / 60) + 2):
        pdeps.clock.advance(60)
        reconcile(rdeps)
        run_tasks(pdeps, sdeps, done)
    conv = pdeps.store.conversation(CID)
    assert conv.entry(msg(1).sid).status == FAILED
    assert conv.done_seq >= 1
    record = pdeps.store.failures[msg(1).sid]
    assert record["stage"] in {"reconciler", "sender"} and record["reason"]


def test_a_message_stuck_in_processing_is_closed_at_the_bound_not_before(world) -> None:
    pdeps, sdeps, rdeps = world
    crashing = replace(pdeps, faults=FaultPoints(("after_claim:*",)))
    with pytest.raises(InjectedFault):
        process_message(msg(1), crashing)
    pdeps.clock.advance(SETTINGS.liveness_seconds - 1)
    reconcile(rdeps)
    assert pdeps.store.conversation(CID).entry(msg(1).sid).status == PROCESSING
    pdeps.clock.advance(2)
    assert reconcile(rdeps)["closed"] == 1
    conv = pdeps.store.conversation(CID)
    assert conv.entry(msg(1).sid).status == FAILED
    assert "not answered within 15 min" in conv.entry(msg(1).sid).reason
    assert conv.watch is None
    # A late redelivery from Pub/Sub is acknowledged, not answered.
    assert process_message(msg(1), pdeps) == "duplicate"


def test_a_live_lease_or_an_in_flight_part_is_never_closed(world) -> None:
    pdeps, sdeps, rdeps = world
    process_message(msg(1), pdeps)
    [task] = pdeps.queue.tasks.values()
    pdeps.clock.advance(SETTINGS.liveness_seconds + 1)

    def reconcile_mid_call(to, body, from_=""):  # noqa: ANN001, ANN202
        reconcile(rdeps)  # runs while the part is inside the Twilio call
        return "SM" + "1" * 32

    sdeps.twilio.send = reconcile_mid_call
    assert deliver(task, sdeps) == "sent"
    assert pdeps.store.conversation(CID).entry(msg(1).sid).status == SENT
    assert msg(1).sid not in pdeps.store.failures


def test_reconciler_and_sender_racing_end_in_one_terminal_state(world) -> None:
    pdeps, sdeps, rdeps = world
    process_message(msg(1), pdeps)
    pdeps.clock.advance(SETTINGS.liveness_seconds + 60)
    store = pdeps.store
    store.before_apply = lambda cid: (setattr(store, "before_apply", None), reconcile(rdeps))
    [task] = pdeps.queue.tasks.values()
    outcome = deliver(task, sdeps)
    entry = store.conversation(CID).entry(msg(1).sid)
    assert entry.status in (FAILED, SENT)
    assert outcome in ("duplicate", "sent")
    assert len(sdeps.twilio.sent) == (1 if entry.status == SENT else 0)


def test_a_second_reconciler_finds_nothing_left_to_do(world) -> None:
    pdeps, sdeps, rdeps = world
    process_message(msg(1), pdeps)
    pdeps.queue.tasks.clear()
    pdeps.clock.advance(SETTINGS.reconcile_after_seconds)
    assert reconcile(rdeps)["nudged"] == 1
    assert reconcile(rdeps) == {}
    assert len(pdeps.queue.tasks) == 1


def test_answered_entry_waiting_behind_a_closed_one_is_handed_off(world) -> None:
    pdeps, sdeps, rdeps = world
    process_message(msg(1, "first"), pdeps)
    pdeps.clock.advance(300)
    process_message(msg(2, "second"), pdeps)
    first_task = next(iter(pdeps.queue.tasks.values()))
    pdeps.queue.tasks.clear()
    sdeps.twilio.script = [SendUncertain("timeout")]
    with pytest.raises(Exception):
        raise_if_retry(handle_send_request(first_task.to_json(), sdeps))
    pdeps.clock.advance(SETTINGS.liveness_seconds - 300 + SETTINGS.in_flight_grace_seconds + 1)
    assert reconcile(rdeps)["closed"] == 1
    handed = [t for t in pdeps.queue.tasks.values() if t.sid == msg(2).sid]
    assert [t.kind for t in handed] == ["next"]
    assert deliver(handed[0], sdeps) == "sent"
    assert pdeps.store.conversation(CID).entry(msg(2).sid).status == SENT


def raise_if_retry(answer: tuple[int, str]) -> None:
    if answer[0] >= 500:
        raise RuntimeError(answer[1])


def test_watch_is_set_once_per_conversation_not_pushed_by_each_message(world) -> None:
    pdeps, _, _ = world
    process_message(msg(1), pdeps)
    first = pdeps.store.conversation(CID).watch
    pdeps.clock.advance(30)
    process_message(msg(2), pdeps)
    assert pdeps.store.conversation(CID).watch == first
    assert pdeps.store.conversation(CID).entry(msg(2).sid).status == ANSWERED

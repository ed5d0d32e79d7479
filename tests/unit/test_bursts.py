"""Bursts with the fakes: several quick messages, one model call, one reply (docs/decisions/0014-bursts.md)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.adapters.cloud_tasks import BurstTask, SendTask
from shared.adapters.profile_store import StaticProfiles, defaults_from_settings
from shared.config import Settings
from shared.domain.lifecycle import ANSWERED, FAILED, JOINED, MERGED, PROCESSING, WAITING_BURST
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.processor import MessageBusy, answer_burst, handle_push, process_message
from shared.handlers.reconciler import ReconcilerDeps, reconcile
from tests.fakes import conversation_id
from tests.unit.test_processor import SENDER, make_deps, msg

WINDOW = 2.0
CID = conversation_id(SENDER)


def burst_deps(**overrides):
    settings = Settings(max_context_messages=4, conversation_ttl_seconds=3600, rate_limit_messages=1000,
                        burst_window_seconds=WINDOW, processor_url="http://processor/")
    return make_deps(settings=settings, **overrides)


def burst_tasks(deps) -> list[BurstTask]:
    return [t for t in deps.queue.tasks.values() if isinstance(t, BurstTask)]


def fire(deps, task: BurstTask) -> str:
    """What Cloud Tasks does at the task's due time: post the envelope to the processor's push endpoint."""
    envelope = json.loads(task.to_json())
    return handle_push(envelope["message"], envelope["subscription"], deps)


def test_a_burst_of_three_is_answered_by_one_model_call_with_all_three_in_order() -> None:
    deps = burst_deps()
    assert process_message(msg(1, "hello"), deps) == "waiting"
    deps.clock.advance(1)
    assert process_message(msg(2, "I need"), deps) == "joined"
    deps.clock.advance(1)
    assert process_message(msg(3, "a table for two"), deps) == "joined"
    assert deps.model.calls == []
    tasks = burst_tasks(deps)
    assert [t.version for t in tasks] == [1, 2, 3]
    deps.clock.advance(WINDOW)
    assert [fire(deps, t) for t in tasks] == ["moved", "moved", "answered"]
    assert len(deps.model.calls) == 1
    assert deps.model.calls[0][1] == "hello\nI need\na table for two"
    conv = deps.store.conversation(CID)
    head = conv.entry(msg(1).sid)
    assert head.status == ANSWERED and head.seq == 1 and head.text == ""
    for n in (2, 3):
        member = conv.entry(msg(n).sid)
        assert member.status == MERGED and member.answered_by == msg(1).sid
        assert member.reason == f"answered with {msg(1).sid}" and member.seq is None
    sends = [t for t in deps.queue.tasks.values() if isinstance(t, SendTask)]
    assert [(t.sid, t.seq) for t in sends] == [(msg(1).sid, 1)]
    assert [t["sid"] for t in conv.history] == [msg(1).sid, msg(1).sid]
    # A later task (a duplicate) finds the burst answered: its send task exists, nothing else happens.
    assert fire(deps, tasks[-1]) == "requeued"
    assert len(deps.model.calls) == 1


def test_the_task_is_due_at_the_end_of_the_window_from_the_last_message() -> None:
    deps = burst_deps()
    process_message(msg(1), deps)
    deps.clock.advance(1.5)
    process_message(msg(2), deps)
    assert burst_tasks(deps)[-1].due == deps.clock() + timedelta(seconds=WINDOW)
    assert deps.store.conversation(CID).entry(msg(1).sid).burst_due == burst_tasks(deps)[-1].due


def test_window_zero_changes_nothing() -> None:
    deps = make_deps()
    assert process_message(msg(1), deps) == "answered"
    assert process_message(msg(2), deps) == "answered"
    assert burst_tasks(deps) == [] and len(deps.model.calls) == 2
    # Same operations as before bursts existed: 1 read + claim (2 with the marker) + answer per message.
    assert (deps.store.ops.reads, deps.store.ops.writes) == (2, 6)


def test_a_crash_after_the_heads_claim_and_a_redelivery_of_a_member() -> None:
    deps = burst_deps(faults=FaultPoints(("after_claim:1",)))
    with pytest.raises(InjectedFault):
        process_message(msg(1, "one"), deps)
    assert burst_tasks(deps) == []
    assert deps.store.conversation(CID).entry(msg(1).sid).status == WAITING_BURST
    # Pub/Sub redelivers the head: its task is created now.
    assert process_message(msg(1, "one"), deps) == "requeued"
    assert len(burst_tasks(deps)) == 1
    process_message(msg(2, "two"), deps)
    # A redelivery of a member changes nothing and calls no model.
    assert process_message(msg(2, "two"), deps) == "requeued"
    assert deps.store.conversation(CID).entry(msg(2).sid).status == JOINED
    deps.clock.advance(WINDOW)
    for task in burst_tasks(deps):
        fire(deps, task)
    assert len(deps.model.calls) == 1 and deps.model.calls[0][1] == "one\ntwo"
    assert process_message(msg(2, "two"), deps) == "duplicate"
    assert process_message(msg(1, "one"), deps) == "requeued"
    assert len(deps.model.calls) == 1


def test_a_crash_in_the_answer_step_is_answered_once_by_the_retry() -> None:
    deps = burst_deps()
    process_message(msg(1, "one"), deps)
    process_message(msg(2, "two"), deps)
    deps.clock.advance(WINDOW)
    task = burst_tasks(deps)[-1]
    crashing = replace(deps, faults=FaultPoints(("after_ai:1",)))
    with pytest.raises(InjectedFault):
        answer_burst(task, crashing)
    assert deps.store.conversation(CID).entry(msg(1).sid).status == PROCESSING
    with pytest.raises(MessageBusy):
        answer_burst(task, deps)
    deps.clock.advance(deps.settings.processing_lease_seconds + 1)
    assert answer_burst(task, deps) == "answered"
    assert deps.store.conversation(CID).entry(msg(2).sid).status == MERGED
    assert len([t for t in deps.queue.tasks.values() if isinstance(t, SendTask)]) == 1


def test_a_message_after_the_window_waits_until_the_burst_is_answered() -> None:
    deps = burst_deps()
    process_message(msg(1, "one"), deps)
    deps.clock.advance(WINDOW + 0.1)
    with pytest.raises(MessageBusy):
        process_message(msg(2, "two"), deps)
    assert msg(2).sid not in deps.store.conversation(CID).messages
    fire(deps, burst_tasks(deps)[-1])
    assert process_message(msg(2, "two"), deps) == "waiting"
    deps.clock.advance(WINDOW)
    fire(deps, burst_tasks(deps)[-1])
    conv = deps.store.conversation(CID)
    assert (conv.entry(msg(1).sid).seq, conv.entry(msg(2).sid).seq) == (1, 2)


def test_a_command_during_a_burst_waits_for_it() -> None:
    deps = burst_deps()
    process_message(msg(1, "one"), deps)
    with pytest.raises(MessageBusy):
        process_message(msg(2, "/help"), deps)


def test_the_task_of_a_moved_burst_does_nothing() -> None:
    deps = burst_deps()
    process_message(msg(1, "one"), deps)
    first = burst_tasks(deps)[0]
    deps.clock.advance(1)
    process_message(msg(2, "two"), deps)
    deps.clock.advance(WINDOW - 1)
    before = deps.store.ops.writes
    assert answer_burst(first, deps) == "moved"
    assert deps.store.ops.writes == before and deps.model.calls == []
    assert deps.store.conversation(CID).entry(msg(1).sid).status == WAITING_BURST


def test_the_reconciler_recreates_a_lost_burst_task_and_closes_a_stalled_burst() -> None:
    deps = burst_deps()
    process_message(msg(1, "one"), deps)
    process_message(msg(2, "two"), deps)
    deps.queue.tasks.clear()
    rdeps = ReconcilerDeps(settings=deps.settings, store=deps.store, queue=deps.queue, clock=deps.clock)
    deps.clock.advance(WINDOW + deps.settings.reconcile_after_seconds + 1)
    assert reconcile(rdeps)["nudged"] == 1
    (task,) = burst_tasks(deps)
    assert task.kind == "r1" and task.version == 2
    assert fire(deps, task) == "answered"
    assert len(deps.model.calls) == 1
    # Nobody answers a burst at all: the liveness bound closes every member.
    other = burst_deps()
    process_message(msg(3, "three"), other)
    process_message(msg(4, "four"), other)
    other.clock.advance(other.settings.liveness_seconds + 1)
    reconcile(ReconcilerDeps(settings=other.settings, store=other.store, queue=other.queue, clock=other.clock))
    conv = other.store.conversation(CID)
    assert {conv.entry(msg(n).sid).status for n in (3, 4)} == {FAILED}
    assert conv.open_entries() == {}


def test_the_burst_envelope_carries_no_address_and_round_trips() -> None:
    deps = burst_deps()
    process_message(msg(1, "one"), deps)
    task = burst_tasks(deps)[0]
    assert SENDER.split("+")[1] not in task.to_json().decode()
    data = base64.b64decode(json.loads(task.to_json())["message"]["data"])
    assert BurstTask.from_data(data).sid == task.sid and BurstTask.from_data(data).version == 1


def test_a_business_profile_sets_the_window_for_its_number() -> None:
    settings = Settings(max_context_messages=4, conversation_ttl_seconds=3600, rate_limit_messages=1000,
                        processor_url="http://processor/")
    defaults = defaults_from_settings(settings)
    bursty = replace(defaults, address=msg(1).recipient, burst_window_seconds=WINDOW)
    deps = make_deps(settings=settings, profiles=StaticProfiles(defaults, {bursty.address: bursty}))
    assert process_message(msg(1, "hello"), deps) == "waiting"
    other = replace(msg(2, "hello"), recipient="whatsapp:+15550001111")
    assert process_message(other, deps) == "answered"

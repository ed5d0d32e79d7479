"""Replaying dead letters with in-memory fakes: answered once, in order, and said so."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.lifecycle import ANSWERED, DEAD_LETTERED, SENT
from shared.domain.inbound import InboundMessage
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.processor import ProcessorDeps, handle_push, process_message
from shared.ops.admin import AdminDeps, erase
from shared.ops.replay import HeldMessage, replay
from tests.fakes import IDS, Clock, conversation_id
from tests.unit.test_processor import SENDER, dead_letter_sub, make_deps, msg, push
from tests.unit.test_processor_controls import CLINIC, USER, make_world

CID = conversation_id(SENDER)


class FakeDeadLetters:
    def __init__(self, clock: Clock, *messages: InboundMessage) -> None:
        self.held = {f"ack-{m.sid}": HeldMessage(f"ack-{m.sid}", m, clock() + timedelta(seconds=i)) for i, m in enumerate(messages)}
        self.published: list[InboundMessage] = []
        self.released: list[str] = []

    def pull(self, max_messages: int, wait: bool = True) -> list[HeldMessage]:
        return list(self.held.values())[:max_messages]

    def republish(self, message: InboundMessage) -> None:
        self.published.append(message)

    def ack(self, ack_ids: list[str]) -> None:
        for ack_id in ack_ids:
            self.held.pop(ack_id, None)

    def release(self, ack_ids: list[str]) -> None:
        self.released += ack_ids


def dead_letter(deps, *messages: InboundMessage) -> None:
    crashing = make_deps(clock=deps.clock, store=deps.store, queue=deps.queue, model=deps.model,
                         faults=FaultPoints(("after_claim:*",)))
    for m in messages:
        with pytest.raises(InjectedFault):
            process_message(m, crashing)
        handle_push(push(m), dead_letter_sub(deps), deps)


def test_replayed_messages_are_answered_once_in_the_order_written() -> None:
    deps = make_deps()
    first, second = msg(1, "first"), msg(2, "second")
    dead_letter(deps, first, second)
    assert deps.store.conversation(CID).entry(first.sid).status == DEAD_LETTERED
    held = FakeDeadLetters(deps.clock, first, second)
    lines = replay(deps.store, IDS, held, deps.clock, 3600)
    assert [m.sid for m in held.published] == [first.sid, second.sid]
    assert held.held == {}
    assert all("replayed" in line for line in lines) and SENDER[-6:] not in "\n".join(lines)
    for m in held.published:
        assert process_message(m, deps) == "answered"
        assert process_message(m, deps) == "requeued"  # a second copy changes nothing
    conv = deps.store.conversation(CID)
    assert {conv.entry(s).status for s in (first.sid, second.sid)} == {ANSWERED}
    assert conv.entry(first.sid).replays == 1


def test_replay_follows_the_order_the_user_wrote_in() -> None:
    deps = make_deps()
    early = InboundMessage(sid=msg(1).sid, sender=SENDER, recipient="whatsapp:+1", body="early", received_at=100.0)
    late = InboundMessage(sid=msg(2).sid, sender=SENDER, recipient="whatsapp:+1", body="late", received_at=200.0)
    dead_letter(deps, early, late)
    held = FakeDeadLetters(deps.clock, late, early)
    replay(deps.store, IDS, held, deps.clock, 3600)
    assert [m.body for m in held.published] == ["early", "late"]


def test_only_the_chosen_messages_are_replayed_and_missing_ones_are_reported() -> None:
    deps = make_deps()
    dead_letter(deps, msg(1), msg(2))
    held = FakeDeadLetters(deps.clock, msg(1), msg(2))
    lines = replay(deps.store, IDS, held, deps.clock, 3600, sids=[msg(2).sid, "SM" + "f" * 32])
    assert [m.sid for m in held.published] == [msg(2).sid]
    assert list(held.held) == [f"ack-{msg(1).sid}"]
    # Pulled but not chosen: visible again at once, for the next run.
    assert held.released == [f"ack-{msg(1).sid}"]
    assert any("not in the dead-letter hold subscription" in line for line in lines)


def test_a_message_answered_meanwhile_is_left_alone() -> None:
    deps = make_deps()
    process_message(msg(1), deps)
    held = FakeDeadLetters(deps.clock, msg(1))
    lines = replay(deps.store, IDS, held, deps.clock, 3600)
    assert held.published == [] and held.held == {}
    assert "left alone (answered)" in lines[0]


def test_a_conversation_that_is_gone_is_recreated_with_its_expiry() -> None:
    deps = make_deps()
    handle_push(push(msg(1)), dead_letter_sub(deps), deps)  # never claimed: no document
    assert deps.store.docs == {}
    held = FakeDeadLetters(deps.clock, msg(1))
    replay(deps.store, IDS, held, deps.clock, 3600)
    conv = deps.store.conversation(CID)
    assert conv.expire_at > deps.clock() and conv.address == SENDER
    # Until the processor claims it, the reconciler watches it, so it ends within the bound anyway.
    assert conv.watch > deps.clock()
    assert deps.store.failures[msg(1).sid]["status"] == "replayed"
    assert process_message(held.published[0], deps) == "answered"
    assert conv.entry(msg(1).sid).status != SENT


# --- A replayed message belongs to the number it was written to; only a known dead letter is replayed.

def _world_dead_letter(w, message: InboundMessage, claimed: bool) -> None:  # noqa: ANN001
    """Dead-letter ``message`` in the world ``w``: claimed first (an entry exists) or never taken on."""
    if claimed:
        crashing = ProcessorDeps(**{**w.deps.__dict__, "faults": FaultPoints(("after_claim:*",))})
        with pytest.raises(InjectedFault):
            process_message(message, crashing)
    handle_push(push(message), dead_letter_sub(w.deps), w.deps)


def _replay_and_answer(w, held: FakeDeadLetters) -> list[str]:  # noqa: ANN001
    lines = replay(w.deps.store, IDS, held, w.clock, 3600)
    for published in held.published:
        process_message(published, w.deps)
    w.flush()
    return lines


@pytest.mark.parametrize("how", ["never taken on", "conversation expired"])
def test_a_replayed_first_message_is_answered_from_the_number_it_was_written_to(how: str) -> None:
    w = make_world()
    first = InboundMessage(sid=f"SM{101:032x}", sender=USER, recipient=CLINIC, body="first ever")
    _world_dead_letter(w, first, claimed=how == "conversation expired")
    if how == "conversation expired":
        w.deps.store.delete(conversation_id(USER, CLINIC))  # what the TTL policy does
    assert "replayed" in _replay_and_answer(w, FakeDeadLetters(w.clock, first))[0]
    assert [b for _, b, _ in w.twilio.sent] == ["Hello!"]
    assert w.conv(CLINIC).business == CLINIC
    w.say("and later?", to=CLINIC)
    assert w.twilio.froms == [CLINIC, CLINIC]


def test_a_conversation_written_without_its_number_learns_it_at_the_next_claim() -> None:
    w = make_world()
    cid = conversation_id(USER, CLINIC)
    w.deps.store.docs[cid] = ({"address": USER, "history": [], "messages": {}}, 1)  # an older replay wrote this
    w.say("hello", to=CLINIC)
    assert w.conv(CLINIC).business == CLINIC and w.twilio.froms == [CLINIC]


def test_an_answered_message_is_not_replayed_after_its_conversation_expired() -> None:
    w = make_world()
    answered = InboundMessage(sid=f"SM{1:032x}", sender=USER, recipient=CLINIC, body="answered once")
    w.deps.queue.error = RuntimeError("Cloud Tasks unavailable")
    with pytest.raises(RuntimeError):
        process_message(answered, w.deps)
    w.deps.queue.error = None
    # Pub/Sub gives up; the dead letter leaves the answered reply to the sender, which sends it.
    assert handle_push(push(answered), dead_letter_sub(w.deps), w.deps) == "left to the sender"
    w.flush()
    assert [b for _, b, _ in w.twilio.sent] == ["Hello!"]
    w.deps.store.delete(conversation_id(USER, CLINIC))
    held = FakeDeadLetters(w.clock, answered)
    lines = _replay_and_answer(w, held)
    assert held.published == [] and held.held == {} and "left alone" in lines[0]
    assert [b for _, b, _ in w.twilio.sent] == ["Hello!"]
    assert conversation_id(USER, CLINIC) not in w.deps.store.docs


@pytest.mark.parametrize("claimed", [False, True])
def test_a_replay_does_not_bring_an_erased_user_back(claimed: bool) -> None:
    w = make_world()
    message = InboundMessage(sid=f"SM{1:032x}", sender=USER, recipient=CLINIC, body="erase me later")
    _world_dead_letter(w, message, claimed)
    assert message.sid in w.deps.store.failures
    erase(AdminDeps(w.deps.settings, w.deps.store, IDS, lambda: w.deps.queue, w.clock), USER, CLINIC)
    held = FakeDeadLetters(w.clock, message)
    lines = _replay_and_answer(w, held)
    assert held.published == [] and held.held == {} and "left alone" in lines[0]
    assert w.deps.store.docs == {} and w.twilio.sent == []
    assert USER not in str(w.deps.store.docs)


def test_a_message_replayed_and_answered_is_not_replayed_again_once_its_conversation_is_gone() -> None:
    w = make_world()
    message = InboundMessage(sid=f"SM{1:032x}", sender=USER, recipient=CLINIC, body="only once")
    _world_dead_letter(w, message, claimed=True)
    _replay_and_answer(w, FakeDeadLetters(w.clock, message))
    assert [b for _, b, _ in w.twilio.sent] == ["Hello!"]
    # A copy of the replayed message is dead-lettered too (the reply was already sent), then the conversation expires.
    assert handle_push(push(message), dead_letter_sub(w.deps), w.deps) == "already finished"
    w.deps.store.delete(conversation_id(USER, CLINIC))
    held = FakeDeadLetters(w.clock, message)
    lines = _replay_and_answer(w, held)
    assert held.published == [] and "left alone" in lines[0]
    assert [b for _, b, _ in w.twilio.sent] == ["Hello!"]


def test_a_replay_keeps_an_opt_out_and_never_writes_the_number_back() -> None:
    w = make_world()
    w.say("hello", to=CLINIC)
    w.say("STOP", to=CLINIC)
    late = InboundMessage(sid=f"SM{99:032x}", sender=USER, recipient=CLINIC, body="sent before STOP, dead-lettered")
    _world_dead_letter(w, late, claimed=False)
    assert "address" not in w.doc(CLINIC)
    _replay_and_answer(w, FakeDeadLetters(w.clock, late))
    conv = w.conv(CLINIC)
    assert conv.entry(late.sid).status == "ignored"
    assert conv.address == "" and conv.expire_at is None and conv.opted_out is True


@pytest.mark.parametrize("gone", ["conversation expired", "entry pruned"])
def test_a_late_dead_letter_of_a_message_taken_on_long_ago_is_not_made_replayable(gone: str) -> None:
    w = make_world()
    answered = InboundMessage(sid=f"SM{101:032x}", sender=USER, recipient=CLINIC, body="answered long ago")
    process_message(answered, w.deps)
    w.flush()
    cid = conversation_id(USER, CLINIC)
    if gone == "conversation expired":
        w.deps.store.delete(cid)
    else:
        data, version = w.deps.store.docs[cid]
        w.deps.store.docs[cid] = ({**data, "messages": {}}, version)
    # A copy of it reaches the dead-letter subscription only now.
    assert handle_push(push(answered), dead_letter_sub(w.deps), w.deps) == "already taken on"
    assert answered.sid not in w.deps.store.failures
    held = FakeDeadLetters(w.clock, answered)
    assert "left alone" in _replay_and_answer(w, held)[0]
    assert [b for _, b, _ in w.twilio.sent] == ["Hello!"]

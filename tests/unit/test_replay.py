"""Replaying dead letters with in-memory fakes: answered once, in order, and said so."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.conversation import ANSWERED, DEAD_LETTERED, SENT
from shared.domain.inbound import InboundMessage
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.processor import handle_push, process_message
from shared.ops.replay import HeldMessage, replay
from tests.fakes import IDS, Clock, conversation_id
from tests.unit.test_processor import SENDER, dead_letter_sub, make_deps, msg, push

CID = conversation_id(SENDER)


class FakeDeadLetters:
    def __init__(self, clock: Clock, *messages: InboundMessage) -> None:
        self.held = {f"ack-{m.sid}": HeldMessage(f"ack-{m.sid}", m, clock() + timedelta(seconds=i)) for i, m in enumerate(messages)}
        self.published: list[InboundMessage] = []

    def pull(self, max_messages: int) -> list[HeldMessage]:
        return list(self.held.values())[:max_messages]

    def republish(self, message: InboundMessage) -> None:
        self.published.append(message)

    def ack(self, ack_ids: list[str]) -> None:
        for ack_id in ack_ids:
            self.held.pop(ack_id, None)


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
    assert deps.store.conversation(CID).entry(first.sid)["status"] == DEAD_LETTERED
    held = FakeDeadLetters(deps.clock, first, second)
    lines = replay(deps.store, IDS, held, deps.clock, 3600)
    assert [m.sid for m in held.published] == [first.sid, second.sid]
    assert held.held == {}
    assert all("replayed" in line for line in lines) and SENDER[-6:] not in "\n".join(lines)
    for m in held.published:
        assert process_message(m, deps) == "answered"
        assert process_message(m, deps) == "requeued"  # a second copy changes nothing
    conv = deps.store.conversation(CID)
    assert {conv.entry(s)["status"] for s in (first.sid, second.sid)} == {ANSWERED}
    assert conv.entry(first.sid)["replays"] == 1


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
    assert conv.data["expireAt"] > deps.clock() and conv.data["address"] == SENDER
    assert process_message(held.published[0], deps) == "answered"
    assert conv.entry(msg(1).sid)["status"] != SENT

"""The message's state machine: the table itself, and illegal moves refused wherever they are tried."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain import claims, sending
from shared.domain.conversation import Answer, Conversation, Limits
from shared.domain.entry import MessageEntry
from shared.domain.lifecycle import (
    ANSWERED,
    DEAD_LETTERED,
    FINISHED,
    NEW,
    OPEN,
    PROCESSING,
    REOPENED,
    SENDING,
    SENT,
    STATUSES,
    TABLE,
    IllegalMove,
    allowed,
    next_status,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
LIMITS = Limits(ttl_seconds=3600, max_messages=20, lease_seconds=120)


def test_every_status_is_reachable_from_a_new_message() -> None:
    reached, frontier = {NEW}, [NEW]
    while frontier:
        status = frontier.pop()
        for move in TABLE.values():
            if status in move.sources and move.target is not None and move.target not in reached:
                reached.add(move.target)
                frontier.append(move.target)
    assert reached == STATUSES | {NEW}


def test_a_finished_message_only_ever_leaves_its_status_when_a_dead_letter_is_replayed() -> None:
    for event, move in TABLE.items():
        for source in move.sources & FINISHED:
            if move.target is not None and move.target != source:
                assert (event, source) == (REOPENED, DEAD_LETTERED)


def test_every_open_status_has_a_way_to_end() -> None:
    for status in OPEN:
        ends = {move.target for move in TABLE.values() if status in move.sources} & FINISHED
        assert ends, status


@given(st.sampled_from(sorted(STATUSES | {NEW})), st.sampled_from(sorted(TABLE)))
def test_an_event_either_moves_as_the_table_says_or_raises(status: str, event: str) -> None:
    entry = MessageEntry(status=status)
    if allowed(status, event):
        entry.move(event)
        assert entry.status == (TABLE[event].target or status)
    else:
        with pytest.raises(IllegalMove) as caught:
            entry.move(event, "SM1")
        assert entry.status == status, "a refused move leaves the entry as it was"
        assert event in str(caught.value) and "SM1" in str(caught.value)


def conversation_with(status: str, **fields: object) -> Conversation:
    entry = MessageEntry(status=status, seq=1, parts=["hi"], received_at=NOW, **fields)  # type: ignore[arg-type]
    return Conversation(address="whatsapp:+34600", last_seq=1, messages={"SM1": entry}, exists=True)


def test_a_sent_message_cannot_be_answered_again() -> None:
    conv = conversation_with(SENT)
    with pytest.raises(IllegalMove):
        conv.answer("SM1", Answer(parts=["again"], asked="hi"), NOW, LIMITS)
    assert conv.last_seq == 1 and conv.messages["SM1"].status == SENT


def test_a_claimed_message_cannot_be_sent_before_it_is_answered() -> None:
    conv = conversation_with(PROCESSING)
    with pytest.raises(IllegalMove):
        sending.start_part(conv, "SM1", 0, NOW, "task")
    with pytest.raises(IllegalMove):
        conv.finish("SM1", SENT, NOW)


def test_an_answered_message_is_not_claimed_or_dead_lettered_over() -> None:
    conv = conversation_with(ANSWERED)
    with pytest.raises(IllegalMove):
        claims.claim(conv, "SM1", NOW, LIMITS, address="whatsapp:+34600")
    with pytest.raises(IllegalMove):
        claims.dead_letter(conv, "SM1", NOW, "dead-lettered")
    with pytest.raises(IllegalMove):
        claims.reopen(conv, "SM1", NOW, LIMITS, address="", business="", user_id="")
    assert conv.messages["SM1"].status == ANSWERED


def test_a_sending_part_is_marked_once_per_attempt_and_finishes_the_reply() -> None:
    conv = conversation_with(ANSWERED)
    sending.start_part(conv, "SM1", 0, NOW, "task")
    assert conv.messages["SM1"].status == SENDING
    assert sending.part_sent(conv, "SM1", 0, "SM" + "a" * 32, NOW + timedelta(seconds=1)) == "sent"
    assert conv.messages["SM1"].status == SENT and conv.done_seq == 1
    # Twilio's SID of a part sent again after the close is kept aside; the status stays.
    assert sending.part_sent(conv, "SM1", 0, "SM" + "b" * 32, NOW) == "late"
    assert conv.messages["SM1"].status == SENT


def test_the_handlers_surface_an_illegal_move_instead_of_overwriting() -> None:
    """A store whose document was corrupted (a sent reply marked answered again by hand) is not "fixed"."""
    from shared.config import Settings
    from shared.faults import FaultPoints
    from shared.handlers.deps import SenderDeps
    from shared.handlers.sender import deliver
    from shared.adapters.cloud_tasks import SendTask
    from tests.fakes import Clock, FakeQueue, FakeStore, FakeTwilio

    store = FakeStore()
    store.apply("c", {"address": "whatsapp:+34600", "lastSeq": 1, "doneSeq": 0,
                      "messages": {"SM1": {"status": "queued-by-hand", "seq": 1, "parts": ["hi"]}}}, None)
    deps = SenderDeps(settings=Settings(), store=store, twilio=FakeTwilio(), queue=FakeQueue(), faults=FaultPoints(),
                      clock=Clock())
    assert deliver(SendTask("c", "SM1", 1), deps) == "not answered"
    assert store.conversation("c").messages["SM1"].status == "queued-by-hand"
    with pytest.raises(IllegalMove):
        store.update("c", lambda conv: conv.finish("SM1", SENT, NOW))
    assert store.conversation("c").messages["SM1"].status == "queued-by-hand", "nothing was written"


def test_next_status_names_the_event_and_what_it_allows() -> None:
    with pytest.raises(IllegalMove, match="'sent' is not allowed from 'processing'.*answered, sending"):
        next_status(PROCESSING, "sent")


def test_the_architecture_page_shows_the_table_as_it_is() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    rows = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0].strip("`") in TABLE:
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    assert set(rows) == set(TABLE)
    groups = {"any open": OPEN, "any finished": FINISHED, "any": STATUSES, "answered, sending": {ANSWERED, SENDING}}
    for event, (sources, target) in rows.items():
        named: set[str] = set()
        for part in [p.strip() for p in sources.replace("answered, sending", "answered-sending").split(",")]:
            part = part.replace("answered-sending", "answered, sending")
            named |= groups.get(part, {NEW if part == "(new)" else part})
        assert named == set(TABLE[event].sources), event
        assert target == (TABLE[event].target or "(stays)"), event

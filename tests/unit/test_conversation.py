"""The conversation document's pure rules: ids, history, claims, answers, order watermark, pruning."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.adapters.conversation_document import DELETE, apply_field_updates, field_updates, from_document, to_document
from shared.domain import claims
from shared.domain.conversation import (
    MAX_TRACKED_MESSAGES,
    Answer,
    Conversation,
    Limits,
    advance_done_seq,
    prunable_entries,
)
from shared.domain.turns import trim_history
from shared.domain.entry import MessageEntry
from shared.domain.lifecycle import ANSWERED, DEAD_LETTERED, FAILED, PROCESSING, SENDING, SENT
from tests.fakes import conversation_id, nested

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ADDRESS = "whatsapp:+34600111222"
TTL = 3600
LEASE = 120
LIMITS = Limits(ttl_seconds=TTL, max_messages=20, lease_seconds=LEASE)


def doc(data: dict[str, Any]) -> Conversation:
    """The typed conversation of a stored document."""
    return from_document(data)


def writes(conv: Conversation, change: Any) -> dict[str, Any]:
    """The field paths the store writes for ``change`` (DELETE for a removed field); ``conv`` is changed."""
    before = to_document(conv)
    change(conv)
    return field_updates(before, to_document(conv))


def claim(conv: Conversation, n: int, now: datetime = NOW) -> None:
    claims.claim(conv, sid(n), now, LIMITS, address=ADDRESS)


def answer(conv: Conversation, n: int, user_text: str, parts: list[str], now: datetime = NOW,
           max_messages: int = 20, failure: str = "") -> int:
    return conv.answer(sid(n), Answer(parts=parts, asked=user_text, failure=failure), now,
                       Limits(ttl_seconds=TTL, max_messages=max_messages))


def sid(n: int) -> str:
    return f"SM{n:032x}"


def turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content, "sid": "x"}


# --- ids -------------------------------------------------------------------


def test_conversation_id_is_stable_and_opaque() -> None:
    first = conversation_id(ADDRESS)
    assert first == conversation_id(ADDRESS)
    assert len(first) == 64 and int(first, 16) >= 0
    assert "34600111222" not in first


@pytest.mark.parametrize(
    "other", ["whatsapp:+34600111223", "+34600111222", "whatsapp:bsuid.AB12cd34", "whatsapp:bsuid.ab12cd34", ""]
)
def test_conversation_id_differs_per_address(other: str) -> None:
    assert conversation_id(other) != conversation_id(ADDRESS)


# --- history -----------------------------------------------------------------


def test_trim_history_keeps_the_newest_turns() -> None:
    history = [turn("user" if i % 2 == 0 else "assistant", str(i)) for i in range(10)]
    assert [t["content"] for t in trim_history(history, 4)] == ["6", "7", "8", "9"]


def test_trim_history_never_starts_with_an_assistant_turn() -> None:
    history = [turn("user" if i % 2 == 0 else "assistant", str(i)) for i in range(10)]
    kept = trim_history(history, 5)
    assert [t["content"] for t in kept] == ["6", "7", "8", "9"]
    assert kept[0]["role"] == "user"


def test_trim_history_drops_every_leading_assistant_turn() -> None:
    history = [turn("assistant", "a"), turn("assistant", "b"), turn("user", "q"), turn("assistant", "c")]
    assert [t["content"] for t in trim_history(history, 10)] == ["q", "c"]
    assert trim_history([turn("assistant", "only")], 10) == []


@pytest.mark.parametrize("limit", [0, -3])
def test_trim_history_to_nothing(limit: int) -> None:
    assert trim_history([turn("user", "q")], limit) == []


def test_history_is_a_copy() -> None:
    conv = Conversation(history=[turn("user", "q")], expire_at=NOW + timedelta(hours=1))
    conv.turns(NOW)[0]["content"] = "changed"
    assert conv.turns(NOW)[0]["content"] == "q"


# --- expiry ------------------------------------------------------------------


def test_history_is_empty_once_expired() -> None:
    conv = Conversation(history=[turn("user", "q"), turn("assistant", "a")], expire_at=NOW)
    assert len(conv.turns(NOW - timedelta(seconds=1))) == 2
    assert conv.turns(NOW) == []
    assert conv.turns(NOW + timedelta(days=3)) == []
    assert conv.is_expired(NOW) and not conv.is_expired(NOW - timedelta(microseconds=1))


def test_a_document_without_expiry_never_expires() -> None:
    conv = Conversation(history=[turn("user", "q")])
    assert not conv.is_expired(NOW + timedelta(days=1000))
    assert conv.turns(NOW) == [turn("user", "q")]


def test_empty_document() -> None:
    conv = from_document(None)
    assert not conv.exists
    assert conv.last_seq == 0 and conv.done_seq == 0
    assert conv.entry(sid(1)) is None and conv.turns(NOW) == []
    assert to_document(conv) == {}


# --- claim -------------------------------------------------------------------


def test_first_claim_creates_the_entry_and_the_address() -> None:
    conv = from_document(None)
    claim(conv, 1)
    assert to_document(conv) == {
        "messages": {sid(1): {
            "status": PROCESSING, "leaseUntil": NOW + timedelta(seconds=LEASE), "attempts": 1, "updatedAt": NOW,
            "receivedAt": NOW,
        }},
        "expireAt": NOW + timedelta(seconds=TTL),
        "updatedAt": NOW,
        "address": ADDRESS,
    }


def test_reclaim_counts_attempts_and_keeps_received_at_and_address() -> None:
    earlier = NOW - timedelta(minutes=5)
    conv = doc(
        {
            "address": ADDRESS,
            "expireAt": NOW + timedelta(minutes=30),
            "history": [turn("user", "q")],
            "messages": {sid(1): {"status": PROCESSING, "attempts": 2, "receivedAt": earlier}},
        }
    )
    updates = writes(conv, lambda c: claim(c, 1))
    assert updates[f"messages.{sid(1)}.attempts"] == 3
    assert f"messages.{sid(1)}.receivedAt" not in updates
    assert "address" not in updates
    assert "history" not in updates
    assert conv.entry(sid(1)).received_at == earlier


def test_claim_resets_history_of_an_expired_conversation() -> None:
    conv = doc({"address": ADDRESS, "expireAt": NOW - timedelta(seconds=1), "history": [turn("user", "old")], "lastSeq": 4})
    updates = writes(conv, lambda c: claim(c, 9))
    assert updates["history"] == []
    assert conv.turns(NOW) == []
    assert conv.last_seq == 4, "the sending order survives expiry"
    assert not conv.is_expired(NOW)


# --- answer ------------------------------------------------------------------


def claimed(conv: Conversation, n: int, now: datetime = NOW) -> Conversation:
    claim(conv, n, now)
    return conv


def test_answer_appends_the_turn_and_takes_the_next_seq() -> None:
    conv = claimed(doc({"lastSeq": 2, "doneSeq": 2, "address": ADDRESS}), 3)
    updates = writes(conv, lambda c: answer(c, 3, "question", ["part one", "part two"]))
    assert updates["lastSeq"] == 3
    assert updates[f"messages.{sid(3)}.status"] == ANSWERED
    assert updates[f"messages.{sid(3)}.seq"] == 3
    assert updates[f"messages.{sid(3)}.parts"] == ["part one", "part two"]
    assert updates[f"messages.{sid(3)}.sentParts"] == 0
    assert updates[f"messages.{sid(3)}.leaseUntil"] is DELETE
    assert updates["history"] == [
        {"role": "user", "content": "question", "sid": sid(3)},
        {"role": "assistant", "content": "part one\n\npart two", "sid": sid(3)},
    ]
    assert f"messages.{sid(3)}.fallback" not in updates
    assert conv.entry(sid(3)).lease_until is None
    assert conv.entry(sid(3)).status == ANSWERED


def test_answer_with_a_failure_reason_marks_the_fallback() -> None:
    conv = claimed(from_document(None), 1)
    updates = writes(conv, lambda c: answer(c, 1, "q", ["sorry"], failure="model unavailable: 500"))
    assert updates[f"messages.{sid(1)}.reason"] == "model unavailable: 500"
    assert updates[f"messages.{sid(1)}.fallback"] is True


def test_answer_trims_history_to_the_window() -> None:
    conv = from_document(None)
    for n in range(1, 5):
        claim(conv, n)
        answer(conv, n, f"q{n}", [f"a{n}"], max_messages=3)
    history = conv.turns(NOW)
    assert [t["content"] for t in history] == ["q4", "a4"]
    assert conv.last_seq == 4


def test_answer_after_expiry_starts_a_fresh_history() -> None:
    conv = claimed(from_document(None), 1)
    answer(conv, 1, "old", ["old answer"])
    later = NOW + timedelta(seconds=TTL + 1)
    conv.messages[sid(2)] = MessageEntry(status=PROCESSING)
    updates = writes(conv, lambda c: answer(c, 2, "new", ["new answer"], now=later))
    assert [t["content"] for t in updates["history"]] == ["new", "new answer"]


def test_an_unasked_answer_has_no_user_turn_and_watches_itself() -> None:
    conv = doc({"address": ADDRESS, "lastSeq": 1, "doneSeq": 1})
    seq = conv.answer("OB1", Answer(parts=["Your order shipped."], by="business", to="whatsapp:+1"), NOW,
                      Limits(ttl_seconds=TTL, max_messages=20, watch_after_seconds=180))
    entry = conv.entry("OB1")
    assert seq == 2 and entry.status == ANSWERED and entry.by == "business" and entry.received_at == NOW
    assert conv.turns(NOW) == [{"role": "assistant", "content": "Your order shipped.", "sid": "OB1", "by": "business"}]
    assert conv.watch == NOW + timedelta(seconds=180) and conv.address == ADDRESS


# --- finish and the order watermark ------------------------------------------


def with_entries(done: int, entries: dict[int, tuple[int, str]]) -> Conversation:
    """``entries`` maps message number → (seq, status)."""
    return doc(
        {"doneSeq": done, "lastSeq": max([done] + [s for s, _ in entries.values()]),
         "messages": {sid(n): {"seq": s, "status": st, "parts": ["x"], "sentParts": 0,
                               "sending": {"part": 0, "since": NOW, "task": "t"}} for n, (s, st) in entries.items()}}
    )


def done_after_finishing(conv: Conversation, n: int) -> int:
    conv.finish(sid(n), SENT if conv.entry(sid(n)).status in (ANSWERED, SENDING) else FAILED, NOW)
    return conv.done_seq


def test_finishing_the_next_reply_moves_the_watermark_by_one() -> None:
    conv = with_entries(1, {2: (2, SENDING), 3: (3, ANSWERED)})
    assert done_after_finishing(conv, 2) == 2


def test_watermark_jumps_over_later_replies_that_already_finished() -> None:
    conv = with_entries(1, {2: (2, SENDING), 3: (3, DEAD_LETTERED), 4: (4, FAILED), 5: (5, ANSWERED), 6: (6, SENT)})
    assert done_after_finishing(conv, 2) == 4


def test_a_reply_finishing_early_does_not_move_the_watermark() -> None:
    conv = with_entries(1, {2: (2, SENDING), 3: (3, ANSWERED)})
    assert done_after_finishing(conv, 3) == 1
    assert advance_done_seq(conv) == 1


def test_finishing_closes_the_entry_and_moves_the_watermark() -> None:
    conv = with_entries(0, {1: (1, SENDING), 2: (2, FAILED)})
    updates = writes(conv, lambda c: c.finish(sid(1), SENT, NOW))
    assert updates[f"messages.{sid(1)}.status"] == SENT
    assert updates[f"messages.{sid(1)}.sending"] is DELETE
    assert updates[f"messages.{sid(1)}.parts"] is DELETE and updates[f"messages.{sid(1)}.partCount"] == 1
    assert updates["doneSeq"] == 2
    assert f"messages.{sid(1)}.reason" not in updates
    assert conv.done_seq == 2 and conv.entry(sid(1)).status == SENT


def test_finish_with_a_reason_and_without_a_seq() -> None:
    conv = doc({"doneSeq": 3, "messages": {sid(1): {"status": PROCESSING, "leaseUntil": NOW}}})
    updates = writes(conv, lambda c: c.finish(sid(1), DEAD_LETTERED, NOW, reason="poison"))
    assert updates[f"messages.{sid(1)}.reason"] == "poison"
    assert updates[f"messages.{sid(1)}.leaseUntil"] is DELETE
    assert "doneSeq" not in updates


# --- pruning -------------------------------------------------------------------


def entries(statuses: list[str], start: datetime = NOW) -> dict[str, MessageEntry]:
    return {sid(i): MessageEntry(status=st, updated_at=start + timedelta(minutes=i)) for i, st in enumerate(statuses)}


def test_nothing_to_prune_within_the_limit() -> None:
    assert prunable_entries(entries([SENT] * 5), keep=5, protect="") == []


def test_prunes_the_oldest_finished_entries() -> None:
    messages = entries([SENT, FAILED, SENT, DEAD_LETTERED, SENT])
    assert prunable_entries(messages, keep=3, protect="") == [sid(0), sid(1)]


def test_unfinished_entries_are_never_pruned() -> None:
    messages = entries([ANSWERED, SENDING, SENT, PROCESSING, SENT, SENT])
    pruned = prunable_entries(messages, keep=2, protect="")
    assert pruned == [sid(2), sid(4), sid(5)]
    assert all(messages[s].status == SENT for s in pruned)


def test_the_newest_finished_entries_and_the_protected_one_are_kept() -> None:
    messages = entries([SENT] * 6)
    pruned = prunable_entries(messages, keep=3, protect=sid(0))
    assert sid(0) not in pruned
    assert sid(5) not in pruned
    assert pruned == [sid(1), sid(2), sid(3)]


def test_entries_without_timestamps_are_pruned_last() -> None:
    messages = entries([SENT, SENT, SENT])
    messages[sid(9)] = MessageEntry(status=SENT)
    assert prunable_entries(messages, keep=2, protect="") == [sid(0), sid(1)]
    assert prunable_entries(messages, keep=0, protect="")[-1] == sid(9)


def test_received_at_stands_in_for_updated_at() -> None:
    messages = {
        sid(1): MessageEntry(status=SENT, received_at=NOW),
        sid(2): MessageEntry(status=SENT, updated_at=NOW - timedelta(hours=1)),
    }
    assert prunable_entries(messages, keep=1, protect="") == [sid(2)]


def test_a_reply_finished_ahead_of_the_watermark_is_not_pruned() -> None:
    messages = entries([SENT, DEAD_LETTERED, SENT])
    for i, entry in enumerate(messages.values()):
        entry.seq = i + 1
    # seq 2 was dead-lettered while the watermark was still at 1.
    assert prunable_entries(messages, keep=1, protect="", done_seq=1) == [sid(0)]
    assert prunable_entries(messages, keep=1, protect="", done_seq=3) == [sid(0), sid(1)]


def test_answer_prunes_to_the_tracked_limit_but_keeps_what_the_watermark_needs() -> None:
    messages: dict[str, dict[str, Any]] = {}
    for n in range(1, MAX_TRACKED_MESSAGES + 6):
        messages[sid(n)] = {"status": SENT, "seq": n, "updatedAt": NOW + timedelta(seconds=n)}
    stuck, early = MAX_TRACKED_MESSAGES + 6, MAX_TRACKED_MESSAGES + 7
    messages[sid(stuck)] = {"status": SENDING, "seq": stuck, "updatedAt": NOW, "parts": ["x"]}
    messages[sid(early)] = {"status": DEAD_LETTERED, "seq": early, "updatedAt": NOW - timedelta(days=1)}
    conv = doc({"doneSeq": stuck - 1, "lastSeq": early, "messages": messages})
    conv = claimed(conv, 999, NOW + timedelta(hours=1))
    updates = writes(conv, lambda c: answer(c, 999, "q", ["a"], now=NOW + timedelta(hours=1)))
    removed = {path.split(".")[1] for path, value in updates.items() if value is DELETE and path.count(".") == 1}
    assert sid(early) not in removed, "the watermark must still jump over the early-finished reply"
    assert sid(stuck) not in removed and sid(999) not in removed
    assert removed == {sid(n) for n in range(1, 10)}
    assert len(conv.messages) == MAX_TRACKED_MESSAGES - 1
    conv.finish(sid(stuck), SENT, NOW + timedelta(hours=1))
    assert conv.done_seq == early


# --- the document: field paths applied as Firestore applies them ------------------


def test_nested_builds_a_document_and_skips_removals() -> None:
    built = nested({"address": ADDRESS, "messages.SM1.status": PROCESSING, "messages.SM1.n": 1, "messages.SM1.x": DELETE})
    assert built == {"address": ADDRESS, "messages": {"SM1": {"status": PROCESSING, "n": 1}}}


def test_field_updates_set_and_remove_without_touching_the_original() -> None:
    original = {"lastSeq": 1, "messages": {"SM1": {"status": SENDING, "sending": {"part": 0}}}, "history": [{"a": "b"}]}
    updates = {"lastSeq": 2, "messages.SM1.sending": DELETE, "messages.SM1.status": SENT, "messages.SM2.seq": 3}
    after = apply_field_updates(original, updates)
    assert after == {
        "lastSeq": 2,
        "messages": {"SM1": {"status": SENT}, "SM2": {"seq": 3}},
        "history": [{"a": "b"}],
    }
    assert original == {"lastSeq": 1, "messages": {"SM1": {"status": SENDING, "sending": {"part": 0}}}, "history": [{"a": "b"}]}
    after["history"][0]["a"] = "changed"
    assert original["history"][0]["a"] == "b"
    assert field_updates(original, apply_field_updates(original, updates)) == {
        "lastSeq": 2, "messages.SM1.sending": DELETE, "messages.SM1.status": SENT, "messages.SM2": {"seq": 3},
    }


def test_field_updates_remove_a_whole_entry() -> None:
    before = {"messages": {"SM1": {"status": SENT}, "SM2": {"status": SENT}}}
    assert apply_field_updates(before, {"messages.SM1": DELETE}) == {"messages": {"SM2": {"status": SENT}}}
    assert field_updates(before, {"messages": {"SM2": {"status": SENT}}}) == {"messages.SM1": DELETE}


def test_removal_under_a_missing_map_creates_nothing() -> None:
    after = apply_field_updates({"messages": {}}, {"messages.SM9.sending": DELETE, "other.deep.field": DELETE, "gone": DELETE})
    assert after == {"messages": {}}


def test_no_updates_is_an_equal_copy_and_an_unchanged_conversation_writes_nothing() -> None:
    data = {"a": {"b": [1, {"c": 2}]}}
    copy = apply_field_updates(data, {})
    assert copy == data and copy is not data
    stored = {"address": ADDRESS, "unknownField": {"kept": True}, "messages": {"SM1": {"status": SENT, "futureField": 1}}}
    assert to_document(from_document(stored)) == stored, "fields this version does not know are kept"
    assert field_updates(stored, to_document(from_document(stored))) == {}


def firestore_size(value: object) -> int:
    """Storage size by Firestore's documented rules (strings: UTF-8 bytes + 1, numbers and times: 8, ...)."""
    if isinstance(value, str):
        return len(value.encode()) + 1
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, float, datetime)):
        return 8
    if isinstance(value, list):
        return sum(firestore_size(v) for v in value)
    if isinstance(value, dict):
        return sum(len(k.encode()) + 1 + firestore_size(v) for k, v in value.items())
    raise TypeError(type(value))


def test_the_worst_case_document_stays_well_below_one_mebibyte() -> None:
    """Everything at its limit: longest texts in 4-byte characters, every tracked and open entry."""
    from shared.config import Settings
    from shared.domain.inbound import InboundMessage
    from shared.faults import FaultPoints
    from shared.handlers.processor import ProcessorDeps, process_message
    from tests.fakes import IDS, Clock, FakeModel, FakeQueue, FakeStore

    # Every message reaches the model: the rate limit would record most of them as ignored.
    settings = Settings(rate_limit_messages=10_000)
    store, clock = FakeStore(), Clock()
    widest = "😀"  # 4 bytes in UTF-8, the most a character costs
    model = FakeModel(lambda history, text: widest * 100_000)
    deps = ProcessorDeps(settings=settings, store=store, model=model, queue=FakeQueue(), faults=FaultPoints(), clock=clock, ids=IDS)
    sender = "whatsapp:+" + "9" * 15
    cid = conversation_id(sender)

    def message(n: int) -> InboundMessage:
        return InboundMessage(sid=f"SM{n:032x}", sender=sender, recipient="whatsapp:+14155238886", body=widest * 100_000)

    n = 0
    def close(conv: Conversation, sid: str) -> None:
        conv.finish(sid, FAILED, clock(), "x" * 10_000)
        entry = conv.messages[sid]
        entry.last_error, entry.twilio_sids = "y" * 300, ["SM" + "f" * 32] * 3

    for n in range(1, MAX_TRACKED_MESSAGES + 10):
        process_message(message(n), deps)
        store.update(cid, lambda conv: close(conv, message(n).sid))
        clock.advance(1)
    for m in range(n + 1, n + 1 + settings.max_open_messages):
        process_message(message(m), deps)
    data = store.document(cid)
    conv = from_document(data)
    assert len(conv.open_entries()) == settings.max_open_messages
    assert len(data["messages"]) >= MAX_TRACKED_MESSAGES - 1
    assert all(len(e.reason) <= 300 for e in conv.messages.values())
    size = len(f"projects/p/databases/(default)/documents/conversations/{cid}".encode()) + 16 + firestore_size(dict(data)) + 32
    assert size < 512 * 1024, size

"""The conversation: the aggregate every handler changes, and its one answer.

One Firestore document per conversation holds everything the pipeline needs to
answer each message exactly once and in order (docs/architecture.md,
docs/decisions/0004-idempotency-records.md). Here it is a typed record:

    address      the user's address exactly as Twilio gave it (needed to reply)
    business     the WhatsApp number the user wrote to: replies go out from it
    user_id      a keyed id of the user alone (shared/domain/pseudonyms.py), so
                 erase and show find every conversation of a user
    history      the last turns the model sees: {role, content, sid[, by]}
    expire_at    now + the TTL on every write (Firestore's TTL policy)
    last_seq     the seq of the newest answered message
    done_seq     every reply with seq <= done_seq is finished
    watch        while a message is open: when the reconciler should look
    messages     MessageSid -> MessageEntry (shared/domain/entry.py)
    opted_out, opted_out_at, rate, paused_until
                 what the business controls left (shared/domain/controls.py)
    last_inbound_at
                 when the user last wrote (WhatsApp's 24-hour window)
    profile_name the name the user gave WhatsApp, shown in the inbox

Handlers change it only through the functions of shared/domain/ (claims,
bursts, sending, liveness, delivery, controls) and the two here that every
path shares: :meth:`Conversation.answer` (the one way a message becomes
"answered with these parts, with this seq") and :meth:`Conversation.finish`.
The store writes what changed, compare-and-set (shared/adapters/firestore_store.py).

Every field is bounded (history by characters, reply text dropped once a
message is finished, at most MAX_TRACKED_MESSAGES finished entries), so the
document stays far below Firestore's 1 MiB limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from shared.domain.entry import Decided, MessageEntry
from shared.domain.proposals import PendingConfirmation
from shared.domain.tool_ledger import Ledger
from shared.domain.turns import Turn, trim_history
from shared.domain.lifecycle import ANSWERED_WITH, FINISHING, PROCESSING, TO_SEND, WAITING_BURST

# How many finished message entries a conversation keeps for dedupe. Twilio's
# retries and Pub/Sub redeliveries of a message arrive long before this many
# newer messages from the same person have been answered.
MAX_TRACKED_MESSAGES = 50


@dataclass
class RateWindow:
    """The user's current rate-limit window (decision 0012)."""

    start: datetime | None = None
    count: int = 0
    noticed: bool = False


@dataclass(frozen=True)
class Limits:
    """The settings the conversation's rules need, read once (shared/handlers/deps.py builds them)."""

    ttl_seconds: int
    max_messages: int
    max_history_chars: int | None = None
    watch_after_seconds: int = 0
    lease_seconds: int = 0


@dataclass(frozen=True)
class Answer:
    """What a message is answered with, whoever answers it: the model, a canned reply, a burst,
    a person or the business. ``asked`` is the user's turn it answers; None for an unasked
    message (``by`` a person or the business), which also says who to write to (``to``)."""

    parts: list[str]
    asked: str | None = None
    in_history: bool = True
    by: str = ""
    turn: str | None = None  # the assistant turn's text; default: the parts joined
    failure: str = ""  # why the fallback reply went instead of the model's
    decided: Decided | None = None
    content_sid: str = ""
    content_variables: str = ""
    to: str = ""
    tool_ledger: Ledger | None = None  # business tools: what the rounds did (kept compacted), and a write the
    proposal: PendingConfirmation | None = None  # user is asked to confirm
    choices: dict[str, Any] | None = None  # the last part offers these (an Offer's JSON: shared/domain/choices.py)


@dataclass
class Conversation:
    address: str = ""
    business: str = ""
    user_id: str = ""
    history: list[Turn] | None = None
    expire_at: datetime | None = None
    last_seq: int = 0
    done_seq: int = 0
    watch: datetime | None = None
    messages: dict[str, MessageEntry] = field(default_factory=dict)
    opted_out: bool = False
    opted_out_at: datetime | None = None
    rate: RateWindow | None = None
    paused_until: datetime | None = None
    last_inbound_at: datetime | None = None
    updated_at: datetime | None = None
    pending_tool: PendingConfirmation | None = None  # a tool's write proposed to the user (tool_events.py)
    offer: dict[str, Any] = field(default_factory=dict)  # the choices of the newest answer, if it had any
    profile_name: str = ""  # the user's WhatsApp profile name, for the inbox (Twilio's ProfileName)
    # Fields this version does not know, kept as they were.
    extra: dict[str, Any] = field(default_factory=dict)
    # Whether the document existed when it was read (set by the store, never written).
    exists: bool = field(default=False, compare=False)
    # What this write does besides the document: dedupe markers (sid -> expiry) and usage counts
    # (shared/domain/usage.py) in the same commit, or the whole document deleted (shared/ops/user_data.py).
    new_markers: dict[str, datetime] = field(default_factory=dict, compare=False)
    new_counts: list[Any] = field(default_factory=list, compare=False)
    erased: bool = field(default=False, compare=False)

    # --- reading -------------------------------------------------------------

    def entry(self, sid: str) -> MessageEntry | None:
        return self.messages.get(sid)

    def open_entries(self) -> dict[str, MessageEntry]:
        """Messages not finished yet: the ones the reconciler keeps an eye on."""
        return {sid: e for sid, e in self.messages.items() if not e.finished}

    def open_burst(self) -> tuple[str, MessageEntry] | None:
        """The burst head not answered yet (waiting for its window, or being answered), if any."""
        for sid, entry in self.messages.items():
            if entry.is_burst_head and entry.status in (WAITING_BURST, PROCESSING):
                return sid, entry
        return None

    def next_in_line(self) -> tuple[str, MessageEntry] | None:
        """The answered reply whose turn it is to be sent, if it is waiting."""
        for sid, entry in self.messages.items():
            if entry.seq == self.done_seq + 1 and entry.status in TO_SEND:
                return sid, entry
        return None

    def its_turn(self, seq: int) -> bool:
        return self.done_seq >= seq - 1

    def known_twilio_sids(self) -> set[str]:
        """Every Twilio SID recorded for any part of this conversation."""
        return {sid for entry in self.messages.values() for sid in entry.twilio_sids}

    def is_expired(self, now: datetime) -> bool:
        return self.expire_at is not None and self.expire_at <= now

    def turns(self, now: datetime) -> list[Turn]:
        """The turns the model should see (a copy): none once the TTL has passed.

        Firestore's TTL deletion lags by up to a day and the emulator never
        deletes, so expiry is decided here, on read.
        """
        if self.is_expired(now):
            return []
        return [dict(turn) for turn in self.history or []]

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    # --- what every path shares ------------------------------------------------

    def belongs_to(self, business: str, user_id: str) -> None:
        """Whose conversation this is, set whenever missing, by whichever writer comes first.

        Without ``business`` the sender would answer from the default number;
        without ``user_id`` erase could not find the conversation.
        """
        if business and not self.business:
            self.business = business
        if user_id and not self.user_id:
            self.user_id = user_id

    def renew(self, now: datetime, ttl_seconds: int) -> None:
        """Push the expiry back; an opted-out conversation never expires (its opt-out must outlive the TTL)."""
        self.expire_at = None if self.opted_out else expire_at(now, ttl_seconds)
        self.updated_at = now

    def watch_from(self, now: datetime, seconds: int) -> None:
        """Ask the reconciler to look ``seconds`` from now, unless it looks earlier already."""
        watch = now + timedelta(seconds=seconds)
        if self.watch is None or self.watch > watch:
            self.watch = watch

    def answer(self, sid: str, answer: Answer, now: datetime, limits: Limits) -> int:
        """The one way a message becomes answered: its parts, the next seq, the turn; returns the seq.

        A claimed message (``processing``) gives up its lease; an unasked one
        is created answered, with the reconciler's watch and, for a
        conversation that has none, the address to write to.
        """
        self.prune(protect=sid)
        entry = self.messages.get(sid)
        if entry is None:
            entry = self.messages[sid] = MessageEntry(received_at=now)
        entry.move(ANSWERED_WITH, sid)
        seq = self.last_seq + 1
        self.last_seq = seq
        entry.seq, entry.parts, entry.sent_parts = seq, list(answer.parts), 0
        entry.lease_until, entry.updated_at = None, now
        if answer.in_history:
            turns = self.turns(now)
            if answer.asked is not None:
                turns.append({"role": "user", "content": answer.asked, "sid": sid})
            turn = {"role": "assistant", "content": answer.turn if answer.turn is not None else "\n\n".join(answer.parts),
                    "sid": sid}
            if answer.by:
                turn["by"] = answer.by
            self.history = trim_history([*turns, turn], limits.max_messages, limits.max_history_chars)
        entry.choices = dict(answer.choices or {})
        self.offer = {"sid": sid, **answer.choices} if answer.choices else {}
        if answer.failure:
            entry.reason, entry.fallback = answer.failure, True
        if answer.decided is not None:
            entry.decided = answer.decided
        entry.tool_ledger = answer.tool_ledger.compacted() if answer.tool_ledger else entry.tool_ledger
        self.pending_tool = answer.proposal or self.pending_tool
        if answer.by:
            entry.by = answer.by
            entry.content_sid, entry.content_variables = answer.content_sid, answer.content_variables
            self.watch_from(now, limits.watch_after_seconds)
            if not self.address:
                self.address = answer.to
        self.renew(now, limits.ttl_seconds)
        return seq

    def finish(self, sid: str, status: str, now: datetime, reason: str = "") -> None:
        """Close a message as sent, failed, ignored or dead-lettered, and move the order watermark.

        The reply text goes: a finished message is only a dedupe record now,
        and the history keeps what the model needs. The reconciler's watch
        goes with the last open message, and an opted-out user's address once
        nothing of theirs is left to send.
        """
        entry = self.messages.get(sid)
        if entry is None:
            entry = self.messages[sid] = MessageEntry()
        entry.move(FINISHING[status], sid)
        entry.updated_at, entry.sending, entry.lease_until = now, None, None
        if entry.parts:
            entry.part_count, entry.parts, entry.choices = len(entry.parts), [], {}
        if reason:
            entry.reason = reason[:300]
        if entry.seq is not None:
            self.done_seq = advance_done_seq(self)
        self.updated_at = now
        if not self.open_entries():
            self.watch = None
            if self.opted_out and self.done_seq >= self.last_seq:
                # Nothing of the user's is left to send: not the opt-out confirmation,
                # which may still be between its claim and its answer (no seq yet), nor
                # any reply before it. Only then does their address go.
                self.address = ""

    def prune(self, protect: str) -> None:
        """Keep at most MAX_TRACKED_MESSAGES - 1 entries besides ``protect`` (finished ones only)."""
        for old in prunable_entries(self.messages, keep=MAX_TRACKED_MESSAGES - 1, protect=protect,
                                    done_seq=self.done_seq):
            del self.messages[old]


def prunable_entries(
    messages: Mapping[str, MessageEntry], keep: int, protect: str, done_seq: int | None = None
) -> list[str]:
    """Finished entries beyond the newest ``keep``; unfinished ones are never dropped.

    With ``done_seq``, a reply that finished ahead of its turn (seq above the
    watermark) is kept too: :func:`advance_done_seq` must still see it to jump
    over it, or every later reply of the conversation would wait forever.
    """
    excess = len(messages) - keep
    if excess <= 0:
        return []
    finished = [
        (entry.updated_at or entry.received_at, sid)
        for sid, entry in messages.items()
        if sid != protect and entry.finished and (done_seq is None or entry.seq is None or entry.seq <= done_seq)
    ]
    finished.sort(key=lambda item: (item[0] is None, item[0] or 0))
    return [sid for _, sid in finished[:excess]]


def advance_done_seq(conv: Conversation) -> int:
    """``done_seq`` moved over every finished reply in a row after it.

    Replies finish in order, except that a dead-lettered or failed later reply
    can finish early; the watermark then jumps over it when its turn comes.
    """
    finished = {entry.seq for entry in conv.messages.values() if entry.seq is not None and entry.finished}
    done = conv.done_seq
    while done + 1 in finished:
        done += 1
    return done


def expire_at(now: datetime, ttl_seconds: int) -> datetime:
    return now + timedelta(seconds=ttl_seconds)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)

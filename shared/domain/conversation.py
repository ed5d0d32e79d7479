"""The conversation document and the pure rules that change it.

One Firestore document per conversation holds everything the pipeline needs to
answer each message exactly once and in order (see
docs/decisions/0004-idempotency-records.md):

    address      the sender address exactly as Twilio gave it (needed to reply)
    business     the WhatsApp number the user wrote to: replies go out from it
    userId       a keyed id of the user alone (shared/domain/pseudonyms.py), so
                 erase and show find every conversation of a user, whatever
                 number it was with
    history      the last MAX_CONTEXT_MESSAGES turns: {role, content, sid}
    expireAt     now + CONVERSATION_TTL_SECONDS on every write (Firestore TTL)
    lastSeq      the sequence number given to the newest answered message
    doneSeq      every reply with seq <= doneSeq is finished (sent or failed)
    watch        present while a message is unfinished: when the reconciler
                 should look at this conversation (shared/domain/liveness.py)
    messages     {MessageSid: entry} for recent inbound messages: the dedupe
                 and progress records (status, seq, parts, sentParts, ...)
    optedOut, rate, pausedUntil
                 what the business controls left (shared/domain/controls.py);
                 an opted-out conversation keeps no expireAt, history or address

Every field is bounded (history by characters, reply text dropped once a
message is finished, at most MAX_TRACKED_MESSAGES finished entries), so the
document stays far below Firestore's 1 MiB limit.

Functions here compute field updates (dotted Firestore field paths → values);
the store applies them atomically against the version they were computed from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

RECEIVED = "received"
PROCESSING = "processing"
ANSWERED = "answered"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
DEAD_LETTERED = "dead_lettered"
# Recorded, deliberately not answered: opted out, rate limited, paused for a
# person (shared/domain/controls.py). Terminal at once and without a seq, so
# it never holds up the user's later replies.
IGNORED = "ignored"
# Bursts (docs/decisions/0014-bursts.md): the first message of a burst waits
# for the window to pass, later ones join it, and once the burst is answered
# by the head's reply every other member ends as merged (no seq of its own).
WAITING_BURST = "waiting_burst"
JOINED = "joined"
MERGED = "merged"
FINISHED = frozenset({SENT, FAILED, DEAD_LETTERED, IGNORED, MERGED})

# How many finished message entries a conversation keeps for dedupe. Twilio's
# retries and Pub/Sub redeliveries of a message arrive long before this many
# newer messages from the same person have been answered.
MAX_TRACKED_MESSAGES = 50


class Remove:
    """Marker value: delete this field (the store maps it to DELETE_FIELD)."""

    def __repr__(self) -> str:
        return "REMOVE"


REMOVE = Remove()
Updates = dict[str, Any]


@dataclass(frozen=True)
class Conversation:
    """A read view of the conversation document; ``data`` is the raw dict."""

    data: Mapping[str, Any]

    @property
    def exists(self) -> bool:
        return bool(self.data)

    @property
    def messages(self) -> Mapping[str, Mapping[str, Any]]:
        return self.data.get("messages", {})

    def entry(self, sid: str) -> Mapping[str, Any]:
        return self.messages.get(sid, {})

    @property
    def last_seq(self) -> int:
        return int(self.data.get("lastSeq", 0))

    @property
    def done_seq(self) -> int:
        return int(self.data.get("doneSeq", 0))

    def open_entries(self) -> dict[str, Mapping[str, Any]]:
        """Messages not finished yet: the ones the reconciler keeps an eye on."""
        return {sid: entry for sid, entry in self.messages.items() if entry.get("status") not in FINISHED}

    def open_burst(self) -> tuple[str, Mapping[str, Any]] | None:
        """The burst head not answered yet (waiting for its window, or being answered), if any."""
        for sid, entry in self.messages.items():
            if "burstMembers" in entry and entry.get("status") in (WAITING_BURST, PROCESSING):
                return sid, entry
        return None

    def next_in_line(self) -> tuple[str, Mapping[str, Any]] | None:
        """The answered reply whose turn it is to be sent, if it is waiting."""
        want = self.done_seq + 1
        for sid, entry in self.messages.items():
            if entry.get("seq") is not None and int(entry["seq"]) == want and entry.get("status") in (ANSWERED, SENDING):
                return sid, entry
        return None

    def known_twilio_sids(self) -> set[str]:
        """Every Twilio SID recorded for any part of this conversation."""
        return {str(sid) for entry in self.messages.values() for sid in entry.get("twilioSids", [])}

    def is_expired(self, now: datetime) -> bool:
        expire_at = self.data.get("expireAt")
        return expire_at is not None and expire_at <= now

    def history(self, now: datetime) -> list[dict[str, str]]:
        """The turns the model should see: none once the TTL has passed.

        Firestore's TTL deletion lags by up to a day and the emulator never
        deletes, so expiry is decided here, on read.
        """
        if self.is_expired(now):
            return []
        return [dict(turn) for turn in self.data.get("history", [])]


def expire_at(now: datetime, ttl_seconds: int) -> datetime:
    return now + timedelta(seconds=ttl_seconds)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def trim_history(history: list[dict[str, str]], max_messages: int, max_chars: int | None = None) -> list[dict[str, str]]:
    """Keep the newest turns within both limits; never start on an assistant turn without its question.

    A message the business started (``by: business``, the outbound API) had no
    question, so it may open the history.
    """
    kept = history[-max_messages:] if max_messages > 0 else []
    if max_chars is not None:
        while kept and sum(len(turn.get("content", "")) for turn in kept) > max_chars:
            kept = kept[1:]
    while kept and kept[0].get("role") == "assistant" and kept[0].get("by") != "business":
        kept = kept[1:]
    return kept


def cap_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked as cut so nobody mistakes it for the whole."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def claim_updates(
    conv: Conversation,
    sid: str,
    address: str,
    now: datetime,
    ttl_seconds: int,
    lease_seconds: int,
    watch_after_seconds: int = 0,
    business: str = "",
    user_id: str = "",
) -> Updates:
    """Mark a message as being processed by this worker until the lease runs out.

    ``watch`` asks the reconciler to look at the conversation if the message is
    still unfinished ``watch_after_seconds`` from now; finishing the last open
    message removes it again, so a healthy conversation is never looked at.
    """
    entry = conv.entry(sid)
    watch = now + timedelta(seconds=watch_after_seconds)
    updates: Updates = {
        f"messages.{sid}.status": PROCESSING,
        f"messages.{sid}.leaseUntil": now + timedelta(seconds=lease_seconds),
        f"messages.{sid}.attempts": int(entry.get("attempts", 0)) + 1,
        f"messages.{sid}.updatedAt": now,
        "expireAt": expire_at(now, ttl_seconds),
        "updatedAt": now,
    }
    if not entry:
        updates[f"messages.{sid}.receivedAt"] = now
    current_watch = conv.data.get("watch")
    if watch_after_seconds and (current_watch is None or current_watch > watch):
        updates["watch"] = watch
    if conv.is_expired(now):
        # Renewing expireAt below would revive the stale history: drop it now.
        updates["history"] = []
    if not conv.exists:
        updates["address"] = address
    updates.update(owner_updates(conv, business, user_id))
    _keep_opt_out(conv, updates)
    return updates


def owner_updates(conv: Conversation, business: str, user_id: str) -> Updates:
    """Whose conversation this is, for every writer that may be the first (claim, replay, APIs, admin).

    Set whenever missing, not only on a new document: a document written
    without them (by an older version) learns them at its next write, at no
    extra operation. Without ``business`` the sender would answer from the
    default number; without ``userId`` erase could not find the conversation.
    """
    updates: Updates = {}
    if business and not conv.data.get("business"):
        updates["business"] = business
    if user_id and not conv.data.get("userId"):
        updates["userId"] = user_id
    return updates


def _keep_opt_out(conv: Conversation, updates: Updates) -> None:
    """An opted-out conversation never expires: its opt-out must outlive the TTL."""
    if conv.data.get("optedOut"):
        updates["expireAt"] = REMOVE


def answer_updates(
    conv: Conversation,
    sid: str,
    user_text: str,
    reply_parts: list[str],
    now: datetime,
    ttl_seconds: int,
    max_messages: int,
    failure_reason: str = "",
    max_history_chars: int | None = None,
    record_turn: bool = True,
) -> Updates:
    """Append the turn, give the reply its place in the sending order, prune old entries.

    ``record_turn`` False leaves the history alone: a canned reply such as
    /help or an opt-out confirmation is sent but is no part of the conversation.
    """
    reply = "\n\n".join(reply_parts)
    history = conv.history(now) + [
        {"role": "user", "content": user_text, "sid": sid},
        {"role": "assistant", "content": reply, "sid": sid},
    ]
    seq = conv.last_seq + 1
    updates: Updates = {
        "lastSeq": seq,
        "expireAt": expire_at(now, ttl_seconds),
        "updatedAt": now,
        f"messages.{sid}.status": ANSWERED,
        f"messages.{sid}.seq": seq,
        f"messages.{sid}.parts": reply_parts,
        f"messages.{sid}.sentParts": 0,
        f"messages.{sid}.leaseUntil": REMOVE,
        f"messages.{sid}.updatedAt": now,
    }
    if record_turn:
        updates["history"] = trim_history(history, max_messages, max_history_chars)
    _keep_opt_out(conv, updates)
    if failure_reason:
        updates[f"messages.{sid}.reason"] = failure_reason
        updates[f"messages.{sid}.fallback"] = True
    for old in prunable_entries(conv.messages, keep=MAX_TRACKED_MESSAGES - 1, protect=sid, done_seq=conv.done_seq):
        updates[f"messages.{old}"] = REMOVE
    return updates


def prunable_entries(
    messages: Mapping[str, Mapping[str, Any]], keep: int, protect: str, done_seq: int | None = None
) -> list[str]:
    """Finished entries beyond the newest ``keep``; unfinished ones are never dropped.

    With ``done_seq``, a reply that finished ahead of its turn (seq above the
    watermark) is kept too: :func:`advance_done_seq` must still see it to jump
    over it, or every later reply of the conversation would wait forever.
    """
    finished = [
        (entry.get("updatedAt") or entry.get("receivedAt"), sid)
        for sid, entry in messages.items()
        if sid != protect
        and entry.get("status") in FINISHED
        and (done_seq is None or "seq" not in entry or int(entry["seq"]) <= done_seq)
    ]
    excess = len(messages) - keep
    if excess <= 0:
        return []
    finished.sort(key=lambda item: (item[0] is None, item[0] or 0))
    return [sid for _, sid in finished[:excess]]


def advance_done_seq(conv: Conversation, finished_sid: str) -> int:
    """The new ``doneSeq`` once ``finished_sid`` is finished.

    Replies finish in order, except that a dead-lettered or failed later reply
    can finish early; the watermark then jumps over it when its turn comes.
    """
    finished_seqs = {
        int(entry["seq"])
        for sid, entry in conv.messages.items()
        if "seq" in entry and (sid == finished_sid or entry.get("status") in FINISHED)
    }
    done = conv.done_seq
    while done + 1 in finished_seqs:
        done += 1
    return done


def finish_updates(conv: Conversation, sid: str, status: str, now: datetime, reason: str = "") -> Updates:
    """Close a message as sent, failed or dead-lettered, and move the order watermark.

    The reply text goes: a finished message is only a dedupe record now, and
    the history keeps what the model needs. The reconciler's ``watch`` goes
    with the last open message.
    """
    updates: Updates = {
        f"messages.{sid}.status": status,
        f"messages.{sid}.updatedAt": now,
        f"messages.{sid}.sending": REMOVE,
        f"messages.{sid}.leaseUntil": REMOVE,
        f"messages.{sid}.parts": REMOVE,
        "updatedAt": now,
    }
    entry = conv.entry(sid)
    if "parts" in entry:
        updates[f"messages.{sid}.partCount"] = len(entry["parts"])
    if reason:
        updates[f"messages.{sid}.reason"] = reason[:300]
    if "seq" in entry:
        updates["doneSeq"] = advance_done_seq(conv, sid)
    others_open = bool(set(conv.open_entries()) - {sid})
    if "watch" in conv.data and not others_open:
        updates["watch"] = REMOVE
    if conv.data.get("optedOut") and not others_open and int(updates.get("doneSeq", conv.done_seq)) >= conv.last_seq:
        # Nothing of the user's is left to send: not the opt-out confirmation,
        # which may still be between its claim and its answer (no seq yet), nor
        # any reply before it. Only then does their address go.
        updates["address"] = REMOVE
    return updates


def nested(updates: Updates) -> dict[str, Any]:
    """Dotted field paths as a nested document, for creating a new one."""
    doc: dict[str, Any] = {}
    for path, value in updates.items():
        if value is REMOVE:
            continue
        node = doc
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return doc


def applied(conv: Conversation, updates: Updates) -> Conversation:
    """The document as ``updates`` leave it, so a writer can go on without re-reading."""
    data: dict[str, Any] = _deep_copy(conv.data)
    for path, value in updates.items():
        *parents, leaf = path.split(".")
        if value is REMOVE:
            # Like Firestore's DELETE_FIELD: deleting under a missing map is a
            # no-op and does not create the map.
            parent: Any = data
            for key in parents:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if isinstance(parent, dict):
                parent.pop(leaf, None)
            continue
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return Conversation(data)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value

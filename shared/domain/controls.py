"""What ends a message: the model, a canned reply, or nothing sent (recorded).

Every control a business or its customer has (commands, opt-out, rate limits,
keyword rules, handoff to a person, the empty-message reply) is one more way a
message ends on the exactly-once path, decided here, purely, from the cleaned
text, the business profile, the conversation and the time:

* ``MODEL``: a model turn (with the welcome text as part 1 of a new conversation);
* ``REPLY``: a canned reply, written and sent exactly like a model reply
  (answer write, send task, order), entering the history or not;
* ``IGNORE``: recorded as ``ignored`` with its reason and not answered (opted
  out, rate limited, paused for a person); terminal at once.

State lives in fields of the conversation document that the claim write
already writes (docs/decisions/0012-business-controls.md), so these rules add
no Firestore read or write to a message:

    optedOut, optedOutAt   the user opted out of this business; the document
                           then has no ``expireAt`` (the opt-out outlives the TTL)
    rate {start, count, noticed}
                           the user's current rate-limit window
    pausedUntil            a person handles this conversation until then
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from shared.domain.conversation import (
    ANSWERED,
    IGNORED,
    MAX_TRACKED_MESSAGES,
    REMOVE,
    Conversation,
    Updates,
    cap_text,
    expire_at,
    prunable_entries,
    trim_history,
)
from shared.domain.profiles import BusinessProfile

MODEL = "model"
REPLY = "reply"
IGNORE = "ignore"

# Reasons, as recorded in the message entry (``decided.reason``) and logged.
RESET = "reset"
HELP = "help"
KEYWORD = "keyword"
OPT_OUT = "opt_out"
OPT_IN = "opt_in"
RATE_NOTICE = "rate_limit_notice"
EMPTY = "empty"
HANDOFF = "handoff"
OPTED_OUT = "opted out"
RATE_LIMITED = "rate limited"
PAUSED = "paused"

# Line breaks and tabs are text; every other control character is not.
_KEPT_CONTROLS = {"\n", "\t"}


def clean_text(text: str, max_chars: int) -> str:
    """The user's text as everything downstream may use it: no control characters, bounded.

    ``\\r\\n`` and lone ``\\r`` become line breaks; other C0/C1 control
    characters go; the result is stripped and capped at ``max_chars``.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(ch for ch in text if ch in _KEPT_CONTROLS or unicodedata.category(ch) != "Cc")
    return cap_text(kept.strip(), max_chars)


@dataclass(frozen=True)
class Decision:
    """How one message ends, and the conversation fields the claim write changes for it.

    ``state`` is applied once, with the first claim; a later claim of the same
    message (a redelivery after its lease ran out) re-reads the decision from
    the entry and applies nothing again, so a counter never counts twice.
    """

    kind: str
    reason: str = ""
    reply: str = ""
    in_history: bool = False
    welcome: str = ""
    record_user_turn: bool = False
    state: Updates = field(default_factory=dict)

    def record(self) -> dict[str, Any] | None:
        """What the claim stores in the entry so a re-claim finds the same decision (None: a plain model turn)."""
        if self.kind == MODEL and not self.welcome:
            return None
        record: dict[str, Any] = {"kind": self.kind, "reason": self.reason}
        if self.reply:
            record["reply"] = self.reply
        if self.in_history:
            record["history"] = True
        if self.welcome:
            record["welcome"] = self.welcome
        return record

    @classmethod
    def recorded(cls, entry: Mapping[str, Any]) -> "Decision":
        """The decision the first claim of ``entry`` took; absent means a plain model turn."""
        record = entry.get("decided") or {}
        if not record:
            return cls(MODEL)
        return cls(
            kind=str(record.get("kind", MODEL)),
            reason=str(record.get("reason", "")),
            reply=str(record.get("reply", "")),
            in_history=bool(record.get("history", False)),
            welcome=str(record.get("welcome", "")),
        )


def _word(text: str) -> str:
    return text.strip().casefold()


def _is_one_of(text: str, words: tuple[str, ...]) -> bool:
    return _word(text) in {_word(w) for w in words}


def opted_out(conv: Conversation) -> bool:
    return bool(conv.data.get("optedOut"))


def paused(conv: Conversation, now: datetime) -> bool:
    until = conv.data.get("pausedUntil")
    return until is not None and until > now


def _rate(conv: Conversation, profile: BusinessProfile, now: datetime) -> tuple[str, dict[str, Any]]:
    """``allow``, ``notice`` or ``drop`` for one more answered message, and the window after it."""
    window = conv.data.get("rate") or {}
    start = window.get("start")
    if start is None or now - start >= timedelta(seconds=profile.rate_limit_window_seconds) or start > now:
        return "allow", {"start": now, "count": 1, "noticed": False}
    count = int(window.get("count", 0))
    if count < profile.rate_limit_messages:
        return "allow", {**window, "count": count + 1}
    if not window.get("noticed"):
        return "notice", {**window, "noticed": True}
    return "drop", dict(window)


def _counted(conv: Conversation, profile: BusinessProfile, now: datetime) -> dict[str, Any]:
    """The window with one more message in it, whatever the limit: a reply that is sent anyway."""
    verdict, window = _rate(conv, profile, now)
    if verdict == "allow":
        return window
    old = conv.data.get("rate") or {}
    return {**old, "count": int(old.get("count", 0)) + 1}


def decide(
    text: str,
    has_content: bool,
    profile: BusinessProfile,
    conv: Conversation,
    now: datetime,
    address: str,
    ttl_seconds: int,
) -> Decision:
    """How the message with cleaned ``text`` ends (``has_content``: media, a location or a button).

    The order matters: an opt-in is heard while opted out, and nothing else is;
    an opt-out is always confirmed; a paused conversation is left to the
    person; the rate limit covers every reply that is not an opt-out or opt-in
    confirmation, and those confirmations, always sent, still count in its
    window, which outlives STOP and START (alternating them must not buy model
    calls); commands, the handoff keyword and keyword rules come before the
    model. ``address`` and ``ttl_seconds`` restore what an opt-out removed.
    """
    is_word = not has_content
    # Confirmations are always sent, and count in the window all the same.
    confirmation = {"rate": _counted(conv, profile, now)}
    if opted_out(conv):
        if is_word and _is_one_of(text, profile.opt_in_keywords):
            return Decision(
                REPLY, OPT_IN, profile.opt_in_reply,
                state={**confirmation, "optedOut": REMOVE, "optedOutAt": REMOVE, "address": address,
                       "expireAt": expire_at(now, ttl_seconds)},
            )
        return Decision(IGNORE, OPTED_OUT)
    if is_word and _is_one_of(text, profile.opt_out_keywords):
        # The rate window stays (and counts this confirmation): STOP then START must not reset it.
        return Decision(
            REPLY, OPT_OUT, profile.opt_out_reply,
            state={**confirmation, "optedOut": True, "optedOutAt": now, "history": [], "expireAt": REMOVE,
                   "pausedUntil": REMOVE},
        )
    if paused(conv, now):
        return Decision(IGNORE, PAUSED, record_user_turn=True)
    verdict, window = _rate(conv, profile, now)
    state: Updates = {"rate": window}
    if verdict == "notice":
        return Decision(REPLY, RATE_NOTICE, profile.rate_limit_reply, state=state)
    if verdict == "drop":
        return Decision(IGNORE, RATE_LIMITED)
    if not text and not has_content:
        return Decision(REPLY, EMPTY, profile.empty_reply, state=state)
    if is_word and _is_one_of(text, profile.reset_commands):
        return Decision(REPLY, RESET, profile.reset_reply, state={**state, "history": []})
    if is_word and _is_one_of(text, profile.help_commands):
        return Decision(REPLY, HELP, profile.help, state=state)
    if is_word and profile.handoff_keyword and _is_one_of(text, (profile.handoff_keyword,)):
        until = now + timedelta(seconds=profile.handoff_pause_seconds)
        return Decision(REPLY, HANDOFF, profile.handoff_reply, in_history=True, state={**state, "pausedUntil": until})
    if is_word:
        for rule in profile.keywords:
            if rule.matches(text.strip()):
                return Decision(REPLY, KEYWORD, rule.reply, in_history=True, state=state)
    welcome = profile.welcome if not conv.history(now) else ""
    return Decision(MODEL, welcome=welcome, state=state)


def decided_claim(
    conv: Conversation,
    sid: str,
    claim: Updates,
    decision: Decision,
    now: datetime,
    user_text: str,
    first_claim: bool,
    max_messages: int,
    max_history_chars: int,
) -> Updates:
    """The claim write with the decision in it: its state (first claim only), its record, and
    for IGNORE the message closed at once as ``ignored`` (no lease, no watch, no seq).
    """
    updates: Updates = dict(claim)
    if first_claim:
        updates.update(decision.state)
        record = decision.record()
        if record is not None:
            updates[f"messages.{sid}.decided"] = record
    if decision.kind != IGNORE:
        return updates
    for key in (f"messages.{sid}.leaseUntil", "watch"):
        updates.pop(key, None)
    updates[f"messages.{sid}.status"] = IGNORED
    updates[f"messages.{sid}.reason"] = decision.reason
    # No answer write follows, so the bound on tracked entries is kept here.
    for old in prunable_entries(conv.messages, keep=MAX_TRACKED_MESSAGES - 1, protect=sid, done_seq=conv.done_seq):
        updates[f"messages.{old}"] = REMOVE
    if decision.record_user_turn:
        base = [] if "history" in updates else conv.history(now)
        turn = {"role": "user", "content": user_text, "sid": sid}
        updates["history"] = trim_history(base + [turn], max_messages, max_history_chars)
    return updates


def person_reply_updates(
    conv: Conversation,
    sid: str,
    parts: list[str],
    now: datetime,
    ttl_seconds: int,
    max_messages: int,
    max_history_chars: int,
    watch_after_seconds: int,
    address: str,
    business: str,
) -> Updates:
    """A person's reply through the admin command: an answered entry, next in the order.

    It becomes an assistant turn marked ``by: person``, so the model sees what
    the person said once the bot resumes, and it is sent by the same sender,
    queue and hand-offs as any reply.
    """
    seq = conv.last_seq + 1
    text = "\n\n".join(parts)
    history = conv.history(now) + [{"role": "assistant", "content": text, "sid": sid, "by": "person"}]
    watch = now + timedelta(seconds=watch_after_seconds)
    updates: Updates = {
        f"messages.{sid}": {
            "status": ANSWERED, "seq": seq, "parts": parts, "sentParts": 0, "receivedAt": now,
            "updatedAt": now, "by": "person",
        },
        "lastSeq": seq,
        "history": trim_history(history, max_messages, max_history_chars),
        "updatedAt": now,
        "expireAt": expire_at(now, ttl_seconds),
    }
    if not conv.exists or not conv.data.get("address"):
        updates["address"] = address
    if not conv.data.get("business") and business:
        updates["business"] = business
    current_watch = conv.data.get("watch")
    if current_watch is None or current_watch > watch:
        updates["watch"] = watch
    for old in prunable_entries(conv.messages, keep=MAX_TRACKED_MESSAGES - 1, protect=sid, done_seq=conv.done_seq):
        updates[f"messages.{old}"] = REMOVE
    return updates

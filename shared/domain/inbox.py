"""What the inbox shows of a conversation document, as it is stored: pure rules, no I/O.

A person answering customers needs, per conversation: who it is (the WhatsApp
profile name and a masked number, never the whole number), whether it needs
them and why, how long the customer has waited, whether WhatsApp's 24-hour
window is still open, and the history with who said what and how far each
message got. All of it is read from the document the pipeline already writes
(shared/domain/conversation.py), so the inbox adds nothing to a message's cost.

Why a conversation needs a person (``reasons``):

* ``handoff``: the customer asked for one (the profile's handoff keyword) and
  no person has answered since; the bot is paused;
* ``paused``: the bot is paused (taken over) without a handoff request;
* ``failed``: a message of the conversation failed, was dead-lettered or got
  the fallback reply, and nothing answered it properly since;
* ``unknown``: the bot said it did not know (the knowledge base had nothing).

It *needs a person now* when it has a reason and a customer message is still
unanswered by a person or a proper bot reply: ``waiting_since`` is the
oldest such message. Those come first, longest wait first; then the rest,
most recent first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.conversation import Conversation
from shared.domain.entry import MessageEntry
from shared.domain.lifecycle import ANSWERED, DEAD_LETTERED, FAILED, IGNORED, SENDING, SENT
from shared.domain.turns import Turn
from shared.domain.window import WINDOW, window_open

HANDOFF = "handoff"
PAUSED = "paused"
FAILURE = "failed"
UNKNOWN = "unknown"
# Who wrote an assistant turn (``by``); absent: the bot.
BY_PERSON = "person"
BY_BUSINESS = "business"
CUSTOMER, BOT, PERSON, BUSINESS = "customer", "bot", "person", "business"
PREVIEW_CHARS = 140
_TICK_RANK = {"queued": 0, "accepted": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4}
_STATES = {
    "received": "received", "processing": "being answered", "waiting_burst": "waiting for more",
    "joined": "joined a burst", "merged": "answered with its burst", ANSWERED: "reply queued",
    SENDING: "reply being sent", SENT: "answered", FAILED: "failed", DEAD_LETTERED: "dead-lettered",
    IGNORED: "not answered",
}


def mask_number(address: str) -> str:
    """``whatsapp:+34600111222`` → ``+34 ••••• •222``: enough to tell customers apart, not to dial one."""
    number = address.rpartition(":")[2]
    if not number:
        return ""
    if number.startswith("+") and number[1:].isdigit() and len(number) > 6:
        hidden = len(number) - 1 - 2 - 3
        return f"{number[:3]} {'•' * hidden} {number[-3:]}"
    return number[:1] + "•" * max(3, len(number) - 1)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _who(turn: Turn) -> str:
    if turn.get("role") == "user":
        return CUSTOMER
    return {BY_PERSON: PERSON, BY_BUSINESS: BUSINESS}.get(str(turn.get("by", "")), BOT)


def _reason(entry: MessageEntry) -> str:
    return entry.decided.reason if entry.decided is not None else ""


def _is_inbound(entry: MessageEntry) -> bool:
    return entry.by not in (BY_PERSON, BY_BUSINESS)


def _unknown(entry: MessageEntry) -> bool:
    """The knowledge base had nothing close enough and the business's unknown_reply went instead."""
    return entry.knowledge_unknown


def _answered_properly(entry: MessageEntry) -> bool:
    """A reply that leaves nothing for a person: sent, not the fallback, not "I don't know", not the handoff."""
    if entry.by == BY_PERSON:
        return True
    return entry.status == SENT and not entry.fallback and not _unknown(entry) and _reason(entry) != HANDOFF


def ticks(entry: MessageEntry) -> str:
    """How far a reply got: its least advanced part (``sent``, ``delivered``, ``read``, ``failed``), or ""."""
    parts = [entry.deliveries.get(sid, "sent") for sid in entry.twilio_sids]
    if not parts:
        return ""
    if any(p in ("failed", "undelivered") for p in parts):
        return "failed"
    return min(parts, key=lambda p: _TICK_RANK.get(p, 0))


@dataclass(frozen=True)
class Attention:
    reasons: tuple[str, ...] = ()
    waiting_since: datetime | None = None

    @property
    def needs_person(self) -> bool:
        return bool(self.reasons) and self.waiting_since is not None


def attention(conv: Conversation, now: datetime) -> Attention:
    """Why this conversation needs a person, and since when the customer has waited (module docstring)."""
    entries = [e for e in conv.messages.values() if e.received_at is not None]
    last_person = max((e.received_at for e in entries if e.by == BY_PERSON), default=None)  # type: ignore[type-var]
    resolved = max((e.received_at for e in entries if _answered_properly(e)), default=None)  # type: ignore[type-var]

    def after(moment: datetime | None, entry: MessageEntry) -> bool:
        return moment is None or entry.received_at > moment  # type: ignore[operator]

    reasons: list[str] = []
    if conv.paused(now):
        asked = any(_reason(e) == HANDOFF and after(last_person, e) for e in entries)
        reasons.append(HANDOFF if asked else PAUSED)
    if any((e.status in (FAILED, DEAD_LETTERED) or e.fallback) and after(resolved, e) for e in entries):
        reasons.append(FAILURE)
    if any(_unknown(e) and after(resolved, e) for e in entries):
        reasons.append(UNKNOWN)
    waiting = [e.received_at for e in entries if _is_inbound(e) and after(resolved, e) and not _answered_properly(e)]
    return Attention(tuple(reasons), min(waiting, default=None))  # type: ignore[type-var]


@dataclass(frozen=True)
class Item:
    """One line of the history: who said it, what, when, and how far it got."""

    who: str
    text: str
    sid: str
    at: datetime | None
    state: str = ""
    ticks: str = ""
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"who": self.who, "text": self.text, "sid": self.sid, "at": _iso(self.at), "state": self.state,
                "ticks": self.ticks, "detail": self.detail}


def history(conv: Conversation, now: datetime) -> list[Item]:
    """The conversation's turns as the inbox lists them; a turn whose entry was pruned has no state."""
    items: list[Item] = []
    for turn in conv.turns(now):
        sid = str(turn.get("sid", ""))
        entry = conv.entry(sid) or MessageEntry()
        who, status, text = _who(turn), entry.status, str(turn.get("content", ""))
        if who == CUSTOMER:
            detail = entry.reason if status in (FAILED, DEAD_LETTERED, IGNORED) else ""
            items.append(Item(who, text, sid, entry.received_at, _STATES.get(status, status), detail=detail))
            continue
        failed = status in (FAILED, DEAD_LETTERED)
        state = "not sent" if failed and not entry.twilio_sids else (
            "sent" if status == SENT or failed else ("sending" if status in (ANSWERED, SENDING) else ""))
        at = entry.received_at if who != BOT else entry.updated_at
        items.append(Item(who, text, sid, at, state, ticks(entry), "fallback reply" if entry.fallback and who == BOT else ""))
    return items


@dataclass(frozen=True)
class Summary:
    """One conversation in the list."""

    id: str
    business: str
    name: str
    number: str
    updated_at: datetime | None
    attention: Attention
    paused_until: datetime | None
    opted_out: bool
    window_open: bool
    window_closes: datetime | None
    last: Item | None = None
    items: tuple[Item, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "business": self.business, "name": self.name, "number": self.number,
            "updatedAt": _iso(self.updated_at), "reasons": list(self.attention.reasons),
            "needsPerson": self.attention.needs_person, "waitingSince": _iso(self.attention.waiting_since),
            "pausedUntil": _iso(self.paused_until), "optedOut": self.opted_out,
            "window": {"open": self.window_open, "closesAt": _iso(self.window_closes)},
            "last": self.last.to_json() if self.last else None,
        }


def summary(cid: str, conv: Conversation, now: datetime) -> Summary:
    items = tuple(history(conv, now))
    last = items[-1] if items else None
    if last is not None and len(last.text) > PREVIEW_CHARS:
        last = Item(last.who, last.text[: PREVIEW_CHARS - 1] + "…", last.sid, last.at, last.state, last.ticks)
    inbound = conv.last_inbound_at
    return Summary(
        id=cid, business=conv.business, name=conv.profile_name, number=mask_number(conv.address),
        updated_at=conv.updated_at, attention=attention(conv, now),
        paused_until=conv.paused_until if conv.paused(now) else None, opted_out=conv.opted_out,
        window_open=window_open(conv, now), window_closes=inbound + WINDOW if inbound is not None else None,
        last=last, items=items,
    )


def detail(cid: str, conv: Conversation, now: datetime) -> dict[str, Any]:
    """The open conversation: its summary and its whole history."""
    found = summary(cid, conv, now)
    return {**found.to_json(), "history": [item.to_json() for item in found.items]}


def ordered(summaries: list[Summary]) -> list[Summary]:
    """Those that need a person first (longest wait first), then the rest, most recent first."""
    waiting = sorted((s for s in summaries if s.attention.needs_person),
                     key=lambda s: (s.attention.waiting_since, s.id))
    rest = sorted((s for s in summaries if not s.attention.needs_person),
                  key=lambda s: (s.updated_at is None, -(s.updated_at.timestamp() if s.updated_at else 0), s.id))
    return waiting + rest


def matches(found: Summary, conv: Conversation, query: str) -> bool:
    """Search within one business: the profile name, the number (digits the person knows), or what was said."""
    q = query.strip().casefold()
    if not q:
        return True
    digits = "".join(ch for ch in q if ch.isdigit())
    if len(digits) >= 4 and digits == q.replace("+", "").replace(" ", "") and digits in conv.address:
        return True
    return q in found.name.casefold() or any(q in item.text.casefold() for item in found.items)

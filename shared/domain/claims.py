"""Taking a message on, and giving it up before it is answered: the processor's and replay's events.

* :func:`take_on`: the claim with what the business controls decided in it;
* :func:`claim` (``claimed``, or ``reclaimed`` once an earlier delivery's
  lease ran out): this worker answers the message until the lease runs out,
  so a duplicate delivery running at the same time does not call the model too;
* :func:`ignore` (``claimed`` then ``ignored``): recorded, deliberately not
  answered, terminal at once and without a seq, so it never holds up later replies;
* :func:`note_error`, :func:`dead_letter`: what a failed delivery leaves, and
  Pub/Sub's giving up;
* :func:`reopen` (``reopened``): ``make replay`` makes a dead letter answerable again.

Pure: each changes the :class:`Conversation` it is given; the store writes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.controls import IGNORE, Decision
from shared.domain.conversation import Conversation, Limits
from shared.domain.turns import trim_history
from shared.domain.entry import Decided, MessageEntry
from shared.domain.lifecycle import (
    CLAIMED,
    DEAD_LETTERED,
    DECIDED,
    ERROR_NOTED,
    FINISHED_IGNORED,
    PROCESSING,
    RECLAIMED,
    REOPENED,
    next_status,
)

# WhatsApp profile names are short; a longer one is cut, not stored whole.
MAX_PROFILE_NAME_CHARS = 100


def claim(conv: Conversation, sid: str, now: datetime, limits: Limits, *, address: str, business: str = "",
          user_id: str = "", hold_lease: bool = True) -> MessageEntry:
    """Take ``sid`` on: a lease (with ``hold_lease``), one more attempt, the conversation kept alive.

    The reconciler's ``watch`` is set for ``limits.watch_after_seconds`` from
    now (unless it looks earlier already); finishing the last open message
    removes it again, so a healthy conversation is never looked at. A
    conversation whose TTL passed starts a fresh history: renewing its expiry
    would revive the stale one.
    """
    entry = conv.messages.get(sid)
    if entry is None:
        entry = conv.messages[sid] = MessageEntry(received_at=now)
    entry.move(RECLAIMED if entry.status == PROCESSING else CLAIMED, sid)
    if hold_lease:
        entry.lease_until = now + timedelta(seconds=limits.lease_seconds)
        if limits.watch_after_seconds:
            conv.watch_from(now, limits.watch_after_seconds)
    entry.attempts += 1
    entry.updated_at = now
    if conv.is_expired(now):
        conv.history = []
    if not conv.exists:
        conv.address = address
    conv.belongs_to(business, user_id)
    conv.renew(now, limits.ttl_seconds)
    return entry


def record_decision(conv: Conversation, sid: str, decided: Decided | None) -> None:
    """``decided``: what the first claim decided, kept so a re-claim decides the same (None: a plain model turn)."""
    entry = conv.messages[sid]
    entry.move(DECIDED, sid)
    if decided is not None:
        entry.decided = decided


def ignore(conv: Conversation, sid: str, reason: str, now: datetime, limits: Limits, *, address: str,
           business: str = "", user_id: str = "", decided: Decided | None = None,
           user_turn: str | None = None) -> None:
    """Record the message as ``ignored`` with ``reason``, in the claim's write: no lease, no watch, no seq.

    No answer write follows, so the bound on tracked entries is kept here;
    ``user_turn`` (paused for a person) enters the history so the model sees
    what the user said once the bot resumes.
    """
    conv.prune(protect=sid)
    entry = claim(conv, sid, now, limits, address=address, business=business, user_id=user_id, hold_lease=False)
    record_decision(conv, sid, decided)
    entry.move(FINISHED_IGNORED, sid)
    entry.reason = reason
    if user_turn is not None:
        turn = {"role": "user", "content": user_turn, "sid": sid}
        conv.history = trim_history([*conv.turns(now), turn], limits.max_messages, limits.max_history_chars)


def take_on(conv: Conversation, sid: str, decision: Decision, now: datetime, limits: Limits, *, address: str,
            business: str = "", user_id: str = "", user_text: str = "", first_claim: bool = True) -> None:
    """The claim write with the decision in it: its state and record (first claim only), or for an
    IGNORE decision the message closed at once as ``ignored``.

    A re-claim (an earlier delivery's lease ran out) re-reads the decision
    from the entry and applies nothing again, so a counter never counts twice.
    """
    owner = {"address": address, "business": business, "user_id": user_id}
    if decision.kind == IGNORE:
        ignore(conv, sid, decision.reason, now, limits, **owner, decided=decision.record(),
               user_turn=user_text if decision.record_user_turn else None)
        return
    claim(conv, sid, now, limits, **owner)
    if first_claim:
        decision.state.apply(conv)
    record_decision(conv, sid, decision.record() if first_claim else None)


def note_inbound(conv: Conversation, at: datetime) -> None:
    """When the user last wrote (WhatsApp's 24-hour window); never earlier than what is known."""
    if conv.last_inbound_at is None or conv.last_inbound_at < at:
        conv.last_inbound_at = at


def note_profile_name(conv: Conversation, name: str) -> None:
    """The user's WhatsApp profile name as Twilio last gave it (the inbox shows it), bounded, no control characters."""
    cleaned = "".join(ch for ch in name if ch.isprintable())[:MAX_PROFILE_NAME_CHARS].strip()
    if cleaned:
        conv.profile_name = cleaned


def note_error(conv: Conversation, sid: str, error: str, now: datetime) -> bool:
    """Keep the last error for the dead-letter record and free a claim, so the redelivery starts at once.

    Returns False (nothing changed) for a message that is unknown or finished.
    """
    entry = conv.messages.get(sid)
    if entry is None or not entry.status or entry.finished:
        return False
    entry.move(ERROR_NOTED, sid)
    entry.last_error = error[:300]
    if entry.status == PROCESSING:
        entry.lease_until = now
    return True


def dead_letter(conv: Conversation, sid: str, now: datetime, reason: str) -> str:
    """Close a message Pub/Sub gave up on, with the last error known; returns the reason recorded."""
    entry = conv.messages.get(sid)
    if entry is not None and entry.last_error:
        reason += f"; last error: {entry.last_error}"
    conv.finish(sid, DEAD_LETTERED, now, reason)
    if entry is None:
        conv.messages[sid].received_at = now
    return reason


def reopen(conv: Conversation, sid: str, now: datetime, limits: Limits, *, address: str, business: str,
           user_id: str) -> None:
    """The entry ``received`` again, with a fresh receipt time, so the liveness bound starts anew.

    A conversation that is gone is re-created knowing whose it is; an
    opted-out one keeps no expiry and gets no address back (the processor
    then ends the message as ``ignored``).
    """
    old = conv.messages.get(sid)
    if old is not None:
        next_status(old.status, REOPENED, sid)  # raises IllegalMove for anything but a dead letter
    fresh = MessageEntry(received_at=now, updated_at=now, replays=(old.replays if old is not None else 0) + 1,
                         tool_ledger=old.tool_ledger if old is not None else None)  # no tool write sent twice
    fresh.move(REOPENED, sid)
    conv.messages[sid] = fresh
    conv.watch_from(now, limits.watch_after_seconds)
    if not conv.exists:
        conv.address = address
    conv.belongs_to(business, user_id)
    conv.renew(now, limits.ttl_seconds)

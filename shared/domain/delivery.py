"""Delivery ticks: Twilio's status callbacks applied to the part of a reply they name.

Callbacks arrive out of order and more than once, so a part's state only moves
forward (``queued < sent < delivered < read``); ``failed`` and ``undelivered``
are terminal and beat any earlier state. Pure rules, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.conversation import Conversation
from shared.domain.entry import MessageEntry
from shared.domain.lifecycle import DELIVERY_REPORTED

OUTSIDE_WINDOW = "outside the 24-hour window"
OUTSIDE_WINDOW_CODE = 63016
TERMINAL_FAILURES = frozenset({"failed", "undelivered"})
_RANK = {"accepted": 0, "queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4}
TICKS = {"queued": "🕓", "sent": "✓", "delivered": "✓✓", "read": "✓✓ read", "failed": "✗", "undelivered": "✗"}


def known_status(status: str) -> bool:
    return status in _RANK or status in TERMINAL_FAILURES


def advances(current: str | None, new: str) -> bool:
    """Whether a part in state ``current`` should move to ``new`` (never backwards)."""
    if current in TERMINAL_FAILURES or not known_status(new):
        return False
    if current is None:
        return True
    if new in TERMINAL_FAILURES:
        return True
    return _RANK[new] > _RANK.get(current, -1)


def failure_reason(code: str | int | None, message: str = "") -> str:
    """What an operator reads for a failed part or send; 63016 gets its plain reason."""
    text = str(code or "").strip()
    if text == str(OUTSIDE_WINDOW_CODE):
        return f"{OUTSIDE_WINDOW} (Twilio {OUTSIDE_WINDOW_CODE})"
    detail = f"twilio error {text}" if text else "twilio reported no error code"
    return f"{detail}: {message}"[:300] if message else detail


def entry_of_part(conv: Conversation, twilio_sid: str) -> str | None:
    """The inbound message whose reply part Twilio named ``twilio_sid``, if we know it."""
    for sid, entry in conv.messages.items():
        if twilio_sid in entry.twilio_sids or twilio_sid in entry.late_twilio_sids:
            return sid
    return None


def part_in_flight(conv: Conversation, now: datetime, grace: timedelta) -> bool:
    """A part was marked ``sending`` within ``grace``: its callback may have overtaken the record of its SID.

    An older mark belongs to a dead attempt; waiting for it would hold up the
    user's later messages, which share the callback's ordering key.
    """
    return any(entry.sending is not None and now - entry.sending.since < grace for entry in conv.messages.values())


def record_delivery(
    conv: Conversation, entry_sid: str, twilio_sid: str, status: str, error_code: str, now: datetime
) -> bool:
    """Move the part's delivery state forward; False (nothing changed) when it would move backwards."""
    entry = conv.messages[entry_sid]
    if not advances(entry.deliveries.get(twilio_sid), status):
        return False
    entry.move(DELIVERY_REPORTED, entry_sid)
    entry.deliveries = {**entry.deliveries, twilio_sid: status}
    if status in TERMINAL_FAILURES:
        entry.delivery_errors = {**entry.delivery_errors, twilio_sid: error_code or ""}
    conv.updated_at = now
    return True


def ticks(entry: MessageEntry) -> str:
    """The ticks of a reply for the admin view: one mark per part, in order."""
    return " ".join(TICKS.get(entry.deliveries.get(sid, ""), "·") for sid in entry.twilio_sids)

"""Bursts: short messages in a row answered once (docs/decisions/0014-bursts.md).

The first message of a burst waits for the window to pass (``burst_started``),
later ones join it and move its due time (``joined_burst``,
``burst_extended``); once the window has passed the head is claimed
(``burst_claimed``), answered like any message with every member's text in
order, and every other member ends ``merged`` with no seq of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.conversation import Conversation
from shared.domain.entry import MessageEntry
from shared.domain.lifecycle import (
    BURST_CLAIMED,
    BURST_EXTENDED,
    BURST_STARTED,
    JOINED,
    JOINED_BURST,
    MERGED_INTO,
    PROCESSING,
    RECLAIMED,
    WAITING_BURST,
)

# What a claimed message does with bursts.
ALONE = "alone"  # no burst: answered on its own
START = "start"  # the head of a new burst
JOIN = "join"  # joins the open burst
WAIT = "wait"  # an open burst must be answered first: the message waits in Pub/Sub


def plan(conv: Conversation, joinable: bool, now: datetime) -> str:
    """What a claimed message does, given whether it may join (a first claim of a plain model turn).

    A message that cannot join (a command, media, a welcome, or the window
    has passed) while a burst is open waits: answering it now would give it
    a seq ahead of the burst's reply.
    """
    burst = conv.open_burst()
    if burst is None:
        return START if joinable else ALONE
    head = burst[1]
    if not joinable or head.status != WAITING_BURST or head.burst_due is None or now >= head.burst_due:
        return WAIT
    return JOIN


def start(conv: Conversation, sid: str, now: datetime, window_seconds: float, text: str, business: str) -> MessageEntry:
    """``sid`` heads a new burst, due once the window has passed; returns the head."""
    entry = conv.messages[sid]
    entry.move(BURST_STARTED, sid)
    entry.lease_until, entry.text, entry.business = None, text, business
    entry.burst_due, entry.burst_version, entry.burst_members = now + timedelta(seconds=window_seconds), 1, [sid]
    return entry


def join(conv: Conversation, sid: str, now: datetime, window_seconds: float, text: str) -> tuple[str, MessageEntry]:
    """``sid`` joins the open burst, whose window starts again; returns the head's sid and entry."""
    burst = conv.open_burst()
    assert burst is not None, "plan() said JOIN"
    head_sid, head = burst
    entry = conv.messages[sid]
    entry.move(JOINED_BURST, sid)
    entry.lease_until, entry.text, entry.burst = None, text, head_sid
    head.move(BURST_EXTENDED, head_sid)
    head.burst_due = now + timedelta(seconds=window_seconds)
    head.burst_version += 1
    head.burst_members = [*head.burst_members, sid]
    head.updated_at = now
    return head_sid, head


def claim(conv: Conversation, head_sid: str, now: datetime, lease_seconds: int) -> MessageEntry:
    """The window passed: the head is claimed with a lease, so duplicate tasks do not call the model twice."""
    head = conv.messages[head_sid]
    head.move(RECLAIMED if head.status == PROCESSING else BURST_CLAIMED, head_sid)
    head.lease_until = now + timedelta(seconds=lease_seconds)
    head.attempts += 1
    head.updated_at = conv.updated_at = now
    return head


def user_text(conv: Conversation, head: MessageEntry) -> str:
    """Every member's text, in the order they wrote."""
    return "\n".join(conv.messages[m].text if m in conv.messages else "" for m in head.burst_members)


def merge(conv: Conversation, head_sid: str, now: datetime) -> None:
    """After the head's answer, in the same write: every member that joined ends ``merged`` into it."""
    head = conv.messages[head_sid]
    head.text = ""
    for sid in head.burst_members[1:]:
        member = conv.messages.get(sid)
        if member is not None and member.status == JOINED:
            member.move(MERGED_INTO, sid)
            member.answered_by, member.reason, member.text, member.updated_at = head_sid, f"answered with {head_sid}", "", now

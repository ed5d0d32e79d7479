"""Sending an answered reply, part by part: the sender's events (decision 0004, 0006).

Per part: ``part_sending`` marks it (who, since when) *before* Twilio is
called, ``part_sent`` records Twilio's SID after; the last part finishes the
reply as ``sent`` in the same write. A failed attempt counts toward the
limit; past it the reply is ``failed``. A part Twilio took after the reply
was closed (by the reconciler or a dead letter) is kept as a late part,
and the status stays what the closer wrote.
"""

from __future__ import annotations

from datetime import datetime

from shared.domain.conversation import Conversation
from shared.domain.entry import SendingMark
from shared.domain.lifecycle import ATTEMPT_FAILED, FAILED, LATE_PART, PART_SENDING, PART_SENT, SENT


def start_part(conv: Conversation, sid: str, k: int, now: datetime, task_id: str, template: str = "",
               content: str = "") -> None:
    """Mark part ``k`` as being sent by the task ``task_id``; ``template`` replaces the rest of the reply
    by the re-engagement template (outside the 24-hour window); ``content``: the last part's choices go
    as that Content resource (buttons, a list), and so does any retry of it."""
    entry = conv.messages[sid]
    entry.move(PART_SENDING, sid)
    entry.sending = SendingMark(part=k, since=now, task=task_id)
    entry.updated_at = now
    if template:
        entry.content_sid = template
        entry.parts = [*entry.parts[:k], f"[template {template}]"]
    elif content:
        entry.content_sid = content


def part_sent(conv: Conversation, sid: str, k: int, twilio_sid: str, now: datetime) -> str:
    """Record part ``k`` as taken by Twilio; returns "sent" (the last part), "part", "late" or "known"."""
    entry = conv.messages[sid]
    if entry.finished:
        entry.move(LATE_PART, sid)
        entry.late_twilio_sids = [*entry.late_twilio_sids, twilio_sid]
        return "late"
    if entry.sent_parts > k:
        return "known"
    entry.move(PART_SENT, sid)
    entry.sent_parts = k + 1
    entry.twilio_sids = [*entry.twilio_sids, twilio_sid]
    entry.sending = None
    entry.updated_at = now
    if k + 1 >= len(entry.parts):
        conv.finish(sid, SENT, now)
        return "sent"
    return "part"


def attempt_failed(conv: Conversation, sid: str, error: str, now: datetime, max_attempts: int,
                   keep_mark: bool) -> str:
    """Count a failed attempt; returns the reason the reply failed once past ``max_attempts``, else "".

    ``keep_mark`` leaves the ``sending`` mark when Twilio may have taken the
    part, so the next attempt asks before sending again.
    """
    entry = conv.messages[sid]
    attempts = entry.send_attempts + 1
    if attempts >= max_attempts:
        reason = f"gave up after {attempts} attempts: {error}"
        conv.finish(sid, FAILED, now, reason)
        return reason
    entry.move(ATTEMPT_FAILED, sid)
    entry.send_attempts = attempts
    entry.last_error = error[:300]
    if not keep_mark:
        entry.sending = None
    return ""

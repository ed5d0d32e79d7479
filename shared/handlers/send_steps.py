"""The sender's steps around the Twilio call: what to do next with a reply, and how an attempt ends.

:func:`next_step` is the sender's one change on the conversation before a
Twilio call: it looks at the reply (its turn, its parts, the 24-hour window,
a mark left by an earlier attempt) and, when a part is to go, marks it
``sending`` in the same compare-and-set write; a conflict re-reads and
decides again. The other functions end an attempt: a failed one counted,
the reply failed or closed unsent, and the hand-off to the reply after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.adapters.cloud_tasks import SendTask
from shared.adapters.compare_and_set import Snapshot
from shared.adapters.firestore_store import failure_record
from shared.domain import sending
from shared.domain.controls import OPTED_OUT
from shared.domain.conversation import Conversation
from shared.domain.entry import MessageEntry
from shared.domain.lifecycle import FAILED, IGNORED, SENT
from shared.domain.window import window_open
from shared.handlers.deps import SenderDeps
from shared.handlers.handoff import hand_off_next
from shared.log import mask_address

log = logging.getLogger(__name__)

# Who may have written an entry nobody asked for: the outbound API and a person (admin reply).
UNASKED = frozenset({"business", "person"})

# What next_step found to do.
UNKNOWN = "unknown"
DUPLICATE = "duplicate"
NOT_ANSWERED = "not answered"
WAITING = "waiting"
CLOSE_UNSENT = "close unsent"
NO_ADDRESS = "no address"
OUTSIDE = "outside the window"
IN_FLIGHT = "in flight"
RETRY_LATER = "retry later"
ASK = "ask"  # a mark of a dead attempt: ask Twilio whether it took the part before sending it again
SEND = "send"  # the part is marked: call Twilio


class RetryLater(Exception):
    """Twilio did not take the part (or we cannot tell yet); Cloud Tasks should retry the task."""


@dataclass(frozen=True)
class Step:
    kind: str
    part: int = 0
    body: str = ""
    template: str = ""
    since: datetime | None = None
    reengaged: bool = False


def next_step(conv: Conversation, task: SendTask, deps: SenderDeps, asked: int, rich: str = "") -> Step:
    """What this task does next with its reply; marks the part for SEND (``asked``: the part whose
    stale mark Twilio was just asked about, and did not have; ``rich``: the Content resource the last
    part's choices go as, shared/handlers/choices_send.py)."""
    entry = conv.entry(task.sid)
    if entry is None:
        return Step(UNKNOWN)
    if entry.finished:
        return Step(DUPLICATE)
    if not entry.to_send or entry.seq is None:
        return Step(NOT_ANSWERED)
    if not conv.its_turn(entry.seq):
        return Step(WAITING)
    k, parts = entry.sent_parts, entry.parts
    if k < len(parts) and entry.by in UNASKED and conv.opted_out:
        # Queued before STOP, its turn after it: nothing unasked goes to a user who opted out.
        return Step(CLOSE_UNSENT)
    if not conv.address:
        return Step(NO_ADDRESS)
    now = deps.clock()
    if k >= len(parts):
        conv.finish(task.sid, SENT, now)
        return Step(SENT)
    mark = entry.sending
    if mark is not None and mark.part == k and asked != k:
        if now - mark.since < deps.in_flight_grace:
            return Step(IN_FLIGHT if mark.task != task.task_id else RETRY_LATER, part=k)
        return Step(ASK, part=k, body=parts[k], template=entry.content_sid, since=mark.since)
    template, reengage, content = entry.content_sid, "", ""
    if not template and not window_open(conv, now, unknown_is_open=True):
        # Twilio would refuse a free-form message (63016): never call it for one.
        reengage = template = deps.reengagement_template(conv.business)
        if not template:
            return Step(OUTSIDE)
    elif not template and rich and k == len(parts) - 1:
        content = template = rich
    sending.start_part(conv, task.sid, k, now, task.task_id, template=reengage, content=content)
    return Step(SEND, part=k, body=entry.parts[k], template=template, reengaged=bool(reengage))


def reply_fields(conv: Conversation, entry: MessageEntry | None, deps: SenderDeps) -> dict[str, Any]:
    """The finished reply's analytics fields (docs/analytics.md): whose number it went from, and how
    long the user waited, from the entry's receipt to the last part's acceptance (None for an unasked
    message: nobody waited for it)."""
    reply_ms = None
    if entry is not None and entry.by not in UNASKED and entry.received_at and entry.updated_at:
        reply_ms = max(0, round((entry.updated_at - entry.received_at).total_seconds() * 1000))
    return {"business": conv.business or deps.settings.twilio_whatsapp_from, "reply_ms": reply_ms}


def hand_off_after(task: SendTask, deps: SenderDeps, conv: Conversation) -> None:
    """Start the reply now in line; if that fails, this task is retried and its retry hands off."""
    try:
        hand_off_next(deps.queue, task.conversation_id, conv)
    except Exception as exc:
        raise RetryLater(f"could not hand off to the next reply: {exc!r}") from exc


def _log(level: int, message: str, task: SendTask, **fields: Any) -> None:
    log.log(level, message, extra={"sid": task.sid, "conversation": task.conversation_id[:12], "seq": task.seq, **fields})


def close_unsent(task: SendTask, deps: SenderDeps, start: Snapshot) -> str:
    """Close a business's or a person's message as ``ignored`` ("opted out"); the next in line goes on."""
    def change(conv: Conversation) -> str:
        entry = conv.entry(task.sid)
        if entry is None or entry.finished:
            return "duplicate"
        conv.finish(task.sid, IGNORED, deps.clock(), OPTED_OUT)
        return "ignored"

    saved = deps.store.update(task.conversation_id, change, start=start, what=f"closing {task.sid} unsent")
    if saved.result == "duplicate":
        return "duplicate"
    hand_off_after(task, deps, saved.conversation)
    _log(logging.INFO, "not sent: the user opted out", task, event="ignored", status=IGNORED, reason=OPTED_OUT)
    return "ignored"


def fail(task: SendTask, deps: SenderDeps, reason: str, code: int | None = None) -> str:
    """Close the message as failed, let the next reply go, and keep a record for operators."""
    def change(conv: Conversation) -> str:
        entry = conv.entry(task.sid)
        if entry is not None and entry.finished:
            return ""
        address = conv.address
        conv.finish(task.sid, FAILED, deps.clock(), reason)
        return address

    saved = deps.store.update(task.conversation_id, change, what=f"recording the failure of {task.sid}")
    if not saved.written:
        return "duplicate"
    return _failed(task, deps, saved.conversation, saved.result, reason, code)


def _failed(task: SendTask, deps: SenderDeps, conv: Conversation, address: str, reason: str,
            code: int | None = None) -> str:
    hand_off_after(task, deps, conv)
    deps.store.record_failure(task.sid, failure_record(
        conversation_id=task.conversation_id, masked_sender=mask_address(address), status=FAILED,
        stage="sender", reason=reason, now=deps.clock(),
    ))
    _log(logging.ERROR, "reply could not be delivered", task, event="send_failed", status=FAILED, reason=reason,
         error_code=code)
    return "failed"


def attempt_failed(task: SendTask, deps: SenderDeps, error: str, keep_mark: bool) -> str:
    """Count a failed attempt of any kind; past SEND_MAX_ATTEMPTS the reply is failed, else retried.

    ``keep_mark`` leaves the ``sending`` mark when Twilio may have taken the
    part, so the next attempt asks before sending again.
    """
    def change(conv: Conversation) -> tuple[str, str, str]:
        entry = conv.entry(task.sid)
        if entry is None or entry.finished:
            return "duplicate", "", ""
        address = conv.address
        reason = sending.attempt_failed(conv, task.sid, error, deps.clock(), deps.settings.send_max_attempts, keep_mark)
        return ("failed" if reason else "retry"), reason, address

    saved = deps.store.update(task.conversation_id, change, what=f"counting a failed attempt of {task.sid}")
    outcome, reason, address = saved.result
    if outcome == "duplicate":
        return "duplicate"
    if outcome == "failed":
        return _failed(task, deps, saved.conversation, address, reason)
    raise RetryLater(error)

"""sender_fn's work: deliver one answered reply through Twilio, in order, once.

Per part of the reply (shared/domain/sending.py):
  1. the part is marked ``sending`` (compare-and-set) before Twilio is called,
  2. Twilio is called,
  3. the part is marked sent with Twilio's SID; the last one finishes the reply.
A retry resumes at the first part not marked sent. A part left ``sending`` by an
attempt that died between 2 and 3 is the one window no local record can close:
before sending it again we ask Twilio whether it already took that body for
that recipient, or for a template part, any message our number sent that
recipient since the mark (docs/decisions/0004-idempotency-records.md, 0006).

A reply whose predecessor in the conversation is not finished waits (HTTP
200, nothing done): the sender that finishes the predecessor hands off to it
(shared/handlers/handoff.py). Every failed attempt counts toward SEND_MAX_ATTEMPTS.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.adapters.cloud_tasks import SendTask
from shared.adapters.compare_and_set import MAX_CONFLICT_RETRIES, Conflict, Snapshot
from shared.adapters.twilio_api import SendPermanent, SendRetryable, SendUncertain
from shared.domain.delivery import OUTSIDE_WINDOW, OUTSIDE_WINDOW_CODE
from shared.domain.lifecycle import SENT
from shared.domain.sending import part_sent
from shared.faults import InjectedFault
from shared.handlers.choices_send import rich_content
from shared.handlers.deps import Gateway, SenderDeps
from shared.handlers.send_steps import (
    ASK,
    CLOSE_UNSENT,
    DUPLICATE,
    IN_FLIGHT,
    NO_ADDRESS,
    NOT_ANSWERED,
    OUTSIDE,
    RETRY_LATER,
    UNKNOWN,
    WAITING,
    RetryLater,
    attempt_failed,
    close_unsent,
    fail,
    hand_off_after,
    next_step,
    reply_fields,
)
__all__ = ["Gateway", "RetryLater", "SenderDeps", "deliver", "handle_send_request"]

log = logging.getLogger(__name__)


def _log(level: int, message: str, task: SendTask, **fields: Any) -> None:
    log.log(level, message, extra={"sid": task.sid, "conversation": task.conversation_id[:12], "seq": task.seq, **fields})


def deliver(task: SendTask, deps: SenderDeps) -> str:
    """Send every unsent part of the reply; return what happened.

    "sent" and "failed" finish the reply; "duplicate", "unknown", "waiting"
    (not its turn: the reply before it hands off) and "in flight" (another
    task is inside the Twilio call) leave nothing for this task to do. Only
    :class:`RetryLater` asks Cloud Tasks for another attempt.
    """
    snap = deps.store.load(task.conversation_id)
    asked = -1  # the part Twilio was just asked about (its stale mark is resolved)
    for _ in range(MAX_CONFLICT_RETRIES * 4):
        rich = rich_content(snap.conversation, task, deps)  # choices as buttons or a list, when they can go so
        saved = deps.store.update(task.conversation_id, lambda conv: next_step(conv, task, deps, asked, rich),
                                  start=snap, what=f"sending {task.sid}")
        step, snap = saved.result, saved.snapshot
        conv, entry = snap.conversation, snap.conversation.entry(task.sid)
        if step.kind == UNKNOWN:
            _log(logging.ERROR, "send task for an unknown message dropped", task, event="send_failed",
                 reason="unknown message")
            return "unknown"
        if step.kind == DUPLICATE:
            # Also the retry of a task that finished the reply but died before handing off.
            hand_off_after(task, deps, conv)
            _log(logging.INFO, "duplicate send task", task, event="duplicate", status=entry.status if entry else None)
            return "duplicate"
        if step.kind == NOT_ANSWERED:
            _log(logging.INFO, "send task before the answer; the answer creates its own", task, event="not_answered",
                 status=entry.status if entry else None)
            return "not answered"
        if step.kind == WAITING:
            _log(logging.INFO, "waiting for the reply before", task, event="waiting", done_seq=conv.done_seq)
            return "waiting"
        if step.kind == IN_FLIGHT:
            _log(logging.INFO, "part is being sent under another task", task, event="in_flight", part=step.part + 1)
            return "in flight"
        if step.kind == RETRY_LATER:
            raise RetryLater(f"part {step.part + 1} may still be in Twilio's hands; asking once the grace is over")
        if step.kind == CLOSE_UNSENT:
            return close_unsent(task, deps, snap)
        if step.kind == NO_ADDRESS:
            return fail(task, deps, "the conversation has no address to send to")
        if step.kind == OUTSIDE:
            return fail(task, deps, f"{OUTSIDE_WINDOW}: the user last wrote more than 24 hours ago")
        if step.kind == SENT:
            _log(logging.INFO, "reply sent", task, event="sent", status=SENT, parts=entry.part_count if entry else None,
                 **reply_fields(conv, entry, deps))
            hand_off_after(task, deps, conv)
            return "sent"
        assert entry is not None
        if step.kind == ASK:
            try:
                found = deps.twilio.find_sent(
                    conv.address, step.body, step.since, frozenset(conv.known_twilio_sids()), from_=conv.business,
                    template=step.template,
                )
            except (SendRetryable, SendPermanent, SendUncertain) as exc:
                return attempt_failed(task, deps, f"could not ask Twilio whether part {step.part + 1} was sent: {exc}",
                                      keep_mark=True)
            asked = step.part
            if not found:
                continue
            _log(logging.WARNING, "part had been accepted by Twilio", task, event="reconciled", part=step.part + 1)
            outcome, snap = _record_sent(task, deps, snap, step.part, found)
            if outcome:
                return outcome
            continue
        if rich and step.template == rich:
            _log(logging.INFO, "choices go as buttons or a list", task, event="choices_sent", content_sid=rich)
        if step.reengaged:
            _log(logging.INFO, "outside the 24-hour window: the re-engagement template goes instead", task,
                 event="reengagement", content_sid=step.template)
        deps.faults.hit("before_send")
        try:
            if step.template:
                twilio_sid = deps.twilio.send_template(conv.address, step.template, entry.content_variables,
                                                       from_=conv.business)
            else:
                twilio_sid = deps.twilio.send(conv.address, step.body, from_=conv.business)
        except SendPermanent as exc:
            reason = f"{OUTSIDE_WINDOW}: {exc}" if exc.code == OUTSIDE_WINDOW_CODE else str(exc)
            return fail(task, deps, reason, code=exc.code)
        except SendRetryable as exc:
            return attempt_failed(task, deps, str(exc), keep_mark=False)
        except SendUncertain as exc:
            # The mark stays: the next attempt asks Twilio before sending again.
            return attempt_failed(task, deps, str(exc), keep_mark=True)
        deps.faults.hit("after_send")
        _log(logging.INFO, "part sent", task, event="part_sent", part=step.part + 1, of=len(entry.parts),
             twilio_sid=twilio_sid)
        outcome, snap = _record_sent(task, deps, snap, step.part, twilio_sid)
        if outcome:
            return outcome
    raise Conflict(f"conversation kept changing while sending {task.sid}")


def _record_sent(task: SendTask, deps: SenderDeps, snap: Snapshot, k: int, twilio_sid: str) -> tuple[str, Snapshot]:
    """Record part k as delivered; a conflict is retried by the store, never by sending again.

    A message closed meanwhile (by the reconciler or a dead letter) keeps its
    status: the SID is kept as a late delivery, so nothing is overwritten.
    Returns "sent" once the reply is finished, else "" (go on with the next part).
    """
    saved = deps.store.update(task.conversation_id, lambda conv: part_sent(conv, task.sid, k, twilio_sid, deps.clock()),
                              start=snap, what=f"recording part {k + 1} of {task.sid} as sent")
    conv = saved.conversation
    if saved.result == "late":
        _log(logging.WARNING, "part delivered after the message was closed", task, event="late_part", part=k + 1)
    if saved.result == "sent":
        _log(logging.INFO, "reply sent", task, event="sent", status=SENT, parts=conv.messages[task.sid].part_count,
             **reply_fields(conv, conv.messages[task.sid], deps))
        hand_off_after(task, deps, conv)
        return "sent", saved.snapshot
    entry = conv.entry(task.sid)
    return ("sent" if entry is not None and entry.status == SENT else ""), saved.snapshot


def handle_send_request(body: bytes, deps: SenderDeps) -> tuple[int, str]:
    """One Cloud Tasks delivery: 2xx finishes the task, anything else makes Cloud Tasks retry.

    Only real trouble answers non-2xx (Cloud Tasks slows the whole queue on
    429 and 5xx): waiting for the reply before is a 200, see shared/handlers/handoff.py.
    """
    try:
        task = SendTask.from_json(body)
    except (ValueError, KeyError, TypeError) as exc:
        # A task we cannot read will not become readable: finish it, loudly.
        log.error("unreadable send task dropped", extra={"event": "send_failed", "reason": f"bad task body: {exc}"})
        return 200, "unreadable task dropped\n"
    try:
        outcome = deliver(task, deps)
    except RetryLater as exc:
        _log(logging.WARNING, "send will be retried", task, event="send_retry", reason=str(exc)[:300])
        return 503, "retry later\n"
    except InjectedFault:
        raise
    except Exception as exc:
        # Counted like any failed attempt, so a persistent bug ends in a
        # recorded failure instead of retrying until the task expires.
        _log(logging.ERROR, "send attempt failed unexpectedly", task, event="send_error", reason=repr(exc)[:300])
        try:
            outcome = attempt_failed(task, deps, f"unexpected error: {exc!r}", keep_mark=True)
        except RetryLater:
            return 500, "retry later\n"
    return 200, f"{outcome}\n"


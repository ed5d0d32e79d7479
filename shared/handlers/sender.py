"""sender_fn's work: deliver one answered reply through Twilio, in order, once.

Per part of the reply:
  1. the part is marked ``sending`` (compare-and-set) before Twilio is called,
  2. Twilio is called,
  3. the part is marked sent with Twilio's SID.
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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from shared.adapters.cloud_tasks import SendTask
from shared.adapters.firestore_store import Conflict, ConversationStore, failure_record
from shared.adapters.profile_store import ProfileSource
from shared.adapters.twilio_api import SendPermanent, SendRetryable, SendUncertain
from shared.config import Settings
from shared.domain.controls import OPTED_OUT
from shared.domain.conversation import (
    ANSWERED,
    FAILED,
    FINISHED,
    IGNORED,
    REMOVE,
    SENDING,
    SENT,
    Conversation,
    applied,
    finish_updates,
)
from shared.domain.delivery import OUTSIDE_WINDOW, OUTSIDE_WINDOW_CODE
from shared.domain.window import window_open
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.handoff import Queue, hand_off_next, its_turn
from shared.handlers.processor import FAILURE_RETENTION, MAX_CONFLICT_RETRIES
from shared.log import mask_address

log = logging.getLogger(__name__)

# Who may have written an entry nobody asked for: the outbound API and a person (admin reply).
UNASKED = frozenset({"business", "person"})


class RetryLater(Exception):
    """Twilio did not take the part (or we cannot tell yet); Cloud Tasks should retry the task."""


class Gateway(Protocol):
    def send(self, to: str, body: str, from_: str = "") -> str: ...

    def send_template(self, to: str, content_sid: str, content_variables: str = "", from_: str = "") -> str: ...

    def find_sent(
        self, to: str, body: str, since: datetime, exclude: frozenset[str] = frozenset(), from_: str = "",
        template: str = "",
    ) -> str | None: ...


@dataclass(frozen=True)
class SenderDeps:
    settings: Settings
    store: ConversationStore
    twilio: Gateway
    queue: Queue
    faults: FaultPoints
    clock: Callable[[], datetime]
    # Business profiles (None: the settings for everyone); read only for a reply past the 24-hour window.
    profiles: ProfileSource | None = None

    def reengagement_template(self, business: str) -> str:
        """The business's re-engagement template, else the deployment's (REENGAGEMENT_CONTENT_SID)."""
        if self.profiles is None:
            return self.settings.reengagement_content_sid
        profile = self.profiles.get(business or self.settings.twilio_whatsapp_from)
        return profile.reengagement_content_sid or self.settings.reengagement_content_sid

    @property
    def in_flight_grace(self) -> timedelta:
        """How long a ``sending`` mark may belong to an attempt that is still waiting on Twilio."""
        return timedelta(seconds=self.settings.in_flight_grace_seconds)


def _log(level: int, message: str, task: SendTask, **fields: Any) -> None:
    log.log(level, message, extra={"sid": task.sid, "conversation": task.conversation_id[:12], "seq": task.seq, **fields})


def deliver(task: SendTask, deps: SenderDeps) -> str:
    """Send every unsent part of the reply; return what happened.

    "sent" and "failed" finish the reply; "duplicate", "unknown", "waiting"
    (not its turn: the reply before it hands off) and "in flight" (another
    task is inside the Twilio call) leave nothing for this task to do. Only
    :class:`RetryLater` asks Cloud Tasks for another attempt.
    """
    store, cid = deps.store, task.conversation_id
    snap = store.load(cid)
    conv, version = snap.conversation, snap.version
    for _ in range(MAX_CONFLICT_RETRIES * 4):
        entry = conv.entry(task.sid)
        status = entry.get("status")
        if not entry:
            _log(logging.ERROR, "send task for an unknown message dropped", task, event="send_failed", reason="unknown message")
            return "unknown"
        if status in FINISHED:
            # Also the retry of a task that finished the reply but died before handing off.
            _hand_off(task, deps, conv)
            _log(logging.INFO, "duplicate send task", task, event="duplicate", status=status)
            return "duplicate"
        if status not in (ANSWERED, SENDING):
            _log(logging.INFO, "send task before the answer; the answer creates its own", task, event="not_answered", status=status)
            return "not answered"
        seq = int(entry["seq"])
        if not its_turn(conv, seq):
            _log(logging.INFO, "waiting for the reply before", task, event="waiting", done_seq=conv.done_seq)
            return "waiting"
        parts: list[str] = list(entry["parts"])
        k = int(entry.get("sentParts", 0))
        if k < len(parts) and entry.get("by") in UNASKED and conv.data.get("optedOut"):
            # Queued before STOP, its turn after it: nothing unasked goes to a user who opted out.
            return _close_unsent(task, deps, conv, version)
        address = str(conv.data.get("address") or "")
        if not address:
            return _fail(task, deps, "the conversation has no address to send to")
        # Replies go out from the address the user wrote to (empty: the configured one).
        business = str(conv.data.get("business", ""))
        now = deps.clock()
        sending = entry.get("sending") or {}
        try:
            if k >= len(parts):
                conv, version = _finish(task, deps, conv, version, SENT, now)
                return "sent"
            if sending.get("part") == k:
                if now - sending["since"] < deps.in_flight_grace:
                    if sending.get("task") != task.task_id:
                        _log(logging.INFO, "part is being sent under another task", task, event="in_flight", part=k + 1)
                        return "in flight"
                    raise RetryLater(f"part {k + 1} may still be in Twilio's hands; asking once the grace is over")
                try:
                    found = deps.twilio.find_sent(
                        address, parts[k], sending["since"], frozenset(conv.known_twilio_sids()), from_=business,
                        template=str(entry.get("contentSid") or ""),
                    )
                except (SendRetryable, SendPermanent, SendUncertain) as exc:
                    return _attempt_failed(task, deps, f"could not ask Twilio whether part {k + 1} was sent: {exc}", keep_mark=True)
                if found:
                    _log(logging.WARNING, "part had been accepted by Twilio", task, event="reconciled", part=k + 1)
                    conv, version = _mark_part_sent(task, deps, conv, version, k, found)
                    if conv.entry(task.sid).get("status") == SENT:
                        return "sent"
                    continue
            template = str(entry.get("contentSid") or "")
            claim = {
                f"messages.{task.sid}.status": SENDING,
                f"messages.{task.sid}.sending": {"part": k, "since": now, "task": task.task_id},
                f"messages.{task.sid}.updatedAt": now,
            }
            if not template and not window_open(conv.data, now, unknown_is_open=True):
                # Twilio would refuse a free-form message (63016): never call it for one.
                template = deps.reengagement_template(business)
                if not template:
                    return _fail(task, deps, f"{OUTSIDE_WINDOW}: the user last wrote more than 24 hours ago")
                _log(logging.INFO, "outside the 24-hour window: the re-engagement template goes instead", task,
                     event="reengagement", content_sid=template)
                parts = parts[:k] + [f"[template {template}]"]
                claim[f"messages.{task.sid}.contentSid"] = template
                claim[f"messages.{task.sid}.parts"] = parts
            version = store.apply(cid, claim, version)
            conv = applied(conv, claim)
        except Conflict:
            snap = store.load(cid)
            conv, version = snap.conversation, snap.version
            continue
        deps.faults.hit("before_send")
        try:
            if template:
                twilio_sid = deps.twilio.send_template(
                    address, template, str(entry.get("contentVariables") or ""), from_=business
                )
            else:
                twilio_sid = deps.twilio.send(address, parts[k], from_=business)
        except SendPermanent as exc:
            reason = f"{OUTSIDE_WINDOW}: {exc}" if exc.code == OUTSIDE_WINDOW_CODE else str(exc)
            return _fail(task, deps, reason, code=exc.code)
        except SendRetryable as exc:
            return _attempt_failed(task, deps, str(exc), keep_mark=False)
        except SendUncertain as exc:
            # The mark stays: the next attempt asks Twilio before sending again.
            return _attempt_failed(task, deps, str(exc), keep_mark=True)
        deps.faults.hit("after_send")
        _log(logging.INFO, "part sent", task, event="part_sent", part=k + 1, of=len(parts), twilio_sid=twilio_sid)
        conv, version = _mark_part_sent(task, deps, conv, version, k, twilio_sid)
        if conv.entry(task.sid).get("status") == SENT:
            return "sent"
    raise Conflict(f"conversation kept changing while sending {task.sid}")


def _finish(
    task: SendTask,
    deps: SenderDeps,
    conv: Conversation,
    version: Any,
    status: str,
    now: datetime,
    reason: str = "",
    also: dict[str, Any] | None = None,
) -> tuple[Conversation, Any]:
    """Close the reply (with ``also`` in the same write), then hand off to the one after it.

    Raises Conflict like any write.
    """
    updates = {**(also or {}), **finish_updates(conv, task.sid, status, now, reason)}
    version = deps.store.apply(task.conversation_id, updates, version)
    conv = applied(conv, updates)
    if status == SENT:
        _log(logging.INFO, "reply sent", task, event="sent", status=SENT, parts=conv.entry(task.sid).get("partCount"))
    _hand_off(task, deps, conv)
    return conv, version


def _close_unsent(task: SendTask, deps: SenderDeps, conv: Conversation, version: Any) -> str:
    """Close a business's or a person's message as ``ignored`` ("opted out"); the next in line goes on."""
    for _ in range(MAX_CONFLICT_RETRIES):
        try:
            _finish(task, deps, conv, version, IGNORED, deps.clock(), OPTED_OUT)
            break
        except Conflict:
            snap = deps.store.load(task.conversation_id)
            conv, version = snap.conversation, snap.version
            if conv.entry(task.sid).get("status") in FINISHED:
                return "duplicate"
    else:
        raise Conflict(f"could not close {task.sid} for an opted-out user")
    _log(logging.INFO, "not sent: the user opted out", task, event="ignored", status=IGNORED, reason=OPTED_OUT)
    return "ignored"


def _hand_off(task: SendTask, deps: SenderDeps, conv: Conversation) -> None:
    """Start the reply now in line; if that fails, this task is retried and its retry hands off."""
    try:
        hand_off_next(deps.queue, task.conversation_id, conv)
    except Exception as exc:
        raise RetryLater(f"could not hand off to the next reply: {exc!r}") from exc


def _mark_part_sent(
    task: SendTask, deps: SenderDeps, conv: Conversation, version: Any, k: int, twilio_sid: str
) -> tuple[Conversation, Any]:
    """Record part k as delivered; a conflict is retried here, never by sending again.

    A message closed meanwhile (by the reconciler or a dead letter) keeps its
    status: the SID is kept as a late delivery, so nothing is overwritten.
    """
    for _ in range(MAX_CONFLICT_RETRIES):
        entry = conv.entry(task.sid)
        now = deps.clock()
        try:
            if entry.get("status") in FINISHED:
                late = {f"messages.{task.sid}.lateTwilioSids": list(entry.get("lateTwilioSids", [])) + [twilio_sid]}
                _log(logging.WARNING, "part delivered after the message was closed", task, event="late_part", part=k + 1)
                version = deps.store.apply(task.conversation_id, late, version)
                return applied(conv, late), version
            if int(entry.get("sentParts", 0)) > k:
                return conv, version
            updates: dict[str, Any] = {
                f"messages.{task.sid}.sentParts": k + 1,
                f"messages.{task.sid}.twilioSids": list(entry.get("twilioSids", [])) + [twilio_sid],
                f"messages.{task.sid}.sending": REMOVE,
                f"messages.{task.sid}.updatedAt": now,
            }
            if k + 1 >= len(entry["parts"]):
                return _finish(task, deps, conv, version, SENT, now, also=updates)
            version = deps.store.apply(task.conversation_id, updates, version)
            return applied(conv, updates), version
        except Conflict:
            snap = deps.store.load(task.conversation_id)
            conv, version = snap.conversation, snap.version
    raise Conflict(f"could not record part {k + 1} of {task.sid} as sent")


def _attempt_failed(task: SendTask, deps: SenderDeps, error: str, keep_mark: bool) -> str:
    """Count a failed attempt of any kind; past SEND_MAX_ATTEMPTS the reply is failed, else retried.

    ``keep_mark`` leaves the ``sending`` mark when Twilio may have taken the
    part, so the next attempt asks before sending again.
    """
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = deps.store.load(task.conversation_id)
        entry = snap.conversation.entry(task.sid)
        if entry.get("status") in FINISHED or not entry:
            return "duplicate"
        attempts = int(entry.get("sendAttempts", 0)) + 1
        if attempts >= deps.settings.send_max_attempts:
            return _fail(task, deps, f"gave up after {attempts} attempts: {error}")
        updates: dict[str, Any] = {
            f"messages.{task.sid}.sendAttempts": attempts,
            f"messages.{task.sid}.lastError": error[:300],
        }
        if not keep_mark:
            updates[f"messages.{task.sid}.sending"] = REMOVE
        try:
            deps.store.apply(task.conversation_id, updates, snap.version)
        except Conflict:
            continue
        raise RetryLater(error)
    raise Conflict(f"could not count a failed attempt of {task.sid}")


def _fail(task: SendTask, deps: SenderDeps, reason: str, code: int | None = None) -> str:
    """Close the message as failed, let the next reply go, and keep a record for operators."""
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = deps.store.load(task.conversation_id)
        conv, now = snap.conversation, deps.clock()
        if conv.entry(task.sid).get("status") in FINISHED:
            return "duplicate"
        try:
            _finish(task, deps, conv, snap.version, FAILED, now, reason)
            break
        except Conflict:
            continue
    else:
        raise Conflict(f"could not record the failure of {task.sid}")
    address = str(conv.data.get("address", ""))
    deps.store.record_failure(
        task.sid,
        failure_record(
            conversation_id=task.conversation_id, masked_sender=mask_address(address), status=FAILED,
            stage="sender", reason=reason, now=now, retention=now + FAILURE_RETENTION,
        ),
    )
    _log(logging.ERROR, "reply could not be delivered", task, event="send_failed", status=FAILED, reason=reason, error_code=code)
    return "failed"


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
            outcome = _attempt_failed(task, deps, f"unexpected error: {exc!r}", keep_mark=True)
        except RetryLater:
            return 500, "retry later\n"
    return 200, f"{outcome}\n"

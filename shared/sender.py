"""sender_fn's work: deliver one answered reply through Twilio, in order, once.

Per part of the reply:
  1. the part is marked ``sending`` (compare-and-set) before Twilio is called,
  2. Twilio is called,
  3. the part is marked sent with Twilio's SID.
A retry resumes at the first part not marked sent. A part left ``sending`` by an
attempt that died between 2 and 3 is the one window no local record can close:
before sending it again we ask Twilio whether it already took that body for
that recipient (see docs/decisions/0004-idempotency-records.md).

A reply whose predecessor in the conversation is not finished is deferred
(HTTP 429), so Cloud Tasks offers it again after a backoff.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from shared.config import Settings
from shared.conversation import (
    ANSWERED,
    FAILED,
    FINISHED,
    REMOVE,
    SENDING,
    SENT,
    Conversation,
    applied,
    finish_updates,
)
from shared.faults import FaultPoints
from shared.log import mask_address
from shared.processor import FAILURE_RETENTION, MAX_CONFLICT_RETRIES
from shared.store import Conflict, ConversationStore, failure_record
from shared.tasks import SendTask
from shared.twilio_api import SendPermanent, SendRetryable, SendUncertain

log = logging.getLogger(__name__)


class Defer(Exception):
    """Not this message's turn yet (or another attempt is mid-send): try again later."""


class RetryLater(Exception):
    """Twilio did not take the part; Cloud Tasks should retry the task."""


class Gateway(Protocol):
    def send(self, to: str, body: str) -> str: ...

    def find_sent(self, to: str, body: str, since: datetime) -> str | None: ...


@dataclass(frozen=True)
class SenderDeps:
    settings: Settings
    store: ConversationStore
    twilio: Gateway
    faults: FaultPoints
    clock: Callable[[], datetime]

    @property
    def in_flight_grace(self) -> timedelta:
        """How long a ``sending`` mark may belong to an attempt that is still waiting on Twilio."""
        return timedelta(seconds=self.settings.twilio_timeout_seconds + 5)


def _log(level: int, message: str, task: SendTask, **fields: Any) -> None:
    log.log(level, message, extra={"sid": task.sid, "conversation": task.conversation_id[:12], "seq": task.seq, **fields})


def deliver(task: SendTask, deps: SenderDeps) -> str:
    """Send every unsent part of the reply; return "sent", "failed", "duplicate" or "unknown"."""
    store = deps.store
    snap = store.load(task.conversation_id)
    conv, version = snap.conversation, snap.version
    for _ in range(MAX_CONFLICT_RETRIES * 4):
        entry = conv.entry(task.sid)
        status = entry.get("status")
        if not entry:
            _log(logging.ERROR, "send task for an unknown message dropped", task, event="send_failed", reason="unknown message")
            return "unknown"
        if status in FINISHED:
            _log(logging.INFO, "duplicate send task", task, event="duplicate", status=status)
            return "duplicate"
        if status not in (ANSWERED, SENDING):
            raise Defer(f"message is {status}, not answered yet")
        seq = int(entry["seq"])
        if conv.done_seq < seq - 1:
            raise Defer(f"reply #{seq} waits for reply #{seq - 1}")
        parts: list[str] = list(entry["parts"])
        k = int(entry.get("sentParts", 0))
        address = str(conv.data["address"])
        now = deps.clock()
        sending = entry.get("sending") or {}
        try:
            if k >= len(parts):
                store.apply(task.conversation_id, finish_updates(conv, task.sid, SENT, now), version)
                return "sent"
            if sending.get("part") == k:
                if now - sending["since"] < deps.in_flight_grace:
                    raise Defer(f"part {k + 1} is being sent by another attempt")
                try:
                    found = deps.twilio.find_sent(address, parts[k], sending["since"])
                except (SendRetryable, SendPermanent) as exc:
                    raise RetryLater(f"could not ask Twilio whether part {k + 1} was sent: {exc}") from exc
                if found:
                    _log(logging.WARNING, "part had been accepted by Twilio", task, event="reconciled", part=k + 1)
                    conv, version = _mark_part_sent(task, deps, conv, version, k, found)
                    if conv.entry(task.sid).get("status") == SENT:
                        return "sent"
                    continue
            claim = {
                f"messages.{task.sid}.status": SENDING,
                f"messages.{task.sid}.sending": {"part": k, "since": now},
                f"messages.{task.sid}.updatedAt": now,
            }
            version = store.apply(task.conversation_id, claim, version)
            conv = applied(conv, claim)
        except Conflict:
            snap = store.load(task.conversation_id)
            conv, version = snap.conversation, snap.version
            continue
        deps.faults.hit("before_send")
        try:
            twilio_sid = deps.twilio.send(address, parts[k])
        except SendPermanent as exc:
            return _fail(task, deps, str(exc), code=exc.code)
        except SendRetryable as exc:
            attempts = int(entry.get("sendAttempts", 0)) + 1
            if attempts >= deps.settings.send_max_attempts:
                return _fail(task, deps, f"gave up after {attempts} attempts: {exc}")
            _record_attempt(task, deps, attempts, str(exc))
            raise RetryLater(str(exc)) from exc
        except SendUncertain as exc:
            # Leave the part marked "sending": the next attempt asks Twilio first.
            raise RetryLater(str(exc)) from exc
        deps.faults.hit("after_send")
        _log(logging.INFO, "part sent", task, event="part_sent", part=k + 1, of=len(parts), twilio_sid=twilio_sid)
        conv, version = _mark_part_sent(task, deps, conv, version, k, twilio_sid)
        if conv.entry(task.sid).get("status") == SENT:
            return "sent"
    raise Conflict(f"conversation kept changing while sending {task.sid}")


def _mark_part_sent(
    task: SendTask, deps: SenderDeps, conv: Conversation, version: Any, k: int, twilio_sid: str
) -> tuple[Conversation, Any]:
    """Record part k as delivered; a conflict is retried here, never by sending again."""
    for _ in range(MAX_CONFLICT_RETRIES):
        entry = conv.entry(task.sid)
        if int(entry.get("sentParts", 0)) > k:
            return conv, version
        now = deps.clock()
        updates: dict[str, Any] = {
            f"messages.{task.sid}.sentParts": k + 1,
            f"messages.{task.sid}.twilioSids": list(entry.get("twilioSids", [])) + [twilio_sid],
            f"messages.{task.sid}.sending": REMOVE,
            f"messages.{task.sid}.updatedAt": now,
        }
        if k + 1 >= len(entry["parts"]):
            updates.update(finish_updates(conv, task.sid, SENT, now))
        try:
            version = deps.store.apply(task.conversation_id, updates, version)
        except Conflict:
            snap = deps.store.load(task.conversation_id)
            conv, version = snap.conversation, snap.version
            continue
        if k + 1 >= len(entry["parts"]):
            _log(logging.INFO, "reply sent", task, event="sent", status=SENT, parts=len(entry["parts"]))
        return applied(conv, updates), version
    raise Conflict(f"could not record part {k + 1} of {task.sid} as sent")


def _record_attempt(task: SendTask, deps: SenderDeps, attempts: int, error: str) -> None:
    """Count a failed attempt and clear the ``sending`` mark: Twilio did not take the part."""
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = deps.store.load(task.conversation_id)
        try:
            deps.store.apply(
                task.conversation_id,
                {
                    f"messages.{task.sid}.sendAttempts": attempts,
                    f"messages.{task.sid}.lastError": error[:300],
                    f"messages.{task.sid}.sending": REMOVE,
                },
                snap.version,
            )
            return
        except Conflict:
            continue
    _log(logging.WARNING, "a failed attempt could not be counted", task)


def _fail(task: SendTask, deps: SenderDeps, reason: str, code: int | None = None) -> str:
    """Close the message as failed, let the next reply go, and keep a record for operators."""
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = deps.store.load(task.conversation_id)
        conv, now = snap.conversation, deps.clock()
        try:
            deps.store.apply(task.conversation_id, finish_updates(conv, task.sid, FAILED, now, reason), snap.version)
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
    """One Cloud Tasks delivery: 2xx finishes the task, anything else makes Cloud Tasks retry."""
    try:
        task = SendTask.from_json(body)
    except (ValueError, KeyError, TypeError) as exc:
        # A task we cannot read will not become readable: finish it, loudly.
        log.error("unreadable send task dropped", extra={"event": "send_failed", "reason": f"bad task body: {exc}"})
        return 200, "unreadable task dropped\n"
    try:
        outcome = deliver(task, deps)
    except Defer as exc:
        _log(logging.INFO, "send deferred", task, event="deferred", reason=str(exc))
        return 429, f"deferred: {exc}\n"
    except RetryLater as exc:
        _log(logging.WARNING, "send will be retried", task, event="send_retry", reason=str(exc)[:300])
        return 503, "retry later\n"
    return 200, f"{outcome}\n"

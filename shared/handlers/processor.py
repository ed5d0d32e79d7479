"""processor_fn's work: answer one inbound message, exactly once.

Steps, each safe to repeat after a crash at any point (Pub/Sub delivers again):

1. read the conversation; a message already answered only has its send task
   (re)created, a finished one is acknowledged, one being processed elsewhere
   under a live lease is retried later;
2. claim the message (compare-and-set), so a duplicate delivery running at the
   same time does not call the model too;
3. ask the model (or fall back to a friendly text when it is down);
4. append the turn and give the reply its sequence number (compare-and-set);
5. create the named send task for sender_fn, when it is the reply's turn
   (otherwise the reply before it hands off, shared/handlers/handoff.py).

The first claim also writes a dedupe marker in the same commit, so a
redelivery is recognised however late it comes (docs/decisions/0008-liveness.md).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Protocol

from shared.adapters.cloud_tasks import BURST_KIND, BurstTask
from shared.adapters.firestore_store import Conflict, ConversationStore, DedupeMarker, failure_record
from shared.adapters.profile_store import ProfileSource, StaticProfiles, defaults_from_settings
from shared.config import Settings
from shared.domain.controls import IGNORE, MODEL, Decision, clean_text, decide, decided_claim
from shared.domain.conversation import (
    ANSWERED,
    DEAD_LETTERED,
    FINISHED,
    IGNORED,
    JOINED,
    MERGED,
    PROCESSING,
    REMOVE,
    SENDING,
    WAITING_BURST,
    Conversation,
    answer_updates,
    applied,
    cap_text,
    claim_updates,
    finish_updates,
)
from shared.domain.inbound import STATUS_KIND, InboundMessage, InvalidWebhook, describe_for_model
from shared.domain.profiles import BusinessProfile
from shared.domain.pseudonyms import Pseudonyms
from shared.domain.splitting import split_reply
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.channel import Typing, profile_value, start_typing, window_update
from shared.handlers.delivery_status import handle_status_push
from shared.handlers.handoff import Queue, send_when_its_turn
from shared.handlers.media_turn import MediaSource, answer_with_media
from shared.log import mask_address

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 20
FAILURE_RETENTION = timedelta(days=30)


class MessageBusy(Exception):
    """Another delivery of this message holds a live lease; Pub/Sub should retry later."""


class Model(Protocol):
    def reply(
        self, history: list[dict[str, str]], user_text: str, system_prompt: str | None = None, model: str | None = None
    ) -> str: ...


@dataclass(frozen=True)
class ProcessorDeps:
    settings: Settings
    store: ConversationStore
    model: Model
    queue: Queue
    faults: FaultPoints
    clock: Callable[[], datetime]
    ids: Pseudonyms
    # The WhatsApp channel: media downloads and the typing indicator (None: off).
    media: MediaSource | None = None
    typing: Typing | None = None
    # Business profiles by WhatsApp address; None: every business gets the settings' defaults.
    profiles: ProfileSource | None = None

    def profile(self, business: str) -> BusinessProfile:
        source = self.profiles or StaticProfiles(defaults_from_settings(self.settings))
        return source.get(business)


def _has_content(msg: InboundMessage) -> bool:
    """Something besides text arrived (media, a location, a button): never an empty message or a command."""
    return bool(msg.media or (msg.latitude and msg.longitude) or msg.button_payload)


def _answer_text(deps: ProcessorDeps, decision: Decision, profile: BusinessProfile,
                 history: list[dict[str, str]], user_text: str) -> str:
    """The reply: canned by the decision, or the model's with the business's prompt and model."""
    if decision.kind != MODEL:
        return decision.reply
    return deps.model.reply(history, user_text, system_prompt=profile.system_prompt, model=profile.model)


def _log(level: int, message: str, msg: InboundMessage, **fields: Any) -> None:
    log.log(level, message, extra={"sid": msg.sid, "sender": mask_address(msg.sender), **fields})


def process_message(msg: InboundMessage, deps: ProcessorDeps) -> str:
    """Answer ``msg`` unless that already happened; return what was done."""
    settings, store = deps.settings, deps.store
    # Cleaned once, before anything uses it (docs/decisions/0012-business-controls.md).
    msg = replace(msg, body=clean_text(msg.body, settings.max_inbound_chars))
    profile = deps.profile(msg.recipient)
    burst_window = profile_value(profile, "burst_window_seconds", settings.burst_window_seconds)
    cid = deps.ids.conversation_id(msg.sender, msg.recipient)
    marker_conflict = False
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = store.load(cid)
        conv = snap.conversation
        entry = conv.entry(msg.sid)
        status = entry.get("status")
        if not entry and marker_conflict and store.seen(msg.sid):
            # Taken on long ago; its entry was pruned or the conversation expired.
            _log(logging.INFO, "late duplicate of a message already taken on", msg, event="duplicate", status="seen")
            return "duplicate"
        if status in FINISHED:
            _log(logging.INFO, "duplicate of a finished message", msg, event="duplicate", status=status)
            return "duplicate"
        if status in (ANSWERED, SENDING):
            return _ensure_send_task(msg, deps, cid, conv, entry)
        if status in (WAITING_BURST, JOINED) or (status == PROCESSING and "burstMembers" in entry):
            return _ensure_burst_task(msg, deps, cid, conv, str(entry.get("burst", "")) if status == JOINED else msg.sid)
        now = deps.clock()
        if status == PROCESSING and entry.get("leaseUntil") and entry["leaseUntil"] > now:
            raise MessageBusy(f"message {msg.sid} is being processed by another delivery")
        if not entry and len(conv.open_entries()) >= settings.max_open_messages:
            raise MessageBusy(f"{settings.max_open_messages} earlier messages of this conversation are still unfinished")
        updates = claim_updates(
            conv, msg.sid, msg.sender, now, settings.conversation_ttl_seconds, settings.processing_lease_seconds,
            watch_after_seconds=settings.reconcile_after_seconds, business=msg.recipient,
            user_id=deps.ids.user_id(msg.sender),
        )
        updates.update(window_update(conv, msg, now))
        # A re-claim (the lease of an earlier delivery ran out) keeps the first claim's decision.
        first_claim = status != PROCESSING
        decision = (
            decide(msg.body, _has_content(msg), profile, conv, now, msg.sender, settings.conversation_ttl_seconds)
            if first_claim else Decision.recorded(entry)
        )
        updates = decided_claim(
            conv, msg.sid, updates, decision, now, cap_text(describe_for_model(msg), settings.max_inbound_chars),
            first_claim, settings.max_context_messages, settings.max_history_chars,
        )
        burst_head = _burst_claim(msg, deps, conv, updates, decision, first_claim, now, burst_window)
        marker = None if entry else DedupeMarker(msg.sid, cid, now + timedelta(seconds=settings.dedupe_horizon_seconds))
        try:
            version = store.apply(cid, updates, snap.version, marker)
        except Conflict:
            marker_conflict = marker is not None
            continue
        break
    else:
        raise Conflict(f"conversation kept changing while claiming {msg.sid}")
    if burst_head:
        return _after_burst_claim(msg, deps, cid, burst_head, updates)
    if decision.kind == IGNORE:
        _log(logging.INFO, "recorded, not answered", msg, event="ignored", status=IGNORED, reason=decision.reason)
        return "ignored"
    _log(logging.INFO, "processing", msg, event="processing", status=PROCESSING, attempt=updates[f"messages.{msg.sid}.attempts"])
    deps.faults.hit("after_claim")
    start_typing(msg, deps, profile)

    user_text = cap_text(describe_for_model(msg), settings.max_inbound_chars)
    failure = ""
    model_started = time.monotonic()
    try:
        if msg.media and decision.kind == MODEL:
            user_text, reply = answer_with_media(
                msg, deps, snap.conversation.history(now), profile.system_prompt or None,
                profile_value(profile, "vision_model", settings.openai_vision_model),
                model=profile.model or None, transcribe_model=profile.transcribe_model,
            )
        else:
            reply = _answer_text(deps, decision, profile, snap.conversation.history(now), user_text)
    except Exception as exc:
        failure = f"model unavailable: {exc}"[:300]
        reply = profile.fallback_reply
        _log(logging.ERROR, "model unavailable, sending the fallback reply", msg, event="ai_failed", reason=failure)
    # The model's own time, retries included, for the dashboard's model latency.
    model_ms = round((time.monotonic() - model_started) * 1000, 1)
    deps.faults.hit("after_ai")

    parts = split_reply(cap_text(reply, settings.max_reply_chars)) or [profile.fallback_reply]
    if decision.welcome:
        parts = [decision.welcome, *parts]
    conv = applied(snap.conversation, updates)
    for _ in range(MAX_CONFLICT_RETRIES):
        now = deps.clock()
        entry = conv.entry(msg.sid)
        status = entry.get("status")
        if status in (ANSWERED, SENDING):
            # Our own commit whose answer was lost (the retry met a changed
            # document), or a later delivery that took over the lease: the
            # answer stands, and its send task must exist.
            return _ensure_send_task(msg, deps, cid, conv, entry)
        if status != PROCESSING:
            _log(logging.INFO, "finished by another delivery", msg, event="duplicate", status=status)
            return "duplicate"
        updates = answer_updates(
            conv, msg.sid, user_text, parts, now,
            settings.conversation_ttl_seconds, settings.max_context_messages, failure, settings.max_history_chars,
            record_turn=decision.kind == MODEL or decision.in_history,
        )
        if decision.record() is not None:
            # The reply is in ``parts`` now: the entry keeps what decided it, not its text twice.
            updates[f"messages.{msg.sid}.decided"] = {"kind": decision.kind, "reason": decision.reason}
        try:
            store.apply(cid, updates, version)
            if deps.faults.fires("answer_commit_lost"):
                raise Conflict("the commit went through but its answer was lost (injected)")
        except Conflict:
            snap = store.load(cid)
            conv, version = snap.conversation, snap.version
            continue
        break
    else:
        raise Conflict(f"conversation kept changing while saving {msg.sid}")
    seq = updates["lastSeq"]
    conv = applied(conv, updates)
    _log(logging.INFO, "answered", msg, event="answered", status=ANSWERED, seq=seq, parts=len(parts), fallback=bool(failure),
         model_ms=model_ms, business=msg.recipient,
         control=decision.reason or decision.kind)
    if failure:
        store.record_failure(
            msg.sid,
            failure_record(
                conversation_id=cid, masked_sender=mask_address(msg.sender), status="fallback",
                stage="model", reason=failure, now=now, retention=now + FAILURE_RETENTION,
            ),
        )
    deps.faults.hit("after_save")

    send_when_its_turn(deps.queue, cid, conv, msg.sid, seq)
    deps.faults.hit("after_enqueue")
    return "answered"


def _burst_claim(
    msg: InboundMessage, deps: ProcessorDeps, conv: Conversation, updates: dict[str, Any], decision: Decision,
    first_claim: bool, now: datetime, window: float,
) -> str:
    """Turn the claim into a burst head or a join, in the same write; return the head's sid ("" for none).

    ``window`` is the business's burst window (its profile, else the setting).

    A message that cannot join (a command, media, a welcome, or the window has
    passed) while a burst is open waits in Pub/Sub: answering it now would give
    it a seq ahead of the burst's reply.
    """
    burst = conv.open_burst()
    joinable = window > 0 and first_claim and decision.kind == MODEL and not decision.welcome and not msg.media
    if burst is None and not joinable:
        return ""
    if burst is not None and (not joinable or burst[1].get("status") != WAITING_BURST or now >= burst[1]["burstDue"]):
        raise MessageBusy("an earlier burst of this conversation is not answered yet")
    sid = msg.sid
    due = now + timedelta(seconds=window)
    updates.pop(f"messages.{sid}.leaseUntil", None)
    updates[f"messages.{sid}.text"] = cap_text(describe_for_model(msg), deps.settings.max_inbound_chars)
    if burst is None:
        updates.update({
            f"messages.{sid}.status": WAITING_BURST, f"messages.{sid}.burstDue": due, f"messages.{sid}.burstVersion": 1,
            f"messages.{sid}.burstMembers": [sid], f"messages.{sid}.business": msg.recipient,
        })
        return sid
    head, entry = burst
    updates.update({
        f"messages.{sid}.status": JOINED, f"messages.{sid}.burst": head,
        f"messages.{head}.burstDue": due, f"messages.{head}.burstVersion": int(entry.get("burstVersion", 0)) + 1,
        f"messages.{head}.burstMembers": [*entry.get("burstMembers", []), sid], f"messages.{head}.updatedAt": now,
    })
    return head


def _after_burst_claim(msg: InboundMessage, deps: ProcessorDeps, cid: str, head: str, updates: Mapping[str, Any]) -> str:
    """Schedule the burst's answer at its new due time; the message itself is acknowledged."""
    deps.faults.hit("after_claim")
    version = int(updates[f"messages.{head}.burstVersion"])
    due = updates[f"messages.{head}.burstDue"]
    created = deps.queue.enqueue(BurstTask(cid, head, version, due))
    joined = head != msg.sid
    _log(logging.INFO, "joined a burst" if joined else "waiting for the burst window", msg,
         event="burst_joined" if joined else "burst_started", status=JOINED if joined else WAITING_BURST,
         burst=head, burst_version=version, task_created=created)
    return "joined" if joined else "waiting"


def _ensure_burst_task(msg: InboundMessage, deps: ProcessorDeps, cid: str, conv: Conversation, head: str) -> str:
    """A burst member seen again: make sure the task of the burst's current version exists (named, so never twice)."""
    entry = conv.entry(head)
    if entry.get("status") not in (WAITING_BURST, PROCESSING) or "burstMembers" not in entry:
        _log(logging.INFO, "duplicate of a message of a finished burst", msg, event="duplicate", status=entry.get("status"))
        return "duplicate"
    created = deps.queue.enqueue(BurstTask(cid, head, int(entry.get("burstVersion", 0)), entry["burstDue"]))
    _log(logging.INFO, "duplicate of a message in an open burst", msg, event="duplicate", status=entry.get("status"),
         burst=head, task_created=created)
    return "requeued"


def _burst_log(level: int, message: str, cid: str, head: str, **fields: Any) -> None:
    log.log(level, message, extra={"sid": head, "conversation": cid[:12], **fields})


def answer_burst(task: BurstTask, deps: ProcessorDeps) -> str:
    """The burst's window passed: one model call over every member in order, one reply with one seq.

    A task of an older version does nothing (a later join scheduled its own).
    The answer step claims the head with a lease like a message, so duplicate
    tasks do not call the model twice; a crash after the claim is retried by
    Cloud Tasks (or nudged by the reconciler) once the lease has run out.
    """
    settings, store, cid, head = deps.settings, deps.store, task.conversation_id, task.sid
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = store.load(cid)
        conv, now = snap.conversation, deps.clock()
        entry = conv.entry(head)
        status = entry.get("status")
        if status in (ANSWERED, SENDING):
            send_when_its_turn(deps.queue, cid, conv, head, int(entry["seq"]))
            return "requeued"
        if status not in (WAITING_BURST, PROCESSING) or "burstMembers" not in entry:
            return "finished"
        if status == WAITING_BURST and int(entry.get("burstVersion", 0)) != task.version:
            _burst_log(logging.INFO, "burst moved on; a later task answers it", cid, head, event="burst_moved",
                       burst_version=task.version)
            return "moved"
        if status == PROCESSING and entry.get("leaseUntil") and entry["leaseUntil"] > now:
            raise MessageBusy(f"burst {head} is being answered by another task")
        claim = {
            f"messages.{head}.status": PROCESSING,
            f"messages.{head}.leaseUntil": now + timedelta(seconds=settings.processing_lease_seconds),
            f"messages.{head}.attempts": int(entry.get("attempts", 0)) + 1,
            f"messages.{head}.updatedAt": now,
            "updatedAt": now,
        }
        try:
            version = store.apply(cid, claim, snap.version)
        except Conflict:
            continue
        break
    else:
        raise Conflict(f"conversation kept changing while claiming burst {head}")
    deps.faults.hit("after_claim")
    members = [str(m) for m in entry["burstMembers"]]
    profile = deps.profile(str(entry.get("business") or conv.data.get("business", "")))
    user_text = "\n".join(conv.entry(m).get("text", "") for m in members)
    failure = ""
    try:
        reply = deps.model.reply(conv.history(now), user_text, system_prompt=profile.system_prompt, model=profile.model)
    except Exception as exc:
        failure = f"model unavailable: {exc}"[:300]
        reply = profile.fallback_reply
        _burst_log(logging.ERROR, "model unavailable, sending the fallback reply", cid, head, event="ai_failed", reason=failure)
    deps.faults.hit("after_ai")
    parts = split_reply(cap_text(reply, settings.max_reply_chars)) or [profile.fallback_reply]
    conv = applied(conv, claim)
    for _ in range(MAX_CONFLICT_RETRIES):
        now = deps.clock()
        entry = conv.entry(head)
        if entry.get("status") in (ANSWERED, SENDING):
            send_when_its_turn(deps.queue, cid, conv, head, int(entry["seq"]))
            return "requeued"
        if entry.get("status") != PROCESSING:
            return "finished"
        updates = answer_updates(
            conv, head, user_text, parts, now, settings.conversation_ttl_seconds, settings.max_context_messages,
            failure, settings.max_history_chars,
        )
        updates[f"messages.{head}.text"] = REMOVE
        for member in members[1:]:
            if conv.entry(member).get("status") == JOINED:
                updates.update({
                    f"messages.{member}.status": MERGED, f"messages.{member}.answeredBy": head,
                    f"messages.{member}.reason": f"answered with {head}", f"messages.{member}.text": REMOVE,
                    f"messages.{member}.updatedAt": now,
                })
        try:
            store.apply(cid, updates, version)
        except Conflict:
            snap = store.load(cid)
            conv, version = snap.conversation, snap.version
            continue
        break
    else:
        raise Conflict(f"conversation kept changing while saving burst {head}")
    seq = updates["lastSeq"]
    conv = applied(conv, updates)
    _burst_log(logging.INFO, "burst answered", cid, head, event="answered", status=ANSWERED, seq=seq,
               members=len(members), fallback=bool(failure))
    if failure:
        store.record_failure(head, failure_record(
            conversation_id=cid, masked_sender=mask_address(str(conv.data.get("address", ""))), status="fallback",
            stage="model", reason=failure, now=now, retention=now + FAILURE_RETENTION,
        ))
    deps.faults.hit("after_save")
    send_when_its_turn(deps.queue, cid, conv, head, seq)
    return "answered"


def _ensure_send_task(
    msg: InboundMessage, deps: ProcessorDeps, cid: str, conv: Conversation, entry: Mapping[str, Any]
) -> str:
    """An answered message seen again: make sure its send task exists (named, so never twice)."""
    created = send_when_its_turn(deps.queue, cid, conv, msg.sid, int(entry["seq"]))
    _log(logging.INFO, "duplicate of an answered message", msg, event="duplicate", status=entry.get("status"), task_created=created)
    return "requeued"


def record_dead_letter(msg: InboundMessage, deps: ProcessorDeps, delivery_attempts: str) -> str:
    """Close a message Pub/Sub gave up on, with the last reason we knew, and let later replies go.

    An answered message is the sender's to finish: closing it here could cut a
    reply in the middle of its parts, so only its send task is made sure of
    (the reconciler closes it if that does not help). A conversation that is
    gone is not re-created: the failure record is enough, and a new document
    would carry the address without the data that makes it expire.
    """
    cid = deps.ids.conversation_id(msg.sender, msg.recipient)
    store = deps.store
    reason = f"dead-lettered after {delivery_attempts or 'max'} delivery attempts"
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = store.load(cid)
        conv, entry, now = snap.conversation, snap.conversation.entry(msg.sid), deps.clock()
        status = entry.get("status")
        if status in FINISHED:
            return "already finished"
        if status in (ANSWERED, SENDING):
            try:
                _ensure_send_task(msg, deps, cid, conv, entry)
            except Exception as exc:
                _log(logging.WARNING, "dead letter of an answered message; the reconciler will finish it", msg,
                     event="dead_letter_answered", reason=repr(exc)[:300])
            return "left to the sender"
        if not entry and store.seen(msg.sid):
            # Taken on before, and its entry is gone since (pruned, the conversation expired or was
            # erased): whatever became of it, it is no unanswered dead letter that replay may answer.
            _log(logging.INFO, "dead letter of a message taken on long ago", msg, event="duplicate", status="seen")
            return "already taken on"
        if not conv.exists:
            break
        if entry.get("lastError"):
            reason += f"; last error: {entry['lastError']}"
        updates = finish_updates(conv, msg.sid, DEAD_LETTERED, now, reason)
        if not entry:
            updates[f"messages.{msg.sid}.receivedAt"] = now
        try:
            store.apply(cid, updates, snap.version)
        except Conflict:
            continue
        break
    else:
        raise Conflict(f"conversation kept changing while dead-lettering {msg.sid}")
    store.record_failure(
        msg.sid,
        failure_record(
            conversation_id=cid, masked_sender=mask_address(msg.sender), status=DEAD_LETTERED,
            stage="processor", reason=reason, now=now, retention=now + FAILURE_RETENTION,
        ),
    )
    _log(logging.ERROR, "message dead-lettered", msg, event="dead_lettered", status=DEAD_LETTERED, reason=reason)
    return "dead-lettered"


def note_error(msg: InboundMessage, deps: ProcessorDeps, error: str) -> None:
    """Best effort: keep the last error for the dead-letter record, and free the claim.

    Freeing the lease lets the redelivery start at once instead of waiting it out.
    """
    cid = deps.ids.conversation_id(msg.sender, msg.recipient)
    try:
        snap = deps.store.load(cid)
        status = snap.conversation.entry(msg.sid).get("status")
        if status and status not in FINISHED:
            updates: dict[str, Any] = {f"messages.{msg.sid}.lastError": error[:300]}
            if status == PROCESSING:
                updates[f"messages.{msg.sid}.leaseUntil"] = deps.clock()
            deps.store.apply(cid, updates, snap.version)
    except Exception:
        log.warning("could not record the error on the message", extra={"sid": msg.sid}, exc_info=True)


def handle_push(pubsub_message: Mapping[str, Any], subscription: str, deps: ProcessorDeps) -> str:
    """One Pub/Sub push delivery. Returning acknowledges; raising makes Pub/Sub deliver again.

    ``subscription`` tells a dead-letter delivery from a first-hand one.
    """
    attributes = pubsub_message.get("attributes") or {}
    if attributes.get("kind") == STATUS_KIND:
        return handle_status_push(pubsub_message, subscription, deps)
    if attributes.get("kind") == BURST_KIND:
        return answer_burst(BurstTask.from_data(base64.b64decode(pubsub_message.get("data", ""))), deps)
    try:
        msg = InboundMessage.from_json(base64.b64decode(pubsub_message.get("data", "")))
    except (InvalidWebhook, ValueError) as exc:
        # Redelivering cannot repair a malformed payload: acknowledge and record it.
        message_id = str(pubsub_message.get("messageId") or pubsub_message.get("message_id") or "unknown")
        now = deps.clock()
        log.error("malformed message acknowledged", extra={"event": "failed", "status": "failed", "pubsub_message_id": message_id, "reason": str(exc)})
        deps.store.record_failure(
            f"pubsub-{message_id}",
            failure_record(
                conversation_id="", masked_sender="", status="failed", stage="processor",
                reason=f"malformed payload: {exc}", now=now, retention=now + FAILURE_RETENTION,
            ),
        )
        return "malformed"
    if subscription.rsplit("/", 1)[-1] == deps.settings.dead_letter_subscription:
        return record_dead_letter(msg, deps, str(attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "")))
    try:
        return process_message(msg, deps)
    except (InjectedFault, MessageBusy):
        raise
    except Exception as exc:
        _log(logging.ERROR, "processing failed, Pub/Sub will deliver again", msg, event="process_failed", reason=repr(exc)[:300])
        note_error(msg, deps, repr(exc))
        raise

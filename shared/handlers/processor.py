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

from shared.config import Settings
from shared.domain.conversation import (
    ANSWERED,
    DEAD_LETTERED,
    FINISHED,
    PROCESSING,
    SENDING,
    Conversation,
    answer_updates,
    applied,
    cap_text,
    claim_updates,
    finish_updates,
)
from shared.faults import FaultPoints, InjectedFault
from shared.domain.controls import IGNORE, MODEL, Decision, clean_text, decide, decided_claim
from shared.domain.conversation import IGNORED
from shared.domain.profiles import BusinessProfile
from shared.adapters.profile_store import ProfileSource, StaticProfiles, defaults_from_settings
from shared.domain.pseudonyms import Pseudonyms
from shared.domain.inbound import STATUS_KIND, InboundMessage, InvalidWebhook, describe_for_model
from shared.handlers.channel import Typing, profile_value, start_typing, window_update
from shared.handlers.delivery_status import handle_status_push
from shared.handlers.media_turn import MediaSource, answer_with_media
from shared.log import mask_address
from shared.domain.splitting import split_reply
from shared.handlers.handoff import Queue, send_when_its_turn
from shared.adapters.firestore_store import Conflict, ConversationStore, DedupeMarker, failure_record

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
        now = deps.clock()
        if status == PROCESSING and entry.get("leaseUntil") and entry["leaseUntil"] > now:
            raise MessageBusy(f"message {msg.sid} is being processed by another delivery")
        if not entry and len(conv.open_entries()) >= settings.max_open_messages:
            raise MessageBusy(f"{settings.max_open_messages} earlier messages of this conversation are still unfinished")
        updates = claim_updates(
            conv, msg.sid, msg.sender, now, settings.conversation_ttl_seconds, settings.processing_lease_seconds,
            watch_after_seconds=settings.reconcile_after_seconds, business=msg.recipient,
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
        marker = None if entry else DedupeMarker(msg.sid, cid, now + timedelta(seconds=settings.dedupe_horizon_seconds))
        try:
            version = store.apply(cid, updates, snap.version, marker)
        except Conflict:
            marker_conflict = marker is not None
            continue
        break
    else:
        raise Conflict(f"conversation kept changing while claiming {msg.sid}")
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

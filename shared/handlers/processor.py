"""processor_fn's work: answer one inbound message, exactly once, as a short sequence of named steps.

    claim_message    decide (the business controls) and claim, in one write
                     (shared/handlers/claim.py); a duplicate, an ignored message
                     or a burst member stops here
    compose_message  gather the context, call the model (media read, typing
                     shown) or take the canned reply, split into parts
                     (shared/handlers/compose.py)
    record_answer    "answered with these parts, with this seq", in one write
                     (shared/handlers/answer.py): the same step every answer takes,
                     with the usage its model calls reported (and, for a budgeted
                     business, its counter's increment: shared/handlers/usage_turn.py)
    notify_on_handoff  after a handoff, one notice task for the business's staff
                     (shared/handlers/notify_staff.py)
    hand_off         the send task for sender_fn when it is the reply's turn

Each write is a compare-and-set through the store's one helper, and each
step is safe to repeat after a crash at any point: Pub/Sub delivers again,
and the claim tells what was done. The message's statuses and the moves
between them are shared/domain/lifecycle.py; the whole path is
docs/architecture.md. :func:`handle_push` also routes the other pushes the
processor gets: delivery ticks, burst tasks, dead letters.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import replace
from typing import Any, Mapping

from shared.adapters.cloud_tasks import BURST_KIND, BurstTask
from shared.adapters.firestore_store import failure_record
from shared.adapters.usage_meter import metering
from shared.domain.controls import BUDGET, clean_text
from shared.domain.conversation import Conversation
from shared.domain.inbound import STATUS_KIND, InboundMessage, InvalidWebhook
from shared.faults import InjectedFault
from shared.handlers.answer import ALREADY, ANSWERED, hand_off, record_answer, record_fallback
from shared.handlers.burst_turn import answer_burst, ensure_task, schedule
from shared.handlers.claim import (
    BURST,
    CLAIMED,
    DUPLICATE,
    IGNORED,
    IN_BURST,
    LATE_DUPLICATE,
    Claim,
    MessageBusy,
    claim_message,
)
from shared.handlers.compose import compose_message
from shared.handlers.tool_turn import tool_turn
from shared.handlers.dead_letter import note_error, record_dead_letter
from shared.handlers.delivery_status import handle_status_push
from shared.handlers.deps import ProcessorDeps
from shared.handlers.handoff import send_when_its_turn
from shared.handlers.knowledge_turn import noting
from shared.handlers.notify_staff import notify_on_handoff
from shared.handlers.usage_turn import alert_spent, budget_spent, counting, usage_of
from shared.log import mask_address

__all__ = ["MessageBusy", "ProcessorDeps", "answer_burst", "handle_push", "process_message", "record_dead_letter"]

log = logging.getLogger(__name__)


def _log(level: int, message: str, msg: InboundMessage, **fields: Any) -> None:
    log.log(level, message, extra={"sid": msg.sid, "sender": mask_address(msg.sender), **fields})


def process_message(msg: InboundMessage, deps: ProcessorDeps) -> str:
    """Answer ``msg`` unless that already happened; return what was done."""
    # Cleaned once, before anything uses it (docs/decisions/0012-business-controls.md).
    msg = replace(msg, body=clean_text(msg.body, deps.settings.max_inbound_chars))
    profile = deps.profile(msg.recipient)
    cid = deps.ids.conversation_id(msg.sender, msg.recipient)

    # A business with a budget reads its spend (cached); one without reads nothing.
    claim = claim_message(msg, deps, profile, cid, spent=budget_spent(deps, profile, deps.clock()))
    if claim.outcome != CLAIMED:
        return _not_answered(msg, deps, cid, claim)
    entry = claim.conversation.messages[msg.sid]
    _log(logging.INFO, "processing", msg, event="processing", status=entry.status, attempt=entry.attempts)
    deps.faults.hit("after_claim")

    assert claim.decision is not None and claim.now is not None
    tools = tool_turn(profile, cid, msg.sid, entry, claim.snapshot, msg.recipient, msg.sender)
    with metering() as calls:  # what the model calls of this answer report (shared/adapters/usage_meter.py)
        answer, reply = compose_message(msg, deps, profile, claim.decision, claim.conversation.turns(claim.now),
                                        claim.conversation, tools)
    usage = usage_of(deps, calls)

    recorded = record_answer(deps.store, cid, msg.sid, answer, deps.limits, deps.clock,
                             start=reply.snapshot or claim.snapshot,
                             after=noting(reply.grounding, msg.sid, counting(deps, profile, msg.sid, usage)),
                             faults=deps.faults)
    if recorded.outcome == ALREADY:
        # Our own commit whose answer was lost (the retry met a changed document), or a later
        # delivery that took over the lease: the answer stands, and its send task must exist.
        return _requeue(msg, deps, cid, recorded.conversation)
    if recorded.outcome != ANSWERED:
        _log(logging.INFO, "finished by another delivery", msg, event="duplicate", status=recorded.status or None)
        return "duplicate"
    _log(logging.INFO, "answered", msg, event="answered", status=recorded.status, seq=recorded.seq,
         parts=len(answer.parts), fallback=bool(reply.failure), model_ms=reply.model_ms, business=msg.recipient,
         control=claim.decision.reason or claim.decision.kind,
         knowledge_chunks=list(reply.grounding.chunks) if reply.grounding else None,
         **usage.log_fields(),
         budget=claim.decision.reason == BUDGET,
         conversation=cid[:12],
         unknown=bool(reply.grounding and reply.grounding.unknown),
         **({"tools": tools.ledger.counts(), "proposed": bool(tools.proposal)} if tools else {}))
    if reply.failure:
        record_fallback(deps.store, msg.sid, cid, mask_address(msg.sender), reply.failure, deps.clock())
    if claim.decision.reason == BUDGET:
        alert_spent(deps, profile, claim.now)
    deps.faults.hit("after_save")

    # Before the send task: while the reply is unsent a redelivery finds it answered and makes sure of both.
    notify_on_handoff(deps, profile, cid, msg.sid, recorded.entry)
    hand_off(deps.queue, cid, recorded, msg.sid)
    deps.faults.hit("after_enqueue")
    return "answered"


def _not_answered(msg: InboundMessage, deps: ProcessorDeps, cid: str, claim: Claim) -> str:
    """What a delivery that is not answered now leaves behind: a log line, and the task it may need."""
    if claim.outcome == BURST:
        return schedule(msg, deps, cid, claim.conversation, claim.head)
    if claim.outcome == IN_BURST:
        return ensure_task(msg, deps, cid, claim.conversation, claim.head)
    if claim.outcome == IGNORED:
        assert claim.decision is not None
        _log(logging.INFO, "recorded, not answered", msg, event="ignored", status="ignored", reason=claim.decision.reason,
             business=msg.recipient)
        return "ignored"
    if claim.outcome == LATE_DUPLICATE:
        _log(logging.INFO, "late duplicate of a message already taken on", msg, event="duplicate", status="seen")
        return "duplicate"
    if claim.outcome == DUPLICATE:
        _log(logging.INFO, "duplicate of a finished message", msg, event="duplicate", status=claim.status)
        return "duplicate"
    return _requeue(msg, deps, cid, claim.conversation)


def _requeue(msg: InboundMessage, deps: ProcessorDeps, cid: str, conversation: Conversation) -> str:
    """An answered message seen again: make sure its send task exists (named, so never twice), and a handoff's notice."""
    created = send_when_its_turn(deps.queue, cid, conversation, msg.sid)
    notify_on_handoff(deps, deps.profile(msg.recipient), cid, msg.sid, conversation.entry(msg.sid))
    _log(logging.INFO, "duplicate of an answered message", msg, event="duplicate",
         status=conversation.messages[msg.sid].status, task_created=created)
    return "requeued"


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
        log.error("malformed message acknowledged", extra={"event": "failed", "status": "failed",
                                                           "pubsub_message_id": message_id, "reason": str(exc)})
        deps.store.record_failure(f"pubsub-{message_id}", failure_record(
            conversation_id="", masked_sender="", status="failed", stage="processor",
            reason=f"malformed payload: {exc}", now=deps.clock(),
        ))
        return "malformed"
    if subscription.rsplit("/", 1)[-1] == deps.settings.dead_letter_subscription:
        return record_dead_letter(msg, deps, str(attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "")))
    try:
        return process_message(msg, deps)
    except (InjectedFault, MessageBusy):
        raise
    except Exception as exc:
        _log(logging.ERROR, "processing failed, Pub/Sub will deliver again", msg, event="process_failed",
             reason=repr(exc)[:300])
        note_error(msg, deps, repr(exc))
        raise

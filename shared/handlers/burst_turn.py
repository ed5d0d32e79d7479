"""Bursts on the answer path: the burst's task, and its one answer (docs/decisions/0014-bursts.md).

A claimed message that started or joined a burst is acknowledged once the
burst's answer task for its current version exists; when the window has
passed, :func:`answer_burst` claims the head, then goes the same way as any
message: gather the context (every member's text, in order), ask the model,
split, record the answer (with every member merged into it, in the same
write) and hand off.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.adapters.cloud_tasks import BurstTask
from shared.domain import bursts
from shared.domain.conversation import Answer, Conversation
from shared.domain.lifecycle import PROCESSING, WAITING_BURST
from shared.domain.inbound import InboundMessage
from shared.adapters.usage_meter import metering
from shared.handlers.usage_turn import counting, usage_of
from shared.handlers.answer import ALREADY, ANSWERED, hand_off, record_answer, record_fallback
from shared.handlers.claim import MessageBusy
from shared.handlers.compose import ask_model, gather_context, to_parts, tool_rounds, with_tools
from shared.handlers.deps import ProcessorDeps
from shared.handlers.handoff import send_when_its_turn
from shared.handlers.knowledge_turn import GroundedModel, noting
from shared.handlers.tool_turn import tool_turn
from shared.log import mask_address

log = logging.getLogger(__name__)


def _log(level: int, message: str, cid: str, head: str, **fields: Any) -> None:
    log.log(level, message, extra={"sid": head, "conversation": cid[:12], **fields})


def schedule(msg: InboundMessage, deps: ProcessorDeps, cid: str, conv: Conversation, head: str) -> str:
    """After the claim started or joined a burst: its answer task at the new due time; the message is acknowledged."""
    deps.faults.hit("after_claim")
    entry = conv.messages[head]
    created = deps.queue.enqueue(BurstTask(cid, head, entry.burst_version, entry.burst_due))  # type: ignore[arg-type]
    joined = head != msg.sid
    log.info("joined a burst" if joined else "waiting for the burst window",
             extra={"sid": msg.sid, "sender": mask_address(msg.sender), "event": "burst_joined" if joined else "burst_started",
                    "status": "joined" if joined else WAITING_BURST, "burst": head,
                    "burst_version": entry.burst_version, "task_created": created})
    return "joined" if joined else "waiting"


def ensure_task(msg: InboundMessage, deps: ProcessorDeps, cid: str, conv: Conversation, head: str) -> str:
    """A burst member seen again: make sure the task of the burst's current version exists (named, so never twice)."""
    entry = conv.entry(head)
    fields = {"sid": msg.sid, "sender": mask_address(msg.sender), "event": "duplicate"}
    if entry is None or entry.status not in (WAITING_BURST, PROCESSING) or not entry.is_burst_head:
        log.info("duplicate of a message of a finished burst", extra={**fields, "status": entry.status if entry else None})
        return "duplicate"
    created = deps.queue.enqueue(BurstTask(cid, head, entry.burst_version, entry.burst_due))  # type: ignore[arg-type]
    log.info("duplicate of a message in an open burst",
             extra={**fields, "status": entry.status, "burst": head, "task_created": created})
    return "requeued"


def answer_burst(task: BurstTask, deps: ProcessorDeps) -> str:
    """The burst's window passed: one model call over every member in order, one reply with one seq.

    A task of an older version does nothing (a later join scheduled its own).
    The head is claimed with a lease like a message, so duplicate tasks do not
    call the model twice; a crash after the claim is retried by Cloud Tasks
    (or nudged by the reconciler) once the lease has run out.
    """
    cid, head = task.conversation_id, task.sid

    def claim(conv: Conversation) -> tuple[str, Any]:
        entry = conv.entry(head)
        if entry is not None and entry.to_send:
            return "requeued", None
        if entry is None or entry.status not in (WAITING_BURST, PROCESSING) or not entry.is_burst_head:
            return "finished", None
        if entry.status == WAITING_BURST and entry.burst_version != task.version:
            return "moved", None
        now = deps.clock()
        if entry.status == PROCESSING and entry.lease_live(now):
            raise MessageBusy(f"burst {head} is being answered by another task")
        bursts.claim(conv, head, now, deps.settings.processing_lease_seconds)
        return "claimed", now

    saved = deps.store.update(cid, claim, what=f"claiming burst {head}")
    outcome, now = saved.result
    conv = saved.conversation
    if outcome == "requeued":
        send_when_its_turn(deps.queue, cid, conv, head)
        return "requeued"
    if outcome == "moved":
        _log(logging.INFO, "burst moved on; a later task answers it", cid, head, event="burst_moved",
             burst_version=task.version)
    if outcome != "claimed":
        return outcome
    deps.faults.hit("after_claim")
    entry = conv.messages[head]
    profile = deps.profile(entry.business or conv.business)
    context = gather_context(profile, conv.turns(now), bursts.user_text(conv, entry))
    tools = tool_turn(profile, cid, head, entry, saved.snapshot, entry.business or conv.business, conv.address)
    fields = {"sid": head, "conversation": cid[:12]}
    grounded = GroundedModel(deps, profile, fields, rounds=tool_rounds(deps, tools, profile))
    with metering() as calls:
        reply = ask_model(deps, context, fields,
                          lambda: (context.user_text, grounded.reply(context.history, context.user_text)), tools)
    usage = usage_of(deps, calls)
    deps.faults.hit("after_ai")
    reply = with_tools(reply, tools)
    answer = Answer(parts=to_parts(deps, profile, reply.text), asked=context.user_text, failure=reply.failure,
                    tool_ledger=tools.ledger if tools else None, proposal=tools.proposal if tools else None)
    recorded = record_answer(deps.store, cid, head, answer, deps.limits, deps.clock, start=reply.snapshot or saved.snapshot,
                             after=noting(grounded.grounding, head, counting(deps, profile, head, usage,
                                                                       lambda c, at: bursts.merge(c, head, at))))
    if recorded.outcome == ALREADY:
        hand_off(deps.queue, cid, recorded, head)
        return "requeued"
    if recorded.outcome != ANSWERED:
        return "finished"
    _log(logging.INFO, "burst answered", cid, head, event="answered", status="answered", seq=recorded.seq,
         members=len(entry.burst_members), fallback=bool(reply.failure),
         business=entry.business or conv.business or deps.settings.twilio_whatsapp_from,
         **usage.log_fields(), budget=False,
         unknown=bool(grounded.grounding and grounded.grounding.unknown))
    if reply.failure:
        record_fallback(deps.store, head, cid, mask_address(recorded.conversation.address), reply.failure, deps.clock())
    deps.faults.hit("after_save")
    hand_off(deps.queue, cid, recorded, head)
    return "answered"

"""What a failed delivery leaves on the message: the error noted, and Pub/Sub's giving up recorded.

Both are events of the message's life like any other (``error_noted``,
``dead_lettered``, shared/domain/lifecycle.py), written compare-and-set.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.adapters.firestore_store import failure_record
from shared.domain import claims
from shared.domain.conversation import Conversation
from shared.domain.inbound import InboundMessage
from shared.domain.lifecycle import DEAD_LETTERED
from shared.handlers.deps import ProcessorDeps
from shared.handlers.handoff import send_when_its_turn
from shared.log import mask_address

log = logging.getLogger(__name__)


def _log(level: int, message: str, msg: InboundMessage, **fields: Any) -> None:
    log.log(level, message, extra={"sid": msg.sid, "sender": mask_address(msg.sender), **fields})


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
    base = f"dead-lettered after {delivery_attempts or 'max'} delivery attempts"

    def change(conv: Conversation) -> tuple[str, str]:
        entry = conv.entry(msg.sid)
        if entry is not None and entry.finished:
            return "already finished", ""
        if entry is not None and entry.to_send:
            return "left to the sender", ""
        if entry is None and store.seen(msg.sid):
            # Taken on before, and its entry is gone since (pruned, the conversation expired or was
            # erased): whatever became of it, it is no unanswered dead letter that replay may answer.
            return "already taken on", ""
        if not conv.exists:
            return "dead-lettered", base
        return "dead-lettered", claims.dead_letter(conv, msg.sid, deps.clock(), base)

    saved = store.update(cid, change, what=f"dead-lettering {msg.sid}")
    outcome, reason = saved.result
    if outcome == "left to the sender":
        try:
            created = send_when_its_turn(deps.queue, cid, saved.conversation, msg.sid)
            _log(logging.INFO, "duplicate of an answered message", msg, event="duplicate",
                 status=saved.conversation.messages[msg.sid].status, task_created=created)
        except Exception as exc:
            _log(logging.WARNING, "dead letter of an answered message; the reconciler will finish it", msg,
                 event="dead_letter_answered", reason=repr(exc)[:300])
        return outcome
    if outcome == "already taken on":
        _log(logging.INFO, "dead letter of a message taken on long ago", msg, event="duplicate", status="seen")
    if outcome != "dead-lettered":
        return outcome
    now = deps.clock()
    store.record_failure(msg.sid, failure_record(
        conversation_id=cid, masked_sender=mask_address(msg.sender), status=DEAD_LETTERED, stage="processor",
        reason=reason, now=now,
    ))
    _log(logging.ERROR, "message dead-lettered", msg, event="dead_lettered", status=DEAD_LETTERED, reason=reason)
    return "dead-lettered"


def note_error(msg: InboundMessage, deps: ProcessorDeps, error: str) -> None:
    """Best effort, one try: keep the last error for the dead-letter record, and free the claim.

    Freeing the lease lets the redelivery start at once instead of waiting it out.
    """
    cid = deps.ids.conversation_id(msg.sender, msg.recipient)
    try:
        deps.store.update(cid, lambda conv: claims.note_error(conv, msg.sid, error, deps.clock()), tries=1)
    except Exception:
        log.warning("could not record the error on the message", extra={"sid": msg.sid}, exc_info=True)

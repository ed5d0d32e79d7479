"""The outbound API: the business's own systems send a WhatsApp message to a user.

One request, each step safe to repeat:

1. validate the JSON (400 with the reason); refuse (403, before anything is
   read) a ``from`` that is not a number of this deployment (the default
   number or one with a profile) or not one of the caller's businesses
   (OUTBOUND_CALLERS), so nobody learns the state of another business's users;
2. derive the message id from (business, idempotency_key); if the
   conversation already has that entry, answer 202 with the same id and
   write nothing (its send task is made sure of: named, so never twice);
3. refuse an opted-out user (403), free text outside the 24-hour window
   (409; a template may go at any time) and a user with MAX_OPEN_MESSAGES
   unfinished messages (429, so the conversation document stays bounded);
4. record the answer (the one answer path, shared/handlers/answer.py): the
   entry answered with ``seq = lastSeq + 1`` and the assistant turn in one
   compare-and-set, together with the ``seen_messages`` marker of the id,
   which outlives the entry and the conversation: a repeat that meets the
   marker's conflict also gets the same id;
5. hand off: the send task when it is the message's turn.

The sender delivers it like any reply: in order after the user's earlier
replies, through the same rate-limited queue, exactly once
(docs/decisions/0013-outbound-api.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from shared.adapters.compare_and_set import ConversationStore
from shared.adapters.profile_store import ProfileSource
from shared.config import Settings
from shared.domain.conversation import Conversation
from shared.domain.outbound import (
    OPTED_OUT_REASON,
    OUTSIDE_WINDOW_REASON,
    InvalidRequest,
    OutboundRequest,
    outbound_answer,
    parse_request,
)
from shared.domain.pseudonyms import Pseudonyms
from shared.domain.splitting import split_reply
from shared.domain.turns import cap_text
from shared.domain.window import window_open
from shared.handlers.answer import ALREADY, ANSWERED, REFUSED, hand_off, record_answer
from shared.handlers.deps import Queue, limits
from shared.log import mask_address

log = logging.getLogger(__name__)

ACCEPTED = 202
BAD_REQUEST = 400
REFUSED_OPTED_OUT = 403
REFUSED_NOT_YOURS = 403
REFUSED_OUTSIDE_WINDOW = 409
# The conversation document stays bounded: unfinished entries are never pruned.
TOO_MANY_OPEN = 429


@dataclass(frozen=True)
class OutboundDeps:
    settings: Settings
    store: ConversationStore
    queue: Queue
    clock: Callable[[], datetime]
    ids: Pseudonyms
    # Which numbers have a profile (None: only the default number is this deployment's).
    profiles: ProfileSource | None = None

    def may_send(self, caller: str | None, business: str) -> bool:
        """``business`` is this deployment's, and ``caller`` may speak for it.

        ``caller`` is a verified e-mail; None where callers are not verified.
        """
        if caller is not None:
            scope = self.settings.outbound_callers.get(caller.lower(), ())
            if "*" not in scope and business not in scope:
                return False
        if business == self.settings.twilio_whatsapp_from:
            return True
        return self.profiles is not None and self.profiles.known(business)


@dataclass(frozen=True)
class Outcome:
    """The HTTP answer: status and JSON body."""

    status: int
    body: dict[str, Any]


def _log(level: int, message: str, request: OutboundRequest, oid: str, **fields: Any) -> None:
    log.log(level, message, extra={"sid": oid, "recipient": mask_address(request.to), **fields})


def handle_outbound(raw: bytes, deps: OutboundDeps, caller: str | None = None) -> Outcome:
    """One API request: 202 with the message id, or the reason it is refused.

    ``caller`` is the verified e-mail of the caller's token, None where callers are not verified (locally).
    """
    settings = deps.settings
    try:
        request = parse_request(raw, settings.max_reply_chars)
    except InvalidRequest as exc:
        log.info("outbound request refused", extra={"event": "outbound_invalid", "reason": str(exc)})
        return Outcome(BAD_REQUEST, {"error": str(exc)})
    business = request.from_ or settings.twilio_whatsapp_from
    if not deps.may_send(caller, business):
        # One answer for a number that is not ours and one that is not the caller's: no state is read.
        log.warning("outbound request refused", extra={
            "event": "outbound_refused", "reason": "not the caller's business", "business": mask_address(business),
        })
        return Outcome(REFUSED_NOT_YOURS, {"error": f"this caller may not send from {business}"})
    oid = deps.ids.outbound_id(business, request.idempotency_key)
    cid = deps.ids.conversation_id(request.to, business)
    parts = [f"[template {request.content_sid}]"] if request.is_template else split_reply(
        cap_text(request.body, settings.max_reply_chars)
    )
    store = deps.store
    tries = 0

    def refuse(conv: Conversation, now: datetime) -> Outcome | None:
        nonlocal tries
        tries += 1
        if tries > 1 and store.seen(oid):
            # Taken on by an earlier or concurrent request with this key (our write lost to it);
            # its entry may be gone already (pruned, or the conversation expired).
            _log(logging.INFO, "repeated outbound request", request, oid, event="outbound_duplicate", status="seen")
            return Outcome(ACCEPTED, {"id": oid})
        if conv.opted_out:
            _log(logging.INFO, "outbound message refused", request, oid, event="outbound_refused", reason="opted out")
            return Outcome(REFUSED_OPTED_OUT, {"id": oid, "error": OPTED_OUT_REASON})
        if len(conv.open_entries()) >= settings.max_open_messages:
            _log(logging.WARNING, "outbound message refused", request, oid, event="outbound_refused", reason="too many open")
            return Outcome(TOO_MANY_OPEN, {"id": oid, "error": f"{settings.max_open_messages} earlier messages to this user "
                                                              "are still unfinished; retry later"})
        if not request.is_template and not window_open(conv, now):
            _log(logging.INFO, "outbound message refused", request, oid, event="outbound_refused", reason="outside window")
            return Outcome(REFUSED_OUTSIDE_WINDOW, {"id": oid, "error": OUTSIDE_WINDOW_REASON})
        return None

    def own(conv: Conversation, now: datetime) -> None:
        conv.belongs_to(business, deps.ids.user_id(request.to))
        conv.new_markers[oid] = now + timedelta(seconds=settings.dedupe_horizon_seconds)

    recorded = record_answer(store, cid, oid, outbound_answer(request, parts), limits(settings), deps.clock,
                             refuse=refuse, after=own)
    if recorded.outcome == REFUSED:
        return recorded.refusal
    if recorded.outcome != ANSWERED:
        created = hand_off(deps.queue, cid, recorded, oid) if recorded.outcome == ALREADY else False
        _log(logging.INFO, "repeated outbound request", request, oid, event="outbound_duplicate",
             status=recorded.status or None, task_created=created)
        return Outcome(ACCEPTED, {"id": oid})
    _log(logging.INFO, "outbound message accepted", request, oid, event="outbound_accepted", status=recorded.status,
         seq=recorded.seq, template=request.content_sid or None, parts=len(parts))
    hand_off(deps.queue, cid, recorded, oid)
    return Outcome(ACCEPTED, {"id": oid})

"""Delivery ticks: apply one Twilio status callback to the reply part it names.

webhook_fn publishes each callback on the inbound topic with ordering key =
the user, and processor_fn (which has Firestore) lands here. The write is a
compare-and-set on the conversation like every other; a callback that would
move a part backwards writes nothing. ``failed``/``undelivered`` keep Twilio's
ErrorCode and leave a failure record that ``make failures`` lists.
"""

from __future__ import annotations

import base64
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Mapping

from shared.adapters.firestore_store import Conflict, failure_record
from shared.domain.delivery import (
    TERMINAL_FAILURES,
    entry_of_part,
    failure_reason,
    known_status,
    part_in_flight,
    status_updates,
)
from shared.domain.inbound import InvalidWebhook, StatusCallback
from shared.log import mask_address, redact_credentials, scrub

if TYPE_CHECKING:
    from shared.handlers.processor import ProcessorDeps

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 20


class PartNotRecordedYet(Exception):
    """The callback overtook the sender's record of the part's SID; Pub/Sub delivers it again shortly."""


def _log(level: int, message: str, callback: StatusCallback, **fields: Any) -> None:
    log.log(level, message, extra={"event": "delivery_status", "twilio_sid": callback.sid, "status": callback.status,
                                   "recipient": mask_address(callback.recipient), **fields})


def apply_status(callback: StatusCallback, deps: "ProcessorDeps") -> str:
    """Move the part's state forward; return what was done ("updated", "stale", "unknown")."""
    from shared.handlers.processor import FAILURE_RETENTION

    if not known_status(callback.status):
        _log(logging.INFO, "status we do not track", callback, outcome="ignored")
        return "ignored"
    business = callback.sender or deps.settings.twilio_whatsapp_from
    cid = deps.ids.conversation_id(callback.recipient, business)
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = deps.store.load(cid)
        conv, now = snap.conversation, deps.clock()
        sid = entry_of_part(conv, callback.sid)
        if sid is None:
            if part_in_flight(conv, now, timedelta(seconds=deps.settings.in_flight_grace_seconds)):
                raise PartNotRecordedYet(f"part {callback.sid} not recorded yet")
            _log(logging.WARNING, "status callback for a message we do not know", callback, outcome="unknown")
            return "unknown"
        updates = status_updates(sid, conv.entry(sid), callback.sid, callback.status, callback.error_code, now)
        if not updates:
            _log(logging.INFO, "older or repeated status", callback, sid=sid, outcome="stale")
            return "stale"
        try:
            deps.store.apply(cid, updates, snap.version)
        except Conflict:
            continue
        break
    else:
        raise Conflict(f"conversation kept changing while recording the status of {callback.sid}")
    if callback.status in TERMINAL_FAILURES:
        # Twilio's ErrorMessage is text we do not control: it may quote the number, like any of its errors.
        message = redact_credentials(scrub(callback.error_message, callback.recipient))
        reason = failure_reason(callback.error_code, message)
        deps.store.record_failure(
            callback.sid,
            failure_record(
                conversation_id=cid, masked_sender=mask_address(callback.recipient), status=callback.status,
                stage="delivery", reason=reason, now=now, retention=now + FAILURE_RETENTION,
            ),
        )
        _log(logging.ERROR, "reply part not delivered", callback, sid=sid, outcome="failed",
             error_code=callback.error_code, reason=reason)
        return "failed"
    _log(logging.INFO, "delivery status recorded", callback, sid=sid, outcome="updated")
    return "updated"


def handle_status_push(pubsub_message: Mapping[str, Any], subscription: str, deps: "ProcessorDeps") -> str:
    """One status callback from Pub/Sub; a malformed or dead-lettered one is acknowledged and logged."""
    try:
        callback = StatusCallback.from_json(base64.b64decode(pubsub_message.get("data", "")))
    except (InvalidWebhook, ValueError) as exc:
        log.error("malformed status callback acknowledged", extra={"event": "delivery_status", "outcome": "malformed",
                                                                   "reason": str(exc)[:300]})
        return "malformed"
    if subscription.rsplit("/", 1)[-1] == deps.settings.dead_letter_subscription:
        _log(logging.WARNING, "status callback dead-lettered", callback, outcome="dead_lettered")
        return "dead-lettered"
    return apply_status(callback, deps)

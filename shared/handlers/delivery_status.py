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
from typing import Any, Mapping

from shared.adapters.firestore_store import failure_record
from shared.domain.conversation import Conversation
from shared.domain.delivery import (
    TERMINAL_FAILURES,
    entry_of_part,
    failure_reason,
    known_status,
    part_in_flight,
    record_delivery,
)
from shared.domain.inbound import InvalidWebhook, StatusCallback
from shared.handlers.deps import ProcessorDeps
from shared.log import mask_address, redact_credentials, scrub

log = logging.getLogger(__name__)


class PartNotRecordedYet(Exception):
    """The callback overtook the sender's record of the part's SID; Pub/Sub delivers it again shortly."""


def _log(level: int, message: str, callback: StatusCallback, **fields: Any) -> None:
    log.log(level, message, extra={"event": "delivery_status", "twilio_sid": callback.sid, "status": callback.status,
                                   "recipient": mask_address(callback.recipient), **fields})


def apply_status(callback: StatusCallback, deps: ProcessorDeps) -> str:
    """Move the part's state forward; return what was done ("updated", "stale", "unknown", "failed")."""
    if not known_status(callback.status):
        _log(logging.INFO, "status we do not track", callback, outcome="ignored")
        return "ignored"
    business = callback.sender or deps.settings.twilio_whatsapp_from
    cid = deps.ids.conversation_id(callback.recipient, business)
    grace = timedelta(seconds=deps.settings.in_flight_grace_seconds)

    def change(conv: Conversation) -> tuple[str, str]:
        now = deps.clock()
        sid = entry_of_part(conv, callback.sid)
        if sid is None:
            if part_in_flight(conv, now, grace):
                raise PartNotRecordedYet(f"part {callback.sid} not recorded yet")
            return "unknown", ""
        if not record_delivery(conv, sid, callback.sid, callback.status, callback.error_code, now):
            return "stale", sid
        return "updated", sid

    outcome, sid = deps.store.update(cid, change, what=f"recording the status of {callback.sid}").result
    if outcome == "unknown":
        _log(logging.WARNING, "status callback for a message we do not know", callback, outcome="unknown")
        return "unknown"
    if outcome == "stale":
        _log(logging.INFO, "older or repeated status", callback, sid=sid, outcome="stale")
        return "stale"
    if callback.status in TERMINAL_FAILURES:
        # Twilio's ErrorMessage is text we do not control: it may quote the number, like any of its errors.
        message = redact_credentials(scrub(callback.error_message, callback.recipient))
        reason = failure_reason(callback.error_code, message)
        deps.store.record_failure(
            callback.sid,
            failure_record(
                conversation_id=cid, masked_sender=mask_address(callback.recipient), status=callback.status,
                stage="delivery", reason=reason, now=deps.clock(),
            ),
        )
        _log(logging.ERROR, "reply part not delivered", callback, sid=sid, outcome="failed",
             error_code=callback.error_code, reason=reason)
        return "failed"
    _log(logging.INFO, "delivery status recorded", callback, sid=sid, outcome="updated")
    return "updated"


def handle_status_push(pubsub_message: Mapping[str, Any], subscription: str, deps: ProcessorDeps) -> str:
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

"""Small WhatsApp-channel steps of the processor that cost nothing when unused.

Each is a single call from shared/handlers/processor.py, so the processor
stays about exactly-once and order; the rules live in shared/domain/.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from shared.domain.conversation import Conversation
from shared.domain.inbound import InboundMessage

if TYPE_CHECKING:
    from shared.handlers.processor import ProcessorDeps

log = logging.getLogger(__name__)


class Typing(Protocol):
    def start(self, message_sid: str) -> None: ...


def profile_value(profile: Any, key: str, default: Any) -> Any:
    """A business profile's channel key, or the setting when the profile does not set it."""
    value = getattr(profile, key, None) if profile is not None else None
    return default if value in (None, "") else value


def window_update(conv: Conversation, msg: InboundMessage, now: datetime) -> dict[str, Any]:
    """``lastInboundAt`` for the claim write (no extra operation): when the user last wrote.

    Twilio's receipt time when the webhook recorded it, else now; never earlier
    than what the conversation already knows.
    """
    at = datetime.fromtimestamp(msg.received_at, timezone.utc) if msg.received_at > 0 else now
    known = conv.data.get("lastInboundAt")
    if isinstance(known, datetime) and known >= at:
        return {}
    return {"lastInboundAt": at}


def start_typing(msg: InboundMessage, deps: "ProcessorDeps", profile: Any = None) -> None:
    """Show "typing…" on the user's phone: best effort, never delays or fails the message."""
    if deps.typing is None or not profile_value(profile, "typing_indicator", deps.settings.typing_indicator):
        return
    try:
        deps.typing.start(msg.sid)
    except Exception as exc:
        log.warning("typing indicator not started", extra={"event": "typing_failed", "sid": msg.sid,
                                                           "reason": type(exc).__name__})

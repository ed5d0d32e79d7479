"""WhatsApp's 24-hour customer service window, as a pure rule.

A free-form message may only go out within 24 hours of the user's last message;
outside it Twilio refuses with 63016 and only an approved template may be sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.conversation import Conversation

WINDOW = timedelta(hours=24)


def window_open(
    conversation: Conversation, now: datetime, window: timedelta = WINDOW, unknown_is_open: bool = False
) -> bool:
    """Whether a free-form message sent ``now`` is still inside the window.

    ``unknown_is_open``: a conversation written before ``lastInboundAt``
    existed is left to Twilio's own check (63016) rather than refused.
    """
    last = conversation.last_inbound_at
    if last is None:
        return unknown_is_open
    return now - last <= window

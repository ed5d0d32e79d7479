"""The typing indicator: a step of the answer path that costs nothing when unused.

Best effort: "typing…" on the user's phone while the model works; it never
delays or fails the message (shared/handlers/compose.py calls it).
"""

from __future__ import annotations

import logging

from shared.handlers.deps import Typing

log = logging.getLogger(__name__)


def start_typing(typing: Typing | None, sid: str, enabled: bool) -> None:
    """Show "typing…" for the message ``sid``; a failure is logged, never raised."""
    if typing is None or not enabled:
        return
    try:
        typing.start(sid)
    except Exception as exc:
        log.warning("typing indicator not started", extra={"event": "typing_failed", "sid": sid,
                                                           "reason": type(exc).__name__})

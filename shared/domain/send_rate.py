"""A business's send rate: the ``send_rate_per_second`` profile key, and the name of its own send queue.

Twilio (WhatsApp) limits throughput per sender, 80 messages a second by
default, so each business number gets its own Cloud Tasks queue dispatching at
its own rate: one business's campaign then waits in its own queue, not in
front of another business's replies (docs/decisions/0022-send-queue-per-number.md).

The queue's id is derived from the number alone, so it is the same at every
apply and a change of rate updates that queue instead of making another one.
It is a hash, not the number: queue names show in logs and the console, and a
customer-facing phone number should not. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable, Mapping

SEND_RATE = "send_rate_per_second"
SEND_RATE_KEYS = frozenset({SEND_RATE})
# Cloud Tasks' ceiling for one queue's max_dispatches_per_second; the deployment's
# SENDER_MPS_LIMIT (Twilio's per-sender throughput) is the tighter bound, checked at apply.
MAX_QUEUE_RATE = 500.0
QUEUE_PREFIX = "outbound-"
_HASH_CHARS = 20
# Cloud Tasks queue ids: letters, digits and hyphens, at most 100 characters.
_QUEUE_ID = re.compile(r"[A-Za-z0-9-]{1,100}")


def send_rate_values(raw: Mapping[str, Any], fail: Callable[[str, str], Exception]) -> dict[str, Any]:
    """The profile's send rate (messages a second, fractions allowed), if it sets one."""
    if SEND_RATE not in raw:
        return {}
    value = raw[SEND_RATE]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(SEND_RATE, f"must be a number of messages a second, got {type(value).__name__}")
    if not 0 < value <= MAX_QUEUE_RATE:
        raise fail(SEND_RATE, f"must be above 0 and at most {MAX_QUEUE_RATE:g}, got {value}")
    return {SEND_RATE: float(value)}


def send_queue_id(address: str, prefix: str = QUEUE_PREFIX) -> str:
    """The id of the business number's own send queue: ``prefix`` + a short hash of the number."""
    queue_id = prefix + hashlib.sha256(address.encode()).hexdigest()[:_HASH_CHARS]
    if not valid_queue_id(queue_id):
        raise ValueError(f"queue prefix {prefix!r} makes no valid Cloud Tasks queue id")
    return queue_id


def valid_queue_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_QUEUE_ID.fullmatch(value))


def rate_for(profile_rate: float | None, default: float, limit: float) -> float:
    """The rate a business's queue gets: its profile's, else the deployment's default; never above ``limit``.

    Raises ValueError when the profile asks for more than the sender may send,
    so a profiles file above Twilio's limit fails before anything is written.
    """
    rate = default if profile_rate is None else profile_rate
    if rate > limit:
        raise ValueError(f"{rate:g} messages a second is above the sender limit of {limit:g} (SENDER_MPS_LIMIT)")
    return rate

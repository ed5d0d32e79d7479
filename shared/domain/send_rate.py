"""A business's send rate: the ``send_rate_per_second`` profile key, and which send queue (lane) is its own.

Twilio (WhatsApp) limits throughput per sender, 80 messages a second by
default, so each business number gets a Cloud Tasks queue of its own that
dispatches at its own rate: one business's campaign then waits in its own
queue, not in front of another business's replies
(docs/decisions/0022-send-queue-per-number.md).

The queues are a fixed set Terraform makes, ``outbound-00``, ``outbound-01``
... (*lanes*); profiles-apply gives each business number one, keeps the one it
had, and sets the lane's rate to the business's. A number keeps its lane across
applies, so a change of rate updates that queue instead of moving the
business's tasks to another. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable, Mapping, Sequence

SEND_RATE = "send_rate_per_second"
SEND_RATE_KEYS = frozenset({SEND_RATE})
# Cloud Tasks' ceiling for one queue's max_dispatches_per_second; the deployment's
# SENDER_MPS_LIMIT (Twilio's per-sender throughput) is the tighter bound, checked at apply.
MAX_QUEUE_RATE = 500.0
# Terraform's default send_lanes: outbound-00 ... outbound-09. Cloud Tasks allows 1,000 queues a project by default.
DEFAULT_LANES = 10
MAX_LANES = 100
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


def lane_ids(prefix: str, count: int) -> list[str]:
    """Lane queue ids: ``prefix`` + a two-digit number, as Terraform's default send_lanes names them."""
    lanes = [f"{prefix}{i:02d}" for i in range(count)]
    if not all(valid_queue_id(lane) for lane in lanes):
        raise ValueError(f"queue prefix {prefix!r} makes no valid Cloud Tasks queue id")
    return lanes


def assign_lanes(addresses: Sequence[str], stored: Mapping[str, str], lanes: Sequence[str]) -> dict[str, str]:
    """Each business number's lane: the one it has if still free, else a free one; "" (the shared queue) if none.

    Numbers without a lane are taken in sorted order, each looking from a
    place set by a hash of the number, so the same numbers get the same lanes
    whatever their order in the file, even without stored ones.
    """
    free = list(lanes)
    chosen: dict[str, str] = {}
    for address in addresses:
        lane = stored.get(address, "")
        if lane in free:
            chosen[address] = lane
            free.remove(lane)
    for address in sorted(addresses):
        if address in chosen:
            continue
        if not free:
            chosen[address] = ""
            continue
        start = int(hashlib.sha256(address.encode()).hexdigest()[:8], 16) % len(lanes)
        order = list(lanes[start:]) + list(lanes[:start])
        lane = next(lane for lane in order if lane in free)
        chosen[address] = lane
        free.remove(lane)
    return chosen


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

"""profiles-apply for send rates: each business number's lane runs at its rate before its profile names it.

The profile document gets ``sendQueue`` only after UpdateQueue (or, on the
local stand-in, CreateQueue) returned, so every enqueuer that reads it
(through the profile cache) finds that queue at that rate; a document without
it sends through the shared queue. A profile whose rate is above the sender
limit fails the whole file before anything is written
(docs/decisions/0022-send-queue-per-number.md).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Callable, Mapping

from shared.adapters.profile_store import SEND_QUEUE
from shared.adapters.send_queues import SendQueues
from shared.config import Settings
from shared.domain.profiles import ProfileError
from shared.domain.send_rate import SEND_RATE, assign_lanes, rate_for

Put = Callable[[str, Mapping[str, Any], datetime], None]


def send_rates(raw: Mapping[str, Mapping[str, Any]], settings: Settings) -> dict[str, float]:
    """Each business's queue rate, checked against SENDER_MPS_LIMIT; raises ProfileError naming the business."""
    rates = {}
    for address, profile in raw.items():
        try:
            rates[address] = rate_for(profile.get(SEND_RATE), settings.send_rate_per_second, settings.sender_mps_limit)
        except ValueError as exc:
            raise ProfileError(f"business {address!r}: key {SEND_RATE!r}: {exc}") from None
    return rates


def with_send_queues(put: Put, raw: Mapping[str, Mapping[str, Any]], stored: Mapping[str, Mapping[str, Any]],
                     queues: Callable[[], SendQueues], settings: Settings, report: list[str]) -> Put:
    """``put`` that first sets the business's lane to its rate, then writes the profile naming it; a report line each.

    Lanes are assigned for the whole file at once (``assign_lanes``: a number
    keeps the lane it has). With SEND_LANES none it is ``put`` itself: a
    profile written without ``sendQueue`` moves its business to the shared queue.
    """
    if not settings.send_lanes:
        return put
    rates = send_rates(raw, settings)
    had = {address: str(doc.get(SEND_QUEUE, "")) for address, doc in stored.items()}
    lanes = assign_lanes(list(raw), had, settings.send_lanes)

    def put_with_queue(address: str, profile: Mapping[str, Any], now: datetime) -> None:
        lane = lanes[address]
        if not lane:
            report.append(f"send queue of {address}: the shared one (all {len(settings.send_lanes)} lanes taken)")
            put(address, profile, now)
            return
        outcome = queues().ensure(lane, rates[address])
        report.append(f"send queue of {address}: {lane} {outcome}, {rates[address]:g}/s")
        put(address, {**profile, SEND_QUEUE: lane}, now)

    return put_with_queue


def send_queues(settings: Settings) -> SendQueues:
    """The queue admin of this deployment's Cloud Tasks (the emulator's when CLOUD_TASKS_EMULATOR_HOST is set)."""
    from google.cloud import tasks_v2

    from shared.adapters.cloud_tasks import emulator_client

    factory: Callable[[], tasks_v2.CloudTasksClient]
    if settings.tasks_emulator_host:
        factory = functools.partial(emulator_client, settings.tasks_emulator_host)
    else:
        factory = tasks_v2.CloudTasksClient
    return SendQueues(settings.project_id, settings.tasks_location, settings.tasks_queue, factory)

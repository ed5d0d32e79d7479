"""profiles-apply for send rates: each business number's own queue exists at its rate before its profile says so.

The profile document gets ``sendQueue`` only after CreateQueue or UpdateQueue
returned, so every enqueuer that reads it (through the profile cache) finds a
queue; a document without it sends through the shared queue. A profile whose
rate is above the sender limit fails the whole file before anything is written
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
from shared.domain.send_rate import SEND_RATE, rate_for, send_queue_id

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


def with_send_queues(put: Put, raw: Mapping[str, Mapping[str, Any]], queues: Callable[[], SendQueues],
                     settings: Settings, report: list[str]) -> Put:
    """``put`` that first makes the business's queue, then writes the profile naming it; one report line each.

    With SEND_QUEUE_PER_BUSINESS off it is ``put`` itself: a profile written
    without ``sendQueue`` moves its business back to the shared queue.
    """
    if not settings.send_queue_per_business:
        return put
    rates = send_rates(raw, settings)

    def put_with_queue(address: str, profile: Mapping[str, Any], now: datetime) -> None:
        queue_id = send_queue_id(address, settings.send_queue_prefix)
        outcome = queues().ensure(queue_id, rates[address])
        report.append(f"send queue of {address}: {queue_id} {outcome}, {rates[address]:g}/s")
        put(address, {**profile, SEND_QUEUE: queue_id}, now)

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

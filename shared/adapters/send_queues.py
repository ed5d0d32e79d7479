"""Cloud Tasks queue admin: a business number's send lane set to its rate when profiles are applied.

Only profiles-apply (``make profiles-apply``, the profiles build, the local
stack's start) calls it; the functions only add tasks. In the cloud Terraform
made the lanes and this only reads and updates them; a lane that does not
exist (the local stand-in) is created with the shared queue's retry policy, as
Terraform makes them, so a reply is retried the same whichever queue it is in
(docs/decisions/0022-send-queue-per-number.md).
"""

from __future__ import annotations

import math
from typing import Callable

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from shared.adapters.lazy import Lazy

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
_RATE_PATHS = ["rate_limits.max_dispatches_per_second", "rate_limits.max_concurrent_dispatches"]


class SendQueues:
    def __init__(self, project_id: str, location: str, shared_queue: str,
                 client_factory: Callable[[], tasks_v2.CloudTasksClient]) -> None:
        self._parent = f"projects/{project_id}/locations/{location}"
        self._shared = f"{self._parent}/queues/{shared_queue}"
        self._client = Lazy(client_factory)
        self._template: tasks_v2.Queue | None = None

    @property
    def client(self) -> tasks_v2.CloudTasksClient:
        return self._client.get()

    def path(self, queue_id: str) -> str:
        return f"{self._parent}/queues/{queue_id}"

    def ensure(self, queue_id: str, rate: float) -> str:
        """Make queue ``queue_id`` dispatch at ``rate`` a second: create it, update it, or leave it as it is."""
        name = self.path(queue_id)
        try:
            current = self.client.get_queue(name=name)
        except gexc.NotFound:
            template = self._shared_queue()
            concurrent = concurrency(rate, template.rate_limits.max_concurrent_dispatches)
            queue = tasks_v2.Queue(
                name=name,
                rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=rate, max_concurrent_dispatches=concurrent),
                retry_config=template.retry_config,
            )
            try:
                self.client.create_queue(parent=self._parent, queue=queue)
            except gexc.AlreadyExists:
                return self.ensure(queue_id, rate)
            # A name deleted within the tombstone window may seem created and not be: GetQueue tells.
            self.client.get_queue(name=name)
            return CREATED
        limits = current.rate_limits
        concurrent = concurrency(rate, limits.max_concurrent_dispatches)
        if limits.max_dispatches_per_second == rate and limits.max_concurrent_dispatches == concurrent:
            return UNCHANGED
        self.client.update_queue(
            queue=tasks_v2.Queue(
                name=name,
                rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=rate, max_concurrent_dispatches=concurrent),
            ),
            update_mask={"paths": _RATE_PATHS},
        )
        return UPDATED

    def _shared_queue(self) -> tasks_v2.Queue:
        if self._template is None:
            self._template = self.client.get_queue(name=self._shared)
        return self._template


def concurrency(rate: float, floor: int) -> int:
    """Dispatches at once: enough for ``rate`` at a sender call of up to a second, never below ``floor``."""
    return max(floor, math.ceil(rate))

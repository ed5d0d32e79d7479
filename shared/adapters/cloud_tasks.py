"""Cloud Tasks: hand a finished answer to sender_fn through the rate-limited queue,
and wake the processor when a burst's window has passed.

A business number with its own send queue (its profile's ``send_queue``,
docs/decisions/0022-send-queue-per-number.md) gets its send tasks there, at its
own rate; everything else goes through the shared queue.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import tasks_v2

from shared.adapters.google_auth import CALLER_KEY_HEADER
from shared.adapters.lazy import Lazy
from shared.domain.notify import HandoffNotice
from shared.log import mask_address

log = logging.getLogger(__name__)

# CreateTask is only safe to retry because every task is named: a retry that
# reaches the server twice meets ALREADY_EXISTS, which we treat as success.
_CREATE_RETRY = gretry.Retry(
    predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError),
    initial=0.1,
    maximum=2.0,
    timeout=15.0,
)


@dataclass(frozen=True)
class SendTask:
    """What sender_fn needs: the reply itself lives in the conversation document.

    ``kind`` tells the tasks for one reply apart: "" is the processor's, "next"
    the hand-off from the reply before it, "rN" the reconciler's N-th nudge.
    Each has its own name, because Cloud Tasks refuses a name for about an hour
    after a task of that name ran, and the body carries it so an attempt knows
    its own ``sending`` mark from another task's. ``business`` (the
    conversation's number) picks the queue; it is not part of the body.
    """

    conversation_id: str
    sid: str
    seq: int
    kind: str = ""
    business: str = field(default="", compare=False)

    def to_json(self) -> bytes:
        raw: dict[str, Any] = {"conversation": self.conversation_id, "sid": self.sid, "seq": self.seq}
        if self.kind:
            raw["kind"] = self.kind
        return json.dumps(raw).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "SendTask":
        raw: dict[str, Any] = json.loads(data)
        kind = str(raw.get("kind", ""))
        if not all(c.isalnum() for c in kind):
            raise ValueError(f"bad task kind {kind!r}")
        return cls(conversation_id=str(raw["conversation"]), sid=str(raw["sid"]), seq=int(raw["seq"]), kind=kind)

    @property
    def task_id(self) -> str:
        # Hash-like prefix first: Cloud Tasks spreads load on the name's prefix.
        base = f"{self.conversation_id[:20]}-{self.sid}"
        return f"{base}-{self.kind}" if self.kind else base


BURST_KIND = "burst"


@dataclass(frozen=True)
class BurstTask:
    """Answer the burst headed by ``sid`` once its window has passed (docs/decisions/0014-bursts.md).

    Delivered to the processor's push endpoint as a Pub/Sub-shaped envelope with
    attribute ``kind=burst``, so no new service is needed. ``version`` counts the
    joins: a task whose version is not the burst's current one does nothing, and
    each version has its own name because a name cannot be reused for an hour.
    """

    conversation_id: str
    sid: str
    version: int
    due: datetime
    kind: str = ""

    def to_json(self) -> bytes:
        raw = {"conversation": self.conversation_id, "sid": self.sid, "version": self.version}
        data = base64.b64encode(json.dumps(raw).encode()).decode()
        envelope = {
            "message": {"data": data, "attributes": {"kind": BURST_KIND}, "messageId": self.task_id},
            "subscription": "cloud-tasks/burst",
        }
        return json.dumps(envelope).encode()

    @classmethod
    def from_data(cls, data: bytes) -> "BurstTask":
        raw: dict[str, Any] = json.loads(data)
        return cls(conversation_id=str(raw["conversation"]), sid=str(raw["sid"]), version=int(raw["version"]),
                   due=datetime.min)

    @property
    def task_id(self) -> str:
        base = f"{self.conversation_id[:20]}-{self.sid}-b{self.version}"
        return f"{base}-{self.kind}" if self.kind else base


@dataclass(frozen=True)
class NotifyTask:
    """Tell the business's staff of a handoff: the inbox's ``/tasks/notify`` (shared/domain/notify.py)."""

    notice: HandoffNotice

    def to_json(self) -> bytes:
        return self.notice.to_json()

    @property
    def task_id(self) -> str:
        return self.notice.task_id


def emulator_client(address: str) -> tasks_v2.CloudTasksClient:
    """A real client over a plaintext channel to a local Cloud Tasks stand-in."""
    import grpc
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(address)))


class TaskQueue:
    def __init__(
        self,
        project_id: str,
        location: str,
        queue: str,
        target_url: str,
        service_account: str,
        client_factory: Callable[[], tasks_v2.CloudTasksClient],
        processor_url: str = "",
        caller_key: Callable[[], str] | None = None,
        inbox_url: str = "",
        route: Callable[[str], str] | None = None,
    ) -> None:
        self._location_path = f"projects/{project_id}/locations/{location}"
        self.queue_path = f"{self._location_path}/queues/{queue}"
        # The business number's own send queue id, or "" for the shared one (its cached profile's send_queue).
        self._route = route
        self._target_url = target_url
        self._processor_url = processor_url
        self._inbox_url = inbox_url
        self._service_account = service_account
        # Each task carries the caller key its private target checks (docs/decisions/0003-caller-verification.md).
        self._caller_key = caller_key
        self._client = Lazy(client_factory)
        self.created = 0

    @property
    def client(self) -> tasks_v2.CloudTasksClient:
        return self._client.get()

    def enqueue(self, task: SendTask | BurstTask | NotifyTask) -> bool:
        """Create the task; False when a task of that name already exists (a duplicate)."""
        url = self._processor_url if isinstance(task, BurstTask) else self._target_url
        audience = url
        if isinstance(task, NotifyTask):
            # The inbox checks the bare service URL as the token's audience (its AUTH_AUDIENCE).
            url, audience = f"{self._inbox_url}/tasks/notify", self._inbox_url
        http_request: dict[str, Any] = {
            "http_method": tasks_v2.HttpMethod.POST,
            "url": url,
            "headers": {"Content-Type": "application/json"},
            "body": task.to_json(),
        }
        if self._caller_key is not None:
            http_request["headers"][CALLER_KEY_HEADER] = self._caller_key()
        if self._service_account:
            http_request["oidc_token"] = {
                "service_account_email": self._service_account,
                "audience": audience,
            }
        parent = self.queue_for(task)
        try:
            return self._create(parent, task, http_request)
        except gexc.NotFound:
            if parent == self.queue_path:
                raise
        # The business's queue is gone or not yet visible (Cloud Tasks may take a while to show a new queue):
        # the shared queue still delivers it; the conversation's seq watermarks keep it once and in order.
        log.warning("send queue not found, using the shared queue", extra={
            "event": "send_queue_missing", "business": mask_address(getattr(task, "business", "")),
            "queue": parent.rsplit("/", 1)[-1]})
        return self._create(self.queue_path, task, http_request)

    def queue_for(self, task: SendTask | BurstTask | NotifyTask) -> str:
        """The queue path a task goes to: a send task to its business's own queue, if it has one."""
        if not isinstance(task, SendTask) or not task.business or self._route is None:
            return self.queue_path
        try:
            queue_id = self._route(task.business)
        except Exception:
            log.warning("send queue unknown (profile unreadable), using the shared queue",
                        extra={"event": "send_queue_unknown", "business": mask_address(task.business)}, exc_info=True)
            return self.queue_path
        return f"{self._location_path}/queues/{queue_id}" if queue_id else self.queue_path

    def _create(self, parent: str, task: SendTask | BurstTask | NotifyTask, http_request: dict[str, Any]) -> bool:
        body: dict[str, Any] = {"name": f"{parent}/tasks/{task.task_id}", "http_request": http_request}
        if isinstance(task, BurstTask):
            body["schedule_time"] = task.due
        request = {"parent": parent, "task": body}
        try:
            self.client.create_task(request=request, retry=_CREATE_RETRY, timeout=10.0)
        except gexc.AlreadyExists:
            return False
        self.created += 1
        return True

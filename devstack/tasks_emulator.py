"""A local Cloud Tasks stand-in that behaves like the real service where it matters.

Google ships no Cloud Tasks emulator. This one serves the real
``google.cloud.tasks.v2.CloudTasks`` gRPC API on 127.0.0.1, so the official
``CloudTasksClient`` (with an insecure channel) talks to it unchanged, and it
dispatches HTTP tasks the way Cloud Tasks does:

* task-name de-duplication: a name that exists, or existed within the
  tombstone window (default one hour, as in Cloud Tasks) after completion,
  deletion, purge or a final failure, is rejected with ALREADY_EXISTS;
* ``schedule_time`` is honoured, ``dispatch_deadline`` (default 10 min) is the
  HTTP timeout;
* execution order: no task goes before its ``schedule_time``, but among the
  tasks that are due the next one is picked at random, so a newer task often
  runs before an older one (see :meth:`TasksEmulator._take_ready`); an
  optional dispatch jitter delays each attempt by a random amount;
* any non-2xx answer or timeout is retried per the queue's (or the task's)
  ``RetryConfig`` with the documented backoff (``min_backoff`` doubled
  ``max_doublings`` times, then linear steps, capped at ``max_backoff``), and
  the task is dropped, with a log line, once ``max_attempts`` and
  ``max_retry_duration`` are both exhausted (an unlimited one does not hold
  the other back);
* ``rate_limits``: a token bucket (``max_dispatches_per_second`` /
  ``max_burst_size``) and ``max_concurrent_dispatches``, with concurrent
  dispatch from a bounded thread pool; paused queues do not dispatch;
* system throttling: 429 and 5xx answers (and a high error rate) slow the
  whole queue down, successes bring it back up to ``max_dispatches_per_second``
  (see :meth:`TasksEmulator._throttle`), and a failed attempt's ``Retry-After``
  holds that task's next attempt back;
* the request carries the X-CloudTasks-* headers, ``User-Agent:
  Google-Cloud-Tasks`` and, with ``oidc_token``, the ID token Google would
  mint for that service account and audience (the task URL by default),
  signed by the local token issuer (devstack/token_issuer.py; one made here
  when none is given, see :attr:`TasksEmulator.jwks`); ``origin_headers``
  mark the dispatch as traffic from inside the project for the local Cloud
  Run front ends (devstack/cloud_run.py).

What it does NOT do:

* App Engine tasks, OAuth tokens, queue-level ``uri_override``: UNIMPLEMENTED;
* IAM, CMEK, BufferTask, batch calls, ListQueues filters, Stackdriver logging;
* redirects are not followed (a 3xx is a failed attempt);
* the slow ramp-up of new or idle queues and of sudden large backlogs;
* reordering happens only among tasks due at the same time (a backlog, a
  paused queue, retries coming due together) or within ``dispatch_jitter``
  (0 by default): on an idle queue, tasks created a moment apart still go in
  creation order, which the real service does not promise either;
* queue-name reuse protection after DeleteQueue (a tombstone of up to 3 days
  in Cloud Tasks, 7 in older docs) is off unless ``queue_tombstone_seconds`` is
  given (the local stack gives 3 days);
* durations keep sub-second precision (Cloud Tasks truncates backoffs to whole
  seconds) and ``dispatch_deadline`` may be below 15 s, so tests run fast;
* ``max_burst_size`` may be set by the caller (in Cloud Tasks it is output
  only); when unset it is derived from the rate as ``ceil(rate / 5)``;
* state is in memory only.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import heapq
import http.client
import json
import logging
import math
import random
import re
import secrets
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import grpc
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2
from google.rpc import status_pb2

from devstack._grpc import LOOPBACK, GrpcStandIn, Unary, fail, run_until_signalled
from devstack.token_issuer import TokenIssuer

_log = logging.getLogger(__name__)

SERVICE = "google.cloud.tasks.v2.CloudTasks"

DEFAULT_TOMBSTONE_SECONDS = 3600.0
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 3600.0
DEFAULT_MAX_DOUBLINGS = 16
DEFAULT_MAX_DISPATCHES_PER_SECOND = 500.0
DEFAULT_MAX_CONCURRENT_DISPATCHES = 1000
DEFAULT_DISPATCH_DEADLINE = 600.0
MAX_DISPATCH_DEADLINE = 1800.0
MAX_SCHEDULE_AHEAD = 30 * 24 * 3600.0
MAX_TASK_BYTES = 1024 * 1024
MAX_URL_LENGTH = 2083
MAX_PAGE_SIZE = 1000

# System throttling. Cloud Tasks documents when it throttles and in which
# direction, not by how much; these magnitudes are the stand-in's own.
THROTTLE_DECREASE = 0.5  # each backoff error multiplies the queue's effective rate by this
THROTTLE_FLOOR = 1 / 64  # the effective rate never drops below this share of max_dispatches_per_second
RECOVERY_SUCCESSES = 20  # successes that climb from zero back to max_dispatches_per_second
ERROR_WINDOW = 20  # recent answers the error rate is taken over
HIGH_ERROR_RATE = 0.5  # from this share of failures in the window, any failure throttles

_LOCATION_RE = r"projects/[A-Za-z0-9.:-]+/locations/[A-Za-z0-9-]+"
_QUEUE_RE = rf"{_LOCATION_RE}/queues/[A-Za-z0-9-]{{1,100}}"
_LOCATION = re.compile(_LOCATION_RE)
_QUEUE = re.compile(rf"(?P<parent>{_LOCATION_RE})/queues/(?P<id>[A-Za-z0-9-]{{1,100}})")
_TASK = re.compile(rf"(?P<queue>{_QUEUE_RE})/tasks/(?P<id>[A-Za-z0-9_-]{{1,500}})")
_IGNORED_HEADERS = {"host", "content-length", "user-agent"}
_IGNORED_HEADER_PREFIXES = ("x-google-", "x-appengine-", "x-cloudtasks-")
_BODY_METHODS = {tasks_v2.HttpMethod.POST, tasks_v2.HttpMethod.PUT, tasks_v2.HttpMethod.PATCH}
_QUEUE_OUTPUT_ONLY = {"name", "state", "purge_time"}

Code = grpc.StatusCode
_HTTP_TO_RPC = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    409: Code.ABORTED,
    429: Code.RESOURCE_EXHAUSTED,
    499: Code.CANCELLED,
    501: Code.UNIMPLEMENTED,
    503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}


def backoff_seconds(retry_index: int, min_backoff: float, max_backoff: float, max_doublings: int) -> float:
    """Delay before retry number ``retry_index`` (0 = first retry), as Cloud Tasks documents it.

    min 10 s, max 300 s, 3 doublings gives 10, 20, 40, 80, 160, 240, 300, 300...
    """
    if retry_index <= max_doublings:
        delay = min_backoff * 2**retry_index
    else:
        delay = min_backoff * 2**max_doublings * (retry_index - max_doublings + 1)
    return min(delay, max_backoff)


@dataclass(frozen=True)
class RetryPolicy:
    """A normalized RetryConfig in seconds."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    min_backoff: float = DEFAULT_MIN_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_doublings: int = DEFAULT_MAX_DOUBLINGS
    max_retry_duration: float = 0.0

    @classmethod
    def from_config(cls, config: tasks_v2.RetryConfig) -> RetryPolicy:
        return cls(
            max_attempts=config.max_attempts,
            min_backoff=config.min_backoff.total_seconds(),
            max_backoff=config.max_backoff.total_seconds(),
            max_doublings=config.max_doublings,
            max_retry_duration=config.max_retry_duration.total_seconds(),
        )

    def backoff(self, attempts: int) -> float:
        """Delay after the ``attempts``-th failed attempt."""
        return backoff_seconds(attempts - 1, self.min_backoff, self.max_backoff, self.max_doublings)

    def exhausted(self, attempts: int, since_first_attempt: float) -> bool:
        """True when no retry is left: every limit that is set has been reached."""
        attempts_limited = self.max_attempts != -1
        duration_limited = self.max_retry_duration > 0
        if not attempts_limited and not duration_limited:
            return False
        attempts_done = not attempts_limited or attempts >= self.max_attempts
        duration_done = not duration_limited or since_first_attempt >= self.max_retry_duration
        return attempts_done and duration_done


@dataclass(frozen=True)
class TaskRecord:
    """What happened to one task, kept after it finished so tests can inspect it."""

    name: str
    attempts: int
    statuses: tuple[int, ...]  # HTTP status per attempt, 0 when no response (timeout, refused)
    attempt_times: tuple[float, ...]  # time.monotonic() at each dispatch
    outcome: str  # pending, succeeded, dropped, deleted


@dataclass(frozen=True)
class QueueStats:
    """One queue's dispatch counts and system throttling, the way Cloud Tasks' console shows it."""

    name: str
    max_dispatches_per_second: float
    effective_execution_rate: float  # v2beta3 QueueStats' name: the rate after system throttling
    lowest_effective_rate: float  # since the queue was created
    throttle_events: int  # answers that lowered the effective rate
    dispatched: int  # attempts made, retries included
    succeeded: int  # 2xx answers
    failed: int  # other answers and no answer

    @property
    def throttled(self) -> bool:
        return self.effective_execution_rate < self.max_dispatches_per_second


@dataclass(frozen=True)
class EmulatorStats:
    dispatched: int  # attempts made, retries included
    succeeded: int
    dropped: int  # given up after the retry limits
    tasks: Mapping[str, TaskRecord]
    queues: Mapping[str, QueueStats] = field(default_factory=dict)

    def attempts(self, task_name: str) -> int:
        record = self.tasks.get(task_name)
        return record.attempts if record else 0

    def queue(self, name: str) -> QueueStats:
        """The stats of queue ``name`` (full resource name or queue id)."""
        if name in self.queues:
            return self.queues[name]
        return next(q for full, q in self.queues.items() if full.rsplit("/", 1)[-1] == name)


@dataclass
class _Record:
    statuses: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    outcome: str = "pending"


@dataclass
class _Task:
    message: tasks_v2.Task
    due: float  # time.monotonic()
    generation: int = 0
    running: bool = False
    first_attempt_at: float | None = None
    executions: int = 0  # responses other than 5xx, for X-CloudTasks-TaskExecutionCount
    previous_status: int | None = None

    @property
    def short_id(self) -> str:
        return self.message.name.rsplit("/", 1)[-1]


@dataclass
class _Queue:
    message: tasks_v2.Queue
    burst_override: int
    tasks: dict[str, _Task] = field(default_factory=dict)
    heap: list[tuple[float, int, str, int]] = field(default_factory=list)  # (release, seq, task id, generation)
    ready: list[tuple[float, int, str, int]] = field(default_factory=list)  # heap entries that are due
    tokens: float = 0.0
    refilled: float = 0.0
    in_flight: int = 0
    effective_rate: float = 0.0  # max_dispatches_per_second lowered by system throttling
    lowest_rate: float = 0.0
    throttle_events: int = 0
    dispatched: int = 0
    succeeded: int = 0
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=ERROR_WINDOW))  # True: 2xx

    @property
    def short_id(self) -> str:
        return self.message.name.rsplit("/", 1)[-1]

    @property
    def running(self) -> bool:
        return self.message.state == tasks_v2.Queue.State.RUNNING

    @property
    def burst(self) -> float:
        """Bucket size: ``max_burst_size``, shrunk with the rate while throttled so a full bucket cannot undo it."""
        limits = self.message.rate_limits
        if self.effective_rate >= limits.max_dispatches_per_second:
            return float(limits.max_burst_size)
        return float(min(limits.max_burst_size, max(1, math.ceil(self.effective_rate / 5))))

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.effective_rate)
        self.refilled = now

    def stats(self) -> QueueStats:
        return QueueStats(
            name=self.message.name,
            max_dispatches_per_second=self.message.rate_limits.max_dispatches_per_second,
            effective_execution_rate=self.effective_rate,
            lowest_effective_rate=self.lowest_rate,
            throttle_events=self.throttle_events,
            dispatched=self.dispatched,
            succeeded=self.succeeded,
            failed=self.dispatched - self.succeeded,
        )


@dataclass(frozen=True)
class _Outbound:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    deadline: float


def _retry_after(value: str | None) -> float:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date); 0 when absent or unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def _wall(ts: datetime) -> float:
    return ts.timestamp()


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _page(items: list[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    try:
        start = int(base64.urlsafe_b64decode(page_token.encode()).decode()) if page_token else 0
    except ValueError:
        fail(Code.INVALID_ARGUMENT, "Invalid page_token.")
    size = min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    if size < 0:
        fail(Code.INVALID_ARGUMENT, "page_size must not be negative.")
    end = start + size
    token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else ""
    return items[start:end], token


class TasksEmulator(GrpcStandIn):
    """Cloud Tasks stand-in: ``start()`` returns the address for the real client.

    ``tombstone_seconds`` is how long a finished or deleted task name stays
    reserved; ``dispatch_workers`` bounds concurrent HTTP dispatches overall.
    ``out_of_order`` (on by default, as Cloud Tasks promises no order) picks the
    next due task at random instead of in due-time order; ``dispatch_jitter``
    delays each attempt past its due time by up to that many seconds; ``seed``
    makes both reproducible.
    """

    service = SERVICE

    def __init__(
        self,
        port: int = 0,
        tombstone_seconds: float = DEFAULT_TOMBSTONE_SECONDS,
        queue_tombstone_seconds: float = 0.0,
        dispatch_workers: int = 32,
        max_task_records: int = 10_000,
        out_of_order: bool = True,
        dispatch_jitter: float = 0.0,
        seed: int | None = None,
        issuer: TokenIssuer | None = None,
        origin_headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(port)
        if dispatch_jitter < 0:
            raise ValueError("dispatch_jitter must not be negative")
        self._out_of_order = out_of_order
        self._jitter = dispatch_jitter
        self._rng = random.Random(seed)  # used only with the lock held, so one seed gives one sequence
        self._tombstone_seconds = tombstone_seconds
        self._queue_tombstone_seconds = queue_tombstone_seconds
        self._workers = dispatch_workers
        self._max_records = max_task_records
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._task_tombstones: dict[str, float] = {}
        self._queue_tombstones: dict[str, float] = {}
        self._pruned = time.monotonic()
        self._seq = 0
        self._in_flight = 0
        self._dispatched = 0
        self._succeeded = 0
        self._dropped = 0
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._stopping = False
        self._pool: ThreadPoolExecutor | None = None
        self._scheduler: threading.Thread | None = None
        self._connections: set[http.client.HTTPConnection] = set()
        self._connections_lock = threading.Lock()
        self.issuer = issuer or TokenIssuer()
        self._origin_headers = dict(origin_headers or {})

    # Lifecycle

    def start(self) -> str:
        if self._server is not None:
            return self._address
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="tasks-dispatch")
        self._scheduler = threading.Thread(target=self._schedule_loop, name="tasks-scheduler", daemon=True)
        self._scheduler.start()
        address = super().start()
        _log.info("tasks emulator serving", extra={"address": address})
        return address

    def _methods(self) -> Mapping[str, Unary]:
        return {
            "CreateQueue": Unary(self._create_queue, tasks_v2.CreateQueueRequest, tasks_v2.Queue),
            "GetQueue": Unary(self._get_queue, tasks_v2.GetQueueRequest, tasks_v2.Queue),
            "ListQueues": Unary(self._list_queues, tasks_v2.ListQueuesRequest, tasks_v2.ListQueuesResponse),
            "UpdateQueue": Unary(self._update_queue, tasks_v2.UpdateQueueRequest, tasks_v2.Queue),
            "DeleteQueue": Unary(self._delete_queue, tasks_v2.DeleteQueueRequest, None),
            "PurgeQueue": Unary(self._purge_queue, tasks_v2.PurgeQueueRequest, tasks_v2.Queue),
            "PauseQueue": Unary(self._pause_queue, tasks_v2.PauseQueueRequest, tasks_v2.Queue),
            "ResumeQueue": Unary(self._resume_queue, tasks_v2.ResumeQueueRequest, tasks_v2.Queue),
            "CreateTask": Unary(self._create_task, tasks_v2.CreateTaskRequest, tasks_v2.Task),
            "GetTask": Unary(self._get_task, tasks_v2.GetTaskRequest, tasks_v2.Task),
            "ListTasks": Unary(self._list_tasks, tasks_v2.ListTasksRequest, tasks_v2.ListTasksResponse),
            "DeleteTask": Unary(self._delete_task, tasks_v2.DeleteTaskRequest, None),
            "RunTask": Unary(self._run_task, tasks_v2.RunTaskRequest, tasks_v2.Task),
        }

    def stop(self) -> None:
        """Stop serving and dispatching; in-flight HTTP calls are cut off so a slow target cannot stall shutdown."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        super().stop()
        if self._scheduler is not None:
            self._scheduler.join(timeout=5)
            self._scheduler = None
        with self._connections_lock:
            for connection in self._connections:
                if connection.sock is not None:
                    try:
                        connection.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # Introspection for tests and the dev stack

    @property
    def public_key_pem(self) -> bytes:
        """PEM of the key that signs OIDC tokens, for verifying them locally."""
        return self.issuer.public_key_pem

    @property
    def jwks(self) -> dict[str, Any]:
        """The signing key as a JWKS document, the shape Google publishes its certs in."""
        return self.issuer.jwks

    def stats(self) -> EmulatorStats:
        with self._cond:
            tasks = {
                name: TaskRecord(name, len(r.statuses), tuple(r.statuses), tuple(r.times), r.outcome)
                for name, r in self._records.items()
            }
            queues = {name: queue.stats() for name, queue in self._queues.items()}
            return EmulatorStats(self._dispatched, self._succeeded, self._dropped, tasks, queues)

    def queue_stats(self, name: str) -> QueueStats:
        """One queue's stats without copying every task record: cheap enough to poll."""
        with self._cond:
            queue = self._queues.get(name)
            if queue is None:
                raise KeyError(name)
            return queue.stats()

    def wait_until_idle(self, timeout: float) -> bool:
        """Block until no task is queued or in flight; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._in_flight == 0 and not any(q.tasks for q in self._queues.values()),
                timeout=timeout,
            )

    def create_queue(self, name: str) -> None:
        """Create queue ``name`` with Cloud Tasks' defaults unless it exists (dev-stack convenience)."""
        match = _QUEUE.fullmatch(name)
        if not match:
            raise ValueError(f"{name!r} is not projects/P/locations/L/queues/Q")
        with self._cond:
            if name in self._queues:
                return
            self._queues[name] = self._new_queue(tasks_v2.Queue(name=name))

    # Queues

    def _create_queue(self, request: tasks_v2.CreateQueueRequest) -> tasks_v2.Queue:
        if not _LOCATION.fullmatch(request.parent):
            fail(Code.INVALID_ARGUMENT, "parent must be projects/PROJECT/locations/LOCATION")
        match = _QUEUE.fullmatch(request.queue.name)
        if not match or match["parent"] != request.parent:
            fail(Code.INVALID_ARGUMENT, f"queue.name must be {request.parent}/queues/QUEUE_ID")
        with self._cond:
            name = request.queue.name
            if name in self._queues:
                fail(Code.ALREADY_EXISTS, "Queue already exists")
            return self._add_queue(name, request.queue)

    def _add_queue(self, name: str, source: tasks_v2.Queue) -> tasks_v2.Queue:
        """Register a new queue unless its name is still reserved; caller holds the lock."""
        if self._queue_tombstones.get(name, 0.0) > time.monotonic():
            fail(
                Code.FAILED_PRECONDITION,
                "The queue cannot be created because a queue with this name existed too recently.",
            )
        queue = self._new_queue(source)
        self._queues[name] = queue
        return tasks_v2.Queue(queue.message)

    def _new_queue(self, source: tasks_v2.Queue) -> _Queue:
        message = tasks_v2.Queue(source)
        message.state = tasks_v2.Queue.State.RUNNING
        if "purge_time" in message:
            del message.purge_time
        queue = _Queue(message=message, burst_override=source.rate_limits.max_burst_size)
        self._normalize_queue(queue)
        queue.effective_rate = queue.lowest_rate = queue.message.rate_limits.max_dispatches_per_second
        queue.tokens = float(queue.message.rate_limits.max_burst_size)
        queue.refilled = time.monotonic()
        return queue

    def _normalize_queue(self, queue: _Queue) -> None:
        """Fill the defaults Cloud Tasks picks and reject what it rejects."""
        message = queue.message
        if "app_engine_routing_override" in message:
            fail(Code.UNIMPLEMENTED, "App Engine queues are not supported by the stand-in")
        target = message.http_target
        if "uri_override" in target or "oauth_token" in target:
            fail(Code.UNIMPLEMENTED, "http_target.uri_override and oauth_token are not supported by the stand-in")
        if "oidc_token" in target and not target.oidc_token.service_account_email:
            fail(Code.INVALID_ARGUMENT, "http_target.oidc_token.service_account_email is required")
        limits = message.rate_limits
        if limits.max_dispatches_per_second == 0:
            limits.max_dispatches_per_second = DEFAULT_MAX_DISPATCHES_PER_SECOND
        if not 0 < limits.max_dispatches_per_second <= 500:
            fail(Code.INVALID_ARGUMENT, "rate_limits.max_dispatches_per_second must be in (0, 500]")
        if limits.max_concurrent_dispatches == 0:
            limits.max_concurrent_dispatches = DEFAULT_MAX_CONCURRENT_DISPATCHES
        if not 0 < limits.max_concurrent_dispatches <= 5000:
            fail(Code.INVALID_ARGUMENT, "rate_limits.max_concurrent_dispatches must be in [1, 5000]")
        if not 0 <= queue.burst_override <= 500:
            fail(Code.INVALID_ARGUMENT, "rate_limits.max_burst_size must be in [1, 500]")
        limits.max_burst_size = queue.burst_override or max(1, math.ceil(limits.max_dispatches_per_second / 5))
        message.rate_limits = limits
        message.retry_config = self._normalize_retry(message.retry_config, None)

    @staticmethod
    def _normalize_retry(config: tasks_v2.RetryConfig, base: tasks_v2.RetryConfig | None) -> tasks_v2.RetryConfig:
        """Defaults for unset fields: ``base`` (the queue's) for a task, Cloud Tasks' own for a queue."""
        out = tasks_v2.RetryConfig(config)
        if out.max_attempts == 0:
            out.max_attempts = base.max_attempts if base else DEFAULT_MAX_ATTEMPTS
        if out.max_doublings == 0:
            out.max_doublings = base.max_doublings if base else DEFAULT_MAX_DOUBLINGS
        defaults = {
            "min_backoff": DEFAULT_MIN_BACKOFF,
            "max_backoff": DEFAULT_MAX_BACKOFF,
            "max_retry_duration": 0.0,
        }
        for name, default in defaults.items():
            if name not in out:
                setattr(out, name, getattr(base, name) if base else timedelta(seconds=default))
        if out.max_attempts < -1:
            fail(Code.INVALID_ARGUMENT, "retry_config.max_attempts must be >= -1")
        if out.max_doublings < 0:
            fail(Code.INVALID_ARGUMENT, "retry_config.max_doublings must be >= 0")
        if min(out.min_backoff, out.max_backoff, out.max_retry_duration) < timedelta(0):
            fail(Code.INVALID_ARGUMENT, "retry_config durations must not be negative")
        if out.min_backoff > out.max_backoff:
            fail(Code.INVALID_ARGUMENT, "retry_config.min_backoff must not exceed max_backoff")
        return out

    def _queue(self, name: str) -> _Queue:
        """The queue called ``name``; caller holds the lock."""
        if not _QUEUE.fullmatch(name):
            fail(Code.INVALID_ARGUMENT, f"Invalid queue name {name!r}")
        queue = self._queues.get(name)
        if queue is None:
            fail(Code.NOT_FOUND, "Requested entity was not found.")
        return queue

    def _get_queue(self, request: tasks_v2.GetQueueRequest) -> tasks_v2.Queue:
        with self._cond:
            return tasks_v2.Queue(self._queue(request.name).message)

    def _list_queues(self, request: tasks_v2.ListQueuesRequest) -> tasks_v2.ListQueuesResponse:
        if not _LOCATION.fullmatch(request.parent):
            fail(Code.INVALID_ARGUMENT, "parent must be projects/PROJECT/locations/LOCATION")
        if request.filter:
            fail(Code.UNIMPLEMENTED, "ListQueues filters are not supported by the stand-in")
        with self._cond:
            queues = [
                tasks_v2.Queue(q.message)
                for name, q in sorted(self._queues.items())
                if name.startswith(request.parent + "/queues/")
            ]
        page, token = _page(queues, request.page_size, request.page_token)
        return tasks_v2.ListQueuesResponse(queues=page, next_page_token=token)

    def _update_queue(self, request: tasks_v2.UpdateQueueRequest) -> tasks_v2.Queue:
        """Update the fields in ``update_mask`` (all mutable ones without a mask); create if missing."""
        name = request.queue.name
        if not _QUEUE.fullmatch(name):
            fail(Code.INVALID_ARGUMENT, "queue.name must be projects/PROJECT/locations/LOCATION/queues/QUEUE_ID")
        mask: field_mask_pb2.FieldMask = request.update_mask
        descriptor = tasks_v2.Queue.pb().DESCRIPTOR
        if mask.paths:
            if not mask.IsValidForDescriptor(descriptor):
                fail(Code.INVALID_ARGUMENT, f"Invalid update_mask {list(mask.paths)}")
            if _QUEUE_OUTPUT_ONLY & {path.split(".", 1)[0] for path in mask.paths}:
                fail(Code.INVALID_ARGUMENT, "update_mask names an output-only field")
        with self._cond:
            existing = self._queues.get(name)
            if existing is None:
                return self._add_queue(name, request.queue)
            updated = tasks_v2.Queue.pb(tasks_v2.Queue(existing.message))
            source = tasks_v2.Queue.pb(request.queue)
            paths = list(mask.paths) or [f.name for f in descriptor.fields if f.name not in _QUEUE_OUTPUT_ONLY]
            field_mask_pb2.FieldMask(paths=paths).MergeMessage(
                source, updated, replace_message_field=True, replace_repeated_field=True
            )
            burst = existing.burst_override
            if any(p in ("rate_limits", "rate_limits.max_burst_size") for p in paths):
                burst = request.queue.rate_limits.max_burst_size
            candidate = _Queue(message=tasks_v2.Queue.wrap(updated), burst_override=burst)
            self._normalize_queue(candidate)
            existing.refill(time.monotonic())
            unthrottled = existing.effective_rate >= existing.message.rate_limits.max_dispatches_per_second
            existing.message = candidate.message
            existing.burst_override = burst
            ceiling = existing.message.rate_limits.max_dispatches_per_second
            existing.effective_rate = ceiling if unthrottled else min(existing.effective_rate, ceiling)
            existing.lowest_rate = min(existing.lowest_rate, existing.effective_rate)
            existing.tokens = min(existing.tokens, existing.burst)
            self._cond.notify_all()
            return tasks_v2.Queue(existing.message)

    def _delete_queue(self, request: tasks_v2.DeleteQueueRequest) -> None:
        with self._cond:
            queue = self._queue(request.name)
            for task in queue.tasks.values():
                self._finish_record(task.message.name, "deleted")
            del self._queues[request.name]
            if self._queue_tombstone_seconds > 0:
                self._queue_tombstones[request.name] = time.monotonic() + self._queue_tombstone_seconds
            self._cond.notify_all()

    def _purge_queue(self, request: tasks_v2.PurgeQueueRequest) -> tasks_v2.Queue:
        with self._cond:
            queue = self._queue(request.name)
            for task in list(queue.tasks.values()):
                self._remove(queue, task, "deleted")
            queue.heap.clear()
            queue.ready.clear()
            queue.message.purge_time = datetime.now(UTC)
            self._cond.notify_all()
            return tasks_v2.Queue(queue.message)

    def _set_state(self, name: str, state: tasks_v2.Queue.State) -> tasks_v2.Queue:
        with self._cond:
            queue = self._queue(name)
            queue.message.state = state
            self._cond.notify_all()
            return tasks_v2.Queue(queue.message)

    def _pause_queue(self, request: tasks_v2.PauseQueueRequest) -> tasks_v2.Queue:
        return self._set_state(request.name, tasks_v2.Queue.State.PAUSED)

    def _resume_queue(self, request: tasks_v2.ResumeQueueRequest) -> tasks_v2.Queue:
        return self._set_state(request.name, tasks_v2.Queue.State.RUNNING)

    # Tasks

    def _create_task(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        if not _QUEUE.fullmatch(request.parent):
            fail(Code.INVALID_ARGUMENT, "parent must be projects/PROJECT/locations/LOCATION/queues/QUEUE_ID")
        source = request.task
        if source.name:
            match = _TASK.fullmatch(source.name)
            if not match or match["queue"] != request.parent:
                fail(
                    Code.INVALID_ARGUMENT, f"task.name must be {request.parent}/tasks/TASK_ID ([A-Za-z0-9_-]{{1,500}})"
                )
        if tasks_v2.Task.pb(source).ByteSize() > MAX_TASK_BYTES:
            fail(Code.INVALID_ARGUMENT, "Task size exceeds 1 MB.")
        self._validate_http(source)
        now_wall = time.time()
        now = time.monotonic()
        if "schedule_time" in source:
            eta = _wall(source.schedule_time)
            if eta - now_wall > MAX_SCHEDULE_AHEAD:
                fail(Code.INVALID_ARGUMENT, "schedule_time is more than 30 days in the future")
            eta = max(eta, now_wall)
        else:
            eta = now_wall
        deadline = source.dispatch_deadline.total_seconds() or DEFAULT_DISPATCH_DEADLINE
        if not 0 < deadline <= MAX_DISPATCH_DEADLINE:
            fail(Code.INVALID_ARGUMENT, "dispatch_deadline must be in (0 s, 30 min]")
        with self._cond:
            queue = self._queue(request.parent)
            name = source.name or self._generate_name(queue)
            self._prune_tombstones(now)
            if name.rsplit("/", 1)[-1] in queue.tasks or self._task_tombstones.get(name, 0.0) > now:
                fail(Code.ALREADY_EXISTS, "Requested entity already exists")
            message = tasks_v2.Task(
                name=name,
                http_request=source.http_request,
                schedule_time=_utc(eta),
                create_time=_utc(now_wall),
                dispatch_deadline=timedelta(seconds=deadline),
                view=tasks_v2.Task.View.BASIC,
            )
            if "retry_config" in source:
                message.retry_config = self._normalize_retry(source.retry_config, queue.message.retry_config)
            if message.http_request.http_method == tasks_v2.HttpMethod.HTTP_METHOD_UNSPECIFIED:
                message.http_request.http_method = tasks_v2.HttpMethod.POST
            task = _Task(message=message, due=now + (eta - now_wall))
            queue.tasks[task.short_id] = task
            self._records[name] = _Record()
            self._trim_records()
            self._push(queue, task)
            return self._view(task.message, request.response_view)

    @staticmethod
    def _validate_http(task: tasks_v2.Task) -> None:
        if "app_engine_http_request" in task:
            fail(Code.UNIMPLEMENTED, "App Engine tasks are not supported by the stand-in")
        if "http_request" not in task:
            fail(Code.INVALID_ARGUMENT, "task.http_request is required")
        http = task.http_request
        if not http.url.startswith(("http://", "https://")) or len(http.url) > MAX_URL_LENGTH:
            fail(
                Code.INVALID_ARGUMENT,
                "http_request.url must begin with http:// or https:// and be at most 2083 characters",
            )
        method = http.http_method or tasks_v2.HttpMethod.POST
        if http.body and method not in _BODY_METHODS:
            fail(Code.INVALID_ARGUMENT, "A body is only allowed with POST, PUT or PATCH")
        if "oauth_token" in http:
            fail(Code.UNIMPLEMENTED, "OAuth tokens are not supported by the stand-in; use oidc_token")
        if "oidc_token" in http and not http.oidc_token.service_account_email:
            fail(Code.INVALID_ARGUMENT, "oidc_token.service_account_email is required")
        if sum(len(k) + len(v) for k, v in http.headers.items()) > 80 * 1024:
            fail(Code.INVALID_ARGUMENT, "Headers must be smaller than 80 KB")

    def _generate_name(self, queue: _Queue) -> str:
        while True:
            name = f"{queue.message.name}/tasks/{secrets.randbits(63)}"
            if name.rsplit("/", 1)[-1] not in queue.tasks and name not in self._task_tombstones:
                return name

    def _task(self, name: str) -> tuple[_Queue, _Task]:
        """The queue and live task called ``name``; caller holds the lock."""
        match = _TASK.fullmatch(name)
        if not match:
            fail(Code.INVALID_ARGUMENT, f"Invalid task name {name!r}")
        queue = self._queue(match["queue"])
        task = queue.tasks.get(match["id"])
        if task is None:
            fail(
                Code.NOT_FOUND,
                "The task no longer exists, though a task with this name existed recently."
                if self._task_tombstones.get(name, 0.0) > time.monotonic()
                else "Requested entity was not found.",
            )
        return queue, task

    @staticmethod
    def _view(message: tasks_v2.Task, view: tasks_v2.Task.View) -> tasks_v2.Task:
        """A copy of ``message`` in the requested view; BASIC hides the body, as in Cloud Tasks."""
        out = tasks_v2.Task(message)
        if view == tasks_v2.Task.View.FULL:
            out.view = tasks_v2.Task.View.FULL
        else:
            out.view = tasks_v2.Task.View.BASIC
            out.http_request.body = b""
        return out

    def _get_task(self, request: tasks_v2.GetTaskRequest) -> tasks_v2.Task:
        with self._cond:
            _, task = self._task(request.name)
            return self._view(task.message, request.response_view)

    def _list_tasks(self, request: tasks_v2.ListTasksRequest) -> tasks_v2.ListTasksResponse:
        with self._cond:
            queue = self._queue(request.parent)
            tasks = sorted(queue.tasks.values(), key=lambda t: (t.due, t.message.name))
            messages = [self._view(t.message, request.response_view) for t in tasks]
        page, token = _page(messages, request.page_size, request.page_token)
        return tasks_v2.ListTasksResponse(tasks=page, next_page_token=token)

    def _delete_task(self, request: tasks_v2.DeleteTaskRequest) -> None:
        with self._cond:
            queue, task = self._task(request.name)
            self._remove(queue, task, "deleted")
            self._cond.notify_all()

    def _run_task(self, request: tasks_v2.RunTaskRequest) -> tasks_v2.Task:
        """Dispatch now, ignoring rate limits and pause, as Cloud Tasks' RunTask does."""
        with self._cond:
            queue, task = self._task(request.name)
            if not task.running:
                if self._pool is None:
                    fail(Code.UNAVAILABLE, "The stand-in is stopping")
                task.generation += 1
                task.message.schedule_time = datetime.now(UTC)
                self._launch(queue, task, time.monotonic())
            return self._view(task.message, request.response_view)

    # Bookkeeping, all with the lock held

    def _push(self, queue: _Queue, task: _Task) -> None:
        """Queue one attempt; with jitter it is released up to ``dispatch_jitter`` after it is due, never before."""
        self._seq += 1
        release = task.due + (self._rng.uniform(0.0, self._jitter) if self._jitter else 0.0)
        heapq.heappush(queue.heap, (release, self._seq, task.short_id, task.generation))
        self._cond.notify_all()

    def _remove(self, queue: _Queue, task: _Task, outcome: str) -> None:
        queue.tasks.pop(task.short_id, None)
        task.generation += 1
        self._task_tombstones[task.message.name] = time.monotonic() + self._tombstone_seconds
        self._finish_record(task.message.name, outcome)

    def _finish_record(self, name: str, outcome: str) -> None:
        record = self._records.get(name)
        if record is not None:
            record.outcome = outcome

    def _trim_records(self) -> None:
        while len(self._records) > self._max_records:
            self._records.popitem(last=False)

    def _prune_tombstones(self, now: float) -> None:
        if now - self._pruned < 60:
            return
        self._pruned = now
        for book in (self._task_tombstones, self._queue_tombstones):
            for name in [n for n, until in book.items() if until <= now]:
                del book[name]

    # Dispatch

    def _schedule_loop(self) -> None:
        """Wake exactly when the next task is due, a token refills or a slot frees up."""
        with self._cond:
            while not self._stopping:
                timeout = self._dispatch_due(time.monotonic())
                self._cond.wait(timeout)

    def _dispatch_due(self, now: float) -> float | None:
        """Launch every task that may go now; return seconds until the next reason to look."""
        wake: float | None = None
        for queue in list(self._queues.values()):
            if not queue.running:
                continue
            limits = queue.message.rate_limits
            while queue.heap and queue.heap[0][0] <= now:
                entry = heapq.heappop(queue.heap)
                if self._live(queue, entry) is not None:
                    if self._out_of_order:
                        queue.ready.append(entry)
                    else:
                        heapq.heappush(queue.ready, entry)
            if queue.heap:
                wake = queue.heap[0][0] if wake is None else min(wake, queue.heap[0][0])
            while queue.ready:
                if queue.in_flight >= limits.max_concurrent_dispatches or self._in_flight >= self._workers:
                    break
                queue.refill(now)
                if queue.tokens < 1.0:
                    ready = now + (1.0 - queue.tokens) / queue.effective_rate
                    wake = ready if wake is None else min(wake, ready)
                    break
                task = self._take_ready(queue)
                if task is None:
                    break
                queue.tokens -= 1.0
                self._launch(queue, task, now)
        return None if wake is None else max(0.0, wake - time.monotonic())

    @staticmethod
    def _live(queue: _Queue, entry: tuple[float, int, str, int]) -> _Task | None:
        """The task a heap entry stands for, or None once it was deleted, re-queued or started elsewhere."""
        _, _, short_id, generation = entry
        task = queue.tasks.get(short_id)
        if task is None or task.generation != generation or task.running:
            return None
        return task

    def _take_ready(self, queue: _Queue) -> _Task | None:
        """Remove and return the next due task to dispatch: any of them, not the oldest.

        Cloud Tasks documents that, tasks scheduled for the future aside, a
        queue makes no guarantee and no best-effort attempt to run tasks in any
        particular order, that old tasks are only sure to run once the queue is
        emptied, and that newer tasks are commonly run before older ones
        (https://cloud.google.com/tasks/docs/common-pitfalls, "Execution
        order"). So a task is never dispatched before it is due, and among the
        due ones a uniformly random one goes next; with ``out_of_order`` off the
        earliest due goes first, which real queues do not promise.
        """
        while queue.ready:
            if self._out_of_order:
                i = self._rng.randrange(len(queue.ready))
                queue.ready[i], queue.ready[-1] = queue.ready[-1], queue.ready[i]
                entry = queue.ready.pop()
            else:
                entry = heapq.heappop(queue.ready)
            task = self._live(queue, entry)
            if task is not None:
                return task
        return None

    def _launch(self, queue: _Queue, task: _Task, now: float) -> None:
        assert self._pool is not None
        task.running = True
        queue.in_flight += 1
        self._in_flight += 1
        if task.first_attempt_at is None:
            task.first_attempt_at = now
        outbound = self._outbound(queue, task)
        record = self._records.get(task.message.name)
        if record is not None:
            record.times.append(now)
        self._pool.submit(self._attempt, queue, task, outbound)

    def _outbound(self, queue: _Queue, task: _Task) -> _Outbound:
        """The HTTP request Cloud Tasks would send for this attempt."""
        http = task.message.http_request
        target = queue.message.http_target
        method = target.http_method or http.http_method or tasks_v2.HttpMethod.POST
        headers: dict[str, str] = {}
        overrides = {h.header.key: h.header.value for h in target.header_overrides}
        for key, value in {**dict(http.headers), **overrides}.items():
            if key.lower() not in _IGNORED_HEADERS and not key.lower().startswith(_IGNORED_HEADER_PREFIXES):
                headers = {k: v for k, v in headers.items() if k.lower() != key.lower()}
                headers[key] = value
        body = http.body if method in _BODY_METHODS else b""
        if body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/octet-stream"
        attempts = task.message.dispatch_count
        headers.update(
            {
                "User-Agent": "Google-Cloud-Tasks",
                "X-CloudTasks-QueueName": queue.short_id,
                "X-CloudTasks-TaskName": task.short_id,
                "X-CloudTasks-TaskRetryCount": str(attempts),
                "X-CloudTasks-TaskExecutionCount": str(task.executions),
                "X-CloudTasks-TaskETA": f"{_wall(task.message.schedule_time):.6f}",
            }
        )
        if task.previous_status is not None:
            headers["X-CloudTasks-TaskPreviousResponse"] = str(task.previous_status)
        oidc = http.oidc_token if "oidc_token" in http else (target.oidc_token if "oidc_token" in target else None)
        if oidc is not None:
            token = self.issuer.mint(oidc.service_account_email, oidc.audience or http.url)
            headers["Authorization"] = f"Bearer {token}"
        headers.update(self._origin_headers)
        return _Outbound(
            method=tasks_v2.HttpMethod(method).name,
            url=http.url,
            headers=headers,
            body=body,
            deadline=task.message.dispatch_deadline.total_seconds(),
        )

    def _send(self, outbound: _Outbound) -> tuple[int, float]:
        """One HTTP attempt: the status code (0 when no response arrived in time) and its Retry-After in seconds."""
        parts = urlsplit(outbound.url)
        connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        deadline = time.monotonic() + outbound.deadline
        # http.client sets TCP_NODELAY and sends headers and a bytes body in one write.
        connection = connection_type(parts.hostname or LOOPBACK, parts.port, timeout=outbound.deadline)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.connect()
            with self._connections_lock:
                if self._stopping:
                    return 0, 0.0
                self._connections.add(connection)
            connection.request(outbound.method, path, body=outbound.body or None, headers=outbound.headers)
            if connection.sock is not None:
                connection.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            response = connection.getresponse()
            response.read()
            if time.monotonic() > deadline:
                return 0, 0.0
            return response.status, _retry_after(response.getheader("Retry-After"))
        except (OSError, http.client.HTTPException):
            return 0, 0.0
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            connection.close()

    def _attempt(self, queue: _Queue, task: _Task, outbound: _Outbound) -> None:
        dispatched = datetime.now(UTC)
        status, retry_after = self._send(outbound)
        with self._cond:
            self._complete(queue, task, dispatched, status, retry_after)
            self._cond.notify_all()

    @staticmethod
    def _throttle(queue: _Queue, status: int, now: float) -> None:
        """System throttling: backoff errors slow the whole queue down, successes bring it back.

        Cloud Tasks documents that for HTTP targets a 429 or a 5xx answer (or a
        high error rate) makes it slow down the queue's execution until the
        errors stop, without changing the queue's settings, and that a queue's
        output grows back in part with its successful dispatches:
        https://cloud.google.com/tasks/docs/common-pitfalls ("Backoff errors and
        enforced rates", "Manage long-running tasks gradually"); the queue's
        actual dispatch rate is ``rate_limits`` lowered by "system throttling due
        to 429 (Too Many Requests) or 503 (Service Unavailable) responses from
        the worker, high error rates" (``Queue.rate_limits`` in
        https://cloud.google.com/tasks/docs/reference/rpc/google.cloud.tasks.v2#queue);
        the rate after throttling is what v2beta3 calls
        ``QueueStats.effective_execution_rate`` (at most
        ``max_dispatches_per_second``). The amounts are not documented: here each
        backoff error halves the rate (down to a floor), each success adds
        1/RECOVERY_SUCCESSES of the maximum back.
        """
        queue.refill(now)  # tokens earned so far, at the rate that held until now
        ok = 200 <= status < 300
        queue.recent.append(ok)
        ceiling = queue.message.rate_limits.max_dispatches_per_second
        if ok:
            queue.effective_rate = min(ceiling, queue.effective_rate + ceiling / RECOVERY_SUCCESSES)
            return
        backoff_error = status == 429 or status >= 500
        failures = queue.recent.count(False)
        error_rate_high = len(queue.recent) >= ERROR_WINDOW // 2 and failures / len(queue.recent) >= HIGH_ERROR_RATE
        if not (backoff_error or error_rate_high):
            return
        queue.effective_rate = max(ceiling * THROTTLE_FLOOR, queue.effective_rate * THROTTLE_DECREASE)
        queue.lowest_rate = min(queue.lowest_rate, queue.effective_rate)
        queue.throttle_events += 1
        queue.tokens = min(queue.tokens, queue.burst)

    def _complete(self, queue: _Queue, task: _Task, dispatched: datetime, status: int, retry_after: float) -> None:
        now = time.monotonic()
        queue.in_flight -= 1
        self._in_flight -= 1
        self._dispatched += 1
        queue.dispatched += 1
        if 200 <= status < 300:
            queue.succeeded += 1
        self._throttle(queue, status, now)
        task.running = False
        record = self._records.get(task.message.name)
        if record is not None:
            record.statuses.append(status)
        message = task.message
        message.dispatch_count += 1
        attempt = tasks_v2.Attempt(
            schedule_time=message.schedule_time,
            dispatch_time=dispatched,
            response_time=datetime.now(UTC),
        )
        if status:
            message.response_count += 1
            if status < 500:
                task.executions += 1
            if not 200 <= status < 300:
                code = _HTTP_TO_RPC.get(status, Code.INTERNAL if status >= 500 else Code.UNKNOWN)
                attempt.response_status = status_pb2.Status(code=code.value[0], message=f"HTTP status code {status}")
        else:
            attempt.response_status = status_pb2.Status(code=Code.DEADLINE_EXCEEDED.value[0], message="no response")
        if message.dispatch_count == 1:
            message.first_attempt = tasks_v2.Attempt(dispatch_time=dispatched)
        message.last_attempt = attempt
        task.previous_status = status
        if queue.tasks.get(task.short_id) is not task:
            return  # deleted or purged while in flight
        if 200 <= status < 300:
            self._succeeded += 1
            self._remove(queue, task, "succeeded")
            return
        config = message.retry_config if "retry_config" in message else queue.message.retry_config
        policy = RetryPolicy.from_config(config)
        assert task.first_attempt_at is not None
        if policy.exhausted(message.dispatch_count, now - task.first_attempt_at):
            self._dropped += 1
            self._remove(queue, task, "dropped")
            _log.warning(
                "task dropped after its retry limits",
                extra={"task": message.name, "attempts": message.dispatch_count, "last_status": status},
            )
            return
        # "The retry specified in the Retry-After HTTP response header is considered" (common-pitfalls page).
        delay = max(policy.backoff(message.dispatch_count), retry_after)
        task.due = now + delay
        message.schedule_time = _utc(time.time() + delay)
        task.generation += 1
        self._push(queue, task)


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.tasks_emulator``: prints ``READY 127.0.0.1:PORT`` once serving."""
    parser = argparse.ArgumentParser(description="Local Cloud Tasks stand-in (gRPC, 127.0.0.1 only).")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument("--tombstone-seconds", type=float, default=DEFAULT_TOMBSTONE_SECONDS)
    parser.add_argument("--dispatch-workers", type=int, default=32)
    parser.add_argument(
        "--in-order",
        action="store_true",
        help="dispatch due tasks oldest first (Cloud Tasks promises no order; the default picks at random)",
    )
    parser.add_argument("--dispatch-jitter", type=float, default=0.0, help="delay each attempt by up to this many s")
    parser.add_argument("--seed", type=int, default=None, help="seed for the dispatch order and jitter")
    parser.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="NAME",
        help="create projects/P/locations/L/queues/Q with default settings (repeatable)",
    )
    parser.add_argument("--jwks-file", default="", help="write the OIDC signing key (JWKS JSON) here before READY")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    emulator = TasksEmulator(
        port=args.port,
        tombstone_seconds=args.tombstone_seconds,
        dispatch_workers=args.dispatch_workers,
        out_of_order=not args.in_order,
        dispatch_jitter=args.dispatch_jitter,
        seed=args.seed,
    )

    def before_ready() -> None:
        for name in args.queue:
            try:
                emulator.create_queue(name)
            except ValueError as err:
                parser.error(str(err))
        if args.jwks_file:
            with open(args.jwks_file, "w", encoding="utf-8") as out:
                json.dump(emulator.jwks, out)

    return run_until_signalled(emulator, before_ready)


if __name__ == "__main__":
    sys.exit(main())

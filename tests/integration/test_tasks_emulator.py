"""The Cloud Tasks stand-in, driven by the real CloudTasksClient against a local HTTP receiver.

Timing assertions are orderings, counts and generous lower bounds only; every
wait has a timeout so a broken dispatcher fails fast instead of hanging.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import jwt
import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from devstack.tasks_emulator import TasksEmulator, backoff_seconds
from tests.integration.helpers import start_module, stop_module

LOCATION = "projects/test-project/locations/us-central1"
SERVICE_ACCOUNT = "sender-invoker@test-project.iam.gserviceaccount.com"
WAIT = 10.0


Answer = tuple[int, float] | tuple[int, float, dict[str, str]]  # status, delay, extra headers


@dataclass(frozen=True)
class Hit:
    path: str
    method: str
    at: float
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A threaded HTTP target that records every request and answers from a per-path plan."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._hits: list[Hit] = []
        self._plans: dict[str, list[Answer]] = {}
        self._active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, delay, *extra = receiver._enter(
                    Hit(self.path, self.command, time.monotonic(), dict(self.headers), body)
                )
                if delay:
                    time.sleep(delay)
                # Leave before answering: the dispatcher may start the next request the
                # moment it reads this response, and it must not be counted as overlapping.
                receiver._leave(self.path)
                try:
                    self.send_response(status)
                    for key, value in (extra[0] if extra else {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            do_POST = do_PUT = do_GET = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def plan(self, path: str, *responses: Answer) -> None:
        """Answer the next requests on ``path`` with (status, delay[, headers]); 200 at once afterwards."""
        with self._lock:
            self._plans[path] = list(responses)

    def _enter(self, hit: Hit) -> Answer:
        with self._lock:
            self._hits.append(hit)
            self._active[hit.path] = self._active.get(hit.path, 0) + 1
            self.peak[hit.path] = max(self.peak.get(hit.path, 0), self._active[hit.path])
            self._lock.notify_all()
            plan = self._plans.get(hit.path)
            return plan.pop(0) if plan else (200, 0.0)

    def _leave(self, path: str) -> None:
        with self._lock:
            self._active[path] -= 1

    def hits(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self._hits if h.path == path]

    def wait_hits(self, path: str, count: int, timeout: float = WAIT) -> list[Hit]:
        with self._lock:
            self._lock.wait_for(lambda: len([h for h in self._hits if h.path == path]) >= count, timeout)
        hits = self.hits(path)
        assert len(hits) >= count, f"expected {count} requests on {path}, got {len(hits)}"
        return hits

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def make_client(address: str) -> tasks_v2.CloudTasksClient:
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(address)))


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[TasksEmulator]:
    with TasksEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def client(emulator: TasksEmulator) -> Iterator[tasks_v2.CloudTasksClient]:
    tasks_client = make_client(emulator.address)
    yield tasks_client
    tasks_client.transport.close()


@pytest.fixture()
def path() -> str:
    """A receiver path of its own for each test, so tests never see each other's requests."""
    return f"/t/{uuid.uuid4().hex[:12]}"


def new_queue(client: tasks_v2.CloudTasksClient, **config: object) -> tasks_v2.Queue:
    name = f"{LOCATION}/queues/q-{uuid.uuid4().hex[:12]}"
    return client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name, **config))


def http_task(url: str, **fields: object) -> dict[str, object]:
    request = {"url": url, **fields.pop("http", {})}  # type: ignore[dict-item]
    return {"http_request": request, **fields}


def test_dispatch_carries_body_task_headers_and_cloud_tasks_headers(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    queue = new_queue(client)
    name = f"{queue.name}/tasks/send-1"
    created = client.create_task(
        parent=queue.name,
        task=http_task(
            receiver.url(path),
            name=name,
            http={"body": b'{"to": "x"}', "headers": {"Content-Type": "application/json", "X-Trace": "abc"}},
        ),
    )
    assert created.name == name
    assert created.dispatch_count == 0
    assert created.create_time.timestamp() > 0 and created.schedule_time.timestamp() > 0
    assert created.http_request.body == b"", "BASIC view hides the body, as Cloud Tasks does"

    (hit,) = receiver.wait_hits(path, 1)
    assert hit.method == "POST"
    assert hit.body == b'{"to": "x"}'
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["X-Trace"] == "abc"
    assert hit.headers["User-Agent"] == "Google-Cloud-Tasks"
    assert hit.headers["X-CloudTasks-QueueName"] == queue.name.rsplit("/", 1)[-1]
    assert hit.headers["X-CloudTasks-TaskName"] == "send-1"
    assert hit.headers["X-CloudTasks-TaskRetryCount"] == "0"
    assert hit.headers["X-CloudTasks-TaskExecutionCount"] == "0"
    assert abs(float(hit.headers["X-CloudTasks-TaskETA"]) - created.schedule_time.timestamp()) < 0.01
    assert "Authorization" not in hit.headers

    assert emulator.wait_until_idle(WAIT)
    assert emulator.stats().tasks[name].outcome == "succeeded"
    with pytest.raises(gexc.NotFound):
        client.get_task(name=name)


def test_unnamed_tasks_get_distinct_generated_names(
    client: tasks_v2.CloudTasksClient, receiver: Receiver, path: str
) -> None:
    queue = new_queue(client)
    first = client.create_task(parent=queue.name, task=http_task(receiver.url(path)))
    second = client.create_task(parent=queue.name, task=http_task(receiver.url(path)))
    assert first.name.startswith(f"{queue.name}/tasks/")
    assert second.name.startswith(f"{queue.name}/tasks/")
    assert first.name != second.name
    hits = receiver.wait_hits(path, 2)
    assert {h.headers["X-CloudTasks-TaskName"] for h in hits} == {
        first.name.rsplit("/", 1)[-1],
        second.name.rsplit("/", 1)[-1],
    }


def test_named_task_is_deduplicated_while_pending_after_deletion_and_after_completion(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    queue = new_queue(client)
    later = datetime.now(UTC) + timedelta(minutes=5)
    pending = f"{queue.name}/tasks/pending"
    client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=pending, schedule_time=later))
    with pytest.raises(gexc.AlreadyExists):
        client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=pending))
    client.delete_task(name=pending)
    with pytest.raises(gexc.AlreadyExists):
        client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=pending))

    done = f"{queue.name}/tasks/done"
    client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=done))
    receiver.wait_hits(path, 1)
    assert emulator.wait_until_idle(WAIT)
    with pytest.raises(gexc.AlreadyExists):
        client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=done))
    assert len(receiver.hits(path)) == 1, "the rejected duplicate must not be dispatched"


def test_task_name_is_reusable_once_the_tombstone_expires(receiver: Receiver, path: str) -> None:
    with TasksEmulator(tombstone_seconds=0.2) as emu:
        client = make_client(emu.address)
        try:
            queue = new_queue(client)
            name = f"{queue.name}/tasks/again"
            client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=name))
            receiver.wait_hits(path, 1)
            assert emu.wait_until_idle(WAIT)
            time.sleep(0.3)
            client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=name))
            receiver.wait_hits(path, 2)
        finally:
            client.transport.close()


def test_schedule_time_is_honoured(client: tasks_v2.CloudTasksClient, receiver: Receiver, path: str) -> None:
    queue = new_queue(client)
    start = time.monotonic()
    soon = datetime.now(UTC) + timedelta(seconds=0.6)
    client.create_task(
        parent=queue.name,
        task=http_task(receiver.url(path), name=f"{queue.name}/tasks/late", schedule_time=soon),
    )
    client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=f"{queue.name}/tasks/now"))
    pending = [t.name.rsplit("/", 1)[-1] for t in client.list_tasks(parent=queue.name)]
    assert "late" in pending

    hits = receiver.wait_hits(path, 2)
    order = [h.headers["X-CloudTasks-TaskName"] for h in hits]
    assert order == ["now", "late"]
    assert hits[1].at - start >= 0.55
    assert abs(float(hits[1].headers["X-CloudTasks-TaskETA"]) - soon.timestamp()) < 0.01


def test_failed_attempts_are_retried_with_growing_backoff_until_success(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    queue = new_queue(
        client,
        retry_config={
            "max_attempts": 10,
            "min_backoff": timedelta(seconds=0.1),
            "max_backoff": timedelta(seconds=5),
            "max_doublings": 4,
        },
    )
    receiver.plan(path, (500, 0.0), (500, 0.0), (500, 0.0))
    name = f"{queue.name}/tasks/flaky"
    client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=name))

    hits = receiver.wait_hits(path, 4)
    assert emulator.wait_until_idle(WAIT)
    assert len(receiver.hits(path)) == 4
    assert [h.headers["X-CloudTasks-TaskRetryCount"] for h in hits] == ["0", "1", "2", "3"]
    assert [h.headers.get("X-CloudTasks-TaskPreviousResponse") for h in hits] == [None, "500", "500", "500"]
    assert {h.headers["X-CloudTasks-TaskExecutionCount"] for h in hits} == {"0"}, "5xx answers are not executions"
    gaps = [later.at - earlier.at for earlier, later in zip(hits, hits[1:], strict=False)]
    assert gaps[0] < gaps[1] < gaps[2]
    assert gaps[0] >= 0.09 and gaps[2] >= 0.38
    record = emulator.stats().tasks[name]
    assert record.attempts == 4
    assert record.statuses == (500, 500, 500, 200)
    assert record.outcome == "succeeded"


def test_task_is_dropped_when_max_attempts_is_exhausted(
    client: tasks_v2.CloudTasksClient,
    emulator: TasksEmulator,
    receiver: Receiver,
    path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = new_queue(client, retry_config={"max_attempts": 3, "min_backoff": timedelta(seconds=0.05)})
    receiver.plan(path, *[(503, 0.0)] * 10)
    name = f"{queue.name}/tasks/doomed"
    dropped_before = emulator.stats().dropped
    with caplog.at_level(logging.WARNING, logger="devstack.tasks_emulator"):
        client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=name))
        receiver.wait_hits(path, 3)
        assert wait_until(lambda: emulator.stats().tasks[name].outcome == "dropped")
    time.sleep(0.3)
    assert len(receiver.hits(path)) == 3, "no attempt after max_attempts"
    stats = emulator.stats()
    assert stats.dropped == dropped_before + 1
    assert stats.attempts(name) == 3
    assert any("dropped" in r.getMessage() and getattr(r, "task", "") == name for r in caplog.records)
    with pytest.raises(gexc.NotFound):
        client.get_task(name=name)
    with pytest.raises(gexc.AlreadyExists):
        client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=name))


def test_task_level_retry_config_overrides_the_queue(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    queue = new_queue(client, retry_config={"max_attempts": 50, "min_backoff": timedelta(seconds=0.05)})
    receiver.plan(path, *[(500, 0.0)] * 10)
    name = f"{queue.name}/tasks/short"
    client.create_task(
        parent=queue.name,
        task=http_task(receiver.url(path), name=name, retry_config={"max_attempts": 2}),
    )
    assert wait_until(lambda: emulator.stats().tasks[name].outcome == "dropped")
    assert emulator.stats().attempts(name) == 2


def test_oidc_token_is_signed_by_the_emulator_key_with_audience_and_email(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    queue = new_queue(client)
    url = receiver.url(path)
    client.create_task(
        parent=queue.name,
        task=http_task(
            url, name=f"{queue.name}/tasks/default-aud", http={"oidc_token": {"service_account_email": SERVICE_ACCOUNT}}
        ),
    )
    client.create_task(
        parent=queue.name,
        task=http_task(
            url,
            name=f"{queue.name}/tasks/custom-aud",
            http={"oidc_token": {"service_account_email": SERVICE_ACCOUNT, "audience": "https://sender.example"}},
        ),
    )
    hits = {h.headers["X-CloudTasks-TaskName"]: h for h in receiver.wait_hits(path, 2)}
    jwk = jwt.PyJWK(emulator.jwks["keys"][0])
    for task_id, audience in (("default-aud", url), ("custom-aud", "https://sender.example")):
        scheme, _, token = hits[task_id].headers["Authorization"].partition(" ")
        assert scheme == "Bearer"
        claims = jwt.decode(token, emulator.public_key_pem, algorithms=["RS256"], audience=audience)
        assert claims["email"] == SERVICE_ACCOUNT
        assert claims["email_verified"] is True
        assert claims["iss"] == "https://accounts.google.com"
        assert claims["iat"] <= time.time() < claims["exp"]
        assert jwt.get_unverified_header(token)["kid"] == emulator.jwks["keys"][0]["kid"]
        assert jwt.decode(token, jwk.key, algorithms=["RS256"], audience=audience)["email"] == SERVICE_ACCOUNT
        with pytest.raises(jwt.InvalidAudienceError):
            jwt.decode(token, emulator.public_key_pem, algorithms=["RS256"], audience="https://someone-else")


def test_rate_limit_spaces_dispatches(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    queue = new_queue(client, rate_limits={"max_dispatches_per_second": 5})
    assert queue.rate_limits.max_burst_size == 1
    start = time.monotonic()
    for _ in range(10):
        client.create_task(parent=queue.name, task=http_task(receiver.url(path)))
    hits = receiver.wait_hits(path, 10)
    assert hits[-1].at - start >= 1.5, "10 tasks at 5/s with a burst of 1 need about 1.8 s"
    assert emulator.wait_until_idle(WAIT)


THROTTLE_RATE = 20.0


def throttled_queue(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str, answers: int = 4
) -> tasks_v2.Queue:
    """A queue at THROTTLE_RATE whose one task was answered 429 ``answers`` times and then dropped."""
    queue = new_queue(
        client,
        rate_limits={"max_dispatches_per_second": THROTTLE_RATE},
        retry_config={
            "max_attempts": answers,
            "min_backoff": timedelta(seconds=0.01),
            "max_backoff": timedelta(seconds=0.05),
        },
    )
    busy = f"{path}/busy"
    receiver.plan(busy, *[(429, 0.0)] * answers)
    name = f"{queue.name}/tasks/busy"
    client.create_task(parent=queue.name, task=http_task(receiver.url(busy), name=name))
    assert wait_until(lambda: emulator.stats().tasks[name].outcome == "dropped")
    assert emulator.stats().tasks[name].statuses == (429,) * answers
    return queue


def run_tasks(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, queue: tasks_v2.Queue, url: str, prefix: str, count: int
) -> list[float]:
    """Create ``count`` tasks, wait until each succeeded, and return their dispatch times (the stand-in's clock)."""
    names = [f"{queue.name}/tasks/{prefix}-{i}" for i in range(count)]
    for name in names:
        client.create_task(parent=queue.name, task=http_task(url, name=name))
    assert wait_until(lambda: all(emulator.stats().tasks[n].outcome == "succeeded" for n in names), 3 * WAIT)
    records = emulator.stats().tasks
    assert all(records[n].statuses == (200,) for n in names)
    return sorted(records[n].attempt_times[0] for n in names)


def dispatch_rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0])


def test_429_answers_from_one_target_throttle_the_whole_queue(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    queue = throttled_queue(client, emulator, receiver, path, answers=4)
    control = new_queue(client, rate_limits={"max_dispatches_per_second": THROTTLE_RATE})
    stats = emulator.stats().queue(queue.name)
    assert stats.throttle_events == 4
    assert stats.effective_execution_rate == pytest.approx(THROTTLE_RATE / 16), "halved by each 429"
    assert stats.throttled
    assert client.get_queue(name=queue.name).rate_limits.max_dispatches_per_second == THROTTLE_RATE, (
        "system throttling does not change the queue's settings"
    )

    other = receiver.url(f"{path}/other")
    throttled_times = run_tasks(client, emulator, queue, other, "other", 10)
    run_tasks(client, emulator, control, other, "other", 10)

    # Unthrottled, 10 tasks go out as a burst of 4 and then at 20/s: over 30/s.
    # Throttled, they start at 1.25/s and each success adds 1/s: about 5/s.
    assert dispatch_rate(throttled_times) <= THROTTLE_RATE / 2
    gaps = [b - a for a, b in zip(throttled_times, throttled_times[1:], strict=False)]
    assert gaps[0] >= 0.3, "after the first success the queue runs at 2.25/s"
    assert emulator.stats().queue(control.name).throttle_events == 0
    assert not emulator.stats().queue(control.name).throttled, "another queue to the same host is not throttled"


def test_successes_bring_a_throttled_queue_back_to_its_rate_and_never_above(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    queue = throttled_queue(client, emulator, receiver, path, answers=4)
    url = receiver.url(f"{path}/ok")
    run_tasks(client, emulator, queue, url, "first", 10)
    stats = emulator.stats().queue(queue.name)
    assert stats.effective_execution_rate == pytest.approx(THROTTLE_RATE / 16 + 10 * THROTTLE_RATE / 20)
    assert stats.throttled
    run_tasks(client, emulator, queue, url, "second", 10)
    stats = emulator.queue_stats(queue.name)
    assert stats == emulator.stats().queue(queue.name.rsplit("/", 1)[-1])
    assert stats.effective_execution_rate == THROTTLE_RATE, "recovered, and capped at max_dispatches_per_second"
    assert not stats.throttled
    assert stats.lowest_effective_rate == pytest.approx(THROTTLE_RATE / 16)
    assert (stats.dispatched, stats.succeeded, stats.failed) == (24, 20, 4)


def test_throttling_has_a_floor_and_ordinary_errors_throttle_only_at_a_high_error_rate(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    floored = new_queue(
        client,
        rate_limits={"max_dispatches_per_second": 64},
        retry_config={
            "max_attempts": 7,
            "min_backoff": timedelta(seconds=0.01),
            "max_backoff": timedelta(seconds=0.01),
        },
    )
    receiver.plan(f"{path}/down", *[(503, 0.0)] * 7)
    name = f"{floored.name}/tasks/down"
    client.create_task(parent=floored.name, task=http_task(receiver.url(f"{path}/down"), name=name))
    assert wait_until(lambda: emulator.stats().tasks[name].outcome == "dropped")
    stats = emulator.stats().queue(floored.name)
    assert stats.throttle_events == 7
    assert stats.effective_execution_rate == pytest.approx(1.0), "64/s halved six times, then held at the floor"

    gone = new_queue(client, retry_config={"max_attempts": 1})
    receiver.plan(f"{path}/gone", *[(404, 0.0)] * 10)
    names = [f"{gone.name}/tasks/gone-{i}" for i in range(10)]
    for task_name in names[:9]:
        client.create_task(parent=gone.name, task=http_task(receiver.url(f"{path}/gone"), name=task_name))
    assert wait_until(lambda: all(emulator.stats().tasks[n].outcome == "dropped" for n in names[:9]))
    assert emulator.stats().queue(gone.name).throttle_events == 0, "a 404 is not a backoff error"
    client.create_task(parent=gone.name, task=http_task(receiver.url(f"{path}/gone"), name=names[9]))
    assert wait_until(lambda: emulator.stats().tasks[names[9]].outcome == "dropped")
    assert emulator.stats().queue(gone.name).throttle_events == 1, "10 failures in a row is a high error rate"


def test_retry_after_holds_the_next_attempt_back(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    queue = new_queue(client, retry_config={"min_backoff": timedelta(seconds=0.01)})
    receiver.plan(path, (429, 0.0, {"Retry-After": "1"}))
    name = f"{queue.name}/tasks/later"
    client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=name))
    assert wait_until(lambda: emulator.stats().tasks[name].outcome == "succeeded")
    first, second = emulator.stats().tasks[name].attempt_times
    assert second - first >= 0.95, "the backoff alone would retry after 0.01 s"


def test_max_concurrent_dispatches_is_respected_and_dispatch_is_concurrent(
    client: tasks_v2.CloudTasksClient, receiver: Receiver, path: str
) -> None:
    capped = new_queue(client, rate_limits={"max_concurrent_dispatches": 2})
    wide = new_queue(client, rate_limits={"max_concurrent_dispatches": 10})
    capped_path, wide_path = f"{path}/capped", f"{path}/wide"
    receiver.plan(capped_path, *[(200, 0.15)] * 6)
    receiver.plan(wide_path, *[(200, 0.15)] * 6)
    for _ in range(6):
        client.create_task(parent=capped.name, task=http_task(receiver.url(capped_path)))
        client.create_task(parent=wide.name, task=http_task(receiver.url(wide_path)))
    receiver.wait_hits(capped_path, 6)
    receiver.wait_hits(wide_path, 6)
    assert receiver.peak[capped_path] == 2
    assert receiver.peak[wide_path] > 2, "dispatch must not be sequential"


def test_dispatch_deadline_timeout_counts_as_a_failed_attempt(
    client: tasks_v2.CloudTasksClient, emulator: TasksEmulator, receiver: Receiver, path: str
) -> None:
    queue = new_queue(client, retry_config={"min_backoff": timedelta(seconds=0.05)})
    receiver.plan(path, (200, 1.0))
    name = f"{queue.name}/tasks/slow"
    client.create_task(
        parent=queue.name,
        task=http_task(receiver.url(path), name=name, dispatch_deadline=timedelta(seconds=0.2)),
    )
    hits = receiver.wait_hits(path, 2)
    assert wait_until(lambda: emulator.stats().tasks[name].outcome == "succeeded")
    assert emulator.stats().tasks[name].statuses == (0, 200)
    assert hits[1].headers["X-CloudTasks-TaskRetryCount"] == "1"
    assert hits[1].at - hits[0].at < 0.9, "the retry must not wait for the slow first answer"


def test_paused_queue_holds_tasks_until_resumed(
    client: tasks_v2.CloudTasksClient, receiver: Receiver, path: str
) -> None:
    queue = new_queue(client)
    paused = client.pause_queue(name=queue.name)
    assert paused.state == tasks_v2.Queue.State.PAUSED
    client.create_task(parent=queue.name, task=http_task(receiver.url(path)))
    time.sleep(0.3)
    assert receiver.hits(path) == []
    assert client.resume_queue(name=queue.name).state == tasks_v2.Queue.State.RUNNING
    receiver.wait_hits(path, 1)


ORDER_TASKS = 20


def dispatch_order(emulator: TasksEmulator, receiver: Receiver, path: str, count: int = ORDER_TASKS) -> list[str]:
    """Queue ``count`` tasks on a paused queue, resume it, and return the task ids in the order they arrived.

    One dispatch at a time, and all tasks due before the queue resumes: the
    only thing that decides the order is the stand-in's choice among due tasks.
    """
    client = make_client(emulator.address)
    try:
        queue = new_queue(client, rate_limits={"max_concurrent_dispatches": 1})
        client.pause_queue(name=queue.name)
        for i in range(count):
            client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=f"{queue.name}/tasks/t{i}"))
        client.resume_queue(name=queue.name)
        receiver.wait_hits(path, count)
        assert emulator.wait_until_idle(WAIT)
    finally:
        client.transport.close()
    return [hit.headers["X-CloudTasks-TaskName"] for hit in receiver.hits(path)]


def test_due_tasks_go_in_a_seeded_random_order_each_exactly_once(receiver: Receiver, path: str) -> None:
    enqueued = [f"t{i}" for i in range(ORDER_TASKS)]
    with TasksEmulator(seed=7) as first, TasksEmulator(seed=7) as again:
        order = dispatch_order(first, receiver, f"{path}/first")
        assert sorted(order) == sorted(enqueued), "every task exactly once, none lost"
        assert order != enqueued, "Cloud Tasks promises no order: due tasks must not go oldest first"
        assert dispatch_order(again, receiver, f"{path}/again") == order, "one seed, one order"


def test_in_order_dispatch_can_be_asked_for(receiver: Receiver, path: str) -> None:
    with TasksEmulator(out_of_order=False) as emulator:
        assert dispatch_order(emulator, receiver, path) == [f"t{i}" for i in range(ORDER_TASKS)]


def test_reordered_backlog_with_retries_loses_and_duplicates_nothing(receiver: Receiver, path: str) -> None:
    count, failures = 100, 5
    with TasksEmulator(seed=11) as emulator:
        client = make_client(emulator.address)
        try:
            queue = new_queue(
                client,
                rate_limits={"max_dispatches_per_second": 200, "max_concurrent_dispatches": 5},
                retry_config={"min_backoff": timedelta(seconds=0.01), "max_backoff": timedelta(seconds=0.05)},
            )
            receiver.plan(path, *[(503, 0.0)] * failures)
            client.pause_queue(name=queue.name)
            names = [f"{queue.name}/tasks/b{i}" for i in range(count)]
            for name in names:
                client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=name))
            client.resume_queue(name=queue.name)
            receiver.wait_hits(path, count + failures, timeout=3 * WAIT)
            assert emulator.wait_until_idle(3 * WAIT)
        finally:
            client.transport.close()
        stats = emulator.stats()
    hits = receiver.hits(path)
    assert len(hits) == count + failures, "no task dispatched again after its success"
    assert stats.dropped == 0
    assert all(stats.tasks[n].outcome == "succeeded" and stats.tasks[n].statuses[-1] == 200 for n in names)
    assert sum(len(stats.tasks[n].statuses) for n in names) == count + failures
    assert stats.queue(queue.name).throttle_events == failures, "throttling is unchanged by the order"
    first_seen = list(dict.fromkeys(hit.headers["X-CloudTasks-TaskName"] for hit in hits))
    assert sorted(first_seen) == sorted(n.rsplit("/", 1)[-1] for n in names)


def test_jitter_reorders_an_idle_queue_but_never_runs_a_task_early(receiver: Receiver, path: str) -> None:
    jitter, delay = 0.2, 0.5
    with TasksEmulator(seed=3, dispatch_jitter=jitter) as emulator:
        client = make_client(emulator.address)
        try:
            queue = new_queue(client)
            created = time.monotonic()
            later = datetime.now(UTC) + timedelta(seconds=delay)
            for i in range(10):
                name = f"{queue.name}/tasks/n{i}"
                client.create_task(parent=queue.name, task=http_task(receiver.url(path), name=name))
            for i in range(10):
                client.create_task(
                    parent=queue.name,
                    task=http_task(receiver.url(path), name=f"{queue.name}/tasks/f{i}", schedule_time=later),
                )
            hits = receiver.wait_hits(path, 20)
            assert emulator.wait_until_idle(WAIT)
        finally:
            client.transport.close()
    at = {hit.headers["X-CloudTasks-TaskName"]: hit.at for hit in hits}
    assert len(hits) == len(at) == 20
    assert all(at[f"f{i}"] >= created + delay - 0.05 for i in range(10)), "never before schedule_time"
    assert all(at[f"f{i}"] <= created + delay + jitter + 2.0 for i in range(10))
    now_order = sorted((at[f"n{i}"], f"n{i}") for i in range(10))
    assert [name for _, name in now_order] != [f"n{i}" for i in range(10)], "tasks created apart still reordered"


def test_run_task_dispatches_a_future_task_now_and_purge_removes_tasks(
    client: tasks_v2.CloudTasksClient, receiver: Receiver, path: str
) -> None:
    queue = new_queue(client)
    later = datetime.now(UTC) + timedelta(minutes=10)
    forced = client.create_task(
        parent=queue.name, task=http_task(receiver.url(path), name=f"{queue.name}/tasks/forced", schedule_time=later)
    )
    client.create_task(
        parent=queue.name, task=http_task(receiver.url(path), name=f"{queue.name}/tasks/purged", schedule_time=later)
    )
    client.run_task(name=forced.name)
    (hit,) = receiver.wait_hits(path, 1)
    assert hit.headers["X-CloudTasks-TaskName"] == "forced"
    purged = client.purge_queue(name=queue.name)
    assert purged.purge_time.timestamp() > 0
    assert list(client.list_tasks(parent=queue.name)) == []


def test_queue_lifecycle_and_error_codes(client: tasks_v2.CloudTasksClient, receiver: Receiver, path: str) -> None:
    queue = new_queue(client, rate_limits={"max_dispatches_per_second": 20})
    assert queue.retry_config.max_attempts == 100
    assert queue.retry_config.max_doublings == 16
    assert queue.retry_config.min_backoff == timedelta(seconds=0.1)
    assert queue.retry_config.max_backoff == timedelta(seconds=3600)
    assert client.get_queue(name=queue.name).rate_limits.max_dispatches_per_second == 20
    assert queue.name in [q.name for q in client.list_queues(parent=LOCATION)]

    updated = client.update_queue(
        queue={"name": queue.name, "retry_config": {"max_attempts": 4}},
        update_mask={"paths": ["retry_config.max_attempts"]},
    )
    assert updated.retry_config.max_attempts == 4
    assert updated.rate_limits.max_dispatches_per_second == 20, "fields outside the mask are kept"

    with pytest.raises(gexc.AlreadyExists):
        client.create_queue(parent=LOCATION, queue={"name": queue.name})
    with pytest.raises(gexc.NotFound):
        client.get_queue(name=f"{LOCATION}/queues/missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(gexc.NotFound):
        client.create_task(
            parent=f"{LOCATION}/queues/missing-{uuid.uuid4().hex[:8]}", task=http_task(receiver.url(path))
        )
    with pytest.raises(gexc.InvalidArgument):
        client.create_task(parent=queue.name, task=http_task("ftp://example/x"))
    with pytest.raises(gexc.InvalidArgument):
        client.create_task(
            parent=queue.name, task=http_task(receiver.url(path), http={"http_method": "GET", "body": b"x"})
        )
    with pytest.raises(gexc.InvalidArgument):
        client.create_task(
            parent=queue.name, task=http_task(receiver.url(path), name=f"{LOCATION}/queues/other/tasks/t")
        )
    with pytest.raises(gexc.InvalidArgument):
        client.create_queue(
            parent=LOCATION,
            queue={
                "name": f"{LOCATION}/queues/bad-{uuid.uuid4().hex[:8]}",
                "rate_limits": {"max_dispatches_per_second": 501},
            },
        )
    with pytest.raises(gexc.MethodNotImplemented):
        client.create_task(parent=queue.name, task={"app_engine_http_request": {"relative_uri": "/x"}})
    with pytest.raises(gexc.NotFound):
        client.delete_task(name=f"{queue.name}/tasks/never-existed")

    client.delete_queue(name=queue.name)
    with pytest.raises(gexc.NotFound):
        client.get_queue(name=queue.name)
    assert receiver.hits(path) == []


def test_recently_deleted_queue_name_is_refused_when_configured() -> None:
    with TasksEmulator(queue_tombstone_seconds=60) as emu:
        client = make_client(emu.address)
        try:
            queue = new_queue(client)
            client.delete_queue(name=queue.name)
            with pytest.raises(gexc.FailedPrecondition):
                client.create_queue(parent=LOCATION, queue={"name": queue.name})
        finally:
            client.transport.close()


@pytest.mark.parametrize(
    ("retry_index", "expected"),
    [(0, 10), (1, 20), (2, 40), (3, 80), (4, 160), (5, 240), (6, 300), (7, 300)],
)
def test_backoff_follows_the_documented_cloud_tasks_example(retry_index: int, expected: float) -> None:
    assert backoff_seconds(retry_index, min_backoff=10, max_backoff=300, max_doublings=3) == expected


def test_module_runs_as_a_process_and_stops_on_sigterm() -> None:
    process, address = start_module(
        "devstack.tasks_emulator", "--port", "0", "--queue", f"{LOCATION}/queues/cli", "--seed", "1", "--in-order"
    )
    try:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address)
        client = make_client(address)
        try:
            assert client.get_queue(name=f"{LOCATION}/queues/cli").state == tasks_v2.Queue.State.RUNNING
        finally:
            client.transport.close()
    finally:
        code = stop_module(process)
    assert code == 0
    assert process.stdout is not None
    assert process.stdout.read().strip() == "", "READY must be the only stdout line"

"""Send lanes on the Cloud Tasks stand-in: profiles-apply makes and re-rates them through the real
CloudTasksClient, send tasks go to their business's lane, and each lane keeps its own rate
(docs/decisions/0022-send-queue-per-number.md). Timing checks are orderings and lower bounds only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Mapping

import pytest
from google.cloud import tasks_v2

from devstack.tasks_emulator import TasksEmulator
from shared.adapters.cloud_tasks import SendTask, TaskQueue, emulator_client
from shared.adapters.profile_store import SEND_QUEUE
from shared.adapters.send_queues import CREATED, UNCHANGED, UPDATED, SendQueues
from shared.config import Settings
from tests.integration.test_tasks_emulator import WAIT, Receiver, wait_until

PROJECT, LOCATION = "test-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
A, B = "whatsapp:+14155550001", "whatsapp:+14155550002"
NOW = datetime(2026, 12, 4, tzinfo=UTC)


@pytest.fixture(scope="module")
def emulator() -> Iterator[TasksEmulator]:
    with TasksEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture()
def shared(emulator: TasksEmulator) -> str:
    """A shared queue of its own per test, with the retry policy lanes copy."""
    queue_id = f"shared-{uuid.uuid4().hex[:8]}"
    emulator_client(emulator.address).create_queue(parent=PARENT, queue=tasks_v2.Queue(
        name=f"{PARENT}/queues/{queue_id}",
        rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=20, max_concurrent_dispatches=20),
        retry_config=tasks_v2.RetryConfig(max_attempts=50, max_doublings=5)))
    return queue_id


def apply(emulator: TasksEmulator, shared: str, raw: Mapping[str, Mapping[str, Any]], lanes: tuple[str, ...],
          stored: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[dict[str, Mapping[str, Any]], list[str]]:
    """profiles-apply's send-queue step on the stand-in; the written profile documents and the report."""
    from shared.ops.send_queues import with_send_queues

    settings = Settings(project_id=PROJECT, tasks_location=LOCATION, tasks_queue=shared, send_lanes=lanes)
    queues = SendQueues(PROJECT, LOCATION, shared, lambda: emulator_client(emulator.address))
    written: dict[str, Mapping[str, Any]] = {}
    report: list[str] = []
    put = with_send_queues(lambda a, doc, _now: written.__setitem__(a, doc), raw, stored or {}, lambda: queues,
                           settings, report)
    for address, profile in raw.items():
        put(address, profile, NOW)
    return written, report


def lanes_of(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}-{i:02d}" for i in range(n))


def test_apply_creates_each_lane_at_its_rate_then_updates_the_same_lane(emulator: TasksEmulator, shared: str) -> None:
    lanes = lanes_of(f"l{uuid.uuid4().hex[:6]}", 3)
    written, report = apply(emulator, shared, {A: {"send_rate_per_second": 5}, B: {}}, lanes)
    client = emulator_client(emulator.address)
    lane_a = client.get_queue(name=f"{PARENT}/queues/{written[A][SEND_QUEUE]}")
    assert lane_a.rate_limits.max_dispatches_per_second == 5
    assert lane_a.rate_limits.max_burst_size == 1, "Cloud Tasks derives the burst from the rate"
    assert lane_a.retry_config.max_attempts == 50, "a lane retries as the shared queue does"
    lane_b = client.get_queue(name=f"{PARENT}/queues/{written[B][SEND_QUEUE]}")
    assert lane_b.rate_limits.max_dispatches_per_second == Settings().send_rate_per_second
    assert all(CREATED in line for line in report)

    again, report = apply(emulator, shared, {A: {"send_rate_per_second": 40}, B: {}}, lanes, stored=written)
    assert again[A][SEND_QUEUE] == written[A][SEND_QUEUE] and again[B][SEND_QUEUE] == written[B][SEND_QUEUE]
    assert UPDATED in report[0] and UNCHANGED in report[1]
    lane_a = client.get_queue(name=f"{PARENT}/queues/{written[A][SEND_QUEUE]}")
    assert (lane_a.rate_limits.max_dispatches_per_second, lane_a.rate_limits.max_burst_size) == (40, 8)


def test_each_lane_keeps_its_own_rate_so_a_backlog_does_not_hold_another_business_back(
    emulator: TasksEmulator, receiver: Receiver, shared: str
) -> None:
    lanes = lanes_of(f"l{uuid.uuid4().hex[:6]}", 2)
    written, _ = apply(emulator, shared, {A: {"send_rate_per_second": 4}, B: {"send_rate_per_second": 50}}, lanes)
    routes = {address: str(doc[SEND_QUEUE]) for address, doc in written.items()}
    path = f"/s/{uuid.uuid4().hex[:8]}"
    queue = TaskQueue(PROJECT, LOCATION, shared, receiver.url(path), "", lambda: emulator_client(emulator.address),
                      route=routes.get)
    for n in range(16):  # A's campaign: four seconds of its rate
        queue.enqueue(SendTask(f"a{n:019d}", f"SMa{n}", 1, business=A))
    for n in range(5):
        queue.enqueue(SendTask(f"b{n:019d}", f"SMb{n}", 1, business=B))
    hits = receiver.wait_hits(path, 21, timeout=WAIT)
    order = [b'"conversation": "b' in hit.body for hit in hits]
    last_b = max(i for i, is_b in enumerate(order) if is_b)
    assert last_b < 8, f"B's replies waited behind A's backlog: {order}"
    a_times = [hit.at for hit, is_b in zip(hits, order) if not is_b]
    assert a_times[-1] - a_times[0] >= 2.5, "A's lane dispatched faster than its 4/s"
    stats = emulator.stats()
    assert stats.queue(f"{PARENT}/queues/{routes[A]}").max_dispatches_per_second == 4
    assert wait_until(lambda: emulator.wait_until_idle(0.1), WAIT)


def test_a_business_without_a_lane_and_a_missing_lane_use_the_shared_queue(
    emulator: TasksEmulator, receiver: Receiver, shared: str
) -> None:
    path = f"/s/{uuid.uuid4().hex[:8]}"
    queue = TaskQueue(PROJECT, LOCATION, shared, receiver.url(path), "", lambda: emulator_client(emulator.address),
                      route={A: "never-created"}.get)
    assert queue.enqueue(SendTask("a" * 20, "SM1", 1, business=A))
    assert queue.enqueue(SendTask("b" * 20, "SM2", 1, business=B))
    hits = receiver.wait_hits(path, 2)
    assert {hit.headers["X-CloudTasks-QueueName"] for hit in hits} == {shared}


def test_a_rate_raised_while_tasks_wait_takes_effect_on_those_tasks(
    emulator: TasksEmulator, receiver: Receiver, shared: str
) -> None:
    lanes = lanes_of(f"l{uuid.uuid4().hex[:6]}", 1)
    written, _ = apply(emulator, shared, {A: {"send_rate_per_second": 2}}, lanes)
    path = f"/s/{uuid.uuid4().hex[:8]}"
    queue = TaskQueue(PROJECT, LOCATION, shared, receiver.url(path), "", lambda: emulator_client(emulator.address),
                      route={A: str(written[A][SEND_QUEUE])}.get)
    for n in range(30):  # 15 s at 2/s, more than WAIT
        queue.enqueue(SendTask(f"a{n:019d}", f"SMa{n}", 1, business=A))
    receiver.wait_hits(path, 2)
    assert len(receiver.hits(path)) < 10, "the lane dispatched faster than its 2/s"
    apply(emulator, shared, {A: {"send_rate_per_second": 80}}, lanes, stored=written)
    hits = receiver.wait_hits(path, 30, timeout=WAIT)
    assert len({hit.body for hit in hits}) == 30 == len(hits), "a waiting task went twice or not at all"

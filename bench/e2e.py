"""Figure 2: webhook POST to the reply at the Twilio stand-in, against the emulator hops alone.

The floor is what the pipeline cannot avoid even with zero code of ours: one
Pub/Sub publish pushed to an HTTP endpoint, one Cloud Tasks task dispatched to
an HTTP endpoint, one Firestore transaction (read + write one document), each
with the real Google client against the same emulators. One floor round runs
after each message, so target and floor share the machine's state.

The Pub/Sub emulator polls each push subscription every 100 ms when it found
nothing to push (PushLoop, a fixed interval), so a push waits 0 to 100 ms
depending on when it was published. A fixed-rhythm loop would lock onto one
phase of that poll and bias whichever side it favours; a random pause before
each message and before each floor round makes both see a uniform phase.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from google.cloud import firestore, pubsub_v1, tasks_v2

from bench.driver import Driver
from bench.receiver import Receiver
from devstack.stack import Stack
from shared.config import Settings
from shared.adapters.cloud_tasks import emulator_client

HOP_TIMEOUT_SECONDS = 30.0
REPLY_TIMEOUT_SECONDS = 30.0
SETTLE_SECONDS = 0.05
PUSH_POLL_SECONDS = 0.1  # the emulator's push poll interval
HOP_TOPIC = "bench-hop"
HOP_SUBSCRIPTION = "bench-hop-push"
HOP_QUEUE = "bench-hop"
HOP_COLLECTION = "bench_floor"


@firestore.transactional
def _read_then_write(transaction: firestore.Transaction, ref: firestore.DocumentReference) -> None:
    snap = ref.get(transaction=transaction)
    count = int((snap.to_dict() or {}).get("n", 0)) if snap.exists else 0
    transaction.set(ref, {"n": count + 1, "at": datetime.now(timezone.utc)})


class HopFloor:
    """The three emulator hops, set up like the stack's own topology (ordering, queue limits)."""

    def __init__(self, stack: Stack, receiver: Receiver) -> None:
        o = stack.options
        settings = Settings.from_env(stack.function_env("webhook"))
        self._receiver = receiver
        project = f"projects/{o.project}"
        self._topic = f"{project}/topics/{HOP_TOPIC}"
        self.publisher = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=settings.publish_max_latency_seconds),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        )
        self.publisher.create_topic(name=self._topic)
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(
            request={
                "name": f"{project}/subscriptions/{HOP_SUBSCRIPTION}",
                "topic": self._topic,
                "push_config": {"push_endpoint": receiver.url},
                "ack_deadline_seconds": o.ack_deadline_seconds,
                "enable_message_ordering": True,
            }
        )
        subscriber.close()
        self.tasks = emulator_client(stack.tasks.address)
        self._queue = f"{project}/locations/{o.tasks_location}/queues/{HOP_QUEUE}"
        self.tasks.create_queue(parent=f"{project}/locations/{o.tasks_location}", queue=o.queue(self._queue))
        self.db = firestore.Client(project=o.project)

    def push(self, key: str) -> float:
        """Publish start to the push arriving at the receiver."""
        started = time.time()
        self.publisher.publish(self._topic, key.encode(), ordering_key=f"hop-{key}", probe=key).result(
            timeout=HOP_TIMEOUT_SECONDS
        )
        return self._arrived(key, started)

    def task(self, key: str) -> float:
        """CreateTask start to the dispatch arriving at the receiver."""
        started = time.time()
        self.tasks.create_task(
            request={
                "parent": self._queue,
                "task": {
                    "name": f"{self._queue}/tasks/hop-{key}",
                    "http_request": {
                        "http_method": tasks_v2.HttpMethod.POST,
                        "url": self._receiver.url,
                        "headers": {"Content-Type": "application/json"},
                        "body": key.encode(),
                    },
                },
            },
            timeout=10.0,
        )
        return self._arrived(key, started)

    def transaction(self, key: str) -> float:
        """One read-then-write transaction on one document, as a client sees it."""
        ref = self.db.collection(HOP_COLLECTION).document(key)
        started = time.perf_counter()
        _read_then_write(self.db.transaction(), ref)
        return time.perf_counter() - started

    def _arrived(self, key: str, started: float) -> float:
        arrived = self._receiver.wait(key, HOP_TIMEOUT_SECONDS)
        if arrived is None:
            raise TimeoutError(f"floor probe {key} never arrived")
        return arrived - started

    def round(self, key: str) -> tuple[float, float, float]:
        return self.push(f"p-{key}"), self.task(f"t-{key}"), self.transaction(f"f-{key}")

    def close(self) -> None:
        self.publisher.stop()
        self.db.close()


@dataclass
class E2ERun:
    """Seconds from POST start to the reply's arrival, and the floor rounds run alongside."""

    latencies: list[float] = field(default_factory=list)
    # Per answered message, for the stage breakdown: its SID, POST start and reply arrival (time.time()).
    timeline: list[tuple[str, float, float]] = field(default_factory=list)
    push: list[float] = field(default_factory=list)
    task: list[float] = field(default_factory=list)
    transaction: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def floor_sums(self) -> list[float]:
        return [a + b + c for a, b, c in zip(self.push, self.task, self.transaction)]

    @property
    def floor_without_push(self) -> list[float]:
        """The floor hops other than the push: what the pipeline's stages 1, 3 and 4 compare with."""
        return [b + c for b, c in zip(self.task, self.transaction)]

    def fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {"failures": dict(self.failures)}


def run(driver: Driver, hops: HopFloor, messages: int, tag: str, seed: int = 7) -> E2ERun:
    """Sequential messages from distinct users, each followed by one floor round."""
    result = E2ERun()
    rng = random.Random(seed)
    for i in range(messages):
        user = driver.new_user()
        marker = f"{tag}-{i}-{user[-6:]}"
        prepared = driver.prepare(user, marker)
        time.sleep(SETTLE_SECONDS + rng.uniform(0, PUSH_POLL_SECONDS))
        posted = driver.send(prepared)
        if posted.status != 200:
            result.fail(f"webhook answered {posted.status}")
            continue
        reply = driver.wait_reply(user, marker, REPLY_TIMEOUT_SECONDS)
        if reply is None:
            result.fail("no reply in time")
            continue
        result.latencies.append(reply.received_at - posted.started)
        result.timeline.append((prepared.sid, posted.started, reply.received_at))
        time.sleep(SETTLE_SECONDS + rng.uniform(0, PUSH_POLL_SECONDS))
        try:
            push, task, transaction = hops.round(f"{tag}-{i}")
        except TimeoutError:
            result.fail("floor probe timed out")
            continue
        result.push.append(push)
        result.task.append(task)
        result.transaction.append(transaction)
    return result

"""Figure 7: one user's burst must not slow everyone else down.

One user sends 10 messages within a second while 50 other users send one
message each, all starting at the same instant; the figure is the p99 of the
50 others' latency (webhook POST -> reply at the Twilio stand-in), against the
same 50 users without the burst user. All replies share one Cloud Tasks queue,
and Cloud Tasks slows a whole queue down when its target answers 429 or 5xx
(system throttling, modelled by the stand-in), so a sender that answers an
error to make a reply wait for its predecessor makes every user wait. The
stand-in dispatches due tasks in no particular order, as Cloud Tasks does, so
with a backlog a user's later reply is often offered before the earlier one.

Rounds without the burst user run first: the stand-in's throttling recovers
only with successes, so a round right after a burst round would start on a
throttled queue and flatter the ratio. The queue's effective rate is recorded
at the start of every round and its throttle events per round, so a baseline
that did not start at the full rate shows in the JSON.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.driver import Driver, PreparedPost, reply_marker

START_DELAY_SECONDS = 0.3  # lets every sender thread reach the start line
BURST_MESSAGES = 10
BURST_SECONDS = 1.0


@dataclass
class Round:
    """One round: the others' latencies (s) and what the queue did meanwhile."""

    burst: bool
    latencies: list[float] = field(default_factory=list)
    burst_latencies: list[float] = field(default_factory=list)
    missing: int = 0
    rejected: int = 0
    seconds: float = 0.0
    rate_at_start: float = 0.0
    lowest_rate: float = 0.0
    throttle_events: int = 0
    failed_dispatches: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "burst_user": self.burst,
            "others_answered": len(self.latencies),
            "burst_answered": len(self.burst_latencies),
            "missing": self.missing,
            "rejected_by_webhook": self.rejected,
            "seconds_until_all_answered": round(self.seconds, 2),
            "queue_effective_rate_at_start": round(self.rate_at_start, 3),
            "queue_lowest_effective_rate": round(self.lowest_rate, 3),
            "queue_throttle_events": self.throttle_events,
            "queue_failed_dispatches": self.failed_dispatches,
        }


@dataclass
class BurstRun:
    baseline: list[Round] = field(default_factory=list)
    burst: list[Round] = field(default_factory=list)

    @staticmethod
    def _all(rounds: list[Round]) -> list[float]:
        return [latency for r in rounds for latency in r.latencies]

    @property
    def baseline_latencies(self) -> list[float]:
        return self._all(self.baseline)

    @property
    def burst_round_latencies(self) -> list[float]:
        return self._all(self.burst)

    @property
    def burst_user_latencies(self) -> list[float]:
        return [latency for r in self.burst for latency in r.burst_latencies]


class _Queue:
    """The stack queue's throttling as the in-process Cloud Tasks stand-in reports it."""

    def __init__(self, driver: Driver) -> None:
        self._tasks = driver.stack.tasks
        self._name = driver.stack.queue_path

    def sample(self) -> tuple[float, int, int]:
        """Effective rate now, throttle events and failed dispatches so far."""
        stats = self._tasks.queue_stats(self._name)
        return stats.effective_execution_rate, stats.throttle_events, stats.failed


def run_round(driver: Driver, others: int, burst: bool, tag: str, grace: float) -> Round:
    """All senders start at one instant; the burst user's messages leave in order, evenly over a second."""
    result = Round(burst)
    queue = _Queue(driver)
    result.rate_at_start, events_before, failed_before = queue.sample()
    result.lowest_rate = result.rate_at_start
    plans: list[list[tuple[float, PreparedPost]]] = [
        [(0.0, driver.prepare(driver.new_user(), f"{tag}-o{i}"))] for i in range(others)
    ]
    burst_user = driver.new_user()
    if burst:
        plans.append([
            (i * BURST_SECONDS / BURST_MESSAGES, driver.prepare(burst_user, f"{tag}-b{i}"))
            for i in range(BURST_MESSAGES)
        ])
    posted: list[tuple[float, PreparedPost]] = []
    lock = threading.Lock()
    start = time.perf_counter() + START_DELAY_SECONDS

    def sender(plan: list[tuple[float, PreparedPost]]) -> None:
        for due, prepared in plan:
            delay = start + due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            outcome = driver.send(prepared)
            with lock:
                if outcome.status == 200:
                    posted.append((outcome.started, prepared))
                else:
                    result.rejected += 1

    threads = [threading.Thread(target=sender, args=(plan,), daemon=True) for plan in plans]
    for thread in threads:
        thread.start()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.1):
            rate, _, _ = queue.sample()
            result.lowest_rate = min(result.lowest_rate, rate)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for thread in threads:
        thread.join(timeout=BURST_SECONDS + 60)
    expected: dict[str, list[str]] = {}
    for _, prepared in posted:
        expected.setdefault(prepared.user, []).append(prepared.marker)
    driver.wait_drained(grace, expected)
    stop.set()
    watcher.join(timeout=1)
    arrivals = {(m.to, reply_marker(m.body)): m.received_at for m in driver.twilio.messages}
    first_post = min((started for started, _ in posted), default=time.time())
    last_reply = first_post
    for started, prepared in posted:
        arrived = arrivals.get((prepared.user, prepared.marker))
        if arrived is None:
            result.missing += 1
            continue
        last_reply = max(last_reply, arrived)
        (result.burst_latencies if prepared.user == burst_user else result.latencies).append(arrived - started)
    result.seconds = last_reply - first_post
    _, events_after, failed_after = queue.sample()
    result.throttle_events = events_after - events_before
    result.failed_dispatches = failed_after - failed_before
    return result


def run(driver: Driver, others: int, rounds: int, tag: str, grace: float) -> BurstRun:
    """``rounds`` rounds of the others alone, then ``rounds`` with the burst user, each on a drained pipeline."""
    result = BurstRun()
    for burst, into in ((False, result.baseline), (True, result.burst)):
        for i in range(rounds):
            driver.wait_drained(grace)
            time.sleep(0.5)
            into.append(run_round(driver, others, burst, f"{tag}{'b' if burst else 'n'}{i}", grace))
    return result

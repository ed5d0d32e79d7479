"""Figure 3: the highest offered rate the pipeline keeps up with, end to end.

Each step offers a fixed rate for a bounded time (open loop: messages are due
at fixed instants whatever the pipeline does), from many users who each send
numbered messages. A step is sustained when every reply arrives, replies keep
pace with the offered rate, and latency does not climb through the step.
Stepping stops at the first step that is not sustained.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.driver import Driver, PreparedPost, reply_marker
from bench.stats import percentile, summarize

MESSAGES_PER_USER = 4
SENDER_THREADS = 8
KEEP_PACE = 0.9  # replies must arrive at >= 90% of the offered rate
CLIMB_FACTOR = 2.0  # last-quarter median latency over first-quarter median
CLIMB_MIN_SECONDS = 0.25


@dataclass
class Step:
    rate: float
    duration: float
    users: int
    sent: int = 0
    accepted: int = 0
    completed: int = 0
    offered_rate: float = 0.0
    completion_rate: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_quarter_p50: float = math.nan
    last_quarter_p50: float = math.nan
    sustained: bool = False
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "target_rate": self.rate,
            "duration_seconds": self.duration,
            "users": self.users,
            "sent": self.sent,
            "accepted": self.accepted,
            "completed": self.completed,
            "offered_rate": round(self.offered_rate, 2),
            "completion_rate": round(self.completion_rate, 2),
            "latency_ms": summarize(self.latencies).scaled(1000).to_json(1),
            "first_quarter_p50_ms": round(self.first_quarter_p50 * 1000, 1),
            "last_quarter_p50_ms": round(self.last_quarter_p50 * 1000, 1),
            "sustained": self.sustained,
            "reason": self.reason,
        }


def run_step(driver: Driver, rate: float, duration: float, tag: str, grace: float) -> Step:
    """Offer ``rate`` msg/s for ``duration`` s, then wait up to ``grace`` s for the last replies."""
    total = max(2, round(rate * duration))
    users = [driver.new_user() for _ in range(max(2, math.ceil(total / MESSAGES_PER_USER)))]
    step = Step(rate, duration, len(users))
    # Each user belongs to one sender thread, so a user's messages leave in order.
    plans: list[list[tuple[float, PreparedPost]]] = [[] for _ in range(SENDER_THREADS)]
    for i in range(total):
        u = i % len(users)
        prepared = driver.prepare(users[u], f"{tag}-u{u}-n{i // len(users)}")
        plans[u % SENDER_THREADS].append((i / rate, prepared))
    outcomes: list[tuple[float, PreparedPost, int]] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.2

    def sender(plan: list[tuple[float, PreparedPost]]) -> None:
        for due, prepared in plan:
            delay = start + due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            result = driver.send(prepared)
            with lock:
                outcomes.append((result.started, prepared, result.status))

    threads = [threading.Thread(target=sender, args=(plan,), daemon=True) for plan in plans if plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration + 120)
    step.sent = len(outcomes)
    accepted = sorted((o for o in outcomes if o[2] == 200), key=lambda o: o[0])
    step.accepted = len(accepted)
    if len(accepted) < 2:
        step.reason = "the webhook accepted fewer than 2 messages"
        return step
    step.offered_rate = (len(accepted) - 1) / max(accepted[-1][0] - accepted[0][0], 1e-9)
    expected: dict[str, list[str]] = {}
    for _, prepared, _ in accepted:
        expected.setdefault(prepared.user, []).append(prepared.marker)
    drained = driver.wait_drained(grace, expected)
    arrivals = {(m.to, reply_marker(m.body)): m.received_at for m in driver.twilio.messages}
    pairs = [(started, arrivals.get((p.user, p.marker))) for started, p, _ in accepted]
    done = sorted(a for _, a in pairs if a is not None)
    step.completed = len(done)
    step.latencies = [a - s for s, a in pairs if a is not None]
    if len(done) >= 2:
        step.completion_rate = (len(done) - 1) / max(done[-1] - done[0], 1e-9)
    quarter = max(1, len(pairs) // 4)
    first = [a - s for s, a in pairs[:quarter] if a is not None]
    last = [a - s for s, a in pairs[-quarter:] if a is not None]
    step.first_quarter_p50 = percentile(first, 50)
    step.last_quarter_p50 = percentile(last, 50)
    climbing = (
        step.last_quarter_p50 > CLIMB_FACTOR * step.first_quarter_p50
        and step.last_quarter_p50 - step.first_quarter_p50 > CLIMB_MIN_SECONDS
    )
    if not drained or step.completed < step.accepted:
        step.reason = f"{step.accepted - step.completed} replies missing after a {grace:.0f}s grace"
    elif step.offered_rate < KEEP_PACE * rate:
        step.reason = f"could only offer {step.offered_rate:.1f} msg/s"
    elif step.completion_rate < KEEP_PACE * step.offered_rate:
        step.reason = f"replies fell behind ({step.completion_rate:.1f} < {KEEP_PACE:.0%} of {step.offered_rate:.1f} msg/s)"
    elif climbing:
        step.reason = (
            f"latency climbed from {step.first_quarter_p50 * 1000:.0f} to {step.last_quarter_p50 * 1000:.0f} ms"
        )
    else:
        step.sustained = True
        step.reason = "kept up"
    return step


def run(driver: Driver, rates: list[float], duration: float, grace: float, tag: str) -> list[Step]:
    """Step the offered rate up until a step is not sustained."""
    steps: list[Step] = []
    for rate in rates:
        step = run_step(driver, rate, duration, f"{tag}{rate:g}", grace)
        steps.append(step)
        driver.wait_drained(grace)
        time.sleep(0.5)
        if not step.sustained:
            break
    return steps

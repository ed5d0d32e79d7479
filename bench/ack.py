"""Figure 1: how long Twilio waits for webhook_fn's 200, against the bare publish-and-answer floor.

Target and floor are measured interleaved (alternating requests when
sequential, alternating rounds when concurrent), so both see the same noise
from the machine and from the pipeline working off earlier messages.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from bench.driver import Driver, PreparedPost

TARGET = "target"
FLOOR = "floor"


@dataclass
class AckRun:
    """Seconds per accepted request, for the webhook and the floor; non-200 answers counted apart."""

    target: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per request of each side's process
    # (side, wall-clock start, seconds) of every accepted request: when the outliers happened.
    timeline: list[tuple[str, float, float]] = field(default_factory=list)

    def add(self, which: str, status: int, seconds: float, started: float) -> None:
        if status != 200:
            self.errors[f"{which}:{status}"] += 1
            return
        (self.target if which == TARGET else self.floor).append(seconds)
        self.timeline.append((which, started, seconds))

    @property
    def started(self) -> float:
        """Wall-clock start of the first request (to line outliers up with the functions' logs)."""
        return min((started for _, started, _ in self.timeline), default=0.0)

    def slowest(self, count: int = 5) -> list[dict[str, object]]:
        """The slowest requests, with their offset into the phase, to tell one stall from a trend."""
        if not self.timeline:
            return []
        first = min(started for _, started, _ in self.timeline)
        worst = sorted(self.timeline, key=lambda t: t[2], reverse=True)[:count]
        return [
            {"side": side, "at_seconds": round(started - first, 2), "ms": round(seconds * 1000, 1)}
            for side, started, seconds in worst
        ]


def _prepare(driver: Driver, which: str, floor_url: str, tag: str) -> PreparedPost:
    user = driver.new_user()
    marker = f"{tag}-{which}-{user[-7:]}"
    return driver.prepare(user, marker, url=None if which == TARGET else floor_url)


def sequential(driver: Driver, floor_url: str, pairs: int, tag: str) -> AckRun:
    """One request at a time, alternating which side goes first so neither always follows the other."""
    run = AckRun()
    for i in range(pairs):
        for which in ((TARGET, FLOOR) if i % 2 == 0 else (FLOOR, TARGET)):
            prepared = _prepare(driver, which, floor_url, tag)
            result = driver.send(prepared, book=which == TARGET)
            run.add(which, result.status, result.seconds, result.started)
    return run


def concurrent(driver: Driver, floor_url: str, clients: int, per_client: int, rounds: int, tag: str) -> AckRun:
    """``clients`` threads posting back to back, one side per round, alternating sides between rounds."""
    run = AckRun()
    lock = threading.Lock()
    for r in range(rounds):
        for which in ((TARGET, FLOOR) if r % 2 == 0 else (FLOOR, TARGET)):
            batches = [[_prepare(driver, which, floor_url, tag) for _ in range(per_client)] for _ in range(clients)]
            barrier = threading.Barrier(clients)

            def client(batch: list[PreparedPost], side: str = which, gate: threading.Barrier = barrier) -> None:
                gate.wait(timeout=30)
                for prepared in batch:
                    result = driver.send(prepared, book=side == TARGET)
                    with lock:
                        run.add(side, result.status, result.seconds, result.started)

            threads = [threading.Thread(target=client, args=(b,), daemon=True) for b in batches]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
    return run

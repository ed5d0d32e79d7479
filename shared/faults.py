"""Fault points for the crash tests, off unless TEST_FAULT_POINTS names them.

``TEST_FAULT_POINTS=after_save`` makes the first pass through that point raise
:class:`InjectedFault`; ``after_save:3`` the first three; ``after_save:*`` every
one; ``after_ai@6`` makes the first pass stall for 6 seconds instead (a frozen
instance whose lease runs out). A few points are not crashes but lost answers,
asked with :meth:`FaultPoints.fires`. The handler lets it through untouched, so the request fails exactly as if
the instance had died there: nothing after the point runs, nothing is
recorded, and Pub/Sub or Cloud Tasks delivers again. Every real deployment
leaves the variable empty, and then :meth:`FaultPoints.hit` does nothing.
"""

from __future__ import annotations

import threading
import time


class InjectedFault(Exception):
    """A crash simulated by a test at a named point."""


class FaultPoints:
    def __init__(self, spec: tuple[str, ...] = ()) -> None:
        self._remaining: dict[str, float] = {}
        self._stalls: dict[str, float] = {}
        for item in spec:
            name, _, stall = item.partition("@")
            name, _, count = name.partition(":")
            self._remaining[name.strip()] = float("inf") if count == "*" else int(count or 1)
            if stall:
                self._stalls[name.strip()] = float(stall)
        self._lock = threading.Lock()

    def fires(self, point: str) -> bool:
        """Whether this pass through ``point`` is one of the injected ones (consumes it)."""
        if not self._remaining:
            return False
        with self._lock:
            left = self._remaining.get(point, 0)
            if left <= 0:
                return False
            self._remaining[point] = left - 1
        return True

    def hit(self, point: str) -> None:
        if not self.fires(point):
            return
        if point in self._stalls:
            time.sleep(self._stalls[point])
            return
        raise InjectedFault(point)

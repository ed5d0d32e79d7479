"""Fault points for the crash tests, off unless TEST_FAULT_POINTS names them.

``TEST_FAULT_POINTS=after_save`` makes the first pass through that point raise
:class:`InjectedFault`; ``after_save:3`` the first three; ``after_save:*`` every
one. The handler lets it through untouched, so the request fails exactly as if
the instance had died there: nothing after the point runs, nothing is
recorded, and Pub/Sub or Cloud Tasks delivers again. Every real deployment
leaves the variable empty, and then :meth:`FaultPoints.hit` does nothing.
"""

from __future__ import annotations

import threading


class InjectedFault(Exception):
    """A crash simulated by a test at a named point."""


class FaultPoints:
    def __init__(self, spec: tuple[str, ...] = ()) -> None:
        self._remaining: dict[str, float] = {}
        for item in spec:
            name, _, count = item.partition(":")
            self._remaining[name.strip()] = float("inf") if count == "*" else int(count or 1)
        self._lock = threading.Lock()

    def hit(self, point: str) -> None:
        if not self._remaining:
            return
        with self._lock:
            left = self._remaining.get(point, 0)
            if left <= 0:
                return
            self._remaining[point] = left - 1
        raise InjectedFault(point)

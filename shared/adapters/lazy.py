"""One client per process, built on its first use.

Every adapter holds a Google, Twilio or HTTP client that is expensive to build
(channels, credentials, sessions) and must not be built at import: cold starts
pay only for what a request uses. Requests run on several threads of one
instance, so the first uses may race; the lock makes exactly one of them build
the client and every other thread reuse it.
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """``factory()`` called once, on the first :meth:`get`, and its result kept."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
        return self._value

    @property
    def built(self) -> bool:
        """Whether the client exists yet (nothing is built by asking)."""
        return self._value is not None

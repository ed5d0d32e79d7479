"""shared/adapters/lazy.py: a client is built once, on first use, however many threads ask at once."""

from __future__ import annotations

import threading
import time

from shared.adapters.lazy import Lazy


def test_nothing_is_built_until_asked_and_then_once() -> None:
    built: list[object] = []
    lazy = Lazy(lambda: built.append(object()) or built[-1])
    assert not lazy.built and built == []
    first = lazy.get()
    assert lazy.get() is first and len(built) == 1 and lazy.built


def test_racing_first_uses_build_one_client() -> None:
    built: list[object] = []

    def slow_factory() -> object:
        time.sleep(0.05)  # long enough for every thread to arrive while the first one builds
        built.append(object())
        return built[-1]

    lazy = Lazy(slow_factory)
    start = threading.Barrier(8)
    seen: list[object] = []

    def use() -> None:
        start.wait()
        seen.append(lazy.get())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and all(client is built[0] for client in seen) and len(seen) == 8

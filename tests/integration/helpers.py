"""Running a stand-in's ``python -m`` entry point the way the dev stack and benchmarks do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0


def start_module(
    module: str, *args: str, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m module args`` from the repo root; returns it and the address of its READY line.

    Fails the test (and kills the process) if READY does not come first
    within ``READY_TIMEOUT_SECONDS``. Stdout stays readable afterwards, so a
    test can check nothing else was printed; stderr is drained in the
    background so a chatty process never blocks on a full pipe.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=READY_TIMEOUT_SECONDS)
    if not first_line or not first_line[0].startswith("READY "):
        proc.kill()
        _, err = proc.communicate(timeout=5)
        pytest.fail(f"{module} did not print READY first: {first_line!r} {err[-2000:]}")
    threading.Thread(target=_discard, args=(stderr,), daemon=True).start()
    return proc, first_line[0].split()[1]


def _discard(stream: IO[str]) -> None:
    for _ in stream:
        pass


def stop_module(proc: subprocess.Popen[str]) -> int:
    """SIGTERM, as the dev stack stops its children; its exit code, or a kill if it hangs."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

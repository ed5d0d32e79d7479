"""Function processes the benchmark starts itself, served exactly as the stack serves its own.

Every process gets its own session (process group), is tracked in a registry
and is stopped with its whole group, so a floor function or a cold-start
candidate never outlives the run, whatever ends it: they are started with
``devstack.lifecycle.spawn``, whose watchdog stops them if the run dies
before it could.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Mapping

from devstack import container
from devstack.lifecycle import spawn, stop_groups
from devstack.stack import HOST, ROOT, Stack

FLOOR_SOURCE = "bench/floor_fn/main.py"
FLOOR_TARGET = "floor"


def function_command() -> list[str]:
    """The image's entry point (the Dockerfile's CMD), as the stack starts its own: a fair comparison."""
    return container.command()


def process_env(stack: Stack, name: str, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the stack gives that service's process on ``port``; the floor gets the webhook's.

    The command reads FUNCTION_SOURCE and FUNCTION_TARGET from it, as in the image.
    """
    if name == "floor":
        env = {**stack.function_env("webhook"), "FUNCTION_SOURCE": FLOOR_SOURCE, "FUNCTION_TARGET": FLOOR_TARGET,
               "FUNCTION_SIGNATURE_TYPE": "http"}
        service = "bench-floor"
    else:
        env = stack.function_env(name)
        service = stack.cloud.rendered.services[name].name
    return {**container.process_env(service, port), **env, **(extra or {})}


class Processes:
    """A registry of the process groups this run started; ``stop_all`` is safe at any time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            process = spawn(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        with self._lock:
            self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM the group, then SIGKILL what is left after a short grace."""
        with self._lock:
            if process in self._running:
                self._running.remove(process)
        stop_groups([process], grace_seconds=3.0)

    def stop_all(self) -> None:
        with self._lock:
            running = list(self._running)
        for process in running:
            self.stop(process)


def wait_listening(process: subprocess.Popen[bytes], port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"function process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"function process did not listen on {port} within {timeout:.0f}s")

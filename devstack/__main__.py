"""``python -m devstack stack`` (headless) and ``python -m devstack chat`` (make dev)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from devstack.stack import Stack

# The stack module imports the Google clients (about a second); signals are handled before that.
ROOT = Path(__file__).resolve().parents[1]


def load_dotenv(path: Path) -> None:
    """Read ``KEY=value`` lines from .env (see .env.example); variables already set win."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            os.environ.setdefault(key.strip(), value.strip().strip("'\""))


SERVE_WAKE_SECONDS = 0.5


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Signals:
    """SIGINT, SIGTERM and SIGHUP, however many and whenever they come, end in one full stop.

    The first signal raises KeyboardInterrupt to interrupt whatever the main
    thread is doing (start-up, the wait, the chat prompt). Once stopping has
    begun, a signal never raises again (that used to abort the cleanup
    half-way); it only makes the stop skip its grace periods. The handler does
    no I/O, so it cannot collide with a progress line being written.
    """

    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.stopping = False
        self.received: list[int] = []
        self.stack: Stack | None = None

    def install(self) -> None:
        for sig in self.HANDLED:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.stopping:
            if self.stack is not None:
                self.stack.hurry()
            return
        self.stopping = True
        raise KeyboardInterrupt


def _stop(stack: Stack, signals: Signals, ready: bool, code: int) -> int:
    """Stop everything and turn the outcome into the exit status (README, `make stack`)."""
    _progress("stopping everything the stack started")
    try:
        stack.stop()
    except Exception as exc:  # still report what is left, and the watchdog still runs
        _progress(f"stopping failed: {exc!r}")
        code = code or 1
    left = stack.leftovers()
    if left:
        _progress(f"could not stop processes {left}")
        return 1
    _progress("stopped: nothing the stack started is running")
    if code == 0 and signals.received and not ready:
        return 128 + signals.received[0]
    return code


def _run(signals: Signals, body: Callable[[Stack], object]) -> int:
    """Start the stack, run ``body`` until it returns or a signal comes, then always stop it all."""
    try:
        from devstack.stack import Stack, StackError, StackOptions

        stack = Stack(StackOptions.from_env(os.environ, progress=_progress))
    except KeyboardInterrupt:
        return 128 + signals.received[0]
    signals.stack = stack
    ready, code = False, 0
    try:
        try:
            stack.start()
            ready = True
            body(stack)
        finally:
            signals.stopping = True
    except StackError as exc:
        print(exc, file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        signals.stopping = True
        code = _stop(stack, signals, ready, code)
    return code


def _announce_simulator(stack: Stack) -> None:
    """Stdout lines ``SIMULATOR <url>`` (the chat page), ``OUTBOUND <url>`` (the outbound API) and
    ``INBOX <url>`` (the business's inbox); `make stack` prints them before READY."""
    if stack.simulator is not None:
        print(f"SIMULATOR {stack.simulator.url}", flush=True)
    print(f"OUTBOUND {stack.outbound_url}", flush=True)
    print(f"INBOX {stack.inbox_url}", flush=True)


def _serve(stack: Stack) -> None:
    _announce_simulator(stack)
    print(f"READY {stack.webhook_url}", flush=True)
    # The kernel may hand a signal to any of the stack's threads, and a main thread blocked on a lock is
    # interrupted only by a signal delivered to it: waking every half second lets it run the handler
    # whichever thread the signal reached.
    while True:
        time.sleep(SERVE_WAKE_SECONDS)


def _chat(stack: Stack) -> None:
    from devstack.chat import chat

    _announce_simulator(stack)
    try:
        chat(stack)
    except (KeyboardInterrupt, EOFError):
        print()
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["stack", "chat", "check"])
    args = parser.parse_args(argv)
    signals = Signals()
    signals.install()
    load_dotenv(ROOT / ".env")
    if args.command == "check":
        from devstack.emulators import check_prerequisites

        problems = check_prerequisites()
        for problem in problems:
            print(f"missing: {problem}", file=sys.stderr)
        return 1 if problems else 0
    return _run(signals, _serve if args.command == "stack" else _chat)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m devstack stack`` (headless) and ``python -m devstack chat`` (make dev)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devstack.stack import ROOT, Stack, StackError, StackOptions


def load_dotenv(path: Path) -> None:
    """Read ``KEY=value`` lines from .env (see .env.example); variables already set win."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            os.environ.setdefault(key.strip(), value.strip().strip("'\""))


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run_stack() -> int:
    stack = Stack(StackOptions.from_env(os.environ, progress=_progress))
    _stop_on_sigterm()
    try:
        stack.start()
        print(f"READY {stack.webhook_url}", flush=True)
        threading.Event().wait()
    except StackError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _progress("stopping")
    finally:
        stack.stop()
    return 0


def run_chat() -> int:
    from devstack.chat import chat

    stack = Stack(StackOptions.from_env(os.environ, progress=_progress))
    _stop_on_sigterm()
    try:
        stack.start()
        chat(stack)
    except StackError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print()
    finally:
        _progress("stopping everything the stack started")
        stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["stack", "chat", "check"])
    args = parser.parse_args(argv)
    load_dotenv(ROOT / ".env")
    if args.command == "check":
        from devstack.emulators import check_prerequisites

        problems = check_prerequisites()
        for problem in problems:
            print(f"missing: {problem}", file=sys.stderr)
        return 1 if problems else 0
    return run_stack() if args.command == "stack" else run_chat()


if __name__ == "__main__":
    sys.exit(main())

"""``--profile DIR``: sample the stack's functions with py-spy while the benchmarks run.

py-spy attaches from outside (no code change, gunicorn workers included via
--subprocesses) and writes collapsed stacks; ``summary`` turns each file into
the frames that hold the most samples, which is what the report quotes.
Sampling costs CPU on a two-core machine: a profiled run's figures are marked
as such and are not comparable with an unprofiled one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

SAMPLE_RATE = 200


def py_spy() -> str:
    """py-spy next to this interpreter (pip installs it into the venv), else on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


class Profiler:
    """One py-spy recorder per function process; ``stop`` makes each write its file."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._recorders: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, pids: dict[str, int]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        binary = py_spy()
        for name, pid in pids.items():
            self._recorders[name] = subprocess.Popen(
                [
                    binary, "record", "--pid", str(pid), "--subprocesses", "--rate", str(SAMPLE_RATE),
                    "--format", "raw", "--output", str(self.out_dir / f"{name}.txt"), "--nonblocking",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=open(self.out_dir / f"{name}.py-spy.log", "wb"),
                start_new_session=True,
            )

    def stop(self) -> dict[str, list[tuple[str, float]]]:
        """Stop every recorder (SIGINT makes py-spy write its output) and summarise the files."""
        for process in self._recorders.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        for process in self._recorders.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        names = list(self._recorders)
        self._recorders.clear()
        return {name: summary(self.out_dir / f"{name}.txt") for name in names}


def _frame_parts(frame: str) -> tuple[str, str]:
    """``func (path:line)`` -> (func, path)."""
    name, _, where = frame.partition(" (")
    return name, where.rsplit(":", 1)[0]


def _ours(path: str) -> bool:
    return path.startswith("shared/") or path == "main.py"


def summary(collapsed: Path, top: int = 12) -> list[tuple[str, float]]:
    """Busy samples by the deepest frame of our code and the call it was in, as a share of all.

    "ChatModel.reply > Completions.create" means time in the OpenAI SDK under
    our model call; samples not under our code (the HTTP server, the clients'
    own threads) are grouped by the package of the frame that was running.
    """
    buckets: Counter[str] = Counter()
    total = 0
    try:
        lines = collapsed.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame_parts(f) for f in stack.split(";") if " (" in f]
        deepest = max((i for i, (_, path) in enumerate(frames) if _ours(path)), default=None)
        if deepest is None:
            leaf = frames[-1][1] if frames else "?"
            buckets[f"(not under our code) {leaf.split('/', 1)[0].removesuffix('.py')}"] += n
            continue
        callee = frames[deepest + 1][0] if deepest + 1 < len(frames) else "self"
        buckets[f"{frames[deepest][0]} > {callee}"] += n
    if not total:
        return []
    return [(key, round(100.0 * n / total, 1)) for key, n in buckets.most_common(top)]

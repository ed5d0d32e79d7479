"""Child processes that never outlive the process that started them.

Every emulator, function and benchmark process is started with ``spawn``: in
its own session (so a terminal's Ctrl-C reaches only the owner, which stops
its children in order), and marked for a watchdog. The watchdog is one small
process per owner that holds the read end of a pipe whose write end only the
owner has. When the owner exits in any way (clean exit, an exception escaping
a cleanup, SIGKILL, a crashed terminal) the kernel closes the pipe, the
watchdog reads EOF and stops every process still marked with the owner's
token or still leading a group the owner registered. The mark is an
environment variable, which gcloud's launcher, its bash wrapper and the JVM
all inherit, so grandchildren in other groups are found too.
See docs/decisions/0009-process-lifecycle.md.

Run as a script (``python lifecycle.py TOKEN``) this file is the watchdog; it
imports only the standard library so it starts in milliseconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Mapping, Sequence

# Tokens of every owner above a process, colon-separated; each owner appends its own.
OWNERS_VARIABLE = "DEVSTACK_OWNERS"
# After the owner is gone: SIGTERM, this long to exit, then SIGKILL.
WATCHDOG_GRACE_SECONDS = 2.0
# The watchdog gives up on anything that survives SIGKILL this long (it cannot).
WATCHDOG_LIMIT_SECONDS = 20.0
# A child forked just before the owner died may not show its environment yet; look again after this.
RESCAN_SECONDS = 0.3


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode().split()


def start_time(pid: int) -> int | None:
    """Kernel start time of ``pid``: with the pid it names one process, even after pid reuse."""
    fields = _stat(pid)
    return int(fields[19]) if fields is not None else None


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def live_members(pgids: Sequence[int]) -> dict[int, list[int]]:
    """Running PIDs (zombies do not count) of each of ``pgids`` that still has any, in one pass."""
    wanted = set(pgids)
    members: dict[int, list[int]] = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and int(fields[2]) in wanted and fields[0] not in {"Z", "X"}:
            members.setdefault(int(fields[2]), []).append(pid)
    return members


def live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are still running (zombies do not count)."""
    return live_members([pgid]).get(pgid, [])


def owner_tokens(pid: int) -> list[str]:
    """The owners' tokens in the environment ``pid`` was started with; empty if unreadable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read()
    except OSError:
        return []
    prefix = OWNERS_VARIABLE.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace").split(":")
    return []


def marked_processes(token: str) -> list[int]:
    """Running processes whose environment carries ``token`` (this process excluded)."""
    found: list[int] = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        fields = _stat(pid)
        if fields is None or fields[0] in {"Z", "X"}:
            continue
        if token in owner_tokens(pid):
            found.append(pid)
    return found


class Watchdog:
    """This process's watchdog, started on first use (again after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner_pid = 0
        self._token = ""
        self._pipe = -1

    def token(self) -> str:
        """The mark children get; starts the watchdog if this process has none yet."""
        with self._lock:
            if self._owner_pid != os.getpid():
                self._start()
            return self._token

    def _start(self) -> None:
        """posix_spawn, not Popen: the watchdog and the pipe are meant to live exactly as long as
        this process, which a Popen object and a file object would report as leaked."""
        token = uuid.uuid4().hex
        read_end, write_end = os.pipe()
        try:
            os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", str(Path(__file__).resolve()), token],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, read_end, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                ],
                setsid=True,
            )
        finally:
            os.close(read_end)
        self._pipe = write_end
        self._token = token
        self._owner_pid = os.getpid()

    def _send(self, line: str) -> None:
        with self._lock:
            if self._owner_pid != os.getpid():
                return
            try:
                os.write(self._pipe, line.encode() + b"\n")
            except OSError:
                pass

    def register(self, pid: int) -> None:
        """Watch the group ``pid`` leads (for children that would drop the mark)."""
        started = start_time(pid)
        if started is not None:
            self._send(f"+{pid} {started}")

    def unregister(self, pid: int) -> None:
        self._send(f"-{pid}")

    def after_fork_in_child(self) -> None:
        """A forked child must not hold its parent's pipe open, or the parent's death would go unseen."""
        self._lock = threading.Lock()
        if self._pipe >= 0:
            try:
                os.close(self._pipe)
            except OSError:
                pass
        self._pipe, self._owner_pid, self._token = -1, 0, ""


WATCHDOG = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG.after_fork_in_child)


def marked_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) with this process's token appended to the owners' list."""
    result = dict(os.environ if env is None else env)
    owners = [t for t in result.get(OWNERS_VARIABLE, "").split(":") if t]
    result[OWNERS_VARIABLE] = ":".join([*owners, WATCHDOG.token()])
    return result


def spawn(command: Sequence[str], env: Mapping[str, str] | None = None, **popen: object) -> subprocess.Popen[bytes]:
    """Popen in a new session, marked and registered so it cannot outlive this process."""
    process: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
        list(command), env=marked_env(env), start_new_session=True, **popen
    )
    WATCHDOG.register(process.pid)
    return process


def stop_groups(
    processes: Sequence[subprocess.Popen[bytes]],
    grace_seconds: float,
    hurry: threading.Event | None = None,
    kill_seconds: float = 5.0,
) -> list[int]:
    """SIGTERM each process's group, SIGKILL what is left after the grace (or at once when
    ``hurry`` is set); reap the leaders. Returns the PIDs still running, normally none."""
    groups = _running(processes)
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, kill_seconds)):
        for process in groups:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + wait
        while groups and time.monotonic() < end:
            groups = _running(groups)
            if not groups or (sig == signal.SIGTERM and hurry is not None and hurry.is_set()):
                break
            time.sleep(0.05)
        if not groups:
            break
    for process in processes:
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        WATCHDOG.unregister(process.pid)
    left = live_members([p.pid for p in processes])
    return sorted(pid for pids in left.values() for pid in pids)


def _running(processes: Sequence[subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
    """Those whose leader runs or whose group still has a running member."""
    groups = live_members([p.pid for p in processes])
    return [p for p in processes if p.poll() is None or p.pid in groups]


# The watchdog itself.


def _targets(token: str, groups: Mapping[int, int]) -> tuple[list[int], list[int]]:
    """(registered groups whose leader is still the same process, marked processes)."""
    live_groups = [pgid for pgid, started in groups.items() if start_time(pgid) == started]
    return live_groups, marked_processes(token)


def _signal(groups: Sequence[int], pids: Sequence[int], sig: signal.Signals) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def reap(token: str, groups: Mapping[int, int]) -> None:
    """Stop everything the owner left behind: SIGTERM, a short grace, SIGKILL, until none is found twice."""
    started = time.monotonic()
    empty_scans = 0
    while empty_scans < 2 and time.monotonic() - started < WATCHDOG_LIMIT_SECONDS:
        live_groups, pids = _targets(token, groups)
        if not live_groups and not pids:
            empty_scans += 1
            time.sleep(RESCAN_SECONDS)
            continue
        empty_scans = 0
        late = time.monotonic() - started > WATCHDOG_GRACE_SECONDS
        _signal(live_groups, pids, signal.SIGKILL if late else signal.SIGTERM)
        time.sleep(0.1)


def watch(token: str, commands: IO[bytes]) -> None:
    """Track the owner's registrations until its end of the pipe closes, then reap."""
    groups: dict[int, int] = {}
    for raw in commands:
        line = raw.decode(errors="replace").strip()
        if line.startswith("+"):
            pid, _, started = line[1:].partition(" ")
            groups[int(pid)] = int(started)
        elif line.startswith("-"):
            groups.pop(int(line[1:]), None)
    reap(token, groups)


if __name__ == "__main__":
    # The terminal's signals are for the owner; this process only acts when the owner is gone.
    for _sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(_sig, signal.SIG_IGN)
    watch(sys.argv[1], sys.stdin.buffer)

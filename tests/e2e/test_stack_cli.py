"""`make stack` as a script uses it: READY line, overrides honoured, and however it is
stopped (signals in any number and at any moment, or SIGKILL) nothing it started remains."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from devstack.emulators import free_port
from devstack.lifecycle import live_members, marked_processes, owner_tokens, spawn, start_time
from devstack.openai_stub import OpenAIStub
from devstack.twilio_stub import TwilioStub, inbound_message, sign_and_post
from tests.plugin import wait_until

ROOT = Path(__file__).resolve().parents[2]
# Generous: the stack needs a few seconds on an idle machine, the suite may share two cores.
READY_TIMEOUT = 120
# "A few seconds" for the stack (or its watchdog) to end everything, with room for a loaded machine.
GONE_TIMEOUT = 30
EXIT_TIMEOUT = 60


@pytest.fixture(autouse=True)
def _clean_stand_ins() -> None:
    """These tests bring their own stand-ins; they do not need the session stack."""


@dataclass
class Footprint:
    """What a running stack has started: processes (with start times), their groups, their ports."""

    processes: dict[int, int] = field(default_factory=dict)
    groups: set[int] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    token: str = ""

    def remaining(self) -> list[str]:
        """Everything of the footprint still alive or listening; empty once all is gone."""
        left = [f"pid {pid}" for pid, started in self.processes.items() if start_time(pid) == started]
        left += [f"group {g}: {pids}" for g, pids in live_members(sorted(self.groups)).items()]
        if self.token:
            left += [f"pid {pid} carries the stack's mark" for pid in marked_processes(self.token)]
        listening = set(_listening().values())
        left += [f"port {port} still listening" for port in sorted(self.ports & listening)]
        return left


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(raw[raw.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    return children


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _listening() -> dict[str, int]:
    """inode -> port of every TCP socket in LISTEN state (IPv4 and IPv6)."""
    found: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A":
                found[cols[9]] = int(cols[1].rsplit(":", 1)[1], 16)
    return found


def footprint(root: int) -> Footprint:
    """The stack process, all its descendants, their groups and every port they listen on."""
    children = _children_map()
    result = Footprint()
    pending = [root]
    while pending:
        pid = pending.pop()
        started = start_time(pid)
        if started is None:
            continue
        try:
            result.groups.add(os.getpgid(pid))
        except ProcessLookupError:
            continue
        result.processes[pid] = started
        pending.extend(children.get(pid, []))
    listening = _listening()
    for pid in result.processes:
        result.ports |= {listening[i] for i in _socket_inodes(pid) if i in listening}
    own = set(owner_tokens(root))
    for pid in children.get(root, []):
        extra = [t for t in owner_tokens(pid) if t not in own]
        if extra:
            result.token = extra[-1]
    return result


class StackProcess:
    """``python -m devstack stack`` in its own process group, as a script or a terminal runs it."""

    def __init__(self, tmp_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")},
            "PYTHONPATH": str(ROOT),
            "WEBHOOK_PORT": str(self.port),
            **(extra_env or {}),
        }
        env.pop("OPENAI_API_KEY", None)
        self.stderr_path = tmp_path / "stack.err"
        with open(self.stderr_path, "wb") as stderr:
            # spawn: should this test itself die, the test session's watchdog ends the stack too.
            self.process = spawn(
                [sys.executable, "-m", "devstack", "stack"], env=env, cwd=tmp_path,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        # What stdout said before READY (the SIMULATOR, OUTBOUND and INBOX lines).
        self.before_ready: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode().rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def ready_line(self, timeout: float = READY_TIMEOUT) -> str:
        """The READY line, which is the last one; the lines before it are kept in ``before_ready``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no READY line within {timeout}s (exit code {self.process.poll()}):\n{self.progress()}")
            if line.startswith("READY "):
                return line
            self.before_ready.append(line)

    def progress(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def group_signal(self, sig: signal.Signals) -> None:
        """As a terminal's Ctrl-C or ``kill -TERM -PGID`` delivers it: to the whole foreground group."""
        os.killpg(self.pid, sig)

    def wait_exit(self) -> int:
        try:
            return self.process.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the stack did not exit within {EXIT_TIMEOUT}s:\n{self.progress()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def stack_process(tmp_path: Path) -> Iterator[StackProcess]:
    stack = StackProcess(tmp_path)
    try:
        yield stack
    finally:
        stack.kill()


def assert_all_gone(seen: Footprint) -> None:
    """Poll (a generous deadline, not a timing claim) until nothing of ``seen`` remains."""
    assert len(seen.processes) > 1 and seen.token, "the footprint is empty: the check would prove nothing"
    deadline = time.monotonic() + GONE_TIMEOUT
    while seen.remaining() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert seen.remaining() == []


def running_footprint(stack: StackProcess) -> Footprint:
    """The footprint once both emulators' JVMs and the five services run, with their ports."""
    seen = wait_until(lambda: _complete(footprint(stack.pid)), timeout=30)
    assert isinstance(seen, Footprint)
    return seen


def _complete(seen: Footprint) -> Footprint | None:
    commands = [_command(pid) for pid in seen.processes]
    javas = sum(1 for c in commands if c.startswith("java"))
    # The image's entry point (the Dockerfile's CMD): the functions-framework script, one per service.
    functions = sum(1 for c in commands if "functions-framework" in c and "--target=" in c)
    return seen if javas == 2 and functions >= 5 and len(seen.ports) >= 5 else None


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_headless_stack_with_external_twilio_and_model_stops_with_a_send_in_flight(tmp_path: Path) -> None:
    account, token = "AC" + "1" * 32, "external-token"
    with TwilioStub(account, token) as twilio, OpenAIStub() as model:
        stack = StackProcess(tmp_path, {
            "TWILIO_API_BASE_URL": twilio.base_url,
            "OPENAI_BASE_URL": model.base_url,
            "TWILIO_ACCOUNT_SID": account,
            "TWILIO_AUTH_TOKEN": token,
            "TWILIO_WHATSAPP_FROM": "whatsapp:+15550009999",
        })
        try:
            line = stack.ready_line()
            assert line == f"READY http://127.0.0.1:{stack.port}"
            assert len(stack.before_ready) == 3 and stack.before_ready[0].startswith("SIMULATOR http://127.0.0.1:")
            page_url = stack.before_ready[0].split(" ", 1)[1]
            with urllib.request.urlopen(page_url, timeout=10) as page:
                assert page.status == 200 and b"WhatsApp simulator" in page.read()
            assert stack.before_ready[1].startswith("OUTBOUND http://127.0.0.1:")
            outbound_url = stack.before_ready[1].split(" ", 1)[1]
            anonymous = urllib.request.Request(outbound_url, data=b"{}", headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(anonymous, timeout=10)
            assert refused.value.code == 403, "Cloud Run lets no caller without a token reach the outbound API"
            # The token the stack's progress names, as a business system would send it.
            token_url = re.search(r"(http://127\.0\.0\.1:\d+/token\?\S+)", stack.progress())
            assert token_url, stack.progress()
            with urllib.request.urlopen(token_url.group(1), timeout=10) as answer:
                id_token = answer.read().decode()
            invalid = urllib.request.Request(outbound_url, data=b"{}", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {id_token}",
                "X-Serverless-Authorization": f"Bearer {id_token}",
            })
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(invalid, timeout=10)
            assert refused.value.code == 400 and b"to is required" in refused.value.read()
            # The inbox: its page for anyone, its API only with a session.
            assert stack.before_ready[2].startswith("INBOX http://127.0.0.1:")
            inbox_url = stack.before_ready[2].split(" ", 1)[1]
            with urllib.request.urlopen(inbox_url, timeout=10) as page:
                assert page.status == 200 and b'data-testid="signin"' in page.read()
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(inbox_url + "/api/conversations?business=x", timeout=10)
            assert refused.value.code == 401
            url = line.split(" ", 1)[1]
            progress = stack.progress()
            assert "OFFLINE MODEL" not in progress and "Twilio stand-in on" not in progress
            user = "whatsapp:+34600111222"

            def post(text: str) -> int:
                params = inbound_message(user, text, to="whatsapp:+15550009999", account_sid=account)
                return sign_and_post(url, params, token)[0]

            assert post("hello") == 200
            sent = twilio.wait_for(1, timeout=30)
            assert [(m.to, m.from_) for m in sent] == [(user, "whatsapp:+15550009999")]
            assert model.requests[0].messages[-1]["content"] == "hello"

            # The next send hangs in Twilio: the signal comes while sender_fn is inside it.
            twilio.delay_seconds = 120
            assert post("second") == 200
            wait_until(lambda: len(twilio.attempts) >= 2, timeout=30)
            seen = running_footprint(stack)
            stack.group_signal(signal.SIGTERM)
            assert stack.wait_exit() == 0
        finally:
            stack.kill()
        assert_all_gone(seen)
        assert stack.progress().rstrip().endswith("stopped: nothing the stack started is running")


@pytest.mark.parametrize("gap", [None, 0.05], ids=["one-sigint", "two-sigints-50ms-apart"])
def test_ctrl_c_after_ready_stops_everything(stack_process: StackProcess, gap: float | None) -> None:
    assert stack_process.ready_line().startswith("READY ")
    seen = running_footprint(stack_process)
    stack_process.group_signal(signal.SIGINT)
    if gap is not None:
        time.sleep(gap)
        stack_process.group_signal(signal.SIGINT)
    assert stack_process.wait_exit() == 0
    assert_all_gone(seen)


def test_signal_during_start_up_stops_what_was_started(stack_process: StackProcess) -> None:
    def launchers_running() -> Footprint | None:
        seen = footprint(stack_process.pid)
        gcloud = [pid for pid in seen.processes if "emulators" in _command(pid)]
        return seen if len(gcloud) >= 2 else None

    seen = wait_until(launchers_running, timeout=READY_TIMEOUT)
    assert isinstance(seen, Footprint)
    stack_process.group_signal(signal.SIGTERM)
    stack_process.group_signal(signal.SIGINT)
    code = stack_process.wait_exit()
    assert stack_process.lines.empty(), "the stack said READY although it was interrupted"
    # Interrupted before it was ready: 128 + the signal handled first (the kernel picks which).
    assert code in {128 + signal.SIGINT, 128 + signal.SIGTERM}
    assert_all_gone(seen)


def test_sigkill_of_the_stack_leaves_no_orphan(stack_process: StackProcess) -> None:
    assert stack_process.ready_line().startswith("READY ")
    seen = running_footprint(stack_process)
    os.kill(stack_process.pid, signal.SIGKILL)
    assert stack_process.wait_exit() == -signal.SIGKILL
    assert_all_gone(seen)


OWNER = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from bench.procs import Processes
    processes = Processes()
    # A group with a child, and a grandchild that leaves for a session of its own.
    leader = processes.start(
        ["sh", "-c", "sleep 300 & setsid sleep 301 & exec sleep 302"], {}, Path(sys.argv[1])
    )
    print(leader.pid, flush=True)
    time.sleep(300)
    """
)


def test_benchmark_processes_go_when_their_owner_is_killed(tmp_path: Path) -> None:
    """``make bench`` and the test fixtures start processes the same way; SIGKILL their owner."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "child.log")], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert owner.stdout is not None
        leader = int(owner.stdout.readline())
        seen = wait_until(lambda: _with_sleeps(footprint(owner.pid)), timeout=30)
        assert isinstance(seen, Footprint)
        assert leader in seen.groups
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
    finally:
        if owner.poll() is None:
            os.killpg(owner.pid, signal.SIGKILL)
            owner.wait(timeout=10)
    assert_all_gone(seen)


def _with_sleeps(seen: Footprint) -> Footprint | None:
    sleeps = [pid for pid in seen.processes if _command(pid).startswith("sleep")]
    return seen if len(sleeps) == 3 else None

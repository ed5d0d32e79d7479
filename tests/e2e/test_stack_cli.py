"""`make stack` as a script uses it: READY line, overrides honoured, SIGTERM stops everything."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devstack.emulators import free_port, live_group_members
from devstack.openai_stub import OpenAIStub
from devstack.twilio_stub import TwilioStub, inbound_message, sign_and_post

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_stand_ins() -> None:
    """This test brings its own stand-ins; it does not need the session stack."""


def test_headless_stack_with_external_twilio_and_model(tmp_path: Path) -> None:
    account, token = "AC" + "1" * 32, "external-token"
    port = free_port()
    with TwilioStub(account, token) as twilio, OpenAIStub() as model:
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")},
            "PYTHONPATH": str(ROOT),
            "WEBHOOK_PORT": str(port),
            "TWILIO_API_BASE_URL": twilio.base_url,
            "OPENAI_BASE_URL": model.base_url,
            "TWILIO_ACCOUNT_SID": account,
            "TWILIO_AUTH_TOKEN": token,
            "TWILIO_WHATSAPP_FROM": "whatsapp:+15550009999",
        }
        env.pop("OPENAI_API_KEY", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "stack"], cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=open(tmp_path / "stack.err", "wb"), text=True,
        )
        try:
            line = _read_line(process, timeout=120)
            assert line == f"READY http://127.0.0.1:{port}/"
            url = line.split(" ", 1)[1]
            progress = (tmp_path / "stack.err").read_text()
            assert "OFFLINE MODEL" not in progress and "Twilio stand-in on" not in progress
            user = "whatsapp:+34600111222"
            status, _, _ = sign_and_post(url, inbound_message(user, "hello", to="whatsapp:+15550009999",
                                                              account_sid=account), token)
            assert status == 200
            sent = twilio.wait_for(1, timeout=30)
            assert [(m.to, m.from_) for m in sent] == [(user, "whatsapp:+15550009999")]
            assert model.requests[0].messages[-1]["content"] == "hello"
            children = _children(process.pid)
            assert children, "the stack started no processes"
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
        assert code == 0
        time.sleep(0.5)
        assert [pid for pid in children if live_group_members(pid)] == []


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The stack's first stdout line, read on a thread so a silent stack cannot hang the test."""
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout).rstrip("\n")
    except queue.Empty:
        pytest.fail(f"no READY line within {timeout}s (exit code {process.poll()})")


def _children(pid: int) -> list[int]:
    """Process groups the stack started (each child runs in its own group)."""
    groups = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                groups.add(int(stat[2]))
    groups.discard(os.getpgid(pid))
    return sorted(groups)

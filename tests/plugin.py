"""Session fixtures that start the real emulators and the local stack once per run.

This is the project's own small pytest plugin for the Google emulators: the
Firestore and Pub/Sub emulators come from the gcloud CLI, start on free
loopback ports, and are stopped (whole process groups) when the session ends.
A missing gcloud, emulator component or Java fails the run with what to install.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from devstack.delivery import Damage, count_damage
from devstack.emulators import FirestoreEmulator, PubSubEmulator, check_prerequisites, start_all, stop_all
from devstack.stack import Stack, StackOptions

PROJECT = "test-project"

# What the end-to-end stack runs with: short timeouts so the fault tests stay
# quick; everything else is the production default.
E2E_ENV = {
    "LOG_LEVEL": "INFO",
    "PROCESSING_LEASE_SECONDS": "5",
    "MODEL_BUDGET_SECONDS": "4.5",
    "OPENAI_TIMEOUT_SECONDS": "2",
    "OPENAI_MAX_RETRIES": "1",
    "LIVENESS_SECONDS": "60",
    "RECONCILE_AFTER_SECONDS": "5",
    # Room for the three-part reply of the split test (the default cuts at 3200).
    "MAX_REPLY_CHARS": "4800",
    "TWILIO_TIMEOUT_SECONDS": "3",
    "SEND_MAX_ATTEMPTS": "4",
    "CONVERSATION_TTL_SECONDS": "3600",
    "MAX_CONTEXT_MESSAGES": "20",
    # Profiles written by a test take effect within a second (production: a minute).
    "PROFILE_CACHE_SECONDS": "1",
    # A budget's spend is read again after a second (production: thirty).
    "BUDGET_CACHE_SECONDS": "1",
    # An open inbox asks for news every second (production: three).
    "INBOX_POLL_SECONDS": "1",
}


@dataclass(frozen=True)
class Emulators:
    firestore: FirestoreEmulator
    pubsub: PubSubEmulator
    project: str


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    problems = check_prerequisites()
    if problems:
        pytest.exit("cannot run the emulator tests:\n  - " + "\n  - ".join(problems), returncode=2)
    logs = tmp_path_factory.mktemp("emulator-logs")
    firestore = FirestoreEmulator(PROJECT, log_path=logs / "firestore.log")
    pubsub = PubSubEmulator(PROJECT, log_path=logs / "pubsub.log")
    start_all([firestore, pubsub], timeout=120)
    values = {**firestore.env(), **pubsub.env(), "GOOGLE_CLOUD_PROJECT": PROJECT}
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield Emulators(firestore, pubsub, PROJECT)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_all([firestore, pubsub])


@pytest.fixture(scope="session")
def stack(emulators: Emulators, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    options = StackOptions(
        project=PROJECT,
        webhook_port=0,
        log_dir=Path(tmp_path_factory.mktemp("stack-logs")),
        env=dict(E2E_ENV),
        max_delivery_attempts=12,
        tasks_min_backoff_seconds=0.1,
        tasks_max_backoff_seconds=2.0,
        tasks_max_doublings=4,
        tasks_max_dispatches_per_second=200.0,
        tasks_max_concurrent_dispatches=50,
        reconcile_interval_seconds=1.0,
        tool_server_port=0,
    )
    running = Stack(options, emulators=(emulators.firestore, emulators.pubsub)).start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Ledger:
    """What the fault tests injected and what came out; printed once at the end of the run."""

    duplicates_injected: int = 0
    faults_injected: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    stalled: int = 0
    # Business tools: side effects the example server made, and how many of them should not have happened.
    tool_side_effects: int = 0

    def check(self, expected: list[str], delivered: list[str]) -> Damage:
        """Compare one user's replies with what should have arrived, in order; book the damage."""
        damage = count_damage(expected, delivered)
        self.lost += damage.lost
        self.duplicated += damage.duplicated
        self.reordered += damage.reordered
        return damage

    def check_side_effects(self, expected: int, done: int) -> None:
        """Book what a business's server did for one test: a write made twice is duplicated, one not made lost."""
        self.tool_side_effects += done
        self.duplicated += max(0, done - expected)
        self.lost += max(0, expected - done)

    def summary(self) -> str:
        return (
            f"exactly-once summary: duplicates injected={self.duplicates_injected}, "
            f"faults injected={self.faults_injected}, tool side effects={self.tool_side_effects}, lost={self.lost}, "
            f"duplicated={self.duplicated}, reordered={self.reordered}, stalled={self.stalled}"
        )


_LEDGER = Ledger()


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return _LEDGER


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LEDGER.duplicates_injected or _LEDGER.faults_injected:
        terminalreporter.write_line(_LEDGER.summary())


def unique_user() -> str:
    return f"whatsapp:+1555{uuid.uuid4().int % 10**7:07d}"


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.05) -> object:
    """Poll ``condition`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)

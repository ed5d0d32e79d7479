"""The real Firestore and Pub/Sub emulators, started, used by the real clients, and stopped cleanly."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest
from google.cloud import firestore
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient

from devstack.emulators import (
    Emulator,
    EmulatorError,
    FirestoreEmulator,
    PubSubEmulator,
    check_prerequisites,
    free_port,
    live_group_members,
    start_all,
    stop_all,
)

PROJECT = "emulator-test-project"
START_TIMEOUT = 60.0

_problems = check_prerequisites()
needs_emulators = pytest.mark.skipif(bool(_problems), reason="; ".join(_problems))


def _pgid_gone(pgid: int) -> bool:
    """True when no running process is left in the group (a zombie awaiting its reaper is not running)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return not live_group_members(pgid)


@pytest.fixture(scope="module")
def emulators() -> Iterator[tuple[FirestoreEmulator, PubSubEmulator]]:
    fs, ps = FirestoreEmulator(PROJECT), PubSubEmulator(PROJECT)
    try:
        start_all([fs, ps], timeout=START_TIMEOUT)
        yield fs, ps
    finally:
        stop_all([fs, ps])


@needs_emulators
def test_firestore_client_reads_and_writes_and_reset_empties(
    emulators: tuple[FirestoreEmulator, PubSubEmulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, _ = emulators
    for name, value in fs.env().items():
        monkeypatch.setenv(name, value)
    assert fs.env() == {"FIRESTORE_EMULATOR_HOST": fs.host}
    client = firestore.Client(project=PROJECT)
    try:
        doc_id = uuid.uuid4().hex
        client.collection("conversations").document(doc_id).set({"turns": 2, "text": "hola"})
        client.collection("other").document("x").set({"a": 1})
        snapshot = client.collection("conversations").document(doc_id).get(timeout=10)
        assert snapshot.exists and snapshot.to_dict() == {"turns": 2, "text": "hola"}

        fs.reset()

        assert not client.collection("conversations").document(doc_id).get(timeout=10).exists
        assert list(client.collection("other").stream(timeout=10)) == []
    finally:
        client.close()


@needs_emulators
def test_pubsub_client_creates_topic_and_publishes(
    emulators: tuple[FirestoreEmulator, PubSubEmulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ps = emulators
    for name, value in ps.env().items():
        monkeypatch.setenv(name, value)
    assert ps.env() == {"PUBSUB_EMULATOR_HOST": ps.host, "PUBSUB_PROJECT_ID": PROJECT}
    publisher = PublisherClient()
    subscriber = SubscriberClient()
    topic = publisher.topic_path(PROJECT, f"t-{uuid.uuid4().hex[:8]}")
    subscription = subscriber.subscription_path(PROJECT, f"s-{uuid.uuid4().hex[:8]}")
    try:
        publisher.create_topic(name=topic, timeout=10)
        names = [t.name for t in publisher.list_topics(request={"project": f"projects/{PROJECT}"}, timeout=10)]
        assert topic in names
        subscriber.create_subscription(name=subscription, topic=topic, timeout=10)
        publisher.publish(topic, b"payload", sender="x").result(timeout=10)
        pulled = subscriber.pull(subscription=subscription, max_messages=1, timeout=10)
        assert [m.message.data for m in pulled.received_messages] == [b"payload"]
    finally:
        subscriber.close()
        publisher.stop()


@needs_emulators
def test_stop_leaves_no_process_of_the_group() -> None:
    fs, ps = FirestoreEmulator(PROJECT), PubSubEmulator(PROJECT)
    try:
        start_all([fs, ps], timeout=START_TIMEOUT)
        groups: dict[str, int] = {}
        for emulator in (fs, ps):
            assert emulator.pgid is not None
            groups[emulator.name] = emulator.pgid
            # gcloud plus the java it launched (and, for Firestore, a bash wrapper).
            assert len(live_group_members(emulator.pgid)) >= 2, emulator.name
        fs.stop()
        ps.stop()
        for name, pgid in groups.items():
            assert _pgid_gone(pgid), f"{name} group {pgid} still has {live_group_members(pgid)}"
        assert not fs.is_running() and not ps.is_running()
        fs.stop()
        ps.stop()
    finally:
        stop_all([fs, ps])


class _Failing(Emulator):
    name = "failing"

    def command(self) -> list[str]:
        return ["sh", "-c", "echo the-emulator-said-no; exit 3"]

    def env(self) -> dict[str, str]:
        return {}


class _Silent(Emulator):
    name = "silent"

    def command(self) -> list[str]:
        return ["sh", "-c", "echo starting pgid=$$; sleep 30 & sleep 30"]

    def env(self) -> dict[str, str]:
        return {}


def test_start_reports_early_exit_with_log_tail() -> None:
    emulator = _Failing(PROJECT, port=free_port())
    with pytest.raises(EmulatorError) as caught:
        emulator.start(timeout=10)
    assert "exited with code 3" in str(caught.value)
    assert "the-emulator-said-no" in str(caught.value)
    if emulator.log_path is not None:
        emulator.log_path.unlink(missing_ok=True)


def test_start_timeout_kills_the_group() -> None:
    emulator = _Silent(PROJECT, port=free_port())
    with pytest.raises(EmulatorError) as caught:
        emulator.start(timeout=1.0)
    message = str(caught.value)
    assert "not ready" in message
    match = re.search(r"starting pgid=(\d+)", message)
    assert match is not None, message
    assert _pgid_gone(int(match.group(1)))
    assert emulator.pgid is None
    if emulator.log_path is not None:
        emulator.log_path.unlink(missing_ok=True)

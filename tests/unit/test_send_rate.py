"""Send rate per business number: the profile key, the queue's id, the send queue admin and the enqueue
routing, with fake Cloud Tasks clients (docs/decisions/0022-send-queue-per-number.md)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from shared.adapters.cloud_tasks import BurstTask, SendTask, TaskQueue
from shared.adapters.profile_store import SEND_QUEUE, FirestoreProfiles
from shared.adapters.send_queues import CREATED, UNCHANGED, UPDATED, SendQueues
from shared.config import ConfigError, Settings
from shared.domain.profiles import BusinessProfile, ProfileError, profile_from_mapping
from shared.domain.send_rate import assign_lanes, lane_ids, rate_for, valid_queue_id
from shared.handlers.handoff import hand_off_next, send_when_its_turn
from shared.ops.send_queues import send_rates, with_send_queues

A = "whatsapp:+14155550001"
B = "whatsapp:+14155550002"
DEFAULTS = BusinessProfile()
NOW = datetime(2026, 12, 4, tzinfo=timezone.utc)


# ---- the profile key and the queue id (domain) ----

def test_the_profile_key_is_a_rate_in_messages_a_second() -> None:
    assert profile_from_mapping(A, {"send_rate_per_second": 5}, DEFAULTS).send_rate_per_second == 5.0
    assert profile_from_mapping(A, {"send_rate_per_second": 0.5}, DEFAULTS).send_rate_per_second == 0.5
    assert profile_from_mapping(A, {}, DEFAULTS).send_rate_per_second is None


@pytest.mark.parametrize("value", [0, -1, 501, "10", True, None])
def test_a_bad_rate_names_the_business_and_the_key(value: Any) -> None:
    with pytest.raises(ProfileError, match="send_rate_per_second"):
        profile_from_mapping(A, {"send_rate_per_second": value}, DEFAULTS)


def test_lanes_are_valid_queue_ids_and_a_bad_prefix_is_refused() -> None:
    assert lane_ids("outbound-", 3) == ["outbound-00", "outbound-01", "outbound-02"]
    assert all(valid_queue_id(lane) for lane in lane_ids("outbound-", 100))
    with pytest.raises(ValueError):
        lane_ids("bad_prefix", 1)


LANES = lane_ids("outbound-", 3)


def test_each_number_gets_its_own_lane_the_same_for_the_same_file() -> None:
    numbers = [A, B, "whatsapp:+14155550003"]
    lanes = assign_lanes(numbers, {}, LANES)
    assert sorted(lanes.values()) == LANES
    assert assign_lanes(list(reversed(numbers)), {}, LANES) == lanes


def test_a_number_keeps_its_lane_and_one_beyond_the_pool_shares_the_default_queue() -> None:
    stored = {A: "outbound-02", B: "outbound-02"}
    lanes = assign_lanes([B, A, "whatsapp:+3", "whatsapp:+4"], stored, LANES)
    assert lanes[B] == "outbound-02"  # the first in the file keeps a lane two documents claim
    assert lanes[A] != "outbound-02" and lanes[A]
    assert sorted(v for v in lanes.values() if v) == LANES and list(lanes.values()).count("") == 1
    assert assign_lanes([A], {A: "gone-lane"}, LANES)[A] in LANES


def test_the_rate_is_the_profiles_else_the_default_never_above_the_sender_limit() -> None:
    assert rate_for(None, 20.0, 80.0) == 20.0
    assert rate_for(80.0, 20.0, 80.0) == 80.0
    with pytest.raises(ValueError, match="sender limit"):
        rate_for(81.0, 20.0, 80.0)


def test_settings_bound_the_default_by_the_sender_limit() -> None:
    s = Settings.from_env({"SEND_RATE_PER_SECOND": "5", "SENDER_MPS_LIMIT": "50"})
    assert (s.send_rate_per_second, s.sender_mps_limit, len(s.send_lanes)) == (5.0, 50.0, 10)
    with pytest.raises(ConfigError):
        Settings.from_env({"SEND_RATE_PER_SECOND": "90", "SENDER_MPS_LIMIT": "80"})
    assert Settings.from_env({"SEND_LANES": "a-1,b-2"}).send_lanes == ("a-1", "b-2")
    assert Settings.from_env({"SEND_LANES": "none"}).send_lanes == ()
    for bad in ("has_underscore", "a,a"):
        with pytest.raises(ConfigError):
            Settings.from_env({"SEND_LANES": bad})


# ---- the stored queue (profile store) ----

class _Snap:
    def __init__(self, data: Mapping[str, Any] | None) -> None:
        self.exists = data is not None
        self._data = data

    def to_dict(self) -> Mapping[str, Any] | None:
        return self._data


class _Docs:
    def __init__(self, docs: Mapping[str, Mapping[str, Any]]) -> None:
        self.docs = docs

    def collection(self, _name: str) -> "_Docs":
        return self

    def document(self, address: str) -> "_Docs":
        self.address = address
        return self

    def get(self) -> _Snap:
        return _Snap(self.docs.get(self.address))


def test_the_stored_send_queue_is_read_with_the_profile_and_a_bad_one_is_ignored() -> None:
    docs = _Docs({A: {"name": "A", SEND_QUEUE: "outbound-abc"}, B: {"name": "B", SEND_QUEUE: "no/slashes"}})
    store = FirestoreProfiles(lambda: docs, "p", DEFAULTS, 60)
    assert store.get(A).send_queue == "outbound-abc"
    assert store.get(B).send_queue == ""


# ---- the queue admin (adapter) ----

class FakeAdmin:
    """The queue calls of a CloudTasksClient, kept as Cloud Tasks keeps queues."""

    def __init__(self) -> None:
        self.queues: dict[str, tasks_v2.Queue] = {}
        self.calls: list[str] = []
        shared = "projects/p/locations/l/queues/shared"
        self.queues[shared] = tasks_v2.Queue(
            name=shared, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=20, max_concurrent_dispatches=20),
            retry_config=tasks_v2.RetryConfig(max_attempts=100, max_doublings=5))

    def get_queue(self, name: str) -> tasks_v2.Queue:
        self.calls.append("get")
        if name not in self.queues:
            raise gexc.NotFound("no queue")
        return tasks_v2.Queue(self.queues[name])

    def create_queue(self, parent: str, queue: tasks_v2.Queue) -> tasks_v2.Queue:
        self.calls.append("create")
        assert queue.name.startswith(parent + "/queues/")
        self.queues[queue.name] = tasks_v2.Queue(queue)
        return queue

    def update_queue(self, queue: tasks_v2.Queue, update_mask: Mapping[str, list[str]]) -> tasks_v2.Queue:
        self.calls.append("update")
        current = self.queues[queue.name]
        assert set(update_mask["paths"]) <= {"rate_limits.max_dispatches_per_second",
                                             "rate_limits.max_concurrent_dispatches"}
        current.rate_limits = queue.rate_limits
        return current


def admin() -> tuple[SendQueues, FakeAdmin]:
    client = FakeAdmin()
    return SendQueues("p", "l", "shared", lambda: client), client  # type: ignore[arg-type,return-value]


def test_a_new_queue_gets_the_rate_and_the_shared_queues_retry_policy() -> None:
    queues, client = admin()
    assert queues.ensure("outbound-x", 5.0) == CREATED
    made = client.queues["projects/p/locations/l/queues/outbound-x"]
    assert made.rate_limits.max_dispatches_per_second == 5.0
    assert made.rate_limits.max_concurrent_dispatches == 20
    assert made.retry_config.max_attempts == 100 and made.retry_config.max_doublings == 5
    assert client.calls[-1] == "get"  # confirmed after the create (the tombstone window)


def test_a_changed_rate_updates_the_same_queue_and_an_unchanged_one_writes_nothing() -> None:
    queues, client = admin()
    queues.ensure("outbound-x", 5.0)
    assert queues.ensure("outbound-x", 5.0) == UNCHANGED
    assert "update" not in client.calls
    assert queues.ensure("outbound-x", 60.0) == UPDATED
    limits = client.queues["projects/p/locations/l/queues/outbound-x"].rate_limits
    assert (limits.max_dispatches_per_second, limits.max_concurrent_dispatches) == (60.0, 60)
    assert client.calls.count("create") == 1


# ---- profiles-apply (ops) ----

def test_apply_sets_the_lanes_rate_before_the_profile_names_it() -> None:
    queues, client = admin()
    written: list[tuple[str, Mapping[str, Any]]] = []

    def put(address: str, raw: Mapping[str, Any], _now: datetime) -> None:
        assert f"projects/p/locations/l/queues/{raw[SEND_QUEUE]}" in client.queues
        written.append((address, raw))

    report: list[str] = []
    raw = {A: {"send_rate_per_second": 2}, B: {}}
    apply = with_send_queues(put, raw, {A: {SEND_QUEUE: "outbound-07"}}, lambda: queues, Settings(), report)
    for address, profile in raw.items():
        apply(address, profile, NOW)
    lanes = dict((address, doc[SEND_QUEUE]) for address, doc in written)
    assert lanes[A] == "outbound-07" and lanes[B].startswith("outbound-") and lanes[B] != lanes[A]
    rates = {q.name.rsplit("/", 1)[1]: q.rate_limits.max_dispatches_per_second for q in client.queues.values()}
    assert rates[lanes[A]] == 2.0 and rates[lanes[B]] == Settings().send_rate_per_second
    assert len(report) == 2 and all("created" in line for line in report)


def test_a_business_beyond_the_lanes_is_written_without_one() -> None:
    queues, _client = admin()
    written: dict[str, Mapping[str, Any]] = {}
    raw: dict[str, dict[str, Any]] = {A: {}, B: {}}
    apply = with_send_queues(lambda a, r, _n: written.__setitem__(a, r), raw, {}, lambda: queues,
                             Settings(send_lanes=("outbound-00",)), [])
    for address, profile in raw.items():
        apply(address, profile, NOW)
    assert sum(SEND_QUEUE in doc for doc in written.values()) == 1


def test_a_rate_above_the_sender_limit_fails_the_file_before_any_queue_or_write() -> None:
    queues, client = admin()
    with pytest.raises(ProfileError, match="sender limit"):
        with_send_queues(lambda *_: None, {A: {}, B: {"send_rate_per_second": 100}}, {}, lambda: queues, Settings(), [])
    assert client.calls == []
    with pytest.raises(ProfileError):
        send_rates({B: {"send_rate_per_second": 100}}, Settings())


def test_without_lanes_apply_writes_the_profile_as_before() -> None:
    put = lambda *_: None  # noqa: E731
    assert with_send_queues(put, {A: {}}, {}, lambda: pytest.fail("no queue admin"), Settings(send_lanes=()),
                            []) is put


# ---- enqueue routing (adapter) ----

class FakeTasks:
    def __init__(self, missing: frozenset[str] = frozenset()) -> None:
        self.parents: list[str] = []
        self.missing = missing

    def create_task(self, request: dict[str, Any], **_options: Any) -> None:
        assert request["task"]["name"].startswith(request["parent"] + "/tasks/")
        if request["parent"].rsplit("/", 1)[1] in self.missing:
            raise gexc.NotFound("queue")
        self.parents.append(request["parent"].rsplit("/", 1)[1])


def routed(client: FakeTasks, routes: Mapping[str, str]) -> TaskQueue:
    def route(business: str) -> str:
        if business == "broken":
            raise RuntimeError("profile read failed")
        return routes.get(business, "")
    return TaskQueue("p", "l", "shared", "https://sender", "", lambda: client, route=route)  # type: ignore[arg-type,return-value]


def test_a_send_task_goes_to_its_business_queue_other_tasks_to_the_shared_one() -> None:
    client = FakeTasks()
    queue = routed(client, {A: "outbound-a"})
    queue.enqueue(SendTask("c" * 20, "SM1", 1, business=A))
    queue.enqueue(SendTask("c" * 20, "SM2", 2, business=B))
    queue.enqueue(SendTask("c" * 20, "SM3", 3))
    queue.enqueue(SendTask("c" * 20, "SM4", 4, business="broken"))
    queue.enqueue(BurstTask("c" * 20, "SM5", 1, NOW))
    assert client.parents == ["outbound-a", "shared", "shared", "shared", "shared"]


def test_a_missing_business_queue_falls_back_to_the_shared_queue() -> None:
    client = FakeTasks(missing=frozenset({"outbound-a"}))
    assert routed(client, {A: "outbound-a"}).enqueue(SendTask("c" * 20, "SM1", 1, business=A))
    assert client.parents == ["shared"]
    with pytest.raises(gexc.NotFound):
        routed(FakeTasks(missing=frozenset({"shared"})), {}).enqueue(SendTask("c" * 20, "SM1", 1))


def test_the_business_picks_the_queue_but_is_not_part_of_the_task() -> None:
    task = SendTask("c" * 20, "SM1", 1, business=A)
    assert task == SendTask("c" * 20, "SM1", 1) and A.encode() not in task.to_json()


def test_hand_offs_carry_the_conversations_business() -> None:
    from shared.domain.conversation import Answer, Conversation, Limits
    from tests.fakes import FakeQueue

    LIMITS = Limits(ttl_seconds=3600, max_messages=20)  # noqa: N806
    conv = Conversation()
    conv.belongs_to(A, "whatsapp:+34600111222")
    first = conv.answer("OB1", Answer(parts=["one"], by="business", to="whatsapp:+34600111222"), NOW, LIMITS)
    conv.answer("OB2", Answer(parts=["two"], by="business", to="whatsapp:+34600111222"), NOW, LIMITS)
    queue = FakeQueue()
    assert send_when_its_turn(queue, "c" * 20, conv, "OB1")
    conv.done_seq = first
    assert hand_off_next(queue, "c" * 20, conv) == "OB2"
    assert [t.business for t in queue.tasks.values()] == [A, A]

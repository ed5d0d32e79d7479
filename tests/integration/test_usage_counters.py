"""The usage counters on the Firestore emulator: counted in the answer's commit exactly once (duplicates, a
crash after the claim, concurrent answers of one business), a budget spent mid-burst answered without the
model, the controls still heard, the next day resuming by itself, and one alert per business and day."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from google.cloud import firestore

from shared.adapters.firestore_store import FirestoreStore
from shared.adapters.profile_store import StaticProfiles
from shared.adapters.usage_store import UsageCounters, report_rows
from shared.config import Settings
from shared.domain.budgets import Budget
from shared.domain.inbound import InboundMessage
from shared.domain.profiles import BusinessProfile
from shared.domain.pseudonyms import Pseudonyms
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.processor import ProcessorDeps, process_message
from tests.fakes import Clock, FakeModel, FakeQueue

BUSINESS = "whatsapp:+14155238886"
IDS = Pseudonyms("integration-test-address-key")
SETTINGS = Settings(rate_limit_messages=1000, usage_shards=4)
TOKENS = 500  # each fake model call reports 400 prompt + 100 completion tokens


class World:
    def __init__(self, emulators, budget: Budget | None, clock: Clock | None = None,  # noqa: ANN001
                 faults: FaultPoints | None = None, cache_seconds: float = 0.0) -> None:
        suffix = uuid.uuid4().hex[:8]
        client = firestore.Client(project=emulators.project)
        self.store = FirestoreStore(lambda: client, f"conversations-{suffix}", f"failures-{suffix}", f"seen-{suffix}",
                                    usage=f"usage-{suffix}")
        self.counters = UsageCounters(lambda: client, f"usage-{suffix}", f"alerts-{suffix}", cache_seconds)
        self.model = FakeModel("Hello!")
        self.model.usage = (400, 100)
        self.profile = BusinessProfile(address=BUSINESS, budget=budget, opt_out_keywords=("STOP",))
        self.clock = clock or Clock(datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc))
        self.deps = ProcessorDeps(settings=SETTINGS, store=self.store, model=self.model, queue=FakeQueue(),
                                  faults=faults or FaultPoints(), clock=self.clock, ids=IDS,
                                  profiles=StaticProfiles(self.profile, {BUSINESS: self.profile}), usage=self.counters)

    def today(self) -> dict[str, float]:
        return self.counters.month(BUSINESS, self.clock().strftime("%Y-%m")).get(self.clock().strftime("%d"), {})

    def reply_to(self, sid: str, sender: str) -> list[str]:
        conv = self.store.load(IDS.conversation_id(sender, BUSINESS)).conversation
        return conv.messages[sid].parts


def msg(n: int, body: str = "hi", sender: str = "whatsapp:+34600111222") -> InboundMessage:
    return InboundMessage(sid=f"SM{n:032x}", sender=sender, recipient=BUSINESS, body=body)


def test_duplicates_and_a_crash_after_the_claim_count_the_answer_once(emulators) -> None:  # noqa: ANN001
    world = World(emulators, Budget(daily_tokens=10**6), faults=FaultPoints(("after_ai:1",)))
    with pytest.raises(InjectedFault):
        process_message(msg(1), world.deps)  # the model answered, the answer was never written
    world.clock.advance(SETTINGS.processing_lease_seconds + 1)
    for _ in range(3):  # the redelivery answers; the duplicates after it find it answered
        process_message(msg(1), world.deps)
    today = world.today()
    assert today["messages"] == 1 and today["tokens"] == TOKENS and len(world.model.calls) == 2
    assert world.store.ops.counts == 1


def test_concurrent_answers_of_one_business_are_counted_exactly(emulators) -> None:  # noqa: ANN001
    world = World(emulators, Budget(daily_tokens=10**9))
    errors: list[BaseException] = []

    def answer(n: int) -> None:
        try:
            process_message(msg(n, sender=f"whatsapp:+3460000{n:04d}"), world.deps)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    today = world.today()
    assert today["messages"] == 24 and today["tokens"] == 24 * TOKENS
    assert today["costUsd"] == pytest.approx(24 * (400 * 0.15 + 100 * 0.60) / 1e6)
    shards = list(world.counters.client.collection(world.counters._collection).stream())
    assert 1 < len(shards) <= SETTINGS.usage_shards


def test_a_budget_spent_mid_burst_gets_the_budget_reply_without_the_model(emulators) -> None:  # noqa: ANN001
    world = World(emulators, Budget(daily_tokens=10 * TOKENS, reply="Budget spent for today"))
    threads = [threading.Thread(target=process_message, args=(msg(n, sender=f"whatsapp:+3460000{n:04d}"), world.deps))
               for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered = world.today()["messages"]
    # The overshoot bound of decision 0024 with one instance and no cache: the answers in flight at once.
    assert 10 <= answered <= 10 + 16 - 1
    replies = [world.reply_to(msg(n).sid, f"whatsapp:+3460000{n:04d}") for n in range(16)]
    assert sum(r == ["Budget spent for today"] for r in replies) == 16 - answered
    calls = len(world.model.calls)
    process_message(msg(100), world.deps)
    assert world.reply_to(msg(100).sid, "whatsapp:+34600111222") == ["Budget spent for today"]
    assert len(world.model.calls) == calls, "no model call once spent"
    process_message(msg(101, "STOP"), world.deps)
    conv = world.store.load(IDS.conversation_id("whatsapp:+34600111222", BUSINESS)).conversation
    assert conv.opted_out, "opt-out still works past the budget"


def test_the_next_day_resumes_and_the_cache_is_kept_its_interval(emulators) -> None:  # noqa: ANN001
    clock = Clock(datetime(2026, 12, 4, 23, 58, tzinfo=timezone.utc))
    world = World(emulators, Budget(daily_tokens=TOKENS, reply="Budget spent"), clock=clock, cache_seconds=3600)
    process_message(msg(1), world.deps)
    reads = world.counters.ops.reads
    process_message(msg(2), world.deps)  # the cached spend (read before msg 1 was counted) lets it through
    assert world.counters.ops.reads == reads, "no read within the cache interval"
    assert world.reply_to(msg(2).sid, "whatsapp:+34600111222") == ["Hello!"]
    world.counters._cache_seconds = 0
    process_message(msg(3), world.deps)
    assert world.reply_to(msg(3).sid, "whatsapp:+34600111222") == ["Budget spent"]
    clock.advance(5 * 60)  # 00:03 the next day
    process_message(msg(4), world.deps)
    assert world.reply_to(msg(4).sid, "whatsapp:+34600111222") == ["Hello!"]
    rows = report_rows(world.counters, BUSINESS, 2, clock())
    assert [(r["day"], r["messages"], r["tokens"]) for r in rows] == [("2026-12-05", 1, TOKENS),
                                                                      ("2026-12-04", 2, 2 * TOKENS)]


def test_ops_are_alerted_once_per_business_and_day_whatever_the_instances(emulators) -> None:  # noqa: ANN001
    world = World(emulators, None)
    other = UsageCounters(lambda: world.counters.client, world.counters._collection, world.counters._alerts, 0)
    now = datetime(2026, 12, 4, 12, tzinfo=timezone.utc)
    results = [world.counters.alert_once(BUSINESS, now), other.alert_once(BUSINESS, now),
               world.counters.alert_once(BUSINESS, now), other.alert_once(BUSINESS, now + timedelta(hours=1))]
    assert results == [True, False, False, False]
    assert other.alert_once(BUSINESS, now + timedelta(days=1)) is True

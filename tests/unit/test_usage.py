"""Usage and budgets: the math, the price table, the shard, the budget rule, and the processor's path (fakes)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from shared.adapters import usage_meter
from shared.adapters.conversation_document import entry_document, from_document
from shared.config import ConfigError, Settings
from shared.domain.budgets import Budget, Spend, budget_values, exhausted
from shared.domain.controls import BUDGET, MODEL, OPT_OUT, REPLY, Decision, within_budget
from shared.domain.entry import MessageEntry
from shared.domain.inbound import InboundMessage
from shared.domain.lifecycle import ANSWERED
from shared.domain.profiles import BusinessProfile, ProfileError, profile_from_mapping
from shared.domain.usage import (
    CHAT, DEFAULT_PRICES, EMBEDDING, TRANSCRIPTION, Metered, PriceError, Usage, parse_prices, shard_for, summed, total,
)
from shared.adapters.profile_store import StaticProfiles
from shared.adapters.usage_store import report_rows
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.processor import ProcessorDeps, process_message
from tests.fakes import IDS, BUSINESS, Clock, FakeModel, FakeQueue, FakeStore, FakeUsageBook, conversation_id

SENDER = "whatsapp:+34600111222"
SETTINGS = Settings(rate_limit_messages=1000)


# ------------------------------------------------------------------ the math


def test_total_sums_each_kind_and_prices_it_by_its_own_model() -> None:
    usage = total([
        Metered(CHAT, "gpt-4o-mini", 1000, 200), Metered(CHAT, "gpt-4o-mini", 1500, 100),  # two tool rounds
        Metered(EMBEDDING, "text-embedding-3-small", 12),
        Metered(TRANSCRIPTION, "whisper-1", seconds=30.0),
    ], DEFAULT_PRICES)
    assert (usage.model, usage.prompt_tokens, usage.completion_tokens, usage.embedding_tokens) == \
        ("gpt-4o-mini", 2500, 300, 12)
    assert usage.transcription_seconds == 30.0 and usage.tokens == 2812
    expected = 2500 * 0.15 / 1e6 + 300 * 0.60 / 1e6 + 12 * 0.02 / 1e6 + 0.5 * 0.006
    assert usage.cost_usd == pytest.approx(expected, abs=1e-6)


def test_no_call_is_no_usage_and_an_unpriced_model_costs_nothing() -> None:
    assert total([], DEFAULT_PRICES).empty
    assert total([Metered(CHAT, "our-own-model", 10, 10)], DEFAULT_PRICES).cost_usd == 0.0


def test_the_price_table_is_overridden_per_model_and_checked() -> None:
    prices = parse_prices('{"gpt-4o-mini": {"input": 1, "output": 2}, "ours": {"input": 0.5}}')
    assert prices["gpt-4o-mini"].input == 1.0 and prices["ours"].output == 0.0
    assert prices["text-embedding-3-small"] == DEFAULT_PRICES["text-embedding-3-small"]
    for bad in ("[1]", '{"m": {"input": -1}}', '{"m": {"inptu": 1}}', '{"m": {"input": true}}', "{"):
        with pytest.raises(PriceError):
            parse_prices(bad)
    with pytest.raises(ConfigError, match="MODEL_PRICES"):
        Settings.from_env({"MODEL_PRICES": '{"m": 3}'})
    assert Settings.from_env({"MODEL_PRICES": '{"m": {"minute": 0.01}}'}).model_prices["m"].minute == 0.01


def test_the_shard_is_stable_and_spreads_messages() -> None:
    sids = [f"SM{n:032x}" for n in range(2000)]
    assert [shard_for(s, 20) for s in sids] == [shard_for(s, 20) for s in sids]
    spread = Counter(shard_for(s, 20) for s in sids)
    assert set(spread) == set(range(20)) and max(spread.values()) < 2 * 2000 / 20
    assert shard_for(sids[0], 1) == 0


def test_usage_round_trips_through_the_entry_document() -> None:
    usage = Usage("gpt-4o-mini", 10, 5, 3, 0, 1.5, 0.0001)
    entry = MessageEntry(status=ANSWERED, seq=1, usage=usage.to_data())
    stored = entry_document(entry)
    assert stored["usage"]["promptTokens"] == 10
    again = from_document({"messages": {"SM1": stored}}).messages["SM1"]
    assert Usage.from_data(again.usage) == usage


def test_shard_documents_are_summed_per_day() -> None:
    days = summed([{"days": {"04": {"tokens": 5, "costUsd": 0.1}}}, {"days": {"04": {"tokens": 7}, "05": {"tokens": 1}}}])
    assert days == {"04": {"tokens": 12, "costUsd": 0.1}, "05": {"tokens": 1}}


# ------------------------------------------------------------------ the budget rule


def fail(key: str, problem: str) -> Exception:
    return ProfileError(f"{key}: {problem}")


def test_budget_keys_are_parsed_and_checked() -> None:
    assert budget_values({}, fail) == {}
    budget = budget_values({"daily_token_budget": 1000, "budget_reply": " Later "}, fail)["budget"]
    assert budget == Budget(1000, 0.0, "Later") and budget.any
    for bad in ({"daily_token_budget": -1}, {"daily_token_budget": True}, {"monthly_cost_budget": "5"},
                {"budget_reply": "only a reply"}, {"daily_token_budget": 5, "budget_reply": ""}):
        with pytest.raises(ProfileError):
            budget_values(bad, fail)
    profile = profile_from_mapping(BUSINESS, {"monthly_cost_budget": 2.5}, BusinessProfile())
    assert profile.budget is not None and profile.budget.monthly_cost_usd == 2.5


def test_a_budget_is_spent_at_its_limit_of_either_kind() -> None:
    assert not exhausted(None, Spend(10**9, 10**9))
    assert not exhausted(Budget(daily_tokens=100), Spend(99, 50.0))
    assert exhausted(Budget(daily_tokens=100), Spend(100, 0.0))
    assert exhausted(Budget(monthly_cost_usd=1.0), Spend(0, 1.0))
    assert not exhausted(Budget(monthly_cost_usd=1.0), Spend(10**9, 0.99))


def test_only_a_model_turn_becomes_the_budget_reply() -> None:
    budget = Budget(daily_tokens=1, reply="Budget spent")
    turned = within_budget(Decision(MODEL, welcome="Hi!"), budget, True)
    assert (turned.kind, turned.reason, turned.reply, turned.welcome, turned.in_history) == \
        (REPLY, BUDGET, "Budget spent", "Hi!", False)
    opt_out = Decision(REPLY, OPT_OUT, "Bye")
    assert within_budget(opt_out, budget, True) is opt_out
    assert within_budget(Decision(MODEL), budget, False).kind == MODEL
    assert within_budget(Decision(MODEL), None, True).kind == MODEL


def test_noting_outside_a_scope_does_nothing_and_scopes_are_apart() -> None:
    usage_meter.note(CHAT, "m", {"prompt_tokens": 5})
    with usage_meter.metering() as outer:
        usage_meter.note(CHAT, "m", {"prompt_tokens": 5, "completion_tokens": 1})
        with usage_meter.metering() as inner:
            usage_meter.note(TRANSCRIPTION, "whisper-1", {"type": "duration", "seconds": 2.5})
        usage_meter.note(EMBEDDING, "e", None)
    assert outer == [Metered(CHAT, "m", 5, 1)] and inner == [Metered(TRANSCRIPTION, "whisper-1", 0, 0, 2.5)]


# ------------------------------------------------------------------ the processor


def world(budget: Budget | None = None, settings: Settings = SETTINGS, **kw) -> ProcessorDeps:
    store = FakeStore()
    profile = BusinessProfile(address=BUSINESS, budget=budget, opt_out_keywords=("STOP",))
    model = FakeModel("Hello!")
    model.usage = (400, 100)
    return ProcessorDeps(settings=settings, store=store, model=model, queue=FakeQueue(), faults=kw.pop("faults", FaultPoints()),
                         clock=kw.pop("clock", Clock()), ids=IDS, profiles=StaticProfiles(profile, {BUSINESS: profile}),
                         usage=FakeUsageBook(store))


def msg(n: int, body: str = "hi", sender: str = SENDER) -> InboundMessage:
    return InboundMessage(sid=f"SM{n:032x}", sender=sender, recipient=BUSINESS, body=body)


def test_a_business_without_a_budget_gets_usage_on_the_entry_and_no_count_or_read() -> None:
    deps = world()
    assert process_message(msg(1), deps) == "answered"
    entry = deps.store.conversation(conversation_id(SENDER)).entry(msg(1).sid)
    assert Usage.from_data(entry.usage).tokens == 500 and entry.usage["model"] == "gpt-4o-mini"
    assert deps.store.counts == [] and deps.usage.reads == 0 and deps.store.ops.counts == 0


def test_every_business_is_counted_with_usage_counters_all() -> None:
    deps = world(settings=replace(SETTINGS, usage_counters="all"))
    process_message(msg(1), deps)
    assert len(deps.store.counts) == 1 and deps.usage.reads == 0


def test_a_budgeted_answer_is_counted_once_whatever_is_delivered_again() -> None:
    deps = world(Budget(daily_tokens=10**6))
    for _ in range(3):
        process_message(msg(1), deps)
    assert len(deps.model.calls) == 1
    [count] = deps.store.counts
    assert count.usage.tokens == 500 and count.shard == shard_for(msg(1).sid, SETTINGS.usage_shards)
    assert count.increments()["messages"] == 1


def test_a_crash_after_the_claim_counts_the_answer_that_was_recorded_once() -> None:
    deps = world(Budget(daily_tokens=10**6), faults=FaultPoints(("after_ai:1",)))
    with pytest.raises(InjectedFault):
        process_message(msg(1), deps)
    assert deps.store.counts == []
    deps.clock.advance(SETTINGS.processing_lease_seconds + 1)
    assert process_message(msg(1), deps) == "answered"
    assert len(deps.store.counts) == 1


def test_an_answer_commit_whose_answer_was_lost_is_not_counted_twice() -> None:
    deps = world(Budget(daily_tokens=10**6), faults=FaultPoints(("answer_commit_lost:1",)))
    assert process_message(msg(1), deps) == "requeued"  # the retry found it answered by its own commit
    assert process_message(msg(2), deps) == "answered"
    assert [c.usage.tokens for c in deps.store.counts] == [500, 500]


def test_a_spent_budget_answers_without_the_model_and_the_controls_still_work() -> None:
    deps = world(Budget(daily_tokens=900, reply="Budget spent"))
    process_message(msg(1), deps)
    process_message(msg(2), deps)  # 1000 tokens: spent
    assert process_message(msg(3), deps) == "answered"
    conv = deps.store.conversation(conversation_id(SENDER))
    assert conv.entry(msg(3).sid).parts == ["Budget spent"] and len(deps.model.calls) == 2
    assert conv.entry(msg(3).sid).usage == {} and len(deps.store.counts) == 2
    assert deps.usage.alerts == {(BUSINESS, "2026-11-23")}
    process_message(msg(4, "STOP"), deps)
    conv = deps.store.conversation(conversation_id(SENDER))
    assert conv.opted_out and conv.entry(msg(4).sid).decided.reason == OPT_OUT


def test_the_next_day_resumes_by_itself() -> None:
    clock = Clock(datetime(2026, 12, 4, 23, 59, tzinfo=timezone.utc))
    deps = world(Budget(daily_tokens=500, reply="Budget spent"), clock=clock)
    process_message(msg(1), deps)
    process_message(msg(2), deps)
    assert deps.store.conversation(conversation_id(SENDER)).entry(msg(2).sid).parts == ["Budget spent"]
    clock.advance(120)
    process_message(msg(3), deps)
    assert deps.store.conversation(conversation_id(SENDER)).entry(msg(3).sid).parts == ["Hello!"]
    assert [c.day for c in deps.store.counts] == ["04", "05"]


def test_the_report_reads_the_counters_per_business_and_day() -> None:
    class Book:
        def businesses(self, months):
            return ["b1"]

        def month(self, business, month):
            return {"04": {"messages": 3, "tokens": 1500, "costUsd": 0.0012}} if month == "2026-12" else {}

    rows = report_rows(Book(), None, 7, datetime(2026, 12, 4, 10, tzinfo=timezone.utc))
    assert rows == [{"business": "b1", "day": "2026-12-04", "messages": 3, "tokens": 1500, "prompt_tokens": 0,
                     "completion_tokens": 0, "embedding_tokens": 0, "transcription_seconds": 0, "cost_usd": 0.0012}]
    assert report_rows(Book(), "b1", 3, datetime(2026, 12, 8, tzinfo=timezone.utc)) == []


def test_over_budget_with_a_cost_budget_resumes_next_month() -> None:
    clock = Clock(datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc))
    deps = world(Budget(monthly_cost_usd=0.0001, reply="Budget spent"), clock=clock)
    process_message(msg(1), deps)
    process_message(msg(2), deps)
    assert deps.store.conversation(conversation_id(SENDER)).entry(msg(2).sid).parts == ["Budget spent"]
    clock.advance(2 * 3600)
    process_message(msg(3), deps)
    assert deps.store.conversation(conversation_id(SENDER)).entry(msg(3).sid).parts == ["Hello!"]
    assert [c.month for c in deps.store.counts] == ["2026-12", "2027-01"]

"""The queueing model behind figure 17 (bench/queueing.py, bench/capacity.py): it agrees with queueing theory
where theory has an answer, names the stage whose capacity is below the offered load, and its latency grows as
the load nears capacity. Pure computation, seeded."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench import capacity
from bench.queueing import Load, Service, Stage, percentile, simulate, utilisation
from bench.report import render

ONE_NUMBER = Load(rate=50.0, shares=(1.0,), users=10_000)


def sojourns(stages: list[Stage], load: Load, seconds: float = 200.0, seed: int = 1) -> list[float]:
    messages = simulate(stages, load, seconds, seed)
    return [m.at - m.arrival for m in messages if m.arrival > seconds / 10]


def test_one_exponential_server_matches_the_mm1_mean() -> None:
    # M/M/1 with mu = 100/s and lambda = 50/s: mean time in the system 1 / (mu - lambda) = 20 ms.
    times = sojourns([Stage("server", Service(0.01, exponential=True), servers=1)], ONE_NUMBER)
    mean = sum(times) / len(times)
    assert mean == pytest.approx(0.02, rel=0.15)


def test_a_rate_limit_spaces_messages_at_its_rate() -> None:
    stage = Stage("bucket", rate=10.0, burst=1.0)
    messages = simulate([stage], Load(rate=40.0, shares=(1.0,), users=10_000), 20.0, seed=2)
    leaving = sorted(m.at for m in messages)
    assert min(b - a for a, b in zip(leaving, leaving[1:])) >= 0.1 - 1e-9
    assert utilisation(stage, Load(rate=40.0, shares=(1.0,), users=10_000)) == pytest.approx(4.0)


def test_latency_grows_as_the_load_nears_capacity() -> None:
    stage = Stage("server", Service(0.01, exponential=True), servers=1)
    p99 = [percentile(sojourns([stage], replace(ONE_NUMBER, rate=rate)), 99) for rate in (30.0, 60.0, 85.0, 95.0)]
    assert p99 == sorted(p99) and p99[-1] > 4 * p99[0], p99


def test_a_limit_per_business_holds_back_only_that_business() -> None:
    # Two numbers, one above its send rate: the other's messages never wait for the bucket.
    stage = Stage("per number", rate=20.0, burst=1.0, key="business")
    load = Load(rate=40.0, shares=(0.9, 0.1), users=10_000)
    messages = simulate([stage], load, 20.0, seed=3)
    quiet = [m.waited["per number"] for m in messages if m.business == 1]
    busy = [m.waited["per number"] for m in messages if m.business == 0 and m.arrival > 10]
    assert percentile(quiet, 99) < 0.2 < min(busy)
    assert utilisation(stage, load) == pytest.approx(40 * 0.9 / 20)


def test_the_stage_below_the_offered_load_is_reported_as_the_bottleneck() -> None:
    costs = capacity.measured({})
    starved = replace(capacity.PLAN, name="one sender instance",
                      max_instances={**capacity.PLAN.max_instances, "sender": 1})
    result = capacity.evaluate(starved, costs, rate=300.0, seconds=6.0)
    assert result["bottleneck"] == "sender_fn CPU (1 vCPU per instance)"
    assert not result["sustained"] and result["utilisation"][result["bottleneck"]] > 1
    assert result["p99_last_quarter_s"] > result["p50_s"], "its queue keeps growing"
    healthy = capacity.evaluate(capacity.PLAN, costs, rate=300.0, seconds=6.0)
    assert healthy["sustained"] and healthy["p99_s"] < result["p99_s"]


def test_the_figure_renders_in_the_bench_table() -> None:
    section = capacity.figure({}, seconds=1.0)
    table = render(capacity.report_rows(section))
    assert table.count("binds first: ") == len(capacity.SCENARIOS) and "17. capacity model" in table


def test_the_same_seed_gives_the_same_prediction() -> None:
    costs = capacity.measured({})
    first = capacity.evaluate(capacity.PLAN, costs, rate=200.0, seconds=3.0, seed=5)
    again = capacity.evaluate(capacity.PLAN, costs, rate=200.0, seconds=3.0, seed=5)
    assert first == again


def test_one_queue_for_every_number_binds_today_and_the_plan_moves_it() -> None:
    costs = capacity.measured({})
    today = capacity.evaluate(capacity.TODAY, costs, rate=1000.0, seconds=2.0)
    assert today["bottleneck"] == "Cloud Tasks dispatches per queue" and not today["sustained"]
    assert today["utilisation"]["Cloud Tasks dispatches per queue"] == pytest.approx(1000 / 20)
    plan = capacity.evaluate(capacity.PLAN, costs, rate=1000.0, seconds=2.0)
    assert plan["utilisation"]["Cloud Tasks dispatches per queue"] < 0.5
    assert capacity.firestore_ramp_minutes(7000) == 35

"""`python -m bench --quick` runs end to end and reports real, complete figures.

The benchmark starts its own stack, so this test neither needs nor starts the
session stack. Only the shape and the invariants are checked here (every
section measured something, nothing lost, costs counted for real); the
figures themselves are for `make bench` on a quiet machine.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from devstack.stack import ROOT

# A guard against a hung run, not a speed goal: --quick takes about two and a half minutes on a quiet
# 2-core machine (every figure, each with a tiny N), longer beside the other test lanes.
TIMEOUT_SECONDS = 360


@pytest.fixture(autouse=True)
def _clean_stand_ins() -> Iterator[None]:
    """Overrides the e2e autouse fixture: this test must not start the session stack."""
    yield


def _run_quick(output: Path) -> tuple[int, str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the benchmark stop the stack and every process it started.
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)
        pytest.fail(f"python -m bench --quick took longer than {TIMEOUT_SECONDS}s")
    return process.returncode, stdout, stderr


def _n(section: dict[str, Any]) -> int:
    return int(section["n"])


def test_quick_benchmark_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    code, stdout, stderr = _run_quick(output)
    assert code == 0, stderr[-3000:]
    assert stdout.splitlines()[0].split()[:3] == ["figure", "N", "p50"], stdout[:500]
    results = json.loads(output.read_text())

    assert results["quick"] is True
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["python"]

    for ai in ("instant_ai", "slow_ai"):
        for mode in ("sequential", "concurrent"):
            section = results["ack"][ai][mode]
            assert _n(section["target_ms"]) > 0 and _n(section["floor_ms"]) > 0, (ai, mode)
            assert 0 < section["target_ms"]["p50"] <= section["target_ms"]["p99"], (ai, mode)
    assert results["ack"]["slow_ai"]["ai_delay_seconds"] == 10

    e2e = results["e2e"]
    assert _n(e2e) > 0
    for hop in ("pubsub_publish_to_push_ms", "tasks_create_to_dispatch_ms", "firestore_transaction_ms"):
        assert _n(e2e["floor"][hop]) > 0, hop
    assert e2e["floor"]["sum_of_medians_ms"] > 0 and e2e["ratio_p50"] > 0
    assert all(_n(stage) > 0 for stage in e2e["stages_ms"].values())

    throughput = results["throughput"]
    assert _n(throughput) > 0 and throughput["steps"]
    assert throughput["tasks_max_dispatches_per_second"] == 20
    assert all(step["completed"] == step["accepted"] > 0 for step in throughput["steps"])

    cost = results["cost"]["sequential"]
    assert _n(cost) > 0
    per_message = cost["per_message"]
    assert per_message["firestore_reads"] > 0 and per_message["firestore_writes"] > 0
    assert per_message["pubsub_publishes"] > 0 and per_message["openai_calls"] > 0
    assert per_message["twilio_calls"] > 0
    secret_manager = results["cost"]["secret_manager"]
    assert _n(secret_manager) > 0 and secret_manager["warm_up_accesses"] > 0
    assert secret_manager["per_message"] == 0

    delivery = results["delivery"]
    assert _n(delivery) > 0
    assert (delivery["lost"], delivery["duplicated"], delivery["reordered"]) == (0, 0, 0)

    cold = results["cold_start"]
    assert _n(cold) > 0
    for name in ("webhook", "processor", "sender", "floor"):
        assert _n(cold[name]["first_response_ms"]) > 0, name

    knowledge = results["knowledge"]
    assert knowledge["plain_same_as_figure_4"], knowledge["plain"]["per_message"]
    assert knowledge["plain"]["per_message"]["openai_embedding_calls"] == 0
    assert knowledge["knowledge"]["per_message"]["openai_embedding_calls"] == 1
    assert knowledge["knowledge"]["per_message"]["firestore_knowledge_reads"] >= 1
    assert knowledge["apply"]["chunks"] > 0 and knowledge["apply"]["again_embedding_requests"] == 0

    inbox = results["inbox"]
    assert inbox["nobody_open_equals_figure_4"] and inbox["inbox_requests"]["closed"] == 0, inbox
    assert inbox["inbox_requests"]["open"] > 0 and inbox["inbox_reads"]["open"] > 0
    assert inbox["polls"] >= inbox["inbox_requests"]["open"] and inbox["quiet_poll_firestore_reads"] > 0
    assert inbox["visible_after_seconds"] is not None

    usage = results["usage"]
    assert usage["plain_same_as_figure_4"] and usage["counters_match_logs"], usage
    assert usage["plain"]["per_message"]["firestore_usage_writes"] == 0
    assert usage["budgeted"]["per_message"]["firestore_usage_writes"] == 1
    assert usage["usage"]["default"]["tokens_per_message"] > 0 and usage["usage"]["default"]["cost_usd_per_message"] > 0

    capacity = results["capacity"]  # figure 17, from this run's own hops and CPU
    assert capacity["measured_from"] == "this run" and len(capacity["scenarios"]) >= 3
    assert all(s["bottleneck"] in s["utilisation"] and s["n"] > 0 for s in capacity["scenarios"])

    rate = results["rate_isolation"]
    assert rate["b_alone_ms"]["n"] > 0 and rate["b_with_campaign_ms"]["n"] > 0 and rate["b_missing"] == 0, rate
    assert rate["campaign_posted"] > 0 and rate["campaign_sent_in_total"] == rate["campaign_posted"], rate

    goals = results["goals"]
    assert len(goals) >= 5 and all(isinstance(goal["pass"], bool) for goal in goals)

"""Figure 17: 1,000 messages a second across 100 business numbers, as a queueing model (no load test).

``python -m bench.capacity`` prints the figure alone (a few seconds, no stack,
no network); ``make bench`` prints it after the measured figures. The model
(bench/queueing.py) sends a seeded Poisson stream through the pipeline's
stages, each with the published limit that applies to it and the time our
code holds it: measured where this machine can measure it (bench/results.json:
the functions' CPU per message, the Firestore round trips, the push hop), and
stated where it cannot (OpenAI's and Twilio's response times). It prints, for
the deployment as configured today and for the plan of docs/performance.md,
the stage that binds first, each stage's utilisation and the end-to-end
latency it predicts (webhook POST to Twilio sending the reply).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.queueing import Load, Service, Stage, percentile, simulate, utilisation
from bench.report import note_row, render

RESULTS = Path(__file__).resolve().parent / "results.json"
RATE = 1000.0  # messages a second
NUMBERS = 100
USERS = 60_000  # each writes about once a minute at 1,000 msg/s
SECONDS = 10.0  # simulated; the first quarter is warm-up
SEED = 17

# Published limits (sources: docs/performance.md, "1,000 messages a second across 100 numbers").
TWILIO_SENDER_MPS = 80  # per WhatsApp sender, default; text up to 400 on request
TASKS_QUEUE_MAX_RATE = 500  # dispatches per second per queue, the API's maximum
TASKS_QUEUES_PER_REGION = 1000
PUBSUB_KEY_BYTES_PER_SECOND = 1_000_000  # per ordering key
PUBSUB_REGION_BYTES_PER_SECOND = 200_000_000  # publisher throughput, large regions
FIRESTORE_DOC_WRITES_PER_SECOND = 1.0  # sustained, per document (guidance)
FIRESTORE_DB_WRITES_PER_SECOND = 10_000  # per database (the limit as first published; since lifted)
FIRESTORE_RAMP_START, FIRESTORE_RAMP_GROWTH, FIRESTORE_RAMP_MINUTES = 500, 1.5, 5
OPENAI_TIER5_RPM, OPENAI_TIER5_TPM = 30_000, 150_000_000  # gpt-4o-mini, usage tier 5

# Per message, as make bench counts them (figure 4) and as assumed where nothing here can measure.
FIRESTORE_WRITES = 5  # 2 reads + 5 writes; 4 of the writes on the conversation document
CONVERSATION_WRITES = 4
MESSAGE_BYTES = 2_000  # the published InboundMessage, with attributes
TOKENS_PER_MESSAGE = 1_200  # prompt with history and the business's prompt, plus the reply
OPENAI_SECONDS = Service(1.0, 4.0)  # assumed: a short chat completion
TWILIO_SECONDS = Service(0.25, 0.8)  # assumed: Twilio's create-message call


@dataclass(frozen=True)
class Settings:
    """What the deployment sets (Terraform variable names) and what it has been granted."""

    name: str
    max_instances: dict[str, int]
    concurrency: dict[str, int]
    queues: int  # send queues: 1 today, one per business number in the plan
    queue_rate: float  # tasks_max_dispatches_per_second (per queue)
    queue_concurrent: int  # tasks_max_concurrent_dispatches (per queue)
    twilio_mps: float = TWILIO_SENDER_MPS  # twilio_sender_mps_limit
    openai_rpm: float = OPENAI_TIER5_RPM
    openai_tpm: float = OPENAI_TIER5_TPM
    shares: tuple[float, ...] = field(default_factory=lambda: (1 / NUMBERS,) * NUMBERS)


TODAY = Settings("today's defaults (one queue at 20/s, OpenAI tier 5)",
                 {"webhook": 10, "processor": 10, "sender": 5}, {"webhook": 40, "processor": 16, "sender": 16},
                 queues=1, queue_rate=20, queue_concurrent=20)
PLAN_TIER5 = Settings("the plan's settings, OpenAI tier 5 (30,000 RPM)",
                      {"webhook": 15, "processor": 25, "sender": 20}, {"webhook": 80, "processor": 80, "sender": 40},
                      queues=NUMBERS, queue_rate=0.8 * TWILIO_SENDER_MPS, queue_concurrent=20)
PLAN = replace(PLAN_TIER5, name="the plan, OpenAI limit raised to 90,000 RPM", openai_rpm=90_000)
_ZIPF = tuple(1 / k for k in range(1, NUMBERS + 1))
PLAN_SKEWED = replace(PLAN, name="the plan, traffic Zipf-skewed over the 100 numbers",
                      shares=tuple(w / sum(_ZIPF) for w in _ZIPF))
SCENARIOS = (TODAY, PLAN_TIER5, PLAN, PLAN_SKEWED)


def measured(results: dict[str, Any]) -> dict[str, Any]:
    """Our own per-message costs from a make bench run (bench/results.json), with the fallbacks used without one."""
    e2e = results.get("e2e", {})
    stages, floor = e2e.get("stages_ms", {}), e2e.get("floor", {})

    def span(values: dict[str, float] | None, p50: float, p99: float) -> Service:
        values = values or {}
        return Service(values.get("p50", p50) / 1000, values.get("p99", p99) / 1000)

    cpu = {"webhook": 6.1, "processor": 12.5, "sender": 9.9} | (e2e.get("cpu_ms_per_message") or {})
    claim = span(floor.get("firestore_transaction_ms"), 10.2, 19.3)
    answer = span(stages.get("model_and_save"), 8.1, 15.2)
    return {
        "cpu_seconds": {k: v / 1000 for k, v in cpu.items()},
        "webhook": span(stages.get("webhook"), 10.1, 15.0),
        "push": span(floor.get("pubsub_publish_to_push_ms"), 55.9, 104.4),
        "processor": Service(claim.p50 + answer.p50, claim.p99 + answer.p99),
        "dispatch": span(floor.get("tasks_create_to_dispatch_ms"), 3.8, 8.0),
        "sender": span(stages.get("to_twilio"), 18.3, 29.1),
    }


def pipeline(s: Settings, costs: dict[str, Any]) -> list[Stage]:
    """The stages a message goes through, in order, with the limits ``s`` gives them."""
    cpu = costs["cpu_seconds"]

    def run(service: str, work: Service) -> list[Stage]:
        slots = s.max_instances[service] * s.concurrency[service]
        return [
            Stage(f"{service}_fn CPU (1 vCPU per instance)", Service(cpu[service], cpu[service] * 2),
                  servers=s.max_instances[service], setting=f"max_instances.{service}"),
            Stage(f"{service}_fn requests in flight", work, servers=slots,
                  setting=f"max_instances.{service} x concurrency.{service}"),
        ]

    model = Service(costs["processor"].p50 + OPENAI_SECONDS.p50, costs["processor"].p99 + OPENAI_SECONDS.p99)
    return [
        *run("webhook", costs["webhook"]),
        Stage("Pub/Sub publishes per region", rate=PUBSUB_REGION_BYTES_PER_SECOND / MESSAGE_BYTES,
              burst=PUBSUB_REGION_BYTES_PER_SECOND / MESSAGE_BYTES, setting="Pub/Sub quota"),
        Stage("Pub/Sub per ordering key (user)", costs["push"], rate=PUBSUB_KEY_BYTES_PER_SECOND / MESSAGE_BYTES,
              burst=10, key="user", setting="Pub/Sub limit"),
        Stage("Firestore writes per conversation", rate=FIRESTORE_DOC_WRITES_PER_SECOND, burst=CONVERSATION_WRITES * 3,
              cost=CONVERSATION_WRITES, key="user", setting="Firestore guidance"),
        Stage("Firestore writes per database", rate=FIRESTORE_DB_WRITES_PER_SECOND,
              burst=FIRESTORE_DB_WRITES_PER_SECOND, cost=FIRESTORE_WRITES, setting="Firestore"),
        Stage("OpenAI requests per minute", rate=s.openai_rpm / 60, burst=s.openai_rpm / 60,
              setting="OpenAI usage tier"),
        Stage("OpenAI tokens per minute", rate=s.openai_tpm / 60, burst=s.openai_tpm / 60, cost=TOKENS_PER_MESSAGE,
              setting="OpenAI usage tier"),
        *run("processor", model),
        Stage("Cloud Tasks dispatches per queue", costs["dispatch"], rate=min(s.queue_rate, TASKS_QUEUE_MAX_RATE),
              burst=min(s.queue_rate, TASKS_QUEUE_MAX_RATE), key="business" if s.queues > 1 else "",
              servers=s.queue_concurrent * s.queues, setting="tasks_max_dispatches_per_second (per queue)"),
        *run("sender", Service(costs["sender"].p50 + TWILIO_SECONDS.p50, costs["sender"].p99 + TWILIO_SECONDS.p99)),
        Stage("Twilio MPS per WhatsApp sender", rate=s.twilio_mps, burst=1, key="business",
              setting="twilio_sender_mps_limit (Twilio)"),
    ]


def evaluate(s: Settings, costs: dict[str, Any], rate: float = RATE, seconds: float = SECONDS,
             seed: int = SEED) -> dict[str, Any]:
    """One scenario: each stage's utilisation, the one that binds first, and the latency the model predicts."""
    stages = pipeline(s, costs)
    load = Load(rate, s.shares, USERS)
    loads = {stage.name: round(utilisation(stage, load), 3) for stage in stages}
    bottleneck = max(loads, key=loads.__getitem__)
    messages = simulate(stages, load, seconds, seed)
    settled = [m for m in messages if m.arrival >= seconds / 4]
    latencies = [m.at - m.arrival for m in settled]
    late = [m.at - m.arrival for m in settled if m.arrival >= seconds * 3 / 4]
    waits = {stage.name: round(percentile([m.waited[stage.name] for m in settled], 99), 3) for stage in stages}
    over = sorted((name for name, value in loads.items() if value >= 1 and name != bottleneck), key=lambda n: -loads[n])
    return {
        "scenario": s.name, "rate": rate, "numbers": len(s.shares), "seconds": seconds, "seed": seed,
        "n": len(settled), "bottleneck": bottleneck, "utilisation": loads, "sustained": loads[bottleneck] < 1,
        "also_over_capacity": over,
        "p50_s": round(percentile(latencies, 50), 3), "p99_s": round(percentile(latencies, 99), 3),
        "p99_last_quarter_s": round(percentile(late, 99), 3), "wait_p99_s": waits,
        "settings": {"max_instances": s.max_instances, "concurrency": s.concurrency, "queues": s.queues,
                     "queue_rate": s.queue_rate, "queue_concurrent": s.queue_concurrent, "twilio_mps": s.twilio_mps,
                     "openai_rpm": s.openai_rpm, "openai_tpm": s.openai_tpm, "top_share": round(max(s.shares), 4)},
    }


def firestore_ramp_minutes(ops_per_second: float) -> float:
    """Minutes the 500/50/5 rule takes from a cold database to ``ops_per_second``."""
    steps = 0
    level = float(FIRESTORE_RAMP_START)
    while level < ops_per_second:
        level *= FIRESTORE_RAMP_GROWTH
        steps += 1
    return steps * FIRESTORE_RAMP_MINUTES


def figure(results: dict[str, Any] | None = None, seconds: float = SECONDS) -> dict[str, Any]:
    """Every scenario, for results.json["capacity"], from this run's measurements (else the last results.json).

    ``seconds`` simulated per scenario: the default for conclusions, less for --quick's smoke run.
    """
    started = time.monotonic()
    source = "this run"
    if results is None:
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        source = RESULTS.name if results else "fallbacks (no results.json)"
    costs = measured(results)
    scenarios = [evaluate(s, costs, seconds=seconds) for s in SCENARIOS]
    return {
        "rate": RATE, "numbers": NUMBERS, "users": USERS,
        "assumed": {"openai_s": [OPENAI_SECONDS.p50, OPENAI_SECONDS.p99],
                    "twilio_s": [TWILIO_SECONDS.p50, TWILIO_SECONDS.p99], "tokens_per_message": TOKENS_PER_MESSAGE},
        "measured_from": source,
        "firestore_ops_per_second": RATE * 7, "firestore_ramp_minutes": firestore_ramp_minutes(RATE * 7),
        "scenarios": scenarios, "seconds": round(time.monotonic() - started, 2),
    }


def report_rows(section: dict[str, Any]) -> list[list[str] | str]:
    """Figure 17's rows in the bench table."""
    rows: list[list[str] | str] = [
        f"17. capacity model: {section['rate']:g} msg/s over {section['numbers']} numbers (queueing simulation, "
        f"docs/performance.md; model {section['assumed']['openai_s'][0]:g} s p50, Twilio "
        f"{section['assumed']['twilio_s'][0]:g} s p50 assumed)"]
    for sc in section["scenarios"]:
        verdict = "sustained" if sc["sustained"] else f"NOT sustained: p99 {sc['p99_last_quarter_s']:.1f} s and growing"
        if sc["also_over_capacity"]:
            verdict += f" (also over: {', '.join(sc['also_over_capacity'])})"
        rows.append(note_row(f"  {sc['scenario']}", f"binds first: {sc['bottleneck']} "
                             f"({sc['utilisation'][sc['bottleneck']]:.2f} of capacity); latency p50 {sc['p50_s']:.2f} s, "
                             f"p99 {sc['p99_s']:.2f} s; {verdict}", sc["n"]))
    rows.append(note_row("  Firestore ramp from a cold database (500/50/5)",
                         f"{section['firestore_ops_per_second']:g} ops/s reached after "
                         f"{section['firestore_ramp_minutes']:g} min"))
    return rows


def main() -> int:
    section = figure()
    print(render(report_rows(section)))
    plan = next(s for s in section["scenarios"] if s["scenario"] == PLAN.name)
    print("  utilisation per stage, the plan:")
    for name, value in sorted(plan["utilisation"].items(), key=lambda kv: -kv[1]):
        print(f"    {name:52} {value:6.3f}   wait p99 {plan['wait_p99_s'][name]:.3f} s")
    print(f"  ({section['seconds']:g} s to compute)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m bench``: start a private stack, measure every figure against its floor, report.

Only ratios and side-by-side figures are meaningful on a small shared machine;
absolute milliseconds are printed for context. Progress goes to stderr, the
one table to stdout, everything (with N and spread) to the JSON file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Callable

from google.cloud import pubsub_v1

from bench import (
    ack, burst, charts, coldstart, cost, cpu, e2e, features, front_end, inbox, keyword_rules, knowledge_apply,
    knowledge_cost, secrets_check, stages, throughput, usage_cost, write_paths,
)
from bench import capacity
from bench import rate_isolation
from bench.driver import Delivery, Driver, check_delivery
from bench.procs import Processes, function_command, process_env, wait_listening
from bench.profile import Profiler
from bench.receiver import Receiver
from bench.report import Goal, dist_row, note_row, render
from bench.stats import Summary, ratio, summarize
from devstack.emulators import free_port
from devstack.stack import HOST, ROOT, SERVICES, Stack, StackOptions

DEFAULT_OUTPUT = ROOT / "bench" / "results.json"
FLOOR_TOPIC = "bench-floor"
SLOW_AI_SECONDS = 10.0
ACK_P99_LIMIT = 1.5
SLOW_AI_LIMIT = 1.5
E2E_LIMIT = 2.0
INBOX_POLL_SECONDS = 3.0  # the page's default (INBOX_POLL_SECONDS)
QUICK_INBOX_POLL_SECONDS = 1.0  # --quick: the same figure 14 with shorter waits (the shortest poll the page allows)
BURST_GRACE_SECONDS = 180.0  # a throttled queue can take minutes to answer everyone; the figure says how long
FIRESTORE_OPS_LIMIT = 4.0
BURST_LIMIT = 1.5
BURST_ADDED_SLACK_SECONDS = 1.0  # figure 8: a burst window may add at most its own length plus this
COLD_START_LIMIT = 1.5  # figure 5: the processor's first answer against the bare function's (issue 22)


@dataclass(frozen=True)
class Plan:
    """How much of each figure to measure; --quick is for the smoke test, not for conclusions."""

    warmup: int
    ack_pairs: int
    ack_clients: int
    ack_per_client: int
    ack_rounds: int
    slow_pairs: int
    slow_per_client: int
    slow_rounds: int
    e2e_messages: int
    rates: tuple[float, ...]
    step_seconds: float
    grace_seconds: float
    cold_repeats: int
    secret_messages: int
    burst_others: int
    burst_rounds: int
    feature_messages: int
    feature_burst_users: int
    front_end_pairs: int
    write_path_messages: int = 100
    knowledge_pages: int = 100


FULL = Plan(
    warmup=5, ack_pairs=300, ack_clients=8, ack_per_client=5, ack_rounds=10,
    slow_pairs=100, slow_per_client=3, slow_rounds=6, e2e_messages=150,
    rates=(5, 10, 15, 20, 30, 40), step_seconds=10, grace_seconds=20, cold_repeats=5, secret_messages=1000,
    burst_others=50, burst_rounds=3, feature_messages=12, feature_burst_users=10, front_end_pairs=200,
)
QUICK = Plan(
    warmup=2, ack_pairs=15, ack_clients=8, ack_per_client=2, ack_rounds=2,
    slow_pairs=6, slow_per_client=1, slow_rounds=2, e2e_messages=8,
    rates=(5, 10), step_seconds=2, grace_seconds=10, cold_repeats=3, secret_messages=100,
    burst_others=10, burst_rounds=1, feature_messages=3, feature_burst_users=3, front_end_pairs=10,
    write_path_messages=5, knowledge_pages=10,
)


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for raw in Path("/proc/cpuinfo").read_text().splitlines():
            if raw.startswith("model name"):
                model = raw.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": commit,
    }


def ms(values: list[float]) -> Summary:
    return summarize(values).scaled(1000)


class Bench:
    """Owns everything the run starts, so one ``close`` stops it all."""

    def __init__(self, plan: Plan, log_dir: Path, profile_dir: Path | None = None) -> None:
        self.plan = plan
        self.profiler = Profiler(profile_dir) if profile_dir else None
        self.profile: dict[str, list[tuple[str, float]]] = {}
        self.log_dir = log_dir
        self.processes = Processes()
        self.stack: Stack | None = None
        self.receiver: Receiver | None = None
        self.hops: e2e.HopFloor | None = None
        self.floor_url = ""
        self.floor_pid = 0
        self.floor_env: dict[str, str] = {}
        self.phases: dict[str, float] = {}

    # Setup and teardown

    def start(self) -> Driver:
        # No chat page, no status callbacks and no typing indicator: the figures
        # measure the message path alone (each feature's own cost: docs/decisions/0011-whatsapp-channel.md).
        options = StackOptions(
            webhook_port=0, env={"LOG_USAGE": "true", "DELIVERY_STATUS_CALLBACKS": "false", "TYPING_INDICATOR": "false"},
            log_dir=self.log_dir, progress=_say,
            simulator=False, status_callbacks=False, tool_server_port=0,
        )
        self.stack = Stack(options).start()
        # This process's own Google clients (floors, probes) use the stack's emulators.
        os.environ.update(self.stack.firestore.env())
        os.environ.update(self.stack.pubsub.env())
        os.environ["GOOGLE_CLOUD_PROJECT"] = options.project
        self._start_floor()
        self.receiver = Receiver().start()
        self.hops = e2e.HopFloor(self.stack, self.receiver)
        return Driver(self.stack)

    def _start_floor(self) -> None:
        """The floor function, with its own topic (and an ordered subscription storing what it gets)."""
        assert self.stack is not None
        project = f"projects/{self.stack.options.project}"
        topic = f"{project}/topics/{FLOOR_TOPIC}"
        publisher = pubsub_v1.PublisherClient()
        publisher.create_topic(name=topic)
        publisher.stop()
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(
            request={"name": f"{project}/subscriptions/{FLOOR_TOPIC}", "topic": topic, "enable_message_ordering": True}
        )
        subscriber.close()
        self.floor_env = {"BENCH_FLOOR_TOPIC": topic}
        port = free_port()
        process = self.processes.start(
            function_command(), process_env(self.stack, "floor", port, self.floor_env), self.log_dir / "floor_fn.log",
        )
        wait_listening(process, port)
        self.floor_url = f"http://{HOST}:{port}/"
        self.floor_pid = process.pid

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each function, the floor, both emulators and this process."""
        assert self.stack is not None
        groups = {name: process.pid for name, process in self.stack.processes.items()}
        groups["floor"] = self.floor_pid
        groups["firestore_emulator"] = self.stack.firestore.pgid or 0
        groups["pubsub_emulator"] = self.stack.pubsub.pgid or 0
        return cpu.snapshot(groups)

    def start_profiling(self) -> None:
        if self.profiler is not None:
            assert self.stack is not None
            pids = {name: process.pid for name, process in self.stack.processes.items()}
            _say(f"profiling {', '.join(pids)} with py-spy into {self.profiler.out_dir}")
            self.profiler.start(pids | {"floor": self.floor_pid})

    def stop_profiling(self) -> None:
        if self.profiler is not None:
            self.profile = self.profiler.stop() or self.profile

    def close(self) -> None:
        for step in (
            self.stop_profiling,
            lambda: self.hops and self.hops.close(),
            lambda: self.receiver and self.receiver.stop(),
            self.processes.stop_all,
            lambda: self.stack and self.stack.stop(),
        ):
            try:
                step()
            except Exception as exc:  # keep stopping the rest
                _say(f"cleanup step failed: {exc!r}")

    # Phases

    def timed(self, name: str, started: float) -> None:
        self.phases[name] = round(time.monotonic() - started, 1)

    def warm_up(self, driver: Driver) -> None:
        """First requests build every lazy client; none of that belongs in the figures."""
        started = time.monotonic()
        assert self.hops is not None
        ack.sequential(driver, self.floor_url, self.plan.warmup, "warm")
        for i in range(self.plan.warmup):
            self.hops.round(f"warm-{i}")
        if not driver.wait_drained(60):
            raise RuntimeError("the warm-up messages got no replies: see the function logs")
        self.timed("warm_up", started)

    def burst_user(self, driver: Driver) -> burst.BurstRun:
        plan = self.plan
        _say(f"burst user: {plan.burst_others} users alone, then with one user sending {burst.BURST_MESSAGES} "
             f"messages in {burst.BURST_SECONDS:g}s ({plan.burst_rounds} rounds each)")
        started = time.monotonic()
        result = burst.run(driver, plan.burst_others, plan.burst_rounds, "burst", BURST_GRACE_SECONDS)
        self.timed("burst", started)
        return result


def run(plan: Plan, log_dir: Path, profile_dir: Path | None = None) -> tuple[dict[str, Any], str]:
    """Every figure, in an order that keeps each measurement on a quiet pipeline."""
    bench = Bench(plan, log_dir, profile_dir)
    t_run = time.monotonic()
    machine = machine_info()
    try:
        driver = bench.start()
        stack = bench.stack
        assert stack is not None and stack.openai is not None and bench.hops is not None
        bench.warm_up(driver)
        bench.start_profiling()

        _say("Secret Manager accesses with the real client")
        started = time.monotonic()
        secret_manager = secrets_check.measure(plan.secret_messages, stack.options.project)
        bench.timed("secret_manager", started)

        _say(f"end-to-end latency: {plan.e2e_messages} sequential messages, each followed by a floor round")
        started = time.monotonic()
        before = cost.settled_mark(log_dir)
        cpu_before = bench.cpu()
        e2e_run = e2e.run(driver, bench.hops, plan.e2e_messages, "e2e")
        driver.wait_drained(plan.grace_seconds)
        after = cost.settled_mark(log_dir)
        e2e_cpu = {
            name: value
            for name, value in cpu.per_unit_ms(cpu_before, bench.cpu(), len(e2e_run.latencies)).items()
            if name in ("webhook", "processor", "sender")
        }
        cost_sequential = cost.cost_between(log_dir, before, after, len(e2e_run.latencies))
        e2e_stages = stages.breakdown(log_dir, e2e_run.timeline)
        bench.timed("e2e", started)

        _say(f"throughput: offered rates {', '.join(f'{r:g}' for r in plan.rates)} msg/s, {plan.step_seconds:g}s each")
        started = time.monotonic()
        before = cost.settled_mark(log_dir)
        cpu_before = bench.cpu()
        steps = throughput.run(driver, list(plan.rates), plan.step_seconds, plan.grace_seconds, "tp")
        driver.wait_drained(plan.grace_seconds)
        after = cost.settled_mark(log_dir)
        load_cpu = cpu.per_unit_ms(cpu_before, bench.cpu(), sum(s.accepted for s in steps))
        load_cpu.pop("floor", None)
        load_cpu["total"] = round(sum(v for k, v in load_cpu.items() if k != "total"), 2)
        cost_load = cost.cost_between(log_dir, before, after, sum(s.accepted for s in steps))
        bench.timed("throughput", started)

        bench.stop_profiling()
        _say(f"cold starts: {plan.cold_repeats} fresh processes per function")
        started = time.monotonic()
        cold = coldstart.run(driver, bench.processes, bench.floor_env, log_dir, plan.cold_repeats, "cold")
        bench.timed("cold_start", started)

        _say(f"features: {plan.feature_messages} messages per feature, then {plan.feature_burst_users} users "
             f"bursting {features.BURST_MESSAGES} messages into a {features.BURST_WINDOW_SECONDS:g}s window")
        started = time.monotonic()
        driver.wait_drained(plan.grace_seconds)
        feature_run = features.run(driver, log_dir, plan.feature_messages, plan.feature_burst_users)
        bench.timed("features", started)

        _say(f"knowledge base: {plan.feature_messages} messages without documents, then as many with them")
        started = time.monotonic()
        driver.wait_drained(plan.grace_seconds)
        knowledge_run = knowledge_cost.run(driver, log_dir, plan.feature_messages)
        bench.timed("knowledge", started)

        _say(f"inbox: {plan.feature_messages} messages with nobody signed in, then as many with one inbox open")
        started = time.monotonic()
        driver.wait_drained(plan.grace_seconds)
        poll = QUICK_INBOX_POLL_SECONDS if plan == QUICK else INBOX_POLL_SECONDS
        inbox_run = inbox.run(driver, log_dir, plan.feature_messages, poll)
        bench.timed("inbox", started)

        _say(f"usage: {plan.feature_messages} messages to a business without a budget, then as many to one with")
        started = time.monotonic()
        driver.wait_drained(plan.grace_seconds)
        usage_run = usage_cost.run(driver, log_dir, plan.feature_messages)
        bench.timed("usage", started)

        burst_run = bench.burst_user(driver)

        rate_section = measure_rate(plan, bench, driver, log_dir)

        _say("ack latency with an instant model")
        started = time.monotonic()
        driver.wait_drained(plan.grace_seconds)
        cpu_before = bench.cpu()
        fast_seq = ack.sequential(driver, bench.floor_url, plan.ack_pairs, "ack")
        cpu_after = bench.cpu()
        fast_seq.cpu_ms = {
            "target": cpu.per_unit_ms(cpu_before, cpu_after, len(fast_seq.target))["webhook"],
            "floor": cpu.per_unit_ms(cpu_before, cpu_after, len(fast_seq.floor))["floor"],
        }
        fast_conc = ack.concurrent(
            driver, bench.floor_url, plan.ack_clients, plan.ack_per_client, plan.ack_rounds, "ackc"
        )
        cpu_final = bench.cpu()
        fast_conc.cpu_ms = {
            "target": cpu.per_unit_ms(cpu_after, cpu_final, len(fast_conc.target))["webhook"],
            "floor": cpu.per_unit_ms(cpu_after, cpu_final, len(fast_conc.floor))["floor"],
        }
        bench.timed("ack_instant_ai", started)
        _say(f"front ends: {plan.front_end_pairs} pairs through them and straight to the containers")
        started = time.monotonic()
        front_run = front_end.run(driver, plan.front_end_pairs, "fe")
        bench.timed("front_ends", started)
        _say(f"conversation writes: {plan.write_path_messages} messages through the compare-and-set helper, "
             "and as Firestore transactions")
        started = time.monotonic()
        writes = write_paths.run(stack.options.project, plan.write_path_messages)
        bench.timed("write_paths", started)
        started = time.monotonic()
        drained = driver.wait_drained(max(plan.grace_seconds, 60))
        bench.timed("drain_before_slow_ai", started)
        # Everything booked so far has had its chance: the delivery check covers it.
        delivery = check_delivery(driver.book.snapshot(), driver.twilio.messages)
        if not drained:
            _say("the pipeline did not drain before the 10 s model phase; missing replies count as lost")

        _say(f"ack latency with a {SLOW_AI_SECONDS:g} s model (replies not awaited)")
        started = time.monotonic()
        stack.openai.delay_seconds = SLOW_AI_SECONDS
        try:
            slow_seq = ack.sequential(driver, bench.floor_url, plan.slow_pairs, "slow")
            slow_conc = ack.concurrent(
                driver, bench.floor_url, plan.ack_clients, plan.slow_per_client, plan.slow_rounds, "slowc"
            )
        finally:
            stack.openai.delay_seconds = 0
        bench.timed("ack_slow_ai", started)
    finally:
        bench.close()
    # In the processor, not the stack: measured once the stack is down, on a quiet machine.
    _say("keyword rules: the worst rule validation accepts on the worst 4,000-character message")
    rules_figure = keyword_rules.worst_case()
    _say(f"knowledge apply: a {plan.knowledge_pages}-page knowledge set on its own emulator")
    apply_figure = knowledge_apply.measure(plan.knowledge_pages)
    results, table = assemble(
        machine, bench, secret_manager, e2e_run, e2e_stages, e2e_cpu, cost_sequential, steps, cost_load,
        load_cpu, cold, burst_run, feature_run, (fast_seq, fast_conc, slow_seq, slow_conc), delivery, stack,
        front_run,
        rules_figure,
        writes,
        (knowledge_run, apply_figure),
        inbox_run,
        usage_run,
    )
    rate_rows, rate_goal, results["rate_isolation"] = rate_section
    results["goals"].append(rate_goal.to_json())
    met = sum(bool(goal["pass"]) for goal in results["goals"])
    table += "\n\n" + render([*rate_rows, f"goals met, figure 15's included: {met} of {len(results['goals'])}"])
    results["duration_seconds"] = round(time.monotonic() - t_run, 1)
    return results, table


def assemble(
    machine: dict[str, Any],
    bench: Bench,
    secret_manager: dict[str, Any],
    e2e_run: e2e.E2ERun,
    e2e_stages: dict[str, Summary],
    e2e_cpu: dict[str, float],
    cost_sequential: dict[str, Any],
    steps: list[throughput.Step],
    cost_load: dict[str, Any],
    load_cpu: dict[str, float],
    cold: coldstart.ColdStarts,
    burst_run: burst.BurstRun,
    feature_run: features.FeatureRun,
    acks: tuple[ack.AckRun, ack.AckRun, ack.AckRun, ack.AckRun],
    delivery: Delivery,
    stack: Stack,
    front_run: front_end.FrontEndRun,
    rules_figure: dict[str, Any] | None = None,
    writes: write_paths.WritePaths | None = None,
    knowledge: tuple[knowledge_cost.KnowledgeRun, dict[str, Any]] | None = None,
    inbox_run: inbox.InboxRun | None = None,
    usage_run: usage_cost.UsageRun | None = None,
) -> tuple[dict[str, Any], str]:
    """Goals, results.json content and the printed table, from the raw measurements."""
    fast_seq, fast_conc, slow_seq, slow_conc = acks
    rows: list[list[str] | str] = []
    goals: list[Goal] = []
    ack_json: dict[str, Any] = {}
    fast_p99: dict[str, float] = {}

    rows.append("1. webhook ack latency, ms (signed POST -> 200); floor = bare function doing one ordered publish")
    for label, key, runs, ai in (
        ("instant AI", "instant_ai", (fast_seq, fast_conc), 0.0),
        (f"{SLOW_AI_SECONDS:g} s AI", "slow_ai", (slow_seq, slow_conc), SLOW_AI_SECONDS),
    ):
        section: dict[str, Any] = {"ai_delay_seconds": ai}
        for mode, run_ in zip(("sequential", "concurrent"), runs):
            target, floor = ms(run_.target), ms(run_.floor)
            r = ratio(target.p99, floor.p99)
            mode_label = "sequential" if mode == "sequential" else f"{bench.plan.ack_clients} clients"
            goal = None
            if key == "instant_ai":
                fast_p99[mode] = target.p99
                goal = Goal(f"ack p99 <= {ACK_P99_LIMIT}x floor p99 ({mode})", r, ACK_P99_LIMIT, "<=",
                            f"webhook p99 {target.p99:.1f} ms, floor p99 {floor.p99:.1f} ms")
                goals.append(goal)
            rows.append(dist_row(f"  {label}, {mode_label}", target, floor, r, goal))
            section[mode] = {
                "target_ms": target.to_json(2), "floor_ms": floor.to_json(2),
                "ratio_p99": round(r, 3), "ratio_p50": round(ratio(target.p50, floor.p50), 3),
                "errors": dict(run_.errors),
                "started_epoch": round(run_.started, 3),
                "slowest": run_.slowest(),
            }
            if run_.cpu_ms:
                cpu_ratio = ratio(run_.cpu_ms["target"], run_.cpu_ms["floor"])
                section[mode]["cpu_ms_per_request"] = run_.cpu_ms | {"ratio": round(cpu_ratio, 3)}
                rows.append(note_row(
                    f"    CPU per request, {mode_label}",
                    f"webhook_fn {run_.cpu_ms['target']:.2f} ms vs floor {run_.cpu_ms['floor']:.2f} ms "
                    f"= {cpu_ratio:.2f}x (process CPU, /proc)",
                    len(run_.target),
                ))
            if key == "slow_ai":
                moved = ratio(target.p99, fast_p99[mode])
                section[mode]["ratio_p99_vs_instant_ai"] = round(moved, 3)
                goal = Goal(f"ack p99 with {SLOW_AI_SECONDS:g} s AI <= {SLOW_AI_LIMIT}x p99 with instant AI ({mode})",
                            moved, SLOW_AI_LIMIT, "<=", f"{target.p99:.1f} ms vs {fast_p99[mode]:.1f} ms")
                goals.append(goal)
                rows.append(note_row(f"    p99 {label} / instant AI, {mode_label}",
                                     f"{target.p99:.1f} / {fast_p99[mode]:.1f} ms = {moved:.2f}x", "", goal))
        ack_json[key] = section

    rows.append("2. end to end, ms (POST start -> Twilio stand-in receives the send), instant AI, distinct users")
    lat = ms(e2e_run.latencies)
    push, task, txn, sums = ms(e2e_run.push), ms(e2e_run.task), ms(e2e_run.transaction), ms(e2e_run.floor_sums)
    floor_p50 = push.p50 + task.p50 + txn.p50
    e2e_ratio = ratio(lat.p50, floor_p50)
    goal = Goal(f"end-to-end p50 <= {E2E_LIMIT}x emulator-hop floor", e2e_ratio, E2E_LIMIT, "<=",
                f"e2e p50 {lat.p50:.1f} ms, floor (sum of hop medians) {floor_p50:.1f} ms")
    goals.append(goal)
    rows.append(dist_row("  pipeline, sequential", lat, None, e2e_ratio, goal, floor_p50=floor_p50, floor_p99=sums.p99))
    rows.append(dist_row("    floor hop: publish -> push delivered", push))
    rows.append(dist_row("    floor hop: create task -> dispatched", task))
    rows.append(dist_row("    floor hop: Firestore transaction", txn))
    rows.append(dist_row("    floor: paired sum of the 3 hops", sums))
    for name, label in (
        ("webhook", "POST -> webhook published"),
        ("to_processor", "-> processor claimed (push, read, write)"),
        ("model_and_save", "-> answered (model, write)"),
        ("to_twilio", "-> at Twilio (task, read, write, send)"),
    ):
        rows.append(dist_row(f"    stage: {label}", e2e_stages[name]))
    outside = e2e_stages["outside_push"]
    no_push_floor = ms(e2e_run.floor_without_push)
    rows.append(dist_row("    stages 1+3+4 (all but the push stage)", outside, no_push_floor,
                         ratio(outside.p50, no_push_floor.p50)))
    rows.append(note_row("    CPU per message in the functions",
                         ", ".join(f"{k} {v:.1f} ms" for k, v in e2e_cpu.items()), lat.n))

    rows.append(f"3. throughput, instant AI, many users (tasks queue at the production default "
                f"{stack.options.tasks_max_dispatches_per_second:g}/s: a cap by design)")
    best = max((s.rate for s in steps if s.sustained), default=0.0)
    for s in steps:
        l_ = ms(s.latencies)
        rows.append(note_row(
            f"  offered {s.rate:g} msg/s for {s.duration:g}s",
            f"sent {s.offered_rate:.1f}/s, replied {s.completion_rate:.1f}/s, {s.completed}/{s.accepted} replies, "
            f"latency p50 {l_.p50:.0f} p99 {l_.p99:.0f} ms, {'sustained' if s.sustained else 'NOT sustained'}: {s.reason}",
            s.accepted,
        ))
    rows.append(note_row("  highest sustained rate", f"{best:g} msg/s", sum(s.accepted for s in steps)))
    if load_cpu:
        rows.append(note_row(
            "  CPU per message across the steps",
            ", ".join(f"{k} {v:.1f}" for k, v in load_cpu.items() if k != "total")
            + f" = {load_cpu['total']:.1f} ms (bench = client + Twilio/OpenAI/Tasks stand-ins)",
            sum(s.accepted for s in steps),
        ))

    rows.append("4. cost per inbound text message (from the functions' usage lines)")
    per = cost_sequential["per_message"]
    ops = per["firestore_ops"]
    goal = Goal(f"<= {FIRESTORE_OPS_LIMIT:g} Firestore document operations per message", ops, FIRESTORE_OPS_LIMIT,
                "<=", f"{per['firestore_reads']:g} reads + {per['firestore_writes']:g} writes")
    goals.append(goal)
    rows.append(note_row("  Firestore reads + writes, sequential",
                         f"{per['firestore_reads']:g} reads + {per['firestore_writes']:g} writes = {ops:g} ops",
                         cost_sequential["n"], goal))
    rows.append(note_row("  of those, the dedupe horizon",
                         f"{per['firestore_dedupe_writes']:g} write (seen_messages marker, same commit as the claim); "
                         "0 reads on the common path", cost_sequential["n"]))
    rows.append(note_row("  other calls, sequential",
                         f"publishes {per['pubsub_publishes']:g}, tasks {per['tasks_created']:g}, "
                         f"OpenAI {per['openai_calls']:g}, Twilio {per['twilio_calls']:g}, "
                         f"Secret Manager {per['secret_manager_accesses']:g} (Secret Manager stand-in, as in the cloud)",
                         cost_sequential["n"]))
    load = cost_load["per_message"]
    rows.append(note_row("  same, under load (throughput batch)",
                         f"{load['firestore_reads']:g} reads + {load['firestore_writes']:g} writes, "
                         f"tasks {load['tasks_created']:g}, OpenAI {load['openai_calls']:g}, "
                         f"Twilio {load['twilio_calls']:g}, sender requests "
                         f"{cost_load['functions']['sender']['requests']}", cost_load["n"]))
    sm = secret_manager["per_message"]
    goal = Goal("0 Secret Manager calls per message after warm-up", sm, 0, "==",
                f"{secret_manager['accesses_after_warm_up']} accesses in {secret_manager['n']} messages after "
                f"{secret_manager['warm_up_accesses']} at warm-up (real client, gRPC stand-in)")
    goals.append(goal)
    rows.append(note_row("  Secret Manager, real client + stand-in",
                         f"{sm:g} per message ({secret_manager['warm_up_accesses']} at warm-up, "
                         f"{secret_manager['accesses_after_warm_up']} after)", secret_manager["n"], goal))

    cold_rows, cold_json, cold_goal = cold_report(cold)
    rows.extend(cold_rows)
    goals.append(cold_goal)

    rows.append("6. delivery: every accepted message answered once, in order per user")
    damage = delivery.lost + delivery.duplicated + delivery.reordered
    goal = Goal("0 lost, duplicated or reordered messages", float(damage), 0, "==",
                f"lost {delivery.lost}, duplicated {delivery.duplicated}, reordered {delivery.reordered}")
    goals.append(goal)
    rows.append(note_row("  lost / duplicated / reordered",
                         f"{delivery.lost} / {delivery.duplicated} / {delivery.reordered} "
                         f"({delivery.messages} messages from {delivery.users} users)", delivery.messages, goal))

    burst_rows, burst_goal, burst_json = burst_report(bench.plan, burst_run)
    rows += burst_rows
    goals.append(burst_goal)

    feature_rows, feature_goals, feature_json = features_report(bench.plan, feature_run, cost_sequential)
    rows += feature_rows
    goals += feature_goals

    ack_goals = [g for g in goals if g.name.startswith("ack p99 <=")]
    e2e_goal = next(g for g in goals if g.name.startswith("end-to-end p50"))
    front_rows, front_json = front_end.report(front_run, lat.p50, ack_goals, e2e_goal)
    rows += front_rows
    if rules_figure is not None:
        rows += keyword_rules.report_rows(rules_figure)
    if writes is not None:
        rows += writes.report_rows()
    knowledge_json: dict[str, Any] | None = None
    if knowledge is not None:
        knowledge_rows, knowledge_goals, knowledge_json = knowledge_cost.report(knowledge[0], cost_sequential)
        rows += knowledge_rows + knowledge_apply.report_rows(knowledge[1])
        goals += knowledge_goals
        knowledge_json["apply"] = knowledge[1]
    inbox_json: dict[str, Any] | None = None
    if inbox_run is not None:
        inbox_rows, inbox_goals, inbox_json = inbox.report(inbox_run, cost_sequential)
        rows += inbox_rows
        goals += inbox_goals
    usage_json: dict[str, Any] | None = None
    if usage_run is not None:
        usage_rows, usage_goals, usage_json = usage_cost.report(usage_run, cost_sequential)
        rows += usage_rows
        goals += usage_goals

    capacity_json = capacity.figure({"e2e": {
        "stages_ms": {name: summary.to_json(2) for name, summary in e2e_stages.items()}, "cpu_ms_per_message": e2e_cpu,
        "floor": {"pubsub_publish_to_push_ms": push.to_json(2), "tasks_create_to_dispatch_ms": task.to_json(2),
                  "firestore_transaction_ms": txn.to_json(2)}}},
        seconds=2.0 if bench.plan == QUICK else capacity.SECONDS)
    rows += capacity.report_rows(capacity_json)

    met = sum(g.passed for g in goals)
    rows.append(f"goals met: {met} of {len(goals)}")
    if bench.profiler is not None:
        rows.append("profiled with py-spy during figures 2-4: latencies are inflated, compare only unprofiled runs")
    results: dict[str, Any] = {
        "machine": machine | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "plan": asdict(bench.plan),
        "stack": {
            "tasks_max_dispatches_per_second": stack.options.tasks_max_dispatches_per_second,
            "tasks_max_concurrent_dispatches": stack.options.tasks_max_concurrent_dispatches,
            # THREADS, as Terraform sets it per service (var.concurrency).
            "functions_framework_threads": {name: int(stack.cloud.rendered.services[name].env["THREADS"]) for name in SERVICES},
        },
        "ack": ack_json,
        "e2e": {
            "n": lat.n,
            "target_ms": lat.to_json(2),
            "floor": {
                "pubsub_publish_to_push_ms": push.to_json(2),
                "tasks_create_to_dispatch_ms": task.to_json(2),
                "firestore_transaction_ms": txn.to_json(2),
                "sum_of_medians_ms": round(floor_p50, 2),
                "paired_sum_ms": sums.to_json(2),
            },
            "stages_ms": {name: summary.to_json(2) for name, summary in e2e_stages.items()},
            "cpu_ms_per_message": e2e_cpu,
            "ratio_p50": round(e2e_ratio, 3),
            "ratio_p99_vs_paired_sum_p99": round(ratio(lat.p99, sums.p99), 3),
            **e2e_run.to_json(),
        },
        "throughput": {
            "n": sum(s.accepted for s in steps),
            "highest_sustained_rate": best,
            "tasks_max_dispatches_per_second": stack.options.tasks_max_dispatches_per_second,
            "note": "the Cloud Tasks queue's rate limit (production default) caps replies per second by design",
            "cpu_ms_per_message": load_cpu,
            "steps": [s.to_json() for s in steps],
        },
        "cost": {"sequential": cost_sequential, "under_load": cost_load, "secret_manager": secret_manager},
        "delivery": delivery.to_json() | {"n": delivery.messages},
        "cold_start": cold_json | {"n": sum(len(v) for v in cold.first_ok.values())},
        "burst": burst_json,
        "features": feature_json,
        "keyword_rules": rules_figure,
        "front_ends": front_json,
        "write_paths": writes.to_json() if writes is not None else None,
        "knowledge": knowledge_json,
        "inbox": inbox_json,
        "usage": usage_json,
        "capacity": capacity_json,
        "goals": [g.to_json() for g in goals],
        "phase_seconds": bench.phases,
        "profiled": bench.profiler is not None,
        "profile_top_frames_percent": bench.profile,
    }
    return results, render(rows)


def burst_report(plan: Plan, run_: burst.BurstRun) -> tuple[list[list[str] | str], Goal, dict[str, Any]]:
    """Figure 7's rows, goal and JSON section."""
    alone, crowded = ms(run_.baseline_latencies), ms(run_.burst_round_latencies)
    own = ms(run_.burst_user_latencies)
    r = ratio(crowded.p99, alone.p99)
    goal = Goal(f"others' e2e p99 with a burst user <= {BURST_LIMIT}x without", r, BURST_LIMIT, "<=",
                f"p99 {crowded.p99:.0f} ms with the burst user vs {alone.p99:.0f} ms without")
    rounds = run_.baseline + run_.burst
    missing = sum(x.missing for x in rounds)
    rejected = sum(x.rejected for x in rounds)
    rows: list[list[str] | str] = [
        f"7. burst user, ms (POST -> Twilio stand-in): {plan.burst_others} users send one message each at once; "
        f"one more user sends {burst.BURST_MESSAGES} in {burst.BURST_SECONDS:g}s",
        dist_row(f"  {plan.burst_others} users, no burst user", alone),
        dist_row(f"  same {plan.burst_others} users, with the burst user", crowded, alone, r, goal),
        dist_row("    the burst user's own messages", own),
    ]
    for label, part in (("without", run_.baseline), ("with", run_.burst)):
        rows.append(note_row(
            f"    queue, rounds {label} the burst user",
            f"throttle events {sum(x.throttle_events for x in part)}, failed dispatches "
            f"{sum(x.failed_dispatches for x in part)}, effective rate at start "
            f"{min((x.rate_at_start for x in part), default=math.nan):g}/s, lowest "
            f"{min((x.lowest_rate for x in part), default=math.nan):.2f}/s, all answered after "
            f"{max((x.seconds for x in part), default=math.nan):.1f}s at most",
            len(part),
        ))
    if missing or rejected:
        rows.append(note_row("    not measured", f"{missing} replies missing, {rejected} posts rejected",
                             missing + rejected))
    section = {
        "n": alone.n + crowded.n,
        "others": plan.burst_others,
        "burst_messages": burst.BURST_MESSAGES,
        "burst_seconds": burst.BURST_SECONDS,
        "without_burst_ms": alone.to_json(1),
        "with_burst_ms": crowded.to_json(1),
        "burst_user_ms": own.to_json(1),
        "ratio_p99": None if math.isnan(r) else round(r, 3),
        "ratio_p50": None if math.isnan(ratio(crowded.p50, alone.p50)) else round(ratio(crowded.p50, alone.p50), 3),
        "rounds": [x.to_json() for x in rounds],
    }
    return rows, goal, section


FEATURE_LABELS = {
    "image": "image (media download + vision call)",
    "voice": "voice note (download + transcription)",
    "status_callbacks": "status callbacks (sent, delivered, read)",
    "typing": "typing indicator",
    "command": "command /help (no model call)",
    "opted_out": "opted-out user's message (ignored)",
    "choices": "menu keyword answered with 3 buttons (Content resource made once)",
    "text_window_0": "text, BURST_WINDOW_SECONDS=0",
    "tool": "one read tool (order status) of a business with tools",
}
FEATURE_CALLS = (
    ("twilio_media_downloads", "Twilio media download"),
    ("twilio_typing_calls", "Twilio typing call"),
    ("tool_calls", "tool call"),
    ("twilio_content_creations", "Content API creation"),
    ("firestore_content_reads", "content record read"),
    ("firestore_content_writes", "content record write"),
    ("openai_calls", "OpenAI"),
    ("twilio_calls", "Twilio send"),
    ("pubsub_publishes", "publish"),
    ("tasks_created", "task"),
)


def _feature_text(per: dict[str, float], text: dict[str, float]) -> str:
    """Calls against the plain text message (signed differences), then Firestore in absolute terms."""
    parts = [f"{per[key] - text[key]:+g} {label}" for key, label in FEATURE_CALLS
             if key in ("openai_calls", "twilio_calls") or per[key] != text[key]]
    reads, writes = per["firestore_reads"], per["firestore_writes"]
    return (", ".join(parts) + f", Firestore {reads:g}r+{writes:g}w "
            f"({reads - text['firestore_reads']:+g}r{writes - text['firestore_writes']:+g}w)")


def features_report(plan: Plan, run_: features.FeatureRun, figure4: dict[str, Any]
                    ) -> tuple[list[list[str] | str], list[Goal], dict[str, Any]]:
    """Figure 8's rows, goals and JSON section."""
    text = run_.costs["text"]["per_message"]
    rows: list[list[str] | str] = [
        "8. features: calls per message against a plain text message (usage lines), and the latency a burst adds",
        note_row("  text (the reference)",
                 ", ".join(f"{text[k]:g} {label}" for k, label in FEATURE_CALLS if text[k])
                 + f", Firestore {text['firestore_reads']:g}r+{text['firestore_writes']:g}w", run_.costs["text"]["n"]),
    ]
    for key, label in FEATURE_LABELS.items():
        section = run_.costs[key]
        rows.append(note_row(f"  {label}", _feature_text(section["per_message"], text), section["n"]))
    fig4 = figure4["per_message"]
    zero = run_.costs["text_window_0"]["per_message"]
    differ = [k for k in features.SAME_AS_TEXT if zero[k] != fig4.get(k, 0.0)]
    same_goal = Goal("text with BURST_WINDOW_SECONDS=0 costs what figure 4 measured", float(len(differ)), 0, "==",
                     "counters that differ: " + (", ".join(f"{k} {zero[k]:g} vs {fig4.get(k, 0.0):g}" for k in differ)
                                                 or "none"))
    rows.append(note_row("    same as figure 4", "yes" if not differ else same_goal.detail, "", same_goal))
    tool, tool_ms, text_ms = run_.costs["tool"]["per_message"], ms(run_.tool_latency), ms(run_.text_latency)
    tool_goal = Goal("a message using one read tool makes one tool call", tool["tool_calls"], 1, "==",
                     f"{tool['tool_calls']:g} tool call(s), {tool['openai_calls'] - text['openai_calls']:+g} model call(s)")
    rows += [dist_row("    text: POST -> reply", text_ms), dist_row("    one read tool: POST -> reply", tool_ms),
             note_row("    tool: added", f"p50 {tool_ms.p50 - text_ms.p50:+.0f} ms", tool_ms.n, tool_goal)]
    rows.append(note_row("    status callbacks posted by the stand-in", f"{run_.callbacks_posted} for "
                         f"{run_.costs['status_callbacks']['n']} replies", run_.callbacks_posted))

    single, bursted = ms(run_.single), ms(run_.burst)
    added_p50, added_p99 = bursted.p50 - single.p50, bursted.p99 - single.p99
    limit_ms = (features.BURST_WINDOW_SECONDS + BURST_ADDED_SLACK_SECONDS) * 1000
    added_goal = Goal(f"burst window adds <= window + {BURST_ADDED_SLACK_SECONDS:g} s (p99, ms)", added_p99,
                      limit_ms, "<=", f"p99 {bursted.p99:.0f} ms with a {features.BURST_WINDOW_SECONDS:g} s window "
                      f"vs {single.p99:.0f} ms single messages")
    one_reply = sum(1 for r in run_.burst_replies if r == 1)
    rows += [
        dist_row(f"  single message, no window ({plan.feature_burst_users} users at once)", single),
        dist_row(f"  {features.BURST_MESSAGES} messages {features.BURST_GAP_SECONDS * 1000:g} ms apart, "
                 f"{features.BURST_WINDOW_SECONDS:g} s window: last POST -> reply", bursted),
        note_row("    added by the window", f"p50 {added_p50:+.0f} ms, p99 {added_p99:+.0f} ms; one reply for "
                 f"{one_reply} of {len(run_.burst_replies)} users", bursted.n, added_goal),
    ]
    section = {
        "n": sum(s["n"] for s in run_.costs.values()) + single.n + bursted.n,
        "cost": run_.costs,
        "text_window_0_matches_figure_4": not differ,
        "status_callbacks_posted": run_.callbacks_posted,
        "burst_latency": {
            "n": bursted.n,
            "window_seconds": features.BURST_WINDOW_SECONDS,
            "messages_per_user": features.BURST_MESSAGES,
            "gap_seconds": features.BURST_GAP_SECONDS,
            "single_ms": single.to_json(1),
            "burst_last_post_to_reply_ms": bursted.to_json(1),
            "added_p50_ms": None if math.isnan(added_p50) else round(added_p50, 1),
            "added_p99_ms": None if math.isnan(added_p99) else round(added_p99, 1),
            "replies_per_user": run_.burst_replies,
        },
    }
    section["tool_latency"] = {"text_ms": text_ms.to_json(1), "tool_ms": tool_ms.to_json(1)}
    return rows, [same_goal, tool_goal, added_goal], section


def run_one(plan: Plan, log_dir: Path, name: str, figure: str,
            measure: Callable[[Bench, Driver], tuple[list[Any], list[Goal], dict[str, Any]]]) -> tuple[dict[str, Any], str]:
    """One figure alone on a fresh, warmed stack (``--only NAME``), to try a change quickly.

    ``measure(bench, driver)`` runs while the stack is up and gives the figure's rows, goals and
    results sections; the stack is stopped whatever happens.
    """
    bench = Bench(plan, log_dir)
    t_run = time.monotonic()
    machine = machine_info()
    try:
        driver = bench.start()
        bench.warm_up(driver)
        rows, goals, sections = measure(bench, driver)
    finally:
        bench.close()
    rows.append(f"goals met: {sum(g.passed for g in goals)} of {len(goals)} (figure {figure} only)")
    results: dict[str, Any] = {
        "machine": machine | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "only": name,
        "plan": asdict(plan),
        **sections,
        "goals": [g.to_json() for g in goals],
        "phase_seconds": bench.phases,
        "duration_seconds": round(time.monotonic() - t_run, 1),
    }
    return results, render(rows)


def measure_burst_only(plan: Plan, bench: Bench, driver: Driver) -> tuple[list[Any], list[Goal], dict[str, Any]]:
    """Figure 7 with its delivery check (``--only burst``)."""
    assert bench.stack is not None
    burst_run = bench.burst_user(driver)
    delivery = check_delivery(driver.book.snapshot(), driver.twilio.messages)
    options = bench.stack.options
    rows, goal, section = burst_report(plan, burst_run)
    damage = delivery.lost + delivery.duplicated + delivery.reordered
    delivery_goal = Goal("0 lost, duplicated or reordered messages", float(damage), 0, "==",
                         f"lost {delivery.lost}, duplicated {delivery.duplicated}, reordered {delivery.reordered}")
    rows.append(note_row("  lost / duplicated / reordered",
                         f"{delivery.lost} / {delivery.duplicated} / {delivery.reordered} "
                         f"({delivery.messages} messages from {delivery.users} users)", delivery.messages,
                         delivery_goal))
    return rows, [goal, delivery_goal], {
        "stack": {
            "tasks_max_dispatches_per_second": options.tasks_max_dispatches_per_second,
            "tasks_max_concurrent_dispatches": options.tasks_max_concurrent_dispatches,
        },
        "burst": section,
        "delivery": delivery.to_json() | {"n": delivery.messages},
    }


def measure_rate(plan: Plan, bench: Bench, driver: Driver, log_dir: Path) -> tuple[list[Any], Goal, dict[str, Any]]:
    """Figure 15 (bench/rate_isolation.py): its rows, goal and JSON section, with B's per-stage breakdown."""
    rounds, b_messages, campaign = rate_isolation.QUICK_SIZE if plan == QUICK else rate_isolation.FULL_SIZE
    _say(f"send rate per sender: {rounds} rounds of {b_messages} of B's users alone, then with A's "
         f"{campaign}-template campaign")
    started = time.monotonic()
    driver.wait_drained(plan.grace_seconds)
    rate_run = rate_isolation.run(driver, rounds, b_messages, campaign, plan.grace_seconds)
    bench.timed("rate_isolation", started)
    rows, goal, section = rate_isolation.report(rate_run)
    section["stages_ms"] = {
        half: {name: s.to_json(1) for name, s in stages.breakdown(log_dir, timeline).items()}
        for half, timeline in (("alone", rate_run.timeline_alone), ("with_campaign", rate_run.timeline_with))
    }
    sends = {half: section["stages_ms"][half]["to_twilio"] for half in ("alone", "with_campaign")}
    rows.append(note_row("    B's send stage (answered -> Twilio)",
                         f"p99 {sends['with_campaign']['p99']} ms during A's campaign, {sends['alone']['p99']} ms "
                         f"alone: what the lanes isolate; the rest is the shared CPU", sends["alone"]["n"]))
    return rows, goal, section


def cold_report(cold: coldstart.ColdStarts) -> tuple[list[list[str] | str], dict[str, Any], Goal]:
    """Figure 5's rows, JSON and goal: each function's first answer against the floor function's."""
    rows: list[list[str] | str] = ["5. cold start, ms (Popen -> first 200), against the bare floor function"]
    floor_cold = ms(cold.first_ok["floor"])
    cold_json = cold.to_json()
    goal = Goal("processor cold start p50 / floor function p50", math.nan, COLD_START_LIMIT, "<=", "")
    for name in ("webhook", "processor", "sender"):
        s = ms(cold.first_ok[name])
        r = ratio(s.p50, floor_cold.p50)
        cold_json[name]["ratio_p50_vs_floor"] = round(r, 3)
        if name == "processor":
            goal = Goal(goal.name, r, COLD_START_LIMIT, "<=", f"{s.p50:.0f} / {floor_cold.p50:.0f} ms, n={s.n}")
        rows.append(dist_row(f"  {name}_fn", s, floor_cold, r, goal if name == "processor" else None))
    rows.append(dist_row("  floor function", floor_cold))
    floor_cpu = ms(cold.cpu["floor"])
    rows.append(note_row("  CPU to the first 200 (process group, /proc)", ", ".join(
        f"{name} {ms(cold.cpu[name]).p50:.0f} ms = {ratio(ms(cold.cpu[name]).p50, floor_cpu.p50):.2f}x"
        for name in ("webhook", "processor", "sender")) + f" of the floor's {floor_cpu.p50:.0f} ms", floor_cpu.n))
    return rows, cold_json, goal


def measure_cold_only(plan: Plan, bench: Bench, driver: Driver, log_dir: Path
                      ) -> tuple[list[Any], list[Goal], dict[str, Any]]:
    """Figure 5 (``--only coldstart``)."""
    _say(f"cold starts: {plan.cold_repeats} fresh processes per function")
    started = time.monotonic()
    cold = coldstart.run(driver, bench.processes, bench.floor_env, log_dir, plan.cold_repeats, "cold")
    bench.timed("cold_start", started)
    rows, cold_json, goal = cold_report(cold)
    return rows, [goal], {"cold_start": cold_json | {"n": sum(len(v) for v in cold.first_ok.values())}}


def run_only(plan: Plan, log_dir: Path, name: str) -> tuple[dict[str, Any], str]:
    """``--only NAME``: burst (figure 7), coldstart (5), rate (15) or usage (16), each on its own stack."""
    def rate(bench: Bench, driver: Driver) -> tuple[list[Any], list[Goal], dict[str, Any]]:
        rows, goal, section = measure_rate(plan, bench, driver, log_dir)
        return rows, [goal], {"rate_isolation": section}

    def usage(bench: Bench, driver: Driver) -> tuple[list[Any], list[Goal], dict[str, Any]]:
        rows, goals, section = usage_cost.report(usage_cost.run(driver, log_dir, plan.feature_messages), None)
        return rows, goals, {"usage": section}

    measures: dict[str, tuple[str, Callable[[Bench, Driver], tuple[list[Any], list[Goal], dict[str, Any]]]]] = {
        "burst": ("7", lambda bench, driver: measure_burst_only(plan, bench, driver)),
        "coldstart": ("5", lambda bench, driver: measure_cold_only(plan, bench, driver, log_dir)),
        "rate": ("15", rate),
        "usage": ("16", usage),
    }
    figure, measure = measures[name]
    return run_one(plan, log_dir, name, figure, measure)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Stop like Ctrl-C, so the same cleanup runs."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny N for the smoke test (about two minutes)")
    parser.add_argument("--output", type=Path,
                        help=f"results file (default {DEFAULT_OUTPUT}; with --only, none unless given)")
    parser.add_argument("--only", choices=["burst", "coldstart", "rate", "usage", "capacity"],
                        help="measure one figure on a fresh stack and print its rows (burst: figure 7; coldstart: 5; "
                             "rate: 15; usage: 16; capacity: figure 17, the queueing model, no stack)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the function and emulator logs")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="sample the functions with py-spy during figures 2-4 into DIR (skews the figures)")
    args = parser.parse_args(argv)
    if args.only == "capacity":
        return capacity.main()
    # SIGINT too: a shell starts background jobs with it ignored, and Ctrl-C must always clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    plan = QUICK if args.quick else FULL
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    keep = args.keep_logs
    try:
        if args.only:
            results, table = run_only(plan, log_dir, args.only)
        else:
            results, table = run(plan, log_dir, args.profile)
    except KeyboardInterrupt:
        keep = True
        _say(f"interrupted; everything started was stopped (logs in {log_dir})")
        return 130
    except Exception:
        keep = True
        _say(f"failed; logs kept in {log_dir}")
        raise
    finally:
        if not keep:
            shutil.rmtree(log_dir, ignore_errors=True)
    results["quick"] = args.quick
    output = args.output or (None if args.only else DEFAULT_OUTPUT)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        charted = charts.write_charts(results, output.parent / "charts")
        _say(f"charts from the same run: {', '.join(str(c) for c in charted)}")
    print(table, flush=True)
    where = f"wrote {output}" if output is not None else "no results file (--output FILE to keep one)"
    _say(f"{where} in {results['duration_seconds']:g}s" + (f"; logs in {log_dir}" if keep else ""))
    missed = [g for g in results["goals"] if not g["pass"]]
    return 1 if missed and args.fail_on_miss else 0

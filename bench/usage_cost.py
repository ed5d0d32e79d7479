"""Figure 16: per-business model usage, and what the usage accounting costs in Firestore operations.

On the running bench stack, one at a time and from new users: a batch of
plain text messages to the stack's default business (no budget: figure 4's
message), then a batch to a business whose profile has a budget it does not
reach. Each batch is counted from the functions' usage lines (figure 4's
method). Without a budget the counts must be figure 4's: nothing is read or
counted. With one, each answer's commit carries one more document (its
counter shard's increment, no extra round trip), and the spend is read (one
query: the business's shard documents of the month) once per
BUDGET_CACHE_SECONDS per processor instance, not per message. The usage
figures (tokens and estimated cost per message, per business) come from the
processor's ``answered`` lines, and the budgeted business's also from its
counters, which must agree with them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cost
from bench.driver import Driver
from bench.report import Goal, note_row

BUDGETED = "whatsapp:+15550001616"
REPLY_TIMEOUT_SECONDS = 30.0
SAME = ("firestore_reads", "firestore_writes", "pubsub_publishes", "tasks_created", "openai_calls", "twilio_calls")


@dataclass
class UsageRun:
    plain: dict[str, Any] = field(default_factory=dict)
    budgeted: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, dict[str, float]] = field(default_factory=dict)  # business -> per-message usage (log lines)
    counters: dict[str, float] = field(default_factory=dict)  # the budgeted business's counters, summed
    shards: int = 0
    cache_seconds: float = 0.0


def put_budget(driver: Driver, tokens: int) -> None:
    """A profile with a daily token budget for BUDGETED, written as profiles-apply writes it."""
    from google.cloud import firestore

    from devstack.stack import _emulator_env
    from shared.adapters.profile_store import FirestoreProfiles, defaults_from_settings
    from shared.config import Settings
    from shared.domain.conversation import utcnow

    settings = Settings.from_env(driver.stack.function_env())
    with _emulator_env(driver.stack.firestore.env()):
        client = firestore.Client(project=driver.stack.options.project)
        try:
            FirestoreProfiles(lambda: client, settings.profiles_collection, defaults_from_settings(settings), 0).put(
                BUDGETED, {"name": "Bench budgeted", "daily_token_budget": tokens,
                           "budget_reply": "Budget spent for today."}, utcnow())
        finally:
            client.close()


def counters_of(driver: Driver, business: str) -> tuple[dict[str, float], int]:
    """The business's counters today, summed over its shard documents, and how many shard documents there are."""
    from google.cloud import firestore

    from devstack.stack import _emulator_env
    from shared.adapters.usage_store import UsageCounters
    from shared.config import Settings
    from shared.domain.conversation import utcnow
    from shared.domain.usage import day_key, month_key

    settings = Settings.from_env(driver.stack.function_env())
    with _emulator_env(driver.stack.firestore.env()):
        client = firestore.Client(project=driver.stack.options.project)
        try:
            counters = UsageCounters(lambda: client, settings.usage_collection, settings.budget_alerts_collection, 0)
            now = utcnow()
            days = counters.month(business, month_key(now))
            return days.get(day_key(now)[-2:], {}), counters.ops.reads
        finally:
            client.close()


def answered_usage(log_dir: Path, sids: set[str]) -> dict[str, float]:
    """Tokens and estimated cost per message of ``sids``, from the processor's answered lines."""
    totals = {"messages": 0.0, "tokens": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0, "cost_usd": 0.0}
    for raw in (log_dir / "processor_fn.log").read_text(errors="replace").splitlines():
        if '"answered"' not in raw:
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("event") != "answered" or line.get("sid") not in sids:
            continue
        totals["messages"] += 1
        for key in ("tokens", "prompt_tokens", "completion_tokens", "cost_usd"):
            totals[key] += float(line.get(key) or 0)
    n = totals["messages"] or 1
    return {"messages": totals["messages"], "tokens": totals["tokens"],
            **{f"{k}_per_message": round(v / n, 8 if k == "cost_usd" else 2) for k, v in totals.items()
               if k != "messages"}}


def _ask(driver: Driver, text: str, to: str | None) -> str:
    """One message from a new user, awaited; its MessageSid."""
    user = driver.new_user()
    prepared = driver.prepare(user, text, to=to or "")
    outcome = driver.send(prepared, book=False)
    if outcome.status != 200:
        raise RuntimeError(f"figure 16: the webhook answered {outcome.status}")
    deadline = time.monotonic() + REPLY_TIMEOUT_SECONDS
    while not [m for m in driver.twilio.messages if m.to == user]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"figure 16: no reply to {user} within {REPLY_TIMEOUT_SECONDS:g}s")
        driver.twilio.wait_for(len(driver.twilio.messages) + 1, timeout=0.5)
    return prepared.sid


def run(driver: Driver, log_dir: Path, n: int) -> UsageRun:
    from shared.config import Settings

    settings = Settings.from_env(driver.stack.function_env())
    result = UsageRun(cache_seconds=settings.budget_cache_seconds)
    put_budget(driver, 10**9)
    _ask(driver, "warm up the budgeted business", BUDGETED)  # its profile read and its first spend read
    before = cost.settled_mark(log_dir)
    plain = {_ask(driver, f"f16-plain-{i}", None) for i in range(n)}
    middle = cost.settled_mark(log_dir)
    budgeted = {_ask(driver, f"f16-budgeted-{i}", BUDGETED) for i in range(n)}
    after = cost.settled_mark(log_dir)
    result.plain = cost.cost_between(log_dir, before, middle, n)
    result.budgeted = cost.cost_between(log_dir, middle, after, n)
    result.usage = {"default": answered_usage(log_dir, plain), BUDGETED: answered_usage(log_dir, budgeted)}
    result.counters, result.shards = counters_of(driver, BUDGETED)
    return result


def report(run_: UsageRun, figure4: dict[str, Any] | None) -> tuple[list[list[str] | str], list[Goal], dict[str, Any]]:
    """Figure 16's rows, its goals (no budget: figure 4's counts; the counters agree with the logs), its JSON."""
    plain, budgeted = run_.plain["per_message"], run_.budgeted["per_message"]
    base = (figure4 or run_.plain)["per_message"]
    differ = [k for k in SAME if plain.get(k) != base.get(k)] + (["firestore_usage_writes"]
                                                                  if plain.get("firestore_usage_writes") else [])
    same_goal = Goal("a business without a budget: figure 4's counts, no usage write, no spend read",
                     float(len(differ)), 0, "==", ", ".join(differ) or "same")
    logged = run_.usage[BUDGETED]
    # The warm-up message is counted too: one more than the batch.
    counted_ok = run_.counters.get("messages", 0) == logged["messages"] + 1
    count_goal = Goal("the budgeted business's counters hold each answer once (batch + warm-up)",
                      run_.counters.get("messages", 0), logged["messages"] + 1, "==",
                      f"{run_.counters.get('messages', 0):g} counted, {logged['messages']:g} + 1 logged")
    added_writes = budgeted.get("firestore_writes", 0) - plain.get("firestore_writes", 0)
    added_reads = budgeted.get("firestore_reads", 0) - plain.get("firestore_reads", 0)

    def ops(per: dict[str, Any]) -> str:
        return (f"{per.get('firestore_reads', 0):g} reads + {per.get('firestore_writes', 0):g} writes "
                f"({per.get('firestore_usage_writes', 0):g} of them usage counter increments), "
                f"{per.get('openai_calls', 0):g} model calls")

    def usage(u: dict[str, float]) -> str:
        return (f"{u['tokens_per_message']:g} tokens ({u['prompt_tokens_per_message']:g} prompt + "
                f"{u['completion_tokens_per_message']:g} completion), ${u['cost_usd_per_message']:.8f} estimated")

    rows: list[list[str] | str] = [
        "16. model usage per business, and what counting it costs (offline model; its usage as OpenAI reports it)",
        note_row("  usage, no budget (default business)", usage(run_.usage["default"]), run_.plain["n"]),
        note_row(f"  usage, budgeted ({BUDGETED})", usage(logged), run_.budgeted["n"], count_goal),
        note_row("  Firestore per message, no budget", ops(plain), run_.plain["n"], same_goal),
        note_row("  Firestore per message, with a budget", ops(budgeted), run_.budgeted["n"]),
        note_row("  added by a budget", f"{added_writes:+g} writes (the shard increment rides in the answer's "
                                        f"commit: no round trip), {added_reads:+g} reads per message amortised "
                                        f"(the spend: {run_.shards} shard document(s) read once per "
                                        f"{run_.cache_seconds:g} s per instance)"),
    ]
    section = {"plain": run_.plain, "budgeted": run_.budgeted, "usage": run_.usage, "counters": run_.counters,
               "spend_read_documents": run_.shards, "budget_cache_seconds": run_.cache_seconds,
               "added_writes_per_message": round(added_writes, 3), "added_reads_per_message": round(added_reads, 3),
               "plain_same_as_figure_4": not differ, "counters_match_logs": counted_ok}
    return rows, [same_goal, count_goal], section

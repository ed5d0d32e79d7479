"""Figure 12: what a message costs with a knowledge base, and that one without pays nothing.

On the running bench stack, a business is given a small knowledge set (the
bakery's documents of profiles.example.yaml, applied as profiles-apply
applies them). Then, one at a time and from new users, a batch of plain text
messages to the stack's default business (no knowledge), then a batch of
questions to the business with knowledge; each batch is counted from the
functions' usage lines (figure 4's method, which needs a batch between two
marks), and each message timed from its POST to its reply.
The plain batch must cost exactly what figure 4 measured, with 0 embedding
calls and 0 knowledge reads; the knowledge batch shows the embedding call,
the vector query's reads (one per chunk returned) and the latency they add.
The offline embeddings answer in microseconds, so the added latency is the
pipeline's (the request, the query on the emulator), not a real model's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cost
from bench.driver import Driver
from bench.report import Goal, dist_row, note_row
from bench.stats import summarize

BUSINESS = "whatsapp:+15550004242"
QUESTIONS = ("How much is the sourdough?", "What does a croissant cost?", "Do you deliver?",
             "What time do you open on Sunday?", "Can I get a refund?", "Is there parking?")
REPLY_TIMEOUT_SECONDS = 30.0
# Counters that must be what figure 4 measured for a plain text message, and the knowledge base's own.
PLAIN_SAME = ("firestore_reads", "firestore_writes", "pubsub_publishes", "tasks_created", "openai_calls",
              "twilio_calls")
KNOWLEDGE = ("openai_embedding_calls", "firestore_knowledge_reads")


@dataclass
class KnowledgeRun:
    plain: dict[str, Any] = field(default_factory=dict)
    knowledge: dict[str, Any] = field(default_factory=dict)
    plain_ms: list[float] = field(default_factory=list)
    knowledge_ms: list[float] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)


def apply_bakery(driver: Driver) -> list[str]:
    """The bakery's documents of profiles.example.yaml for BUSINESS, written as profiles-apply writes them."""
    import yaml
    from google.cloud import firestore

    from devstack.stack import ROOT, _emulator_env
    from shared.adapters.profile_store import FirestoreProfiles, defaults_from_settings
    from shared.config import Settings
    from shared.domain.conversation import utcnow
    from shared.domain.profiles import profiles_from_document
    from shared.ops.knowledge_apply import apply_with_knowledge, lazy_knowledge
    from shared.ops.knowledge_files import read_knowledge

    stack = driver.stack
    settings = Settings.from_env(stack.function_env())
    example = yaml.safe_load((ROOT / "profiles.example.yaml").read_text())["businesses"]["whatsapp:+14155238886"]
    raw = {BUSINESS: {"name": "Bench bakery", "knowledge": example["knowledge"], "knowledge_only": True}}
    profiles = profiles_from_document({"businesses": raw}, defaults_from_settings(settings))
    documents = read_knowledge(profiles, ROOT, settings)
    with _emulator_env(stack.firestore.env()):
        client = firestore.Client(project=stack.options.project)
        try:
            store = FirestoreProfiles(lambda: client, settings.profiles_collection, defaults_from_settings(settings), 0)
            chunks, embedder = lazy_knowledge(settings, lambda: client, lambda: "offline-model")
            return apply_with_knowledge(store.put, store.stored(), raw, documents, chunks, embedder, settings, utcnow)
        finally:
            client.close()


def _ask(driver: Driver, text: str, to: str | None) -> float:
    """One message from a new user; the seconds from its POST to its reply."""
    user = driver.new_user()
    extra = {"To": to} if to else {}
    outcome = driver.send(driver.prepare(user, text, **extra), book=False)
    if outcome.status != 200:
        raise RuntimeError(f"figure 12: the webhook answered {outcome.status}")
    deadline = time.monotonic() + REPLY_TIMEOUT_SECONDS
    while True:
        replies = [m for m in driver.twilio.messages if m.to == user]
        if replies:
            return replies[0].received_at - outcome.started
        if time.monotonic() > deadline:
            raise RuntimeError(f"figure 12: no reply to {user} within {REPLY_TIMEOUT_SECONDS:g}s")
        driver.twilio.wait_for(len(driver.twilio.messages) + 1, timeout=0.5)


def run(driver: Driver, log_dir: Path, n: int) -> KnowledgeRun:
    result = KnowledgeRun(applied=apply_bakery(driver))
    _ask(driver, "warm up the knowledge business", BUSINESS)  # its profile read and the first search's clients
    before = cost.settled_mark(log_dir)
    for i in range(n):
        result.plain_ms.append(_ask(driver, f"f12-plain-{i}", None))
    middle = cost.settled_mark(log_dir)
    for i in range(n):
        result.knowledge_ms.append(_ask(driver, QUESTIONS[i % len(QUESTIONS)], BUSINESS))
    after = cost.settled_mark(log_dir)
    result.plain = cost.cost_between(log_dir, before, middle, n)
    result.knowledge = cost.cost_between(log_dir, middle, after, n)
    return result


def report(run_: KnowledgeRun, figure4: dict[str, Any]) -> tuple[list[list[str] | str], list[Goal], dict[str, Any]]:
    """Figure 12's rows, its goal (a business without knowledge pays nothing) and its JSON section."""
    plain, grounded = run_.plain["per_message"], run_.knowledge["per_message"]
    base = figure4["per_message"]
    differ = [k for k in PLAIN_SAME if plain.get(k) != base.get(k)] + [k for k in KNOWLEDGE if plain.get(k)]
    goal = Goal("a business without knowledge pays nothing (figure 4's counts, 0 embedding calls, 0 knowledge reads)",
                float(len(differ)), 0, "==", ", ".join(differ) or "same")
    p, k = summarize([x * 1000 for x in run_.plain_ms]), summarize([x * 1000 for x in run_.knowledge_ms])

    def counts(per: dict[str, Any]) -> str:
        return (f"{per.get('openai_embedding_calls', 0):g} embedding calls, {per.get('firestore_knowledge_reads', 0):g} "
                f"knowledge reads, {per.get('firestore_ops', 0):g} conversation ops, "
                f"{per.get('openai_calls', 0):g} model calls")

    rows: list[list[str] | str] = [
        "12. knowledge base per message: a business without documents, and one with the bakery's (offline embeddings)",
        note_row("  without knowledge", counts(plain), run_.plain["n"], goal),
        note_row("  with knowledge", counts(grounded), run_.knowledge["n"]),
        dist_row("  e2e ms without knowledge", p),
        dist_row("  e2e ms with knowledge", k, floor=p, ratio=k.p50 / p.p50 if p.p50 else None),
        note_row("  added by the search", f"p50 {k.p50 - p.p50:+.1f} ms, p99 {k.p99 - p.p99:+.1f} ms"),
    ]
    json = {"plain": run_.plain, "knowledge": run_.knowledge, "plain_ms": p.to_json(2), "knowledge_ms": k.to_json(2),
            "added_p50_ms": round(k.p50 - p.p50, 2), "added_p99_ms": round(k.p99 - p.p99, 2),
            "applied": run_.applied, "plain_same_as_figure_4": not differ}
    return rows, [goal], json

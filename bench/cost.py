"""Figure 4: external calls per inbound message, from the functions' own usage lines.

With LOG_USAGE=true each function logs, after every request, its process's
cumulative counts. The cost of a batch is the difference between the last line
of each log before and after it, divided by the batch's messages; the
per-request differences give the spread.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.stack import SERVICES

COUNTERS = (
    "firestore_reads",
    "firestore_writes",
    "firestore_dedupe_writes",
    # Usage counters (figure 16): shard increments in the answer's commit, 0 for a business without a budget.
    "firestore_usage_writes",
    # Business profiles: at most one read per business per PROFILE_CACHE_SECONDS, not per message.
    "firestore_profile_reads",
    "pubsub_publishes",
    "tasks_created",
    "openai_calls",
    "twilio_calls",
    # The channel (figure 8): inbound media fetched from Twilio, and typing indicators sent.
    "twilio_media_downloads",
    "twilio_typing_calls",
    # Business tools (figure 8): requests to a business's own endpoints.
    "tool_calls",
    # Choices (figure 8): Content resources created, and their records read (once per cold process).
    "twilio_content_creations",
    "firestore_content_reads",
    "firestore_content_writes",
    # The knowledge base (figure 12): 0 for a business without documents.
    "openai_embedding_calls",
    "firestore_knowledge_reads",
    "secret_manager_accesses",
)


def usage_lines(log_path: Path) -> list[dict[str, int]]:
    """Every usage line of one function log, in order."""
    lines: list[dict[str, int]] = []
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return lines
    for raw in text.splitlines():
        if '"usage"' not in raw:
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if entry.get("event") == "usage" and isinstance(entry.get("usage"), dict):
            lines.append({k: int(v) for k, v in entry["usage"].items()})
    return lines


@dataclass(frozen=True)
class Mark:
    """How many usage lines each function had logged at one instant."""

    lines: dict[str, int]


def mark(log_dir: Path) -> Mark:
    return Mark({name: len(usage_lines(log_dir / f"{name}_fn.log")) for name in SERVICES})


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS}


def cost_between(log_dir: Path, before: Mark, after: Mark, messages: int) -> dict[str, Any]:
    """Per-message totals, plus per-function request counts and the spread of per-request deltas."""
    totals = dict.fromkeys(COUNTERS, 0)
    functions: dict[str, Any] = {}
    for name in SERVICES:
        lines = usage_lines(log_dir / f"{name}_fn.log")
        start, end = before.lines[name], after.lines[name]
        base = lines[start - 1] if start > 0 else {}
        window = lines[start:end]
        last = window[-1] if window else base
        for key, value in _delta(last, base).items():
            totals[key] += value
        steps = [_delta(line, prev) for prev, line in zip([base, *window], window)]
        functions[name] = {
            "requests": len(window),
            "per_request": {
                key: {"min": min(s[key] for s in steps), "max": max(s[key] for s in steps)}
                for key in COUNTERS
                if any(s[key] for s in steps)
            }
            if steps
            else {},
        }
    per_message = {key: (totals[key] / messages if messages else 0.0) for key in COUNTERS}
    per_message["firestore_ops"] = per_message["firestore_reads"] + per_message["firestore_writes"]
    return {
        "n": messages,
        "totals": totals,
        "per_message": {k: round(v, 3) for k, v in per_message.items()},
        "functions": functions,
    }


def settled_mark(log_dir: Path, quiet_seconds: float = 0.5, timeout: float = 10.0) -> Mark:
    """A mark taken once no function has logged a usage line for ``quiet_seconds``.

    A reply reaches the Twilio stand-in before sender_fn records it as sent and
    logs its counts, so "all replies arrived" is not yet "all counted".
    """
    deadline = time.monotonic() + timeout
    current = mark(log_dir)
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        latest = mark(log_dir)
        if latest == current:
            return latest
        current = latest
    return current

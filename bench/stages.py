"""Where an end-to-end message spends its time, from the functions' own structured logs.

Each function logs a line at its milestones, with the message SID and a
timestamp from the same clock (one machine). Between the POST start and the
reply at the Twilio stand-in, that splits a message into:

* webhook: POST start -> webhook_fn logged "received" (signature, parse, publish confirmed);
* to processor: -> processor_fn logged "processing" (Pub/Sub push incl. the emulator's
  poll wait, one Firestore read, the claim write);
* model + save: -> processor_fn logged "answered" (OpenAI call, the answer write);
* to Twilio: -> the Twilio stand-in received the send (CreateTask, the queue's
  dispatch, sender_fn's read and "sending" write, the Twilio API call).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from bench.stats import Summary, summarize

STAGES = ("webhook", "to_processor", "model_and_save", "to_twilio")
# Everything but the stage holding the emulator's 0-100 ms push poll.
OUTSIDE_PUSH = "outside_push"
_MILESTONES = {
    ("webhook", "received"): "received",
    ("processor", "processing"): "processing",
    ("processor", "answered"): "answered",
}


def _milestones(log_dir: Path, sids: set[str]) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for function in ("webhook", "processor"):
        try:
            text = (log_dir / f"{function}_fn.log").read_text(errors="replace")
        except FileNotFoundError:
            continue
        for raw in text.splitlines():
            if '"sid"' not in raw:
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            name = _MILESTONES.get((function, entry.get("event", "")))
            sid = entry.get("sid")
            if name and sid in sids:
                found.setdefault(sid, {}).setdefault(name, datetime.fromisoformat(entry["time"]).timestamp())
    return found


def breakdown(log_dir: Path, timeline: list[tuple[str, float, float]]) -> dict[str, Summary]:
    """Per-stage milliseconds (N and spread each) for the messages in ``timeline``."""
    marks = _milestones(log_dir, {sid for sid, _, _ in timeline})
    stages: dict[str, list[float]] = {name: [] for name in (*STAGES, OUTSIDE_PUSH)}
    for sid, started, replied in timeline:
        m = marks.get(sid, {})
        if not {"received", "processing", "answered"} <= m.keys():
            continue
        points = (started, m["received"], m["processing"], m["answered"], replied)
        for name, (a, b) in zip(STAGES, zip(points, points[1:])):
            stages[name].append(b - a)
        stages[OUTSIDE_PUSH].append((replied - started) - (m["processing"] - m["received"]))
    return {name: summarize(values).scaled(1000) for name, values in stages.items()}

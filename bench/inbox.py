"""Figure 14: what the inbox costs per message, with nobody looking and with one inbox open.

Two batches of sequential plain text messages from distinct users, each
between two settled marks, with the usage lines of every service (figure 4's
counters): first with nobody signed in, then with one staff member's inbox
polling every ``INBOX_POLL_SECONDS`` (signed in through the stack's local
Sign in with Google, as a browser would, and asking what the page asks). The
first must cost exactly what a message costs without the inbox (no request
to it, nothing more anywhere); the second adds only the inbox's own polls,
whose reads are reported per poll and per message, and how long a message
took to show in the open inbox.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
from google.cloud import firestore

from bench import cost
from bench.driver import Driver
from bench.report import Goal, note_row
from bench.stats import summarize
from shared.adapters.inbox_store import CHANGE_OVERLAP
from shared.adapters.profile_store import FirestoreProfiles
from shared.domain.profiles import BusinessProfile

STAFF = "bench-staff@inbox.example"
REPLY_TIMEOUT_SECONDS = 30.0


@dataclass
class InboxRun:
    closed: dict[str, Any] = field(default_factory=dict)
    open: dict[str, Any] = field(default_factory=dict)
    polls: int = 0
    quiet_poll_reads: float = 0.0
    poll_seconds: float = 3.0
    visible_seconds: list[float] = field(default_factory=list)


class Poller:
    """One open inbox: the page's poll, on a signed-in session, until stopped."""

    def __init__(self, driver: Driver, business: str, interval: float) -> None:
        stack = driver.stack
        self.url = stack.inbox_url
        self.business = business
        self.interval = interval
        self.session = requests.Session()
        self.polls = 0
        self.first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-inbox-poller", daemon=True)
        token = stack.cloud.issuer.mint_user(STAFF, stack.cloud.signin.client_id)
        self.session.cookies.set("g_csrf_token", "bench")
        answer = self.session.post(f"{self.url}/auth/google", data={"credential": token, "g_csrf_token": "bench"},
                                   allow_redirects=False, timeout=10)
        if answer.status_code != 303:
            raise RuntimeError(f"figure 14: the inbox refused the sign-in ({answer.status_code}): {answer.text[:200]}")
        self.cursor = self.session.get(f"{self.url}/api/conversations", params={"business": business},
                                       timeout=10).json()["cursor"]

    def start(self) -> "Poller":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            body = self.session.get(f"{self.url}/api/conversations", timeout=10,
                                    params={"business": self.business, "since": self.cursor}).json()
            self.polls += 1
            self.cursor = body["cursor"]
            now = time.time()
            for conversation in body["conversations"]:
                text = (conversation.get("last") or {}).get("text", "")
                self.first_seen.setdefault(text, now)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.session.close()


def _inbox_reads(log_dir: Path, before: cost.Mark, after: cost.Mark) -> int:
    """The Firestore reads the inbox's usage lines count between two marks (its lines are cumulative)."""
    lines = cost.usage_lines(log_dir / "inbox_fn.log")
    start, end = before.lines["inbox"], after.lines["inbox"]
    return (lines[end - 1] if end else {}).get("firestore_reads", 0) - (lines[start - 1] if start else {}).get(
        "firestore_reads", 0)


def _batch(driver: Driver, log_dir: Path, n: int, tag: str,
           tail_seconds: float = 0.0) -> tuple[dict[str, Any], dict[str, float]]:
    """``n`` texts, one per new user and one at a time; the cost section and when each was posted.

    ``tail_seconds`` keeps the window open after the last reply, for the polls that show the messages."""
    posted: dict[str, float] = {}
    before = cost.settled_mark(log_dir)
    for i in range(n):
        user, marker = driver.new_user(), f"{tag}-{i}"
        posted[marker] = time.time()
        if driver.send(driver.prepare(user, marker), book=False).status != 200:
            raise RuntimeError("figure 14: the webhook refused a message")
        if driver.wait_reply(user, marker, REPLY_TIMEOUT_SECONDS) is None:
            raise RuntimeError(f"figure 14: no reply to {marker}")
    time.sleep(tail_seconds)
    after = cost.settled_mark(log_dir)
    return cost.cost_between(log_dir, before, after, n) | {"inbox_reads": _inbox_reads(log_dir, before, after)}, posted


def run(driver: Driver, log_dir: Path, n: int, poll_seconds: float) -> InboxRun:
    result = InboxRun(poll_seconds=poll_seconds)
    business = driver.stack.options.twilio_whatsapp_from
    db = firestore.Client(project=driver.stack.options.project)
    FirestoreProfiles(lambda: db, "business_profiles", BusinessProfile(), 0).put(
        business, {"staff": [STAFF]}, datetime.now(timezone.utc))
    result.closed, _ = _batch(driver, log_dir, n, "f14-closed")
    poller = Poller(driver, business, poll_seconds).start()
    try:
        # Quiet polls: once the closed batch's conversations are older than the polls' look-back.
        time.sleep(CHANGE_OVERLAP.total_seconds() + poll_seconds * 2)
        quiet_before = cost.settled_mark(log_dir, quiet_seconds=poll_seconds / 4)
        time.sleep(poll_seconds * 5)
        quiet_after = cost.settled_mark(log_dir, quiet_seconds=poll_seconds / 4)
        quiet = cost.cost_between(log_dir, quiet_before, quiet_after, 1)
        requests_made = quiet["functions"]["inbox"]["requests"]
        result.quiet_poll_reads = round(quiet["totals"]["firestore_reads"] / requests_made, 2) if requests_made else 0
        result.open, posted = _batch(driver, log_dir, n, "f14-open", tail_seconds=poll_seconds * 2)
    finally:
        poller.stop()
        db.close()
    result.polls = poller.polls
    for marker, at in posted.items():
        seen = next((t for text, t in poller.first_seen.items() if marker in text), None)
        if seen is not None:
            result.visible_seconds.append(seen - at)
    return result


def report(run_: InboxRun, figure4: dict[str, Any]) -> tuple[list[list[str] | str], list[Goal], dict[str, Any]]:
    """Figure 14's rows, its goal (nobody in the inbox costs nothing) and its JSON section."""
    def per(section: dict[str, Any]) -> dict[str, float]:
        return {k: v for k, v in section["per_message"].items() if k in cost.COUNTERS or k == "firestore_ops"}

    closed, opened = per(run_.closed), per(run_.open)
    pipeline = {k: v for k, v in figure4["per_message"].items() if k in closed}
    differ = [k for k, v in pipeline.items() if k != "firestore_profile_reads" and closed.get(k) != v]
    inbox_requests = {name: section["functions"]["inbox"]["requests"] for name, section in
                      (("closed", run_.closed), ("open", run_.open))}
    differ += ["inbox requests"] if inbox_requests["closed"] else []
    # What the open inbox read beyond its quiet polls, per message: the changed conversations its polls fetched.
    added = (run_.open["inbox_reads"] - inbox_requests["open"] * run_.quiet_poll_reads) / max(1, run_.open["n"])
    goal = Goal("nobody in the inbox: figure 4's counts and no inbox request", float(len(differ)), 0, "==",
                ", ".join(differ) or "same")
    visible = summarize(run_.visible_seconds) if run_.visible_seconds else None

    def counts(section: dict[str, float], requests_: int, inbox_reads: int) -> str:
        return (f"{section.get('firestore_reads', 0):g} reads, {section.get('firestore_writes', 0):g} writes, "
                f"{section.get('tasks_created', 0):g} tasks per message; inbox {requests_} polls, {inbox_reads} reads")

    rows: list[list[str] | str] = [
        "14. the inbox per message: nobody signed in, then one staff member's inbox open and polling",
        note_row("  nobody open", counts(closed, inbox_requests["closed"], run_.closed["inbox_reads"]),
                 run_.closed["n"], goal),
        note_row("  one open", counts(opened, inbox_requests["open"], run_.open["inbox_reads"]), run_.open["n"]),
        note_row("    the open inbox's reads per message", f"{added:+.2f} beyond its quiet polls"),
        note_row("  a quiet poll", f"{run_.quiet_poll_reads:g} Firestore reads ({run_.polls} polls in all; "
                 f"{3600 / run_.poll_seconds * run_.quiet_poll_reads:g} reads an hour per open inbox)"),
        note_row("  shown in the open inbox after",
                 f"p50 {visible.p50:.2f} s, p99 {visible.p99:.2f} s" if visible else "not seen", len(run_.visible_seconds)),
    ]
    json = {
        "per_message_nobody_open": closed,
        "per_message_one_open": opened,
        "figure_4_per_message": pipeline,
        "nobody_open_equals_figure_4": not differ,
        "inbox_requests": inbox_requests,
        "quiet_poll_firestore_reads": run_.quiet_poll_reads,
        "inbox_reads": {"closed": run_.closed["inbox_reads"], "open": run_.open["inbox_reads"]},
        "open_inbox_reads_per_message": round(added, 3),
        "polls": run_.polls,
        "visible_after_seconds": {"p50": round(visible.p50, 2), "p99": round(visible.p99, 2)} if visible else None,
    }
    return rows, [goal], json

"""Figure 15: a business sending above its send rate must not slow another business's replies.

Two businesses on one deployment, each with its own send lane
(docs/decisions/0022-send-queue-per-number.md). Business A sends a campaign
of templates through the outbound API, many times what its lane dispatches a
second, so its lane holds a backlog for the whole round; meanwhile business
B's users write to B and wait for its replies. The figure is the p99 of B's
latency (webhook POST -> reply at the Twilio stand-in) with A's campaign,
against the same number of B's users with nothing else going on, measured
just before in the same run. With one shared queue, B's replies would wait
behind A's backlog (up to the whole campaign at A's rate); with lanes they
only share the functions' CPU.

A's lane is the stand-in's own queue at A's rate, as strict as Cloud Tasks':
its backlog at the end of the round is recorded, so a round in which A was
not above its rate shows in the JSON.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bench.driver import Driver
from bench.stats import Summary, summarize

CAMPAIGN_RATE = 1.0  # A's send_rate_per_second
SETTLE_SECONDS = 1.0  # after A's API calls, before B is measured: the figure is about A's sends, not its API calls
B_GAP_SECONDS = 0.25  # B's users write this far apart, one new user each time
TEMPLATE = "HX" + "0f1e2d3c4b5a6978" * 2
BUSINESS_A = "whatsapp:+14155550150"
BUSINESS_B = "whatsapp:+14155550151"
LANES = ("bench-lane-00", "bench-lane-01")


@dataclass
class RateRun:
    alone: list[float] = field(default_factory=list)
    with_campaign: list[float] = field(default_factory=list)
    campaign_posted: int = 0
    campaign_sent_during_round: int = 0
    campaign_sent_at_end: int = 0
    campaign_seconds: float = 0.0
    missing: int = 0
    lanes: dict[str, str] = field(default_factory=dict)
    # (sid, posted, replied) of B's messages, for the per-stage breakdown from the logs (bench/stages.py)
    timeline_alone: list[tuple[str, float, float]] = field(default_factory=list)
    timeline_with: list[tuple[str, float, float]] = field(default_factory=list)

    def summaries(self) -> tuple[Summary, Summary]:
        return summarize([x * 1000 for x in self.alone]), summarize([x * 1000 for x in self.with_campaign])


def apply_profiles(driver: Driver) -> dict[str, str]:
    """profiles-apply's lane step and profile writes, as `make profiles-apply` does them, on the bench's stack."""
    from google.cloud import firestore

    from shared.adapters.cloud_tasks import emulator_client
    from shared.adapters.profile_store import SEND_QUEUE, FirestoreProfiles
    from shared.adapters.send_queues import SendQueues
    from shared.config import Settings
    from shared.domain.profiles import BusinessProfile
    from shared.ops.send_queues import with_send_queues

    stack = driver.stack
    o = stack.options
    raw = {BUSINESS_A: {"name": "Campaign shop", "send_rate_per_second": CAMPAIGN_RATE}, BUSINESS_B: {"name": "Clinic"}}
    settings = Settings(project_id=o.project, tasks_location=o.tasks_location, tasks_queue=o.tasks_queue,
                        send_lanes=LANES)
    client = firestore.Client(project=o.project)
    try:
        store = FirestoreProfiles(lambda: client, "business_profiles", BusinessProfile(), 0)
        address = stack.tasks.address
        queues = SendQueues(o.project, o.tasks_location, o.tasks_queue, lambda: emulator_client(address))
        put = with_send_queues(store.put, raw, {}, lambda: queues, settings, [])
        for number, profile in raw.items():
            put(number, profile, datetime.now(timezone.utc))
        return {number: str(doc.get(SEND_QUEUE, "")) for number, doc in store.stored().items() if number in raw}
    finally:
        client.close()


def _outbound(driver: Driver, user: str) -> int:
    stack = driver.stack
    body = {"to": user, "from": BUSINESS_A, "content_sid": TEMPLATE, "content_variables": {"1": "Ana"},
            "idempotency_key": str(uuid.uuid4())}
    request = urllib.request.Request(stack.outbound_url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **stack.outbound_headers()})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _b_round(driver: Driver, count: int, timeout: float, tag: str,
             timeline: list[tuple[str, float, float]] | None = None) -> tuple[list[float], int]:
    """``count`` new users of B, B_GAP_SECONDS apart, each timed from its POST to its reply."""
    latencies: list[float] = []
    timeline = [] if timeline is None else timeline
    missing = [0]
    lock = threading.Lock()

    def one(n: int) -> None:
        user = driver.new_user()
        marker = f"{tag}-{n}"
        prepared = driver.prepare(user, marker, to=BUSINESS_B)
        started = time.monotonic()
        result = driver.send(prepared)
        reply = driver.wait_reply(user, marker, timeout) if result.status == 200 else None
        with lock:
            if reply is None:
                missing[0] += 1
            else:
                latencies.append(time.monotonic() - started)
                timeline.append((prepared.sid, result.started, reply.received_at))

    threads = []
    for n in range(count):
        thread = threading.Thread(target=one, args=(n,), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(B_GAP_SECONDS)
    for thread in threads:
        thread.join(timeout + 5)
    return latencies, missing[0]


def run(driver: Driver, rounds: int, b_messages: int, campaign_messages: int, timeout: float) -> RateRun:
    """``rounds`` pairs: B alone, then B while A's campaign waits in A's lane; A's lane drains between pairs,
    so both halves of a pair see the same machine (the two cores are shared and noisy)."""
    result = RateRun(lanes=apply_profiles(driver))
    driver.twilio.add_content(TEMPLATE, "Hi {{1}}, our sale starts today.")
    _b_round(driver, 2, timeout, "rate-warm")  # B's first message builds the profile cache: not measured
    started = time.monotonic()
    for n in range(rounds):
        alone, missing = _b_round(driver, b_messages, timeout, f"rate-alone{n}", result.timeline_alone)
        result.alone += alone
        campaign = [driver.new_user() for _ in range(campaign_messages)]
        targets = set(campaign)
        posted = sum(_outbound(driver, user) == 202 for user in campaign)
        result.campaign_posted += posted
        time.sleep(SETTLE_SECONDS)
        with_campaign, missing_with = _b_round(driver, b_messages, timeout, f"rate-with{n}", result.timeline_with)
        result.with_campaign += with_campaign
        result.campaign_sent_during_round += sum(m.to in targets for m in driver.twilio.messages)
        result.missing += missing + missing_with
        deadline = time.monotonic() + campaign_messages / CAMPAIGN_RATE + timeout
        while time.monotonic() < deadline and sum(m.to in targets for m in driver.twilio.messages) < posted:
            time.sleep(0.2)
        result.campaign_sent_at_end += sum(m.to in targets for m in driver.twilio.messages)
    result.campaign_seconds = time.monotonic() - started
    return result


def to_json(result: RateRun) -> dict[str, Any]:
    alone, with_campaign = result.summaries()
    return {
        "campaign_rate_per_second": CAMPAIGN_RATE,
        "campaign_posted": result.campaign_posted,
        "campaign_sent_while_b_measured": result.campaign_sent_during_round,
        "campaign_sent_in_total": result.campaign_sent_at_end,
        "campaign_seconds": round(result.campaign_seconds, 1),
        "b_alone_ms": alone.to_json(1),
        "b_with_campaign_ms": with_campaign.to_json(1),
        "b_missing": result.missing,
        "lanes": sorted(result.lanes.values()),
    }


GOAL_RATIO = 1.5
FULL_SIZE = (4, 12, 8)  # rounds, B's messages per half-round, A's campaign per round (8 s at its rate)
QUICK_SIZE = (1, 6, 6)


def report(result: RateRun) -> tuple[list[list[str] | str], Any, dict[str, Any]]:
    """Figure 15's rows, its goal and its JSON section."""
    from bench.report import Goal, dist_row, note_row
    from bench.stats import ratio

    alone, with_campaign = result.summaries()
    measured = ratio(with_campaign.p99, alone.p99)
    goal = Goal("15. B's reply p99 with A's campaign <= 1.5x B alone", measured, GOAL_RATIO, "<=",
                f"{with_campaign.p99:.0f} ms vs {alone.p99:.0f} ms")
    rows: list[list[str] | str] = [
        f"15. send rate per sender: A sends {result.campaign_posted} templates in bursts through the outbound API, "
        f"its lane dispatching {CAMPAIGN_RATE:g}/s",
        dist_row("  B's users alone: POST -> reply", alone),
        dist_row("  B's users during A's campaign", with_campaign, alone, measured, goal),
        note_row("    A's backlog", f"{result.campaign_sent_during_round} of {result.campaign_posted} sent while B "
                 f"was measured; {result.campaign_sent_at_end} in all; {result.campaign_seconds:.0f} s; "
                 f"{result.missing} of B's replies missing", result.campaign_posted),
    ]
    return rows, goal, to_json(result) | {"ratio_p99": None if measured != measured else round(measured, 2)}

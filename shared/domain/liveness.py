"""The liveness rules: what the reconciler does with a conversation whose messages stall.

Pure functions, no I/O. Every accepted message must be terminal within
``liveness_seconds`` of its receipt (docs/decisions/0008-liveness.md):

* the reply whose turn it is (``seq == doneSeq + 1``) and that has made no
  progress for ``reconcile_after_seconds`` gets a fresh send task, in case its
  task was lost or ran out of retries;
* a burst whose window passed ``reconcile_after_seconds`` ago and that is
  still not answered gets a fresh answer task, in case its task was lost
  (docs/decisions/0014-bursts.md);
* a message still open ``liveness_seconds`` after its receipt is closed as
  failed with its reason, which moves ``doneSeq`` so the user's later replies
  go; never while an attempt may be inside a Twilio call or holds a live
  processing lease.

The reconciler applies the plan with compare-and-set like every other writer,
so it is safe to run at any time, concurrently with anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from shared.domain.conversation import (
    ANSWERED,
    FAILED,
    PROCESSING,
    REMOVE,
    SENDING,
    Conversation,
    Updates,
    applied,
    finish_updates,
)


@dataclass(frozen=True)
class LivenessRules:
    liveness: timedelta
    reconcile_after: timedelta
    in_flight_grace: timedelta


@dataclass
class Plan:
    """What to write, then which tasks to create and which failures to record."""

    updates: Updates = field(default_factory=dict)
    resend: list[tuple[str, int, str]] = field(default_factory=list)  # (sid, seq, task kind)
    closed: list[tuple[str, str]] = field(default_factory=list)  # (sid, reason)
    bursts: list[tuple[str, int, str]] = field(default_factory=list)  # (head sid, burst version, task kind)

    @property
    def empty(self) -> bool:
        return not self.updates


def _in_flight(entry: Mapping[str, Any], now: datetime, grace: timedelta) -> bool:
    """An attempt may still be inside a Twilio call, or holds the processing lease."""
    sending = entry.get("sending") or {}
    if sending.get("since") is not None and now - sending["since"] < grace:
        return True
    lease = entry.get("leaseUntil")
    return entry.get("status") == PROCESSING and lease is not None and lease > now


def _close_reason(entry: Mapping[str, Any], rules: LivenessRules) -> str:
    minutes = rules.liveness.total_seconds() / 60
    what = "delivered" if entry.get("status") in (ANSWERED, SENDING) else "answered"
    reason = f"not {what} within {minutes:g} min of receipt (status {entry.get('status')})"
    if entry.get("lastError"):
        reason += f"; last error: {entry['lastError']}"
    return reason


def plan_reconcile(conv: Conversation, now: datetime, rules: LivenessRules) -> Plan:
    """The writes that move every stalled message of ``conv`` on; empty when nothing is due."""
    plan = Plan()
    current = conv
    for sid, entry in sorted(conv.open_entries().items(), key=lambda item: int(item[1].get("seq", 1 << 62))):
        received = entry.get("receivedAt") or entry.get("updatedAt") or now
        if now - received >= rules.liveness and not _in_flight(entry, now, rules.in_flight_grace):
            reason = _close_reason(entry, rules)
            updates = finish_updates(current, sid, FAILED, now, reason)
            plan.updates.update(updates)
            plan.closed.append((sid, reason))
            current = applied(current, updates)
    # A close moves doneSeq, and the reconciler then hands off to the new head.
    head = None if plan.closed else current.next_in_line()
    if head is not None:
        sid, entry = head
        idle_since = entry.get("updatedAt") or entry.get("receivedAt") or now
        if now - idle_since >= rules.reconcile_after and not _in_flight(entry, now, rules.in_flight_grace):
            nudges = int(entry.get("nudges", 0)) + 1
            updates = {f"messages.{sid}.nudges": nudges, f"messages.{sid}.updatedAt": now}
            plan.updates.update(updates)
            plan.resend.append((sid, int(entry["seq"]), f"r{nudges}"))
            current = applied(current, updates)
    burst = None if plan.closed else current.open_burst()
    if burst is not None:
        sid, entry = burst
        due = entry.get("burstDue") or now
        idle_since = entry.get("updatedAt") or due
        if min(now - due, now - idle_since) >= rules.reconcile_after and not _in_flight(entry, now, rules.in_flight_grace):
            nudges = int(entry.get("nudges", 0)) + 1
            updates = {f"messages.{sid}.nudges": nudges, f"messages.{sid}.updatedAt": now}
            plan.updates.update(updates)
            plan.bursts.append((sid, int(entry.get("burstVersion", 0)), f"r{nudges}"))
            current = applied(current, updates)
    next_watch = _next_watch(current, now, rules)
    if next_watch != conv.data.get("watch"):
        plan.updates["watch"] = REMOVE if next_watch is None else next_watch
    if plan.updates:
        plan.updates["updatedAt"] = now
    return plan


def _next_watch(conv: Conversation, now: datetime, rules: LivenessRules) -> datetime | None:
    """When something of ``conv`` may next be due: a nudge or a close, whichever is first."""
    open_entries = conv.open_entries()
    if not open_entries:
        return None
    closes = [(e.get("receivedAt") or now) + rules.liveness for e in open_entries.values()]
    return max(now + timedelta(seconds=1), min([now + rules.reconcile_after, *closes]))

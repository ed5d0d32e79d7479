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

from shared.domain.conversation import Conversation
from shared.domain.entry import MessageEntry
from shared.domain.lifecycle import FAILED, NUDGED, PROCESSING, TO_SEND


@dataclass(frozen=True)
class LivenessRules:
    liveness: timedelta
    reconcile_after: timedelta
    in_flight_grace: timedelta


@dataclass
class Plan:
    """What the pass changed, then which tasks to create and which failures to record."""

    changed: bool = False
    resend: list[tuple[str, int, str]] = field(default_factory=list)  # (sid, seq, task kind)
    closed: list[tuple[str, str]] = field(default_factory=list)  # (sid, reason)
    bursts: list[tuple[str, int, str]] = field(default_factory=list)  # (head sid, burst version, task kind)

    @property
    def empty(self) -> bool:
        return not self.changed


def _in_flight(entry: MessageEntry, now: datetime, grace: timedelta) -> bool:
    """An attempt may still be inside a Twilio call, or holds the processing lease."""
    if entry.sending is not None and now - entry.sending.since < grace:
        return True
    return entry.status == PROCESSING and entry.lease_live(now)


def _close_reason(entry: MessageEntry, rules: LivenessRules) -> str:
    minutes = rules.liveness.total_seconds() / 60
    what = "delivered" if entry.status in TO_SEND else "answered"
    reason = f"not {what} within {minutes:g} min of receipt (status {entry.status or None})"
    if entry.last_error:
        reason += f"; last error: {entry.last_error}"
    return reason


def _nudge(entry: MessageEntry, sid: str, now: datetime) -> int:
    entry.move(NUDGED, sid)
    entry.nudges += 1
    entry.updated_at = now
    return entry.nudges


def reconcile(conv: Conversation, now: datetime, rules: LivenessRules) -> Plan:
    """Move every stalled message of ``conv`` on (changing it); the plan says what else to do."""
    plan = Plan()
    before_watch = conv.watch
    for sid, entry in sorted(conv.open_entries().items(), key=lambda item: item[1].seq or 1 << 62):
        received = entry.received_at or entry.updated_at or now
        if now - received >= rules.liveness and not _in_flight(entry, now, rules.in_flight_grace):
            reason = _close_reason(entry, rules)
            conv.finish(sid, FAILED, now, reason)
            plan.closed.append((sid, reason))
    # A close moves doneSeq, and the reconciler then hands off to the new head.
    head = None if plan.closed else conv.next_in_line()
    if head is not None:
        sid, entry = head
        idle_since = entry.updated_at or entry.received_at or now
        if now - idle_since >= rules.reconcile_after and not _in_flight(entry, now, rules.in_flight_grace):
            plan.resend.append((sid, int(entry.seq or 0), f"r{_nudge(entry, sid, now)}"))
    burst = None if plan.closed else conv.open_burst()
    if burst is not None:
        sid, entry = burst
        due = entry.burst_due or now
        idle_since = entry.updated_at or due
        if min(now - due, now - idle_since) >= rules.reconcile_after and not _in_flight(entry, now, rules.in_flight_grace):
            plan.bursts.append((sid, entry.burst_version, f"r{_nudge(entry, sid, now)}"))
    next_watch = _next_watch(conv, now, rules)
    plan.changed = bool(plan.closed or plan.resend or plan.bursts or next_watch != before_watch)
    if plan.changed:
        conv.watch = next_watch
        conv.updated_at = now
    return plan


def _next_watch(conv: Conversation, now: datetime, rules: LivenessRules) -> datetime | None:
    """When something of ``conv`` may next be due: a nudge or a close, whichever is first."""
    open_entries = conv.open_entries()
    if not open_entries:
        return None
    closes = [(e.received_at or now) + rules.liveness for e in open_entries.values()]
    return max(now + timedelta(seconds=1), min([now + rules.reconcile_after, *closes]))

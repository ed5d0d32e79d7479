"""The reconciler's work: finish every message that stalled, whatever stalled it.

Cloud Scheduler calls it every minute (``make stack`` does the same locally).
It reads only conversations whose ``watch`` time has passed, which exist only
while a message is unfinished, applies the liveness rules of
shared/domain/liveness.py with compare-and-set, then does what the plan says: create
fresh send tasks, record the failures of closed messages, and hand off to the
reply now in line. Safe to run at any moment and concurrently with itself and
the pipeline: a conflicting write re-reads and decides again.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from shared.adapters.cloud_tasks import BurstTask, SendTask
from shared.adapters.compare_and_set import ConversationStore
from shared.adapters.firestore_store import failure_record
from shared.config import Settings
from shared.domain.conversation import Conversation
from shared.domain.liveness import LivenessRules, Plan, reconcile as plan_reconcile
from shared.handlers.deps import Queue
from shared.handlers.handoff import hand_off_next
from shared.log import mask_address

log = logging.getLogger(__name__)

BATCH_SIZE = 200


@dataclass(frozen=True)
class ReconcilerDeps:
    settings: Settings
    store: ConversationStore
    queue: Queue
    clock: Callable[[], datetime]

    @property
    def rules(self) -> LivenessRules:
        s = self.settings
        return LivenessRules(
            liveness=timedelta(seconds=s.liveness_seconds),
            reconcile_after=timedelta(seconds=s.reconcile_after_seconds),
            in_flight_grace=timedelta(seconds=s.in_flight_grace_seconds),
        )


def reconcile(deps: ReconcilerDeps, limit: int = BATCH_SIZE) -> dict[str, int]:
    """One pass over the conversations that are due; returns what it did, by kind.

    A conversation that fails is logged and left for the next pass, so one
    bad document cannot stop the others from being finished.
    """
    counts: Counter[str] = Counter()
    for cid in deps.store.due_conversations(deps.clock(), limit):
        counts["conversations"] += 1
        try:
            counts.update(reconcile_conversation(cid, deps))
        except Exception as exc:
            counts["errors"] += 1
            log.error("could not reconcile a conversation", extra={"event": "reconcile_failed", "conversation": cid[:12], "reason": repr(exc)[:300]})
    return dict(counts)


def reconcile_conversation(conversation_id: str, deps: ReconcilerDeps) -> Counter[str]:
    store, rules = deps.store, deps.rules
    now = deps.clock()

    def change(conv: Conversation) -> Plan:
        nonlocal now
        now = deps.clock()
        return plan_reconcile(conv, now, rules)

    saved = store.update(conversation_id, change, what="reconciling")
    plan, conv = saved.result, saved.conversation
    if plan.empty:
        return Counter()
    masked = mask_address(conv.address)
    for sid, reason in plan.closed:
        store.record_failure(
            sid,
            failure_record(
                conversation_id=conversation_id, masked_sender=masked, status="failed",
                stage="reconciler", reason=reason, now=now,
            ),
        )
        log.error("stalled message closed", extra={"event": "stalled", "sid": sid, "conversation": conversation_id[:12], "reason": reason})
    for sid, seq, kind in plan.resend:
        created = deps.queue.enqueue(SendTask(conversation_id, sid, seq, kind=kind, business=conv.business))
        log.warning("send task re-created for a stalled reply", extra={"event": "nudged", "sid": sid, "conversation": conversation_id[:12], "seq": seq, "task_created": created})
    for sid, version, kind in plan.bursts:
        created = deps.queue.enqueue(BurstTask(conversation_id, sid, version, now, kind=kind))
        log.warning("answer task re-created for a stalled burst", extra={"event": "burst_nudged", "sid": sid, "conversation": conversation_id[:12], "burst_version": version, "task_created": created})
    if plan.closed:
        hand_off_next(deps.queue, conversation_id, conv)
    return Counter({"closed": len(plan.closed), "nudged": len(plan.resend) + len(plan.bursts)}) + Counter()

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
from shared.adapters.firestore_store import Conflict, ConversationStore, failure_record
from shared.config import Settings
from shared.domain.conversation import applied
from shared.domain.liveness import LivenessRules, plan_reconcile
from shared.handlers.handoff import Queue, hand_off_next
from shared.handlers.processor import FAILURE_RETENTION, MAX_CONFLICT_RETRIES
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
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = store.load(conversation_id)
        now = deps.clock()
        plan = plan_reconcile(snap.conversation, now, rules)
        if plan.empty:
            return Counter()
        try:
            store.apply(conversation_id, plan.updates, snap.version)
        except Conflict:
            continue
        break
    else:
        raise Conflict(f"conversation {conversation_id[:12]} kept changing while reconciling")
    conv = applied(snap.conversation, plan.updates)
    masked = mask_address(str(conv.data.get("address", "")))
    for sid, reason in plan.closed:
        store.record_failure(
            sid,
            failure_record(
                conversation_id=conversation_id, masked_sender=masked, status="failed",
                stage="reconciler", reason=reason, now=now, retention=now + FAILURE_RETENTION,
            ),
        )
        log.error("stalled message closed", extra={"event": "stalled", "sid": sid, "conversation": conversation_id[:12], "reason": reason})
    for sid, seq, kind in plan.resend:
        created = deps.queue.enqueue(SendTask(conversation_id, sid, seq, kind=kind))
        log.warning("send task re-created for a stalled reply", extra={"event": "nudged", "sid": sid, "conversation": conversation_id[:12], "seq": seq, "task_created": created})
    for sid, version, kind in plan.bursts:
        created = deps.queue.enqueue(BurstTask(conversation_id, sid, version, now, kind=kind))
        log.warning("answer task re-created for a stalled burst", extra={"event": "burst_nudged", "sid": sid, "conversation": conversation_id[:12], "burst_version": version, "task_created": created})
    if plan.closed:
        hand_off_next(deps.queue, conversation_id, conv)
    return Counter({"closed": len(plan.closed), "nudged": len(plan.resend) + len(plan.bursts)}) + Counter()

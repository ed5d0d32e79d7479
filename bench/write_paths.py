"""Figure 10: the conversation's writes for one text message, compare-and-set helper against Firestore transactions.

Both make the same four changes with the same domain code (claim with its
dedupe marker, answer, part marked ``sending``, part sent) on the stack's
Firestore emulator, one conversation per message:

* **compare-and-set**: the store's helper as the pipeline uses it
  (shared/adapters/compare_and_set.py): the processor reads once and writes
  its answer from the claim's snapshot, the sender reads once and records
  the part from its mark's snapshot, so 2 reads for 4 writes (5 documents
  with the marker);
* **transactions**: each change in ``google.cloud.firestore.transactional``,
  which must read the document inside the transaction before writing it,
  so every change pays a read, and the commit waits for the document's lock.

Operations are counted where they are made (reads: document gets; writes:
documents written), not inferred; time is per message, all four changes.
decision 0020 uses this figure.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from google.cloud import firestore

from shared.adapters.conversation_document import DELETE, field_updates, from_document, to_document
from shared.adapters.firestore_store import FirestoreStore
from shared.domain import claims, sending
from shared.domain.conversation import Answer, Conversation, Limits
from bench.stats import Summary, summarize

LIMITS = Limits(ttl_seconds=3600, max_messages=20, watch_after_seconds=180, lease_seconds=120)


def _changes(now: datetime, sid: str) -> list[Callable[[Conversation], Any]]:
    """The pipeline's four changes to a conversation for a single-part text reply."""
    def claim(conv: Conversation) -> None:
        claims.claim(conv, sid, now, LIMITS, address="whatsapp:+34600000000", business="whatsapp:+14155238886")
        conv.new_markers[sid] = now + timedelta(days=8)

    return [
        claim,
        lambda conv: conv.answer(sid, Answer(parts=["hello"], asked="hi"), now, LIMITS),
        lambda conv: sending.start_part(conv, sid, 0, now, "task"),
        lambda conv: sending.part_sent(conv, sid, 0, "SM" + "a" * 32, now),
    ]


@dataclass
class PathRun:
    reads: int = 0
    writes: int = 0
    latencies: list[float] = field(default_factory=list)

    def to_json(self, n: int) -> dict[str, Any]:
        return {"reads_per_message": round(self.reads / n, 3), "writes_per_message": round(self.writes / n, 3),
                "ops_per_message": round((self.reads + self.writes) / n, 3),
                "ms": summarize(self.latencies).scaled(1000).to_json(2)}


@dataclass
class WritePaths:
    n: int
    compare_and_set: PathRun
    transactions: PathRun

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "compare_and_set": self.compare_and_set.to_json(self.n),
                "transactions": self.transactions.to_json(self.n)}

    def summaries(self) -> tuple[Summary, Summary]:
        return (summarize(self.compare_and_set.latencies).scaled(1000),
                summarize(self.transactions.latencies).scaled(1000))

    def report_rows(self) -> list[list[str] | str]:
        """The figure's rows for the table."""
        from bench.report import dist_row, note_row

        helper, transactions = self.summaries()
        rows: list[list[str] | str] = [
            "11. conversation writes for one text message (claim + marker, answer, part mark, part sent), ms; "
            "decision 0020",
        ]
        for label, path, summary in (("compare-and-set helper (the pipeline's)", self.compare_and_set, helper),
                                     ("the same changes as Firestore transactions", self.transactions, transactions)):
            rows.append(dist_row(f"  {label}", summary))
            rows.append(note_row("    Firestore document operations per message",
                                 f"{path.reads / self.n:g} reads + {path.writes / self.n:g} writes"
                                 f" = {(path.reads + path.writes) / self.n:g} ops", self.n))
        return rows


def _by_helper(store: FirestoreStore, cid: str, sid: str, now: datetime) -> None:
    claim, answer, mark, sent = _changes(now, sid)
    saved = store.update(cid, claim)  # processor: read, claim (+ marker)
    store.update(cid, answer, start=saved.snapshot)  # answer from the claim's snapshot
    saved = store.update(cid, mark, start=store.load(cid))  # sender: read, mark the part
    store.update(cid, sent, start=saved.snapshot)  # record it from the mark's snapshot


def _by_transactions(db: firestore.Client, collection: str, markers: str, cid: str, sid: str, now: datetime,
                     counts: PathRun) -> None:
    ref = db.collection(collection).document(cid)

    @firestore.transactional
    def apply(transaction: firestore.Transaction, change: Callable[[Conversation], Any]) -> None:
        snap = ref.get(transaction=transaction)
        counts.reads += 1
        document = snap.to_dict() if snap.exists else None
        conv = from_document(document)
        conv.exists = document is not None
        change(conv)
        after = to_document(conv)
        if document is None:
            transaction.create(ref, after)
        else:
            updates = field_updates(document, after)
            transaction.update(ref, {k: firestore.DELETE_FIELD if v is DELETE else v for k, v in updates.items()})
        for marker, until in conv.new_markers.items():
            transaction.create(db.collection(markers).document(marker), {"conversation": cid, "expireAt": until})
        counts.writes += 1 + len(conv.new_markers)

    for change in _changes(now, sid):
        apply(db.transaction(), change)


def run(project: str, n: int) -> WritePaths:
    """``n`` messages each way, alternating, on fresh documents."""
    suffix = uuid.uuid4().hex[:8]
    collection, markers = f"bench-writes-{suffix}", f"bench-seen-{suffix}"
    db = firestore.Client(project=project)
    store = FirestoreStore(lambda: db, collection, f"bench-failures-{suffix}", markers)
    helper, transactions = PathRun(), PathRun()
    now = datetime.now(timezone.utc)
    try:
        for i in range(n):
            reads, writes = store.ops.reads, store.ops.writes
            started = time.perf_counter()
            _by_helper(store, f"cas-{i}", f"SM{i:032x}", now)
            helper.latencies.append(time.perf_counter() - started)
            helper.reads += store.ops.reads - reads
            helper.writes += store.ops.writes - writes
            started = time.perf_counter()
            _by_transactions(db, collection, markers, f"txn-{i}", f"SM{n + i:032x}", now, transactions)
            transactions.latencies.append(time.perf_counter() - started)
    finally:
        db.close()
    return WritePaths(n, helper, transactions)

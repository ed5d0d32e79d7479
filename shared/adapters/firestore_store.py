"""Firestore: the conversation documents, the dedupe markers, the usage counts and the failure records.

Each conversation is one document (shared/adapters/conversation_document.py
names its fields), changed only through the compare-and-set helper
(shared/adapters/compare_and_set.py): this module provides its two
primitives on Firestore, a read and an atomic batch that carries the
document's precondition (``last_update_time``) and the dedupe markers.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.adapters.compare_and_set import (
    MAX_CONFLICT_RETRIES,
    CompareAndSetStore,
    Conflict,
    ConversationStore,
    DedupeMarker,
    OpCounter,
    Saved,
    Snapshot,
    Write,
)
from shared.adapters.conversation_document import DELETE
from shared.adapters.lazy import Lazy
from shared.domain.usage import Count

__all__ = [
    "MAX_CONFLICT_RETRIES", "CompareAndSetStore", "Conflict", "ConversationStore", "DedupeMarker", "FirestoreStore",
    "OpCounter", "Saved", "Snapshot", "Write", "failure_record", "FAILURE_RETENTION",
]

# How long an operator can see a failure record (``make failures``).
FAILURE_RETENTION = timedelta(days=30)
# How long a month's usage counters are kept after it began (``make admin ARGS="usage"`` reads them).
USAGE_RETENTION = timedelta(days=400)


class FirestoreStore(CompareAndSetStore):
    """The conversation store on Firestore; the client is built on first use."""

    def __init__(
        self,
        client_factory: Callable[[], firestore.Client],
        conversations: str,
        failures: str,
        dedupe: str = "seen_messages",
        usage: str = "usage_counters",
    ) -> None:
        self._usage = usage
        self._client = Lazy(client_factory)
        self._conversations = conversations
        self._failures = failures
        self._dedupe = dedupe
        self.ops = OpCounter()

    @property
    def client(self) -> firestore.Client:
        return self._client.get()

    def _doc(self, conversation_id: str) -> firestore.DocumentReference:
        return self.client.collection(self._conversations).document(conversation_id)

    def _read(self, conversation_id: str) -> tuple[Mapping[str, Any] | None, Any]:
        snap = self._doc(conversation_id).get()
        self.ops.add(reads=1)
        if not snap.exists:
            return None, None
        return snap.to_dict() or {}, snap.update_time

    def _commit(self, conversation_id: str, write: Write, version: Any) -> Any:
        """One batch: the document's write (against ``version``) and the dedupe markers, atomically.

        A marker that exists already fails the whole commit (:class:`Conflict`),
        like a changed document.
        """
        doc = self._doc(conversation_id)
        option = self.client.write_option(last_update_time=version) if version is not None else None
        batch = self.client.batch()
        if write.delete:
            batch.delete(doc, option=option)
        elif write.create is not None:
            batch.create(doc, dict(write.create))
        else:
            fields = {k: firestore.DELETE_FIELD if v is DELETE else v for k, v in (write.updates or {}).items()}
            batch.update(doc, fields, option=option)
        for marker in write.markers:
            batch.create(
                self.client.collection(self._dedupe).document(marker.sid),
                {"conversation": marker.conversation_id, "expireAt": marker.expire_at},
            )
        for count in write.counts:
            batch.set(self.client.collection(self._usage).document(count.document_id), usage_increment(count), merge=True)
        try:
            results = batch.commit()
        except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound) as exc:
            raise Conflict(str(exc)) from None
        finally:
            self.ops.add(writes=1 + len(write.markers) + len(write.counts), markers=len(write.markers),
                         counts=len(write.counts))
        return None if write.delete else results[0].update_time

    def seen(self, sid: str) -> bool:
        """Whether a dedupe marker exists for ``sid`` (only asked on the rare conflict path)."""
        self.ops.add(reads=1)
        return bool(self.client.collection(self._dedupe).document(sid).get().exists)

    def due_conversations(self, now: datetime, limit: int) -> list[str]:
        """Ids of conversations whose ``watch`` time has come (indexed, so only those are read)."""
        query = (
            self.client.collection(self._conversations)
            .where(filter=firestore.FieldFilter("watch", "<=", now))
            .order_by("watch")
            .limit(limit)
        )
        ids = [snap.id for snap in query.select([]).stream()]
        self.ops.add(reads=max(1, len(ids)))
        return ids

    def record_failure(self, sid: str, record: Mapping[str, Any]) -> None:
        """Idempotent: the record is keyed by the message, so a retry rewrites it."""
        self.client.collection(self._failures).document(sid).set(dict(record))
        self.ops.add(writes=1)

    def failure(self, sid: str) -> dict[str, Any] | None:
        """One failure record (replay asks whether a message is known to be dead-lettered)."""
        snap = self.client.collection(self._failures).document(sid).get()
        self.ops.add(reads=1)
        return (snap.to_dict() or {}) if snap.exists else None

    def failures_of(self, conversation_id: str) -> list[str]:
        """The MessageSids of the failure records of one conversation (erasing a user's data)."""
        query = self.client.collection(self._failures).where(
            filter=firestore.FieldFilter("conversation", "==", conversation_id)
        )
        sids = [snap.id for snap in query.select([]).stream()]
        self.ops.add(reads=max(1, len(sids)))
        return sids

    def failures_of_sender(self, masked_sender: str) -> list[str]:
        """The MessageSids of the failure records of one (masked) sender, whatever conversation they were of.

        Failure records outlive conversations, so some have no conversation left
        to be found by.
        """
        if not masked_sender:
            return []
        query = self.client.collection(self._failures).where(
            filter=firestore.FieldFilter("sender", "==", masked_sender)
        )
        sids = [snap.id for snap in query.select([]).stream()]
        self.ops.add(reads=max(1, len(sids)))
        return sids

    def conversations_of(self, user_id: str) -> dict[str, str]:
        """Every conversation of one user, id → the number it is with (Firestore's automatic single-field index on ``userId``).

        One read per conversation found (one for none); no message pays for it.
        """
        query = self.client.collection(self._conversations).where(
            filter=firestore.FieldFilter("userId", "==", user_id)
        )
        found = {snap.id: str((snap.to_dict() or {}).get("business", "")) for snap in query.select(["business"]).stream()}
        self.ops.add(reads=max(1, len(found)))
        return found

    def delete_failure(self, sid: str) -> None:
        self.client.collection(self._failures).document(sid).delete()
        self.ops.add(writes=1)

    def list_failures(self, limit: int = 100) -> list[dict[str, Any]]:
        query = (
            self.client.collection(self._failures)
            .order_by("at", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        rows = [dict(snap.to_dict() or {}, sid=snap.id) for snap in query.stream()]
        self.ops.add(reads=max(1, len(rows)))
        return rows


def usage_increment(count: Count) -> dict[str, Any]:
    """A shard document's merge: who and which month it counts (for the readers' query), the day's increments."""
    year, month = (int(part) for part in count.month.split("-"))
    return {"business": count.business, "month": count.month,
            "expireAt": datetime(year, month, 1, tzinfo=timezone.utc) + USAGE_RETENTION,
            "days": {count.day: {name: firestore.Increment(value) for name, value in count.increments().items()}}}


def failure_record(
    *,
    conversation_id: str,
    masked_sender: str,
    status: str,
    stage: str,
    reason: str,
    now: datetime,
    retention: datetime | None = None,
) -> dict[str, Any]:
    """What an operator sees for a failed message; no raw address, no message text.

    Kept FAILURE_RETENTION unless ``retention`` says otherwise.
    """
    return {
        "conversation": conversation_id,
        "sender": masked_sender,
        "status": status,
        "stage": stage,
        "reason": reason[:500],
        "at": now,
        "expireAt": retention if retention is not None else now + FAILURE_RETENTION,
    }

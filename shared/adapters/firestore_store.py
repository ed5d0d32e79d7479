"""Firestore: the conversation documents and the failure records.

Every change is a compare-and-set: a new document is created only if absent,
and an update carries the ``update_time`` of the read it was computed from, so
two workers that read the same state cannot both act on it (the loser gets
:class:`Conflict`, re-reads and decides again). This is an optimistic
transaction with no locks held across the AI call or the Twilio call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.domain.conversation import REMOVE, Conversation, Updates, nested


class Conflict(Exception):
    """Someone else changed the document since it was read; re-read and retry."""


@dataclass(frozen=True)
class Snapshot:
    conversation: Conversation
    version: Any  # the document's update_time; None when it does not exist


@dataclass(frozen=True)
class DedupeMarker:
    """A per-message record, written with the first claim, that outlives the conversation.

    Created in the same commit as the claim, so it exists exactly when the
    message was taken on; a redelivery that finds it but no entry in the
    conversation (pruned, or the conversation expired and was deleted) is late
    and must not be answered again. It holds no address and no text.
    """

    sid: str
    conversation_id: str
    expire_at: datetime


@dataclass
class OpCounter:
    """Firestore document operations, counted where they happen (for benchmarks)."""

    reads: int = 0
    writes: int = 0
    markers: int = 0  # of the writes, the dedupe markers (the dedupe horizon's cost)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, reads: int = 0, writes: int = 0, markers: int = 0) -> None:
        with self._lock:
            self.reads += reads
            self.writes += writes
            self.markers += markers


class ConversationStore(Protocol):
    ops: OpCounter

    def load(self, conversation_id: str) -> Snapshot: ...

    def apply(
        self, conversation_id: str, updates: Updates, version: Any, marker: DedupeMarker | None = None
    ) -> Any: ...

    def seen(self, sid: str) -> bool: ...

    def due_conversations(self, now: datetime, limit: int) -> list[str]: ...

    def record_failure(self, sid: str, record: Mapping[str, Any]) -> None: ...

    def list_failures(self, limit: int = 100) -> list[dict[str, Any]]: ...

    def failure(self, sid: str) -> dict[str, Any] | None: ...

    def erase(self, conversation_id: str, version: Any) -> None: ...

    def failures_of(self, conversation_id: str) -> list[str]: ...

    def failures_of_sender(self, masked_sender: str) -> list[str]: ...

    def conversations_of(self, user_id: str) -> dict[str, str]: ...

    def delete_failure(self, sid: str) -> None: ...


class FirestoreStore:
    """The conversation store on Firestore; the client is built on first use."""

    def __init__(
        self,
        client_factory: Callable[[], firestore.Client],
        conversations: str,
        failures: str,
        dedupe: str = "seen_messages",
    ) -> None:
        self._client_factory = client_factory
        self._client: firestore.Client | None = None
        self._lock = threading.Lock()
        self._conversations = conversations
        self._failures = failures
        self._dedupe = dedupe
        self.ops = OpCounter()

    @property
    def client(self) -> firestore.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._client_factory()
        return self._client

    def _doc(self, conversation_id: str) -> firestore.DocumentReference:
        return self.client.collection(self._conversations).document(conversation_id)

    def load(self, conversation_id: str) -> Snapshot:
        snap = self._doc(conversation_id).get()
        self.ops.add(reads=1)
        if not snap.exists:
            return Snapshot(Conversation({}), None)
        return Snapshot(Conversation(snap.to_dict() or {}), snap.update_time)

    def apply(
        self, conversation_id: str, updates: Updates, version: Any, marker: DedupeMarker | None = None
    ) -> Any:
        """Write ``updates`` only if the document is still at ``version``; return the new version.

        With ``marker``, the dedupe marker is created in the same atomic commit,
        and the commit fails (:class:`Conflict`) if the marker already exists.
        """
        doc = self._doc(conversation_id)
        batch = self.client.batch()
        if version is None:
            batch.create(doc, nested(updates))
        else:
            fields = {k: firestore.DELETE_FIELD if v is REMOVE else v for k, v in updates.items()}
            batch.update(doc, fields, option=self.client.write_option(last_update_time=version))
        if marker is not None:
            batch.create(
                self.client.collection(self._dedupe).document(marker.sid),
                {"conversation": marker.conversation_id, "expireAt": marker.expire_at},
            )
        try:
            results = batch.commit()
        except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound) as exc:
            raise Conflict(str(exc)) from None
        finally:
            self.ops.add(writes=2 if marker is not None else 1, markers=1 if marker is not None else 0)
        return results[0].update_time

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

    def erase(self, conversation_id: str, version: Any) -> None:
        """Delete the conversation only if it is still at ``version`` (a compare-and-set, like every write)."""
        option = self.client.write_option(last_update_time=version) if version is not None else None
        try:
            self._doc(conversation_id).delete(option=option)
        except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound) as exc:
            raise Conflict(str(exc)) from None
        finally:
            self.ops.add(writes=1)

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


def failure_record(
    *,
    conversation_id: str,
    masked_sender: str,
    status: str,
    stage: str,
    reason: str,
    now: datetime,
    retention: datetime,
) -> dict[str, Any]:
    """What an operator sees for a failed message; no raw address, no message text."""
    return {
        "conversation": conversation_id,
        "sender": masked_sender,
        "status": status,
        "stage": stage,
        "reason": reason[:500],
        "at": now,
        "expireAt": retention,
    }

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

from shared.conversation import REMOVE, Conversation, Updates, nested


class Conflict(Exception):
    """Someone else changed the document since it was read; re-read and retry."""


@dataclass(frozen=True)
class Snapshot:
    conversation: Conversation
    version: Any  # the document's update_time; None when it does not exist


@dataclass
class OpCounter:
    """Firestore document operations, counted where they happen (for benchmarks)."""

    reads: int = 0
    writes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, reads: int = 0, writes: int = 0) -> None:
        with self._lock:
            self.reads += reads
            self.writes += writes


class ConversationStore(Protocol):
    ops: OpCounter

    def load(self, conversation_id: str) -> Snapshot: ...

    def apply(self, conversation_id: str, updates: Updates, version: Any) -> Any: ...

    def record_failure(self, sid: str, record: Mapping[str, Any]) -> None: ...

    def list_failures(self, limit: int = 100) -> list[dict[str, Any]]: ...


class FirestoreStore:
    """The conversation store on Firestore; the client is built on first use."""

    def __init__(
        self,
        client_factory: Callable[[], firestore.Client],
        conversations: str,
        failures: str,
    ) -> None:
        self._client_factory = client_factory
        self._client: firestore.Client | None = None
        self._lock = threading.Lock()
        self._conversations = conversations
        self._failures = failures
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

    def apply(self, conversation_id: str, updates: Updates, version: Any) -> Any:
        """Write ``updates`` only if the document is still at ``version``; return the new version."""
        doc = self._doc(conversation_id)
        try:
            if version is None:
                result = doc.create(nested(updates))
            else:
                fields = {k: firestore.DELETE_FIELD if v is REMOVE else v for k, v in updates.items()}
                result = doc.update(fields, option=self.client.write_option(last_update_time=version))
        except (gexc.Conflict, gexc.FailedPrecondition, gexc.NotFound) as exc:
            raise Conflict(str(exc)) from None
        finally:
            self.ops.add(writes=1)
        return result.update_time

    def record_failure(self, sid: str, record: Mapping[str, Any]) -> None:
        """Idempotent: the record is keyed by the message, so a retry rewrites it."""
        self.client.collection(self._failures).document(sid).set(dict(record))
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

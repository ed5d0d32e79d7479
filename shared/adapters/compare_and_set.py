"""The one compare-and-set helper every writer of a conversation goes through.

:meth:`CompareAndSetStore.update` reads the document (or starts from a
snapshot already in hand, so no read is added), calls a pure change on a
fresh typed copy of the conversation, and writes only what changed
(shared/adapters/conversation_document.py) against the version it read; a
new document is only created if absent. On a conflict it reads again and
calls the change again, a bounded number of times. It is an optimistic
transaction with no lock held across the model call or the Twilio call
(docs/decisions/0020-compare-and-set-helper.md). A store provides two
primitives, ``_read`` and ``_commit``: FirestoreStore in production, the
in-memory store of the unit tests (tests/fakes.py) with the same semantics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Callable, Generic, Mapping, Protocol, TypeVar

from shared.adapters.conversation_document import apply_field_updates, field_updates, from_document, to_document
from shared.domain.conversation import Conversation
from shared.domain.usage import Count

# How often a change is tried again on a conflict before giving up; each try is one read and one write.
MAX_CONFLICT_RETRIES = 20
R = TypeVar("R")


class Conflict(Exception):
    """Someone else changed the document since it was read; re-read and retry."""


@dataclass(frozen=True)
class Snapshot:
    """A conversation document as read (or as this process last wrote it), at ``version``.

    ``document`` is None when there is none; ``version`` is its update_time.
    """

    document: Mapping[str, Any] | None
    version: Any

    @cached_property
    def conversation(self) -> Conversation:
        """The typed view (shared; a change gets a fresh copy of its own)."""
        return from_document(self.document)


@dataclass(frozen=True)
class Saved(Generic[R]):
    """What :meth:`CompareAndSetStore.update` did: the change's result and the document after it."""

    result: R
    snapshot: Snapshot
    written: bool

    @property
    def conversation(self) -> Conversation:
        return self.snapshot.conversation


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


@dataclass(frozen=True)
class Write:
    """One commit: create the document, update fields of it, or delete it; plus dedupe markers and usage
    counts (shared/domain/usage.py's Count: one shard document's increments)."""

    create: Mapping[str, Any] | None = None
    updates: Mapping[str, Any] | None = None
    delete: bool = False
    markers: tuple[DedupeMarker, ...] = ()
    counts: tuple[Count, ...] = ()


@dataclass
class OpCounter:
    """Firestore document operations, counted where they happen (for benchmarks)."""

    reads: int = 0
    writes: int = 0
    markers: int = 0  # of the writes, the dedupe markers (the dedupe horizon's cost)
    counts: int = 0  # of the writes, the usage counters' shard increments (a budgeted business's cost)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, reads: int = 0, writes: int = 0, markers: int = 0, counts: int = 0) -> None:
        with self._lock:
            self.reads += reads
            self.writes += writes
            self.markers += markers
            self.counts += counts


class CompareAndSetStore:
    """Load and :meth:`update` on top of two primitives a store implements: ``_read`` and ``_commit``."""

    ops: OpCounter

    def _read(self, conversation_id: str) -> tuple[Mapping[str, Any] | None, Any]:
        raise NotImplementedError

    def _commit(self, conversation_id: str, write: Write, version: Any) -> Any:
        """Apply ``write`` only if the document is still at ``version``; the new version, or Conflict."""
        raise NotImplementedError

    def load(self, conversation_id: str) -> Snapshot:
        document, version = self._read(conversation_id)
        return Snapshot(document, version)

    def commit(self, conversation_id: str, start: Snapshot, after: Conversation) -> Snapshot:
        """Write what turns ``start`` into ``after``, against ``start``'s version; ``start`` itself when nothing changed."""
        markers = tuple(DedupeMarker(sid, conversation_id, until) for sid, until in after.new_markers.items())
        counts = tuple(after.new_counts)
        if after.erased:
            if start.document is None:
                return start
            self._commit(conversation_id, Write(delete=True), start.version)
            return Snapshot(None, None)
        document = to_document(after)
        if start.document is None:
            if not document and not markers:
                return start
            version = self._commit(conversation_id, Write(create=document, markers=markers, counts=counts), None)
            return Snapshot(document, version)
        updates = field_updates(start.document, document)
        if not updates and not markers:
            return start
        version = self._commit(conversation_id, Write(updates=updates, markers=markers, counts=counts), start.version)
        return Snapshot(apply_field_updates(start.document, updates), version)

    def update(
        self,
        conversation_id: str,
        change: Callable[[Conversation], R],
        *,
        start: Snapshot | None = None,
        what: str = "",
        after_commit: Callable[[], None] | None = None,
        tries: int = MAX_CONFLICT_RETRIES,
    ) -> Saved[R]:
        """Load (or start from ``start``), run ``change`` on a fresh copy, write what it changed, compare-and-set.

        On a conflict the document is read again and ``change`` runs again on
        what is there now, ``tries`` times in all; then Conflict.
        A change that changes nothing writes nothing. ``change`` may raise to
        stop (nothing is written) and returns what the caller needs to know;
        it must be pure apart from the conversation it is given, since it may
        run more than once. ``after_commit`` runs after a write and may raise
        Conflict, as a commit whose answer was lost does (a fault point).
        """
        snap = start if start is not None else self.load(conversation_id)
        for _ in range(tries):
            draft = from_document(snap.document)
            draft.exists = snap.document is not None
            result = change(draft)
            try:
                after = self.commit(conversation_id, snap, draft)
                if after is not snap and after_commit is not None:
                    after_commit()
            except Conflict:
                snap = self.load(conversation_id)
                continue
            return Saved(result, after, after is not snap)
        raise Conflict(f"conversation {conversation_id[:12]} kept changing" + (f" while {what}" if what else ""))


class ConversationStore(Protocol):
    ops: OpCounter

    def load(self, conversation_id: str) -> Snapshot: ...

    def update(
        self,
        conversation_id: str,
        change: Callable[[Conversation], R],
        *,
        start: Snapshot | None = None,
        what: str = "",
        after_commit: Callable[[], None] | None = None,
        tries: int = MAX_CONFLICT_RETRIES,
    ) -> Saved[R]: ...

    def seen(self, sid: str) -> bool: ...

    def due_conversations(self, now: datetime, limit: int) -> list[str]: ...

    def record_failure(self, sid: str, record: Mapping[str, Any]) -> None: ...

    def list_failures(self, limit: int = 100) -> list[dict[str, Any]]: ...

    def failure(self, sid: str) -> dict[str, Any] | None: ...

    def failures_of(self, conversation_id: str) -> list[str]: ...

    def failures_of_sender(self, masked_sender: str) -> list[str]: ...

    def conversations_of(self, user_id: str) -> dict[str, str]: ...

    def delete_failure(self, sid: str) -> None: ...

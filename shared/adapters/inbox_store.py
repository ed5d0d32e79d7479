"""Firestore, as the inbox reads it: a business's conversations, what changed, one conversation, the staff.

Every query is on one business (``business ==``), so a query can never return
another business's documents, whatever the caller asks; the handlers check
the business against the signed-in person's access before asking at all.
The composite indexes these queries need are declared in terraform/firestore.tf
(``google_firestore_index.inbox``) and compared with :data:`INDEXES` by a test:
the emulator answers without them, Firestore does not.

An open inbox polls :meth:`InboxReader.changed`: one query that returns only
the conversations written since the last poll (minus :data:`CHANGE_OVERLAP`,
for writers whose ``updatedAt`` was taken a moment before their commit), so a
poll with nothing new costs one read. Nobody polling costs nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from google.cloud import firestore

from shared.adapters.compare_and_set import OpCounter
from shared.adapters.conversation_document import from_document
from shared.adapters.lazy import Lazy
from shared.domain.conversation import Conversation
from shared.domain.staff import Business, InboxKeyError, notify_url, staff_list
from shared.log import mask_address

log = logging.getLogger(__name__)

# The composite indexes of the queries below: (field, direction) in index order.
INDEXES: dict[str, tuple[tuple[str, str], ...]] = {
    "recent": (("business", "ASCENDING"), ("updatedAt", "DESCENDING")),
    "paused": (("business", "ASCENDING"), ("pausedUntil", "ASCENDING")),
}
# Writers take ``updatedAt`` from their own clock just before they commit (each write is one
# load, compute, compare-and-set); a poll looks this far back, so a commit that lands a little
# after its timestamp, or on an instance whose clock is a little behind, is still seen.
CHANGE_OVERLAP = timedelta(seconds=5)
DIRECTORY_FIELDS = ["name", "staff", "notify_webhook"]


@dataclass(frozen=True)
class StoredConversation:
    id: str
    data: Mapping[str, Any]
    version: str

    @cached_property
    def conversation(self) -> Conversation:
        """The typed view of the document, read by the one document mapping."""
        return from_document(self.data)


def _stored(snap: Any) -> StoredConversation:
    version = snap.update_time.isoformat() if getattr(snap, "update_time", None) is not None else ""
    return StoredConversation(snap.id, snap.to_dict() or {}, version)


class InboxReader:
    """The inbox's reads; ``ops`` counts them like the pipeline's store does (benchmarks)."""

    def __init__(
        self,
        client_factory: Callable[[], firestore.Client],
        conversations: str,
        profiles: str,
        default_business: str,
        directory_ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = Lazy(client_factory)
        self._conversations = conversations
        self._profiles = profiles
        self._default_business = default_business
        self._ttl = directory_ttl_seconds
        self._clock = clock
        self._directory: tuple[float, tuple[Business, ...]] | None = None
        self.ops = OpCounter()

    @property
    def client(self) -> firestore.Client:
        return self._client.get()

    def _run(self, query: Any) -> list[StoredConversation]:
        found = [_stored(snap) for snap in query.stream()]
        self.ops.add(reads=max(1, len(found)))  # Firestore bills one read for a query that returns nothing
        return found

    def _of(self, business: str) -> Any:
        return self.client.collection(self._conversations).where(
            filter=firestore.FieldFilter("business", "==", business))

    def recent(self, business: str, limit: int) -> list[StoredConversation]:
        """The business's conversations written most recently (index ``recent``)."""
        return self._run(self._of(business).order_by("updatedAt", direction=firestore.Query.DESCENDING).limit(limit))

    def changed(self, business: str, since: datetime, limit: int) -> list[StoredConversation]:
        """The business's conversations written since ``since`` (index ``recent``, the same one)."""
        query = (
            self._of(business)
            .where(filter=firestore.FieldFilter("updatedAt", ">", since - CHANGE_OVERLAP))
            .order_by("updatedAt", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return self._run(query)

    def paused(self, business: str, now: datetime, limit: int) -> list[StoredConversation]:
        """The business's conversations the bot is paused for, however long ago they were written (index ``paused``)."""
        query = self._of(business).where(filter=firestore.FieldFilter("pausedUntil", ">", now)).limit(limit)
        return self._run(query)

    def get(self, conversation_id: str) -> StoredConversation | None:
        snap = self.client.collection(self._conversations).document(conversation_id).get()
        self.ops.add(reads=1)
        return _stored(snap) if snap.exists else None

    def directory(self, fresh: bool = False) -> tuple[Business, ...]:
        """Every business with its name and staff, from the stored profiles; kept ``directory_ttl_seconds``
        unless ``fresh`` (a handoff's notice must not miss a webhook added since the last read).

        One read per profile per period while someone uses the inbox. A
        profile whose inbox keys do not validate (edited by hand) keeps its
        name but lists nobody, and says so in the log.
        """
        now = self._clock()
        cached = self._directory
        if cached is not None and now - cached[0] < self._ttl and not fresh:
            return cached[1]
        found: dict[str, Business] = {}
        snaps = list(self.client.collection(self._profiles).select(DIRECTORY_FIELDS).stream())
        self.ops.add(reads=max(1, len(snaps)))
        for snap in snaps:
            raw = snap.to_dict() or {}
            name = raw.get("name") if isinstance(raw.get("name"), str) else ""
            try:
                staff = staff_list(raw.get("staff", []))
                webhook = notify_url(raw.get("notify_webhook", ""))
            except InboxKeyError as exc:
                log.error("stored profile has unusable inbox keys; nobody may open its inbox",
                          extra={"event": "profile_invalid", "business": mask_address(snap.id), "reason": str(exc)})
                staff, webhook = (), ""
            found[snap.id] = Business(snap.id, name, staff, webhook)
        if self._default_business and self._default_business not in found:
            found[self._default_business] = Business(self._default_business, "")
        businesses = tuple(found.values())
        self._directory = (now, businesses)
        return businesses

"""Which Content resource holds which choices: created once, reused by the hash of what it holds.

A Firestore document per distinct content (collection ``CONTENT_COLLECTION``,
``content_templates``; id: :func:`shared.domain.choices.content_hash`) keeps
the ContentSid Twilio gave it. A process also keeps what it learnt in memory,
so a menu shown a thousand times costs one Content API call in the
deployment's life, one Firestore read per cold process, and nothing after.

Two processes (not two threads of one) that meet the same new content at once may both create a
resource; the document is written with ``create`` (fails if it exists), so the
first one written is the one everybody uses from then on and the other stays
unused in the account (harmless: the Content API holds any number). A crash
between Twilio's answer and the write leaves the same kind of unused resource.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from shared.adapters.lazy import Lazy
from shared.config import Settings
from shared.domain.choices import CONTENT_LANGUAGE, content_hash, friendly_name

log = logging.getLogger(__name__)
# A process keeps at most this many hashes in memory (a few bytes each).
MAX_CACHED = 4096
_CREATING: dict[str, threading.Lock] = {}
_CREATING_LOCK = threading.Lock()


class ContentApi(Protocol):
    def create(self, types: Mapping[str, Any], friendly_name: str, language: str = CONTENT_LANGUAGE) -> str: ...


class ContentRecords(Protocol):
    def get(self, digest: str) -> str | None: ...

    def put(self, digest: str, sid: str, kind: str, now: datetime) -> str: ...


@dataclass
class RecordCounter:
    """Firestore operations of the records, counted where they happen (for benchmarks)."""

    reads: int = 0
    writes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, reads: int = 0, writes: int = 0) -> None:
        with self._lock:
            self.reads += reads
            self.writes += writes


class FirestoreContentRecords:
    """``content_templates/{hash}`` → ``{contentSid, kind, createdAt}``."""

    def __init__(self, client_factory: Callable[[], firestore.Client], collection: str) -> None:
        self._client = Lazy(client_factory)
        self._collection = collection
        self.ops = RecordCounter()

    @property
    def client(self) -> firestore.Client:
        return self._client.get()

    def get(self, digest: str) -> str | None:
        snap = self.client.collection(self._collection).document(digest).get()
        self.ops.add(reads=1)
        sid = (snap.to_dict() or {}).get("contentSid") if snap.exists else None
        return str(sid) if sid else None

    def put(self, digest: str, sid: str, kind: str, now: datetime) -> str:
        """Record ``sid`` for ``digest`` unless one is recorded already; the SID everybody uses."""
        ref = self.client.collection(self._collection).document(digest)
        try:
            ref.create({"contentSid": sid, "kind": kind, "createdAt": now})
            self.ops.add(writes=1)
            return sid
        except AlreadyExists:
            self.ops.add(writes=1)
            return self.get(digest) or sid


class MemoryContentRecords:
    """The records in memory: unit tests, and a process with no Firestore."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.ops = RecordCounter()

    def get(self, digest: str) -> str | None:
        self.ops.add(reads=1)
        return self.records.get(digest)

    def put(self, digest: str, sid: str, kind: str, now: datetime) -> str:
        self.ops.add(writes=1)
        return self.records.setdefault(digest, sid)


class ContentTemplates:
    """The ContentSid for given ``types``: from memory, else the records, else created once through the API."""

    def __init__(self, api: ContentApi, records: ContentRecords, clock: Callable[[], datetime]) -> None:
        self.api = api
        self.records = records
        self._clock = clock
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def usage(self) -> dict[str, int]:
        """Content API creations and the records' Firestore operations so far (benchmarks)."""
        ops = getattr(self.records, "ops", None)
        return {"twilio_content_creations": int(getattr(self.api, "calls", 0)),
                "firestore_content_reads": int(ops.reads) if ops is not None else 0,
                "firestore_content_writes": int(ops.writes) if ops is not None else 0}

    def sid_for(self, types: Mapping[str, Any]) -> str:
        """Raises what the API or the records raise; the caller falls back to numbered text."""
        digest = content_hash(types)
        with self._lock:
            known = self._known.get(digest)
        with _CREATING_LOCK:
            if len(_CREATING) >= MAX_CACHED:
                _CREATING.clear()
            creating = _CREATING.setdefault(digest, threading.Lock())
        if known:
            return known
        # One creation per content at a time in the process (its threads, and any second set of
        # deps a cold start built concurrently, wait and reuse it).
        with creating:
            with self._lock:
                known = self._known.get(digest)
            if known:
                return known
            sid = self.records.get(digest)
            if sid is None:
                kind = next(iter(types), "")
                created = self.api.create(types, friendly_name(digest))
                sid = self.records.put(digest, created, kind, self._clock())
                log.info("content resource created", extra={"event": "content_created", "content_sid": sid,
                                                             "kind": kind, "digest": digest[:16]})
            with self._lock:
                if len(self._known) >= MAX_CACHED:
                    self._known.clear()
                self._known[digest] = sid
        return sid


def content_templates(settings: Settings, auth_token: Callable[[], str],
                      firestore_client: Callable[[], firestore.Client], clock: Callable[[], datetime]) -> ContentTemplates:
    """The deployment's content templates: Twilio's Content API, records in Firestore (the store's client)."""
    from shared.adapters.twilio_content import TwilioContentApi

    s = settings
    api = TwilioContentApi(s.twilio_account_sid, auth_token, s.twilio_content_base_url or s.twilio_api_base_url,
                           s.twilio_timeout_seconds)
    return ContentTemplates(api, FirestoreContentRecords(firestore_client, s.content_collection), clock)

"""Business profiles in Firestore (one document per WhatsApp address), cached in the process.

Ops change a prompt or a keyword rule without a redeploy: ``make admin
ARGS="profiles-apply FILE"`` validates the file and writes the documents; every
processor instance reads a business's document at most once per
``PROFILE_CACHE_SECONDS`` (60 s), so a change takes effect within a minute and
a message costs no Firestore read for it on the common path
(docs/decisions/0012-business-controls.md).

A document that fails validation (edited by hand, or by an older version) is
not used: the business gets the defaults and an error is logged, rather than
every one of its messages failing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol

from shared.adapters.lazy import Lazy
from shared.config import Settings
from shared.domain.knowledge import knowledge_set_from_stored
from shared.domain.profiles import BusinessProfile, ProfileError, profile_from_mapping
from shared.domain.send_rate import valid_queue_id
from shared.log import mask_address

log = logging.getLogger(__name__)

SEND_QUEUE = "sendQueue"


class ProfileSource(Protocol):
    def get(self, address: str) -> BusinessProfile: ...

    def known(self, address: str) -> bool:
        """Whether ``address`` has a profile of its own: a number of this deployment."""
        ...


def defaults_from_settings(settings: Settings) -> BusinessProfile:
    """The profile of a business nobody configured: the deployment's settings, as before profiles."""
    return BusinessProfile(
        system_prompt=settings.system_prompt,
        model=settings.openai_model,
        fallback_reply=settings.fallback_reply,
        rate_limit_messages=settings.rate_limit_messages,
        rate_limit_window_seconds=settings.rate_limit_window_seconds,
        handoff_pause_seconds=settings.handoff_pause_seconds,
    )


class StaticProfiles:
    """Profiles held in memory (unit tests, and the defaults when no store is configured)."""

    def __init__(self, defaults: BusinessProfile, profiles: Mapping[str, BusinessProfile] | None = None) -> None:
        self.defaults = defaults
        self.profiles = dict(profiles or {})

    def get(self, address: str) -> BusinessProfile:
        return self.profiles.get(address) or _with_address(self.defaults, address)

    def known(self, address: str) -> bool:
        return address in self.profiles


def _with_address(profile: BusinessProfile, address: str) -> BusinessProfile:
    return replace(profile, address=address)


@dataclass
class _Cached:
    profile: BusinessProfile
    fetched: float
    stored: bool = False


class FirestoreProfiles:
    """``business_profiles/{address}`` documents, each kept ``ttl_seconds`` in this process.

    ``raw`` fields are the profile's keys as written in the profiles file. A
    read that fails keeps serving the last profile known, if any.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        collection: str,
        defaults: BusinessProfile,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = Lazy(client_factory)
        self._collection = collection
        self.defaults = defaults
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self.reads = 0

    @property
    def client(self) -> Any:
        return self._client.get()

    def get(self, address: str) -> BusinessProfile:
        now = self._clock()
        cached = self._cache.get(address)
        if cached is not None and now - cached.fetched < self._ttl:
            return cached.profile
        try:
            snap = self.client.collection(self._collection).document(address or "-").get()
            self.reads += 1
        except Exception:
            if cached is not None:
                log.warning("profile read failed, keeping the cached one",
                            extra={"event": "profile_stale", "business": mask_address(address)}, exc_info=True)
                return cached.profile
            raise
        data = snap.to_dict() if snap.exists else None
        profile = self._parse(address, data)
        self._cache[address] = _Cached(profile, now, stored=bool(data))
        return profile

    def known(self, address: str) -> bool:
        """A stored profile document exists (even one that fails validation): cached like :meth:`get`."""
        self.get(address)
        cached = self._cache.get(address)
        return cached is not None and cached.stored

    def _parse(self, address: str, data: Mapping[str, Any] | None) -> BusinessProfile:
        if not data:
            return _with_address(self.defaults, address)
        raw = {k: v for k, v in data.items() if k not in STORED_ONLY}
        try:
            profile = profile_from_mapping(address, raw, self.defaults)
            return with_stored_queue(with_stored_knowledge(profile, data), data)
        except ProfileError as exc:
            log.error("stored business profile is invalid; using the defaults",
                      extra={"event": "profile_invalid", "business": mask_address(address), "reason": str(exc)[:300]})
            return _with_address(self.defaults, address)

    def put(self, address: str, raw: Mapping[str, Any], now: datetime) -> None:
        """Write one validated profile (the caller validated the whole file first)."""
        self.client.collection(self._collection).document(address).set({**dict(raw), "updatedAt": now})

    def stored(self) -> dict[str, dict[str, Any]]:
        """Every stored profile document, by address (ops: show and apply)."""
        return {snap.id: snap.to_dict() or {} for snap in self.client.collection(self._collection).stream()}

    def delete(self, address: str) -> None:
        self.client.collection(self._collection).document(address).delete()


# Fields the store adds to a profile document that are no profile key; knowledgeSet: what profiles-apply
# stored of the business's documents (shared/domain/knowledge.py); sendQueue: the id of the number's own
# send queue, written only once that queue exists (shared/ops/send_queues.py).
STORED_ONLY = frozenset({"updatedAt", "knowledgeSet", SEND_QUEUE})


def with_stored_knowledge(profile: BusinessProfile, data: Mapping[str, Any]) -> BusinessProfile:
    """The profile with its stored knowledge set; one that is not of the set's shape is not used, and logged."""
    if "knowledgeSet" not in data:
        return profile
    stored = knowledge_set_from_stored(data["knowledgeSet"])
    if stored is None:
        log.error("stored knowledge set is invalid; the business answers without its documents",
                  extra={"event": "knowledge_invalid", "business": mask_address(profile.address)})
    return replace(profile, knowledge_set=stored)


def with_stored_queue(profile: BusinessProfile, data: Mapping[str, Any]) -> BusinessProfile:
    """The profile with its stored send queue; a value that is no queue id is not used (the shared queue is)."""
    queue = data.get(SEND_QUEUE, "")
    if not queue:
        return profile
    if not valid_queue_id(queue):
        log.error("stored send queue is invalid; the business sends through the shared queue",
                  extra={"event": "send_queue_invalid", "business": mask_address(profile.address)})
        return profile
    return replace(profile, send_queue=queue)

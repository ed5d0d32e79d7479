"""The knowledge chunks in Firestore: written by version, searched with a vector query.

One document per chunk in ``KNOWLEDGE_COLLECTION``, id
``{business key}-{version}-{position}``. Every chunk carries ``corpus`` =
``{business}#{version}``, and every search filters on it: the one equality
prefilter of the nearest-neighbour query, which the composite vector index
of terraform/firestore.tf (``corpus``, then ``embedding``) serves. So a
search can only ever return chunks of the business the message was written
to, and of the version its profile names: a version is written whole before
the profile is switched to it (shared/ops/knowledge_apply.py), so a reader
never sees half of one.

:data:`VECTOR_QUERY` is the query's shape, which tests/infra checks against
the index Terraform declares: the emulator answers vector queries without
any index, Firestore refuses them without the right one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Sequence

from google.api_core.retry import Retry
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.base_vector_query import DistanceMeasure
from google.cloud.firestore_v1.vector import Vector

from shared.adapters.lazy import Lazy
from shared.domain.knowledge_chunks import Chunk
from shared.domain.knowledge_prompt import Retrieved

# Firestore: at most 500 writes a commit and 10 MiB a request; a chunk document is about 14 KiB at 1536 dimensions.
WRITE_BATCH = 100
DISTANCE_FIELD = "distance"
_RESULT_FIELDS = ("chunk", "source", "title", "section", "text", DISTANCE_FIELD)


@dataclass(frozen=True)
class VectorQueryShape:
    """What every knowledge search asks of Firestore, so the index can be checked against it."""

    filter_fields: tuple[str, ...]
    vector_field: str
    distance_measure: str
    # Large fields nothing filters or sorts on: exempt from single-field indexes (terraform/firestore.tf).
    unindexed_fields: tuple[str, ...]


VECTOR_QUERY = VectorQueryShape(filter_fields=("corpus",), vector_field="embedding",
                                distance_measure=DistanceMeasure.COSINE.name, unindexed_fields=("text", "embedding"))


def corpus_of(business: str, version: str) -> str:
    return f"{business}#{version}"


def business_key(business: str) -> str:
    """A short, id-safe name of the business for document ids (the address has '+' and ':')."""
    return hashlib.sha256(business.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EmbeddedChunk:
    chunk: Chunk
    vector: Sequence[float]


class FirestoreKnowledge:
    """Chunks of every business in one collection.

    ``reads`` counts as Firestore bills: one per document returned, at least one per query.
    """

    def __init__(self, client_factory: Callable[[], Any], collection: str) -> None:
        self._client = Lazy(client_factory)
        self._collection = collection
        self.reads = 0
        self.writes = 0

    @property
    def client(self) -> Any:
        return self._client.get()

    def _col(self) -> Any:
        return self.client.collection(self._collection)

    def _count(self, n: int) -> None:
        self.reads += max(1, n)

    def nearest(self, business: str, version: str, vector: Sequence[float], limit: int,
                max_distance: float, timeout: float | None = None) -> list[Retrieved]:
        """The ``limit`` chunks of this business's version nearest ``vector``, none farther than ``max_distance``.

        ``timeout`` bounds the query, its retries included (what is left of the answer's budget).
        """
        query = (
            self._col()
            .where(filter=FieldFilter(VECTOR_QUERY.filter_fields[0], "==", corpus_of(business, version)))
            .select(list(_RESULT_FIELDS))
            .find_nearest(
                VECTOR_QUERY.vector_field, Vector(list(vector)), limit=limit,
                distance_measure=DistanceMeasure[VECTOR_QUERY.distance_measure],
                distance_result_field=DISTANCE_FIELD, distance_threshold=max_distance,
            )
        )
        found = []
        bounded = {"timeout": timeout, "retry": Retry(timeout=timeout)} if timeout is not None else {}
        for snap in query.stream(**bounded):
            data = snap.to_dict() or {}
            distance = data.get(DISTANCE_FIELD)
            if not isinstance(distance, (int, float)) or not math.isfinite(distance) or distance > max_distance:
                continue
            found.append(Retrieved(str(data.get("chunk", snap.id)), str(data.get("source", "")),
                                   str(data.get("title", "")), str(data.get("section", "")),
                                   str(data.get("text", "")), float(distance)))
        self._count(len(found))
        return sorted(found, key=lambda r: r.distance)

    def vectors(self, business: str, version: str) -> dict[str, list[float]]:
        """The stored vector of each chunk hash of a version: unchanged chunks are not embedded again."""
        out: dict[str, list[float]] = {}
        snaps = list(self._col().where(filter=FieldFilter("corpus", "==", corpus_of(business, version)))
                     .select(["sha256", VECTOR_QUERY.vector_field]).stream())
        self._count(len(snaps))
        for snap in snaps:
            data = snap.to_dict() or {}
            vector = data.get(VECTOR_QUERY.vector_field)
            if data.get("sha256") and vector is not None:
                out[str(data["sha256"])] = [float(x) for x in vector]
        return out

    def stored_positions(self, business: str, version: str) -> set[int]:
        """Which positions of a version are written already (an interrupted apply goes on from there)."""
        snaps = list(self._col().where(filter=FieldFilter("corpus", "==", corpus_of(business, version)))
                     .select(["position"]).stream())
        self._count(len(snaps))
        return {int((s.to_dict() or {}).get("position", -1)) for s in snaps}

    def versions(self, business: str) -> dict[str, int]:
        """Every version of a business that has chunks, with how many."""
        snaps = list(self._col().where(filter=FieldFilter("business", "==", business)).select(["version"]).stream())
        self._count(len(snaps))
        counts: dict[str, int] = {}
        for snap in snaps:
            version = str((snap.to_dict() or {}).get("version", ""))
            counts[version] = counts.get(version, 0) + 1
        return counts

    def write(self, business: str, version: str, items: Iterable[tuple[int, EmbeddedChunk]], now: datetime) -> int:
        """Write chunks of a version at their positions (set, so a repeat writes the same); returns how many."""
        written = 0
        batch = self.client.batch()
        pending = 0
        for position, item in items:
            chunk = item.chunk
            batch.set(self._col().document(f"{business_key(business)}-{version}-{position:05d}"), {
                "corpus": corpus_of(business, version), "business": business, "version": version,
                "position": position, "chunk": chunk.id, "source": chunk.source, "title": chunk.title,
                "section": chunk.section, "text": chunk.text, "sha256": chunk.sha256,
                VECTOR_QUERY.vector_field: Vector([float(x) for x in item.vector]), "createdAt": now,
            })
            pending += 1
            if pending == WRITE_BATCH:
                batch.commit()
                written += pending
                batch, pending = self.client.batch(), 0
        if pending:
            batch.commit()
            written += pending
        self.writes += written
        return written

    def delete_version(self, business: str, version: str) -> int:
        """Delete every chunk of one version of a business; returns how many."""
        snaps = list(self._col().where(filter=FieldFilter("corpus", "==", corpus_of(business, version)))
                     .select([]).stream())
        self._count(len(snaps))
        for start in range(0, len(snaps), 400):
            batch = self.client.batch()
            for snap in snaps[start:start + 400]:
                batch.delete(snap.reference)
            batch.commit()
        self.writes += len(snaps)
        return len(snaps)

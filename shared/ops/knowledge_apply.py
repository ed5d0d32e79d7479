"""profiles-apply for knowledge: write a new version of a business's chunks, switch to it, then clean up.

Per business, in this order (docs/decisions/0015-knowledge-base.md):

1. **Prepare.** The version is a hash of the embedding model, the dimensions
   and every chunk's content in order: the same documents give the same
   version. Its chunks are written under it (ids by position, so a repeat
   writes the same documents); only chunks whose content is new are embedded,
   the rest take the vector the live version already has. Chunks written by
   an interrupted run are kept, not written again.
2. **Switch.** The profile document is written with its knowledge set (the
   version, its chunk count and documents). That one write is the switch:
   a reader finds either the old version whole or the new one whole.
3. **Clean up.** Versions other than the new one and the one it replaced are
   deleted; the replaced one stays until the next apply, because a processor
   may still hold the old profile for ``PROFILE_CACHE_SECONDS``. A version
   that stopped being live less than that ago is waited for, not deleted
   under a reader.

Applying the same file again embeds nothing and writes only the profile
documents; an interrupted apply is finished by running it again.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Sequence

from shared.adapters.knowledge_store import EmbeddedChunk, FirestoreKnowledge
from shared.adapters.openai_embeddings import Embedder, EmbeddingUnavailable
from shared.config import Settings
from shared.domain.knowledge import KnowledgeSet, StoredDocument, knowledge_set_from_stored
from shared.domain.profiles import ProfileError
from shared.ops.knowledge_files import Document

# Embedding a whole knowledge set at apply time: generous, but bounded like every outside call.
APPLY_EMBEDDING_BUDGET_SECONDS = 600.0


@dataclass(frozen=True)
class Prepared:
    """A business's version, written (not yet live), and what it took."""

    knowledge_set: KnowledgeSet
    embedded: int
    reused: int
    written: int
    changes: tuple[str, ...]


def version_of(documents: Sequence[Document], model: str, dimensions: int) -> str:
    digest = hashlib.sha256(f"{model}\x1f{dimensions}".encode())
    for document in documents:
        for chunk in document.chunks:
            digest.update(chunk.sha256.encode())
    return digest.hexdigest()[:20]


def _chunks(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


def _changes(documents: Sequence[Document], live: KnowledgeSet | None) -> tuple[str, ...]:
    before = {d.source: d.sha256 for d in (live.documents if live else ())}
    now = {d.source: d.sha256 for d in documents}
    out = []
    for document in documents:
        if document.source not in before:
            out.append(f"{document.source} added ({_chunks(len(document.chunks))})")
        elif before[document.source] != document.sha256:
            out.append(f"{document.source} changed ({_chunks(len(document.chunks))})")
    out += [f"{source} removed" for source in before if source not in now]
    return tuple(out)


def prepare(store: FirestoreKnowledge, embedder: Embedder, business: str, documents: Sequence[Document],
            live: KnowledgeSet | None, now: datetime) -> Prepared:
    """Write the version ``documents`` make, embedding only what the live version does not have."""
    model, dimensions = embedder.model, embedder.dimensions
    chunks = [chunk for document in documents for chunk in document.chunks]
    stored_docs = tuple(StoredDocument(d.source, d.title, len(d.chunks), d.sha256) for d in documents)
    changes = _changes(documents, live)
    if not chunks:
        previous = live.version if live and live.version else (live.previous if live else "")
        return Prepared(KnowledgeSet("", model, dimensions, 0, (), previous, now), 0, 0, 0, changes)
    version = version_of(documents, model, dimensions)
    if live is not None and live.version == version:
        return Prepared(live, 0, 0, 0, changes)
    written_already = store.stored_positions(business, version)
    missing = [(n, chunk) for n, chunk in enumerate(chunks) if n not in written_already]
    reuse: dict[str, list[float]] = {}
    if missing and live is not None and live.searchable and (live.model, live.dimensions) == (model, dimensions):
        reuse = store.vectors(business, live.version)
    fresh = [chunk for _, chunk in missing if chunk.sha256 not in reuse]
    # One vector per distinct content: a chunk repeated in two documents is embedded once.
    distinct = list({chunk.sha256: chunk for chunk in fresh}.values())
    if distinct:
        try:
            vectors = embedder.embed([c.embedding_input for c in distinct], APPLY_EMBEDDING_BUDGET_SECONDS)
        except EmbeddingUnavailable as exc:
            raise ProfileError(f"business {business!r}: its knowledge could not be embedded, nothing was "
                               f"switched: {exc}") from None
        reuse.update({chunk.sha256: vector for chunk, vector in zip(distinct, vectors)})
    written = store.write(business, version,
                          ((n, EmbeddedChunk(chunk, reuse[chunk.sha256])) for n, chunk in missing), now)
    previous = live.version if live and live.version else ""
    knowledge_set = KnowledgeSet(version, model, dimensions, len(chunks), stored_docs, previous, now)
    return Prepared(knowledge_set, len(distinct), len(missing) - len(fresh), written, changes)


def clean_up(store: FirestoreKnowledge, business: str, live: KnowledgeSet, replaced: KnowledgeSet | None,
             cache_seconds: float, now: Callable[[], datetime], sleep: Callable[[float], None] = time.sleep) -> int:
    """Delete the versions no reader can hold any more; returns how many chunks went."""
    keep = {live.version, live.previous}
    stale = [v for v in store.versions(business) if v not in keep]
    if not stale:
        return 0
    # The version before ``replaced`` stopped being live when ``replaced`` was switched on.
    if replaced is not None and replaced.switched_at is not None:
        wait = (replaced.switched_at + timedelta(seconds=cache_seconds) - now()).total_seconds()
        if wait > 0:
            sleep(min(wait, cache_seconds))
    return sum(store.delete_version(business, version) for version in stale)


def apply_with_knowledge(
    put: Callable[[str, Mapping[str, Any], datetime], None],
    stored: Mapping[str, Mapping[str, Any]],
    raw: Mapping[str, Mapping[str, Any]],
    documents: Mapping[str, Sequence[Document]],
    store: Callable[[], FirestoreKnowledge],
    embedder: Callable[[], Embedder],
    settings: Settings,
    now: Callable[[], datetime],
) -> list[str]:
    """Every profile of a validated file with its knowledge: prepare, switch, clean up; one report line each.

    A business that has no knowledge and never had any is written exactly as
    before knowledge existed, and costs no read of the chunks.
    """
    lines = []
    for address, profile in raw.items():
        live = knowledge_set_from_stored(stored.get(address, {}).get("knowledgeSet"))
        docs = documents.get(address, ())
        if not docs and live is None:
            put(address, profile, now())
            lines.append(f"applied {address}  {profile.get('name', '')}")
            continue
        prepared = prepare(store(), embedder(), address, docs, live, now())
        put(address, {**profile, "knowledgeSet": prepared.knowledge_set.to_stored()}, now())
        deleted = clean_up(store(), address, prepared.knowledge_set, live, settings.profile_cache_seconds, now)
        lines.append(f"applied {address}  {profile.get('name', '')}")
        lines.append("  " + knowledge_report(prepared, deleted))
    return lines


def knowledge_report(prepared: Prepared, deleted: int) -> str:
    ks = prepared.knowledge_set
    if not ks.version:
        head = "knowledge: none" + (f" ({'; '.join(prepared.changes)})" if prepared.changes else "")
    elif not (prepared.written or prepared.changes):
        head = f"knowledge unchanged: version {ks.version[:12]}, {_chunks(ks.chunks)}"
    else:
        what = "; ".join(prepared.changes) or "re-embedded (model or dimensions changed)"
        head = (f"knowledge version {ks.version[:12]} live: {what}; {_chunks(ks.chunks)}, {prepared.embedded} "
                f"embedded, {prepared.reused} reused")
    return head + (f"; {deleted} old {_chunks(deleted).split(' ', 1)[1]} deleted" if deleted else "")


def build_embedder(settings: Settings, openai_api_key: Callable[[], str],
                   refresh_key: Callable[[], bool] = lambda: False) -> Embedder:
    return Embedder.from_settings(settings, openai_api_key, refresh_key)


def lazy_knowledge(settings: Settings, client: Callable[[], Any], openai_api_key: Callable[[], str],
                   refresh_key: Callable[[], bool] = lambda: False
                   ) -> tuple[Callable[[], FirestoreKnowledge], Callable[[], Embedder]]:
    """The chunk store and the embedder, each built on first use: an apply without knowledge builds neither."""
    store = functools.cache(lambda: FirestoreKnowledge(client, settings.knowledge_collection))
    embedder = functools.cache(lambda: build_embedder(settings, openai_api_key, refresh_key))
    return store, embedder

"""Applying a 100-page knowledge set: how long profiles-apply takes, against the floor of writing its chunks.

``python -m bench.knowledge_apply [--pages N]`` starts its own Firestore
emulator and the offline embeddings (devstack/openai_stub.py), generates a
business's documents of N pages (about 3,000 characters each, Markdown with
headings, paragraphs and a price table, deterministic), and measures:

* the first apply: read, chunk, embed, write the version, switch the profile;
* applying the same files again (nothing embedded, no chunk written);
* applying after one price in one page was edited (only that chunk embedded,
  the version written whole);
* the floor: the same number of chunk documents, same size and vectors,
  written in the same batches by the same client, with no chunking, no
  embedding and no profile.

The ratio of the first apply to the floor is what the knowledge pipeline
adds to the writes it cannot avoid; the offline embeddings answer in
microseconds, so a real model's embedding time (about 100-300 ms a batch of
64 with OpenAI) comes on top and is printed as an estimate, not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DIMENSIONS = 1536
WORDS = ("bread sourdough rye oven flour crust crumb butter croissant pastry cake order delivery pickup price "
         "euro hours holiday allergen gluten milk egg nut sesame receipt refund return policy shop counter "
         "weekend morning evening seasonal recipe baker starter loaf slice box gift card payment cash").split()


def page(n: int, rng: random.Random) -> str:
    """One page: a heading, paragraphs and a small price table, about 3,000 characters."""
    def sentence() -> str:
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 16))]
        return " ".join(words).capitalize() + "."

    parts = [f"# Page {n}: {rng.choice(WORDS)} and {rng.choice(WORDS)}", ""]
    for section in range(3):
        parts += [f"## Section {n}.{section + 1}", ""]
        for _ in range(2):
            parts += [" ".join(sentence() for _ in range(rng.randint(4, 6))), ""]
    parts += ["| item | price |", "|---|---|"]
    parts += [f"| {rng.choice(WORDS)} {k} | {rng.randint(1, 40)}.{rng.randint(0, 9)}0 € |" for k in range(6)]
    return "\n".join(parts) + "\n"


def write_pages(folder: Path, pages: int, per_file: int = 10) -> list[str]:
    rng = random.Random(19)
    names = []
    for start in range(0, pages, per_file):
        name = f"catalogue-{start // per_file + 1:02d}.md"
        (folder / name).write_text("\n".join(page(n + 1, rng) for n in range(start, min(pages, start + per_file))))
        names.append(name)
    return names


def measure(pages: int) -> dict[str, Any]:
    from google.cloud import firestore
    from google.cloud.firestore_v1.vector import Vector

    from devstack.emulators import FirestoreEmulator, start_all, stop_all
    from devstack.openai_stub import OpenAIStub
    from shared.adapters.knowledge_store import FirestoreKnowledge
    from shared.adapters.profile_store import FirestoreProfiles
    from shared.config import Settings
    from shared.domain.knowledge import KnowledgeSource
    from shared.domain.profiles import BusinessProfile
    from shared.ops.knowledge_apply import apply_with_knowledge, build_embedder
    from shared.ops.knowledge_files import read_knowledge

    business = "whatsapp:+14155238886"
    emulator = FirestoreEmulator("bench-knowledge")
    stub = OpenAIStub().start()
    folder = Path(tempfile.mkdtemp(prefix="knowledge-bench-"))
    try:
        start_all([emulator], timeout=120)
        os.environ.update(emulator.env())
        client = firestore.Client(project="bench-knowledge")
        names = write_pages(folder, pages)
        settings = Settings(openai_base_url=stub.base_url, openai_embedding_dimensions=DIMENSIONS,
                            profile_cache_seconds=0, knowledge_collection="chunks", profiles_collection="profiles")
        store = FirestoreKnowledge(lambda: client, settings.knowledge_collection)
        embedder = build_embedder(settings, lambda: "offline-model")
        profiles = FirestoreProfiles(lambda: client, settings.profiles_collection, BusinessProfile(), 0)
        raw = {business: {"name": "Bench bakery", "knowledge": names}}
        profile = {business: BusinessProfile(address=business, knowledge=tuple(KnowledgeSource(n) for n in names))}
        now = lambda: datetime.now(timezone.utc)  # noqa: E731

        def apply() -> tuple[float, int, int]:
            requests, writes = len(stub.embedding_requests), store.writes
            started = time.perf_counter()
            documents = read_knowledge(profile, folder, settings)
            apply_with_knowledge(profiles.put, profiles.stored(), raw, documents, lambda: store, lambda: embedder,
                                 settings, now)
            return time.perf_counter() - started, len(stub.embedding_requests) - requests, store.writes - writes

        first, first_requests, first_writes = apply()
        chunks = profiles.get(business).knowledge_set.chunks
        again, again_requests, again_writes = apply()
        edited_file = folder / names[0]
        # A price in one table changes: that section's chunk is embedded again, nothing else.
        edited_file.write_text(edited_file.read_text().replace(" € |", " € (new price) |", 1))
        edited, edited_requests, edited_writes = apply()
        embedded_after_edit = sum(len(r["inputs"]) for r in stub.embedding_requests[-edited_requests:]) \
            if edited_requests else 0

        started = time.perf_counter()
        collection = client.collection(f"floor-{uuid.uuid4().hex[:6]}")
        vector = Vector([0.01] * DIMENSIONS)
        text = "x" * settings.knowledge_chunk_chars
        for batch_start in range(0, chunks, 100):
            batch = client.batch()
            for n in range(batch_start, min(chunks, batch_start + 100)):
                batch.set(collection.document(f"c{n:05d}"), {"corpus": "b#v", "text": text, "embedding": vector})
            batch.commit()
        floor = time.perf_counter() - started
        client.close()
        return {
            "pages": pages, "characters": sum((folder / n).stat().st_size for n in names), "chunks": chunks,
            "dimensions": DIMENSIONS,
            "first_apply_seconds": first, "first_embedding_requests": first_requests, "first_writes": first_writes,
            "again_seconds": again, "again_embedding_requests": again_requests, "again_chunk_writes": again_writes,
            "edited_seconds": edited, "edited_embedding_requests": edited_requests,
            "edited_chunks_embedded": embedded_after_edit, "edited_chunk_writes": edited_writes,
            "floor_seconds": floor, "ratio": first / floor if floor else None,
        }
    finally:
        stub.stop()
        stop_all([emulator])


def report_rows(figure: dict[str, Any]) -> list[list[str] | str]:
    """Figure 13 of ``make bench``: apply time of a 100-page knowledge set, against writing its chunks."""
    from bench.report import note_row

    return [
        f"13. knowledge apply: {figure['pages']} pages ({figure['characters'] // 1000} kB of Markdown), "
        f"{figure['chunks']} chunks of {figure['dimensions']} dimensions, offline embeddings",
        note_row("  first apply", f"{figure['first_apply_seconds']:.2f} s ({figure['first_embedding_requests']} "
                                  f"embedding requests, {figure['first_writes']} chunk writes), "
                                  f"{figure['ratio']:.2f}x the floor"),
        note_row("  the same files again", f"{figure['again_seconds']:.2f} s ({figure['again_embedding_requests']} "
                                           f"embedding requests, {figure['again_chunk_writes']} chunk writes)"),
        note_row("  one price edited", f"{figure['edited_seconds']:.2f} s ({figure['edited_chunks_embedded']} of "
                                       f"{figure['chunks']} chunks embedded, {figure['edited_chunk_writes']} chunk "
                                       "writes: a version is written whole)"),
        note_row("  floor: the chunks written, nothing else", f"{figure['floor_seconds']:.2f} s"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=100)
    args = parser.parse_args(argv)
    figure = measure(args.pages)
    print(
        f"knowledge apply, {figure['pages']} pages ({figure['chunks']} chunks, {figure['dimensions']} dimensions): "
        f"first apply {figure['first_apply_seconds']:.2f} s ({figure['first_embedding_requests']} embedding "
        f"requests, {figure['first_writes']} chunk writes) = {figure['ratio']:.2f}x the floor of writing the chunks "
        f"({figure['floor_seconds']:.2f} s); same files again {figure['again_seconds']:.2f} s "
        f"({figure['again_embedding_requests']} embedding requests, {figure['again_chunk_writes']} chunk writes); "
        f"one price edited {figure['edited_seconds']:.2f} s ({figure['edited_chunks_embedded']} of {figure['chunks']} "
        f"chunks embedded, "
        f"{figure['edited_chunk_writes']} chunk writes)"
    )
    json.dump(figure, sys.stderr, indent=2)
    print(file=sys.stderr)


if __name__ == "__main__":
    main()

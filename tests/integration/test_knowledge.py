"""The knowledge base on the Firestore emulator, with the real openai SDK against the offline embeddings.

Applying writes a version and switches the profile to it; a search returns
chunks of its own business only, within the threshold; applying again
replaces exactly what changed; an interrupted apply leaves the live version
whole and is finished by running it again.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from google.cloud import firestore

from devstack.offline_knowledge import OFFLINE_MAX_DISTANCE
from devstack.openai_stub import OpenAIStub
from shared.adapters.knowledge_search import KnowledgeMismatch, KnowledgeSearch
from shared.adapters.knowledge_store import FirestoreKnowledge
from shared.adapters.profile_store import FirestoreProfiles
from shared.config import Settings
from shared.domain.knowledge import KnowledgeSource
from shared.domain.profiles import BusinessProfile
from shared.ops.knowledge_apply import apply_with_knowledge, build_embedder
from shared.ops.knowledge_files import read_knowledge

BAKERY = "whatsapp:+14155238886"
CLINIC = "whatsapp:+15550001111"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
DIMS = 256


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    running = OpenAIStub().start()
    yield running
    running.stop()


class World:
    """One test's collections, documents folder and applier."""

    def __init__(self, project: str, stub: OpenAIStub, folder: Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.settings = Settings(openai_base_url=stub.base_url, openai_embedding_dimensions=DIMS,
                                 knowledge_collection=f"chunks-{suffix}", profiles_collection=f"profiles-{suffix}",
                                 profile_cache_seconds=0, knowledge_max_distance=OFFLINE_MAX_DISTANCE)
        self.client = firestore.Client(project=project)
        self.folder = folder
        self.stub = stub
        self.store = FirestoreKnowledge(lambda: self.client, self.settings.knowledge_collection)
        self.embedder = build_embedder(self.settings, lambda: "offline-model")
        self.profiles = FirestoreProfiles(lambda: self.client, self.settings.profiles_collection, BusinessProfile(), 0)
        self.clock = NOW

    def now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def write(self, name: str, text: str) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def apply(self, files: dict[str, list[str]], store: Any = None) -> list[str]:
        raw = {address: {"name": address[-4:], "knowledge": names} for address, names in files.items()}
        profiles = {address: BusinessProfile(address=address, knowledge=tuple(KnowledgeSource(n) for n in names))
                    for address, names in files.items()}
        documents = read_knowledge(profiles, self.folder, self.settings)
        return apply_with_knowledge(self.profiles.put, self.profiles.stored(), raw, documents,
                                    lambda: store or self.store, lambda: self.embedder, self.settings, self.now)

    def profile(self, address: str) -> BusinessProfile:
        return self.profiles.get(address)

    def search(self, address: str, text: str) -> list[str]:
        found = KnowledgeSearch(self.embedder, self.store, 4, self.settings.knowledge_max_distance).search(
            address, self.profile(address).knowledge_set, text, 10)
        return [r.chunk_id for r in found]


@pytest.fixture
def world(emulators: Any, stub: OpenAIStub, tmp_path: Path) -> Iterator[World]:
    stub.reset()
    made = World(emulators.project, stub, tmp_path)
    made.write("bakery/prices.md", "# Prices\n\n## Bread\n\nSourdough loaf 4.50 €. Baguette 1.20 €.\n\n"
                                   "## Cakes\n\nCarrot cake 24 €.\n")
    made.write("bakery/hours.md", "# Opening hours\n\nMonday to Saturday 7:00 to 20:00.\n")
    made.write("clinic/prices.md", "# Prices\n\n## Check-ups\n\nA check-up costs 60 €.\n\n## Whitening\n\n"
                                   "Whitening is 250 €, and we sell no bread or cake.\n")
    made.write("clinic/hours.md", "# Opening hours\n\nMonday to Thursday 9:00 to 19:00.\n")
    yield made
    made.client.close()


BOTH = {BAKERY: ["bakery/prices.md", "bakery/hours.md"], CLINIC: ["clinic/prices.md", "clinic/hours.md"]}


def test_apply_switches_each_business_to_its_own_chunks(world: World) -> None:
    lines = world.apply(BOTH)
    assert any("knowledge version" in line and "bakery/prices.md added (2 chunks)" in line for line in lines)
    bakery = world.profile(BAKERY).knowledge_set
    assert bakery is not None and bakery.searchable and bakery.chunks == 3 and bakery.dimensions == DIMS
    assert [d.source for d in bakery.documents] == ["bakery/prices.md", "bakery/hours.md"]
    # Overlapping vocabulary: both have prices, hours and "cake"; each finds only its own.
    assert world.search(BAKERY, "how much is the cake?")[0] == "bakery/prices.md#2"
    assert world.search(CLINIC, "how much is the cake?") == ["clinic/prices.md#2"]
    assert all(c.startswith("clinic/") for c in world.search(CLINIC, "opening hours on Monday"))
    assert all(c.startswith("bakery/") for c in world.search(BAKERY, "opening hours on Monday"))
    assert world.search(BAKERY, "who won the football match?") == [], "nothing within the threshold"


def test_applying_the_same_documents_again_embeds_and_writes_no_chunk(world: World) -> None:
    world.apply(BOTH)
    version = world.profile(BAKERY).knowledge_set.version
    embedded, writes = len(world.stub.embedding_requests), world.store.writes
    lines = world.apply(BOTH)
    assert len(world.stub.embedding_requests) == embedded and world.store.writes == writes
    assert any("knowledge unchanged" in line for line in lines)
    assert world.profile(BAKERY).knowledge_set.version == version


def test_an_edited_document_replaces_its_chunks_and_only_they_are_embedded(world: World) -> None:
    world.apply(BOTH)
    first = world.profile(BAKERY).knowledge_set
    world.stub.reset()
    world.write("bakery/prices.md", "# Prices\n\n## Bread\n\nSourdough loaf 4.90 €. Baguette 1.20 €.\n\n"
                                    "## Cakes\n\nCarrot cake 24 €.\n")
    lines = world.apply(BOTH)
    second = world.profile(BAKERY).knowledge_set
    assert second.version != first.version and second.previous == first.version
    inputs = [text for request in world.stub.embedding_requests for text in request["inputs"]]
    assert len(inputs) == 1 and "4.90" in inputs[0], "only the edited chunk is embedded"
    assert any("bakery/prices.md changed (2 chunks)" in line and "1 embedded, 2 reused" in line for line in lines)
    found = KnowledgeSearch(world.embedder, world.store, 4, OFFLINE_MAX_DISTANCE).search(
        BAKERY, second, "sourdough price", 10)
    assert "4.90" in found[0].text and not any("4.50" in r.text for r in found)
    # The clinic did not change: its version and chunks are as they were.
    assert world.store.versions(CLINIC) == {world.profile(CLINIC).knowledge_set.version: 3}
    # The replaced version stays for readers holding the old profile, until the next change.
    assert set(world.store.versions(BAKERY)) == {first.version, second.version}
    world.write("bakery/hours.md", "# Opening hours\n\nMonday to Sunday 7:00 to 21:00.\n")
    lines = world.apply(BOTH)
    third = world.profile(BAKERY).knowledge_set
    assert set(world.store.versions(BAKERY)) == {second.version, third.version}
    assert any("3 old chunks deleted" in line for line in lines)


def test_a_removed_document_leaves_and_an_added_one_arrives(world: World) -> None:
    world.apply(BOTH)
    world.write("bakery/faq.txt", "Do you deliver?\n\nNo, we do not deliver.")
    lines = world.apply({**BOTH, BAKERY: ["bakery/prices.md", "bakery/faq.txt"]})
    assert any("bakery/faq.txt added (1 chunk)" in line and "bakery/hours.md removed" in line for line in lines)
    assert world.search(BAKERY, "do you deliver?")[0].startswith("bakery/faq.txt#")
    assert not any(c.startswith("bakery/hours.md") for c in world.search(BAKERY, "opening hours Saturday"))


def test_knowledge_taken_out_of_a_profile_is_no_longer_searched(world: World) -> None:
    world.apply(BOTH)
    before = world.profile(BAKERY).knowledge_set
    lines = world.apply({**BOTH, BAKERY: []})
    after = world.profile(BAKERY).knowledge_set
    assert after is not None and not after.searchable and after.previous == before.version
    assert world.search(BAKERY, "sourdough") == []
    assert any("knowledge: none" in line for line in lines)


class CrashAfter:
    """A chunk store whose writes fail after ``allowed`` commits, as a process killed mid-apply."""

    def __init__(self, store: FirestoreKnowledge, allowed: int) -> None:
        self._store = store
        self._allowed = allowed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write(self, business: str, version: str, items: Any, now: datetime) -> int:
        items = list(items)
        done = self._store.write(business, version, items[: self._allowed], now)
        raise RuntimeError(f"killed after {done} chunks")


def test_an_interrupted_apply_keeps_the_live_version_whole_and_is_finished_by_running_again(world: World) -> None:
    world.apply(BOTH)
    live = world.profile(BAKERY).knowledge_set
    for n in range(3):
        world.write(f"bakery/more{n}.md", f"# Extra {n}\n\nCroissant number {n} costs 1.{n}0 €.\n")
    bigger = {**BOTH, BAKERY: BOTH[BAKERY] + [f"bakery/more{n}.md" for n in range(3)]}
    # Positions 0-2 are the unchanged chunks, 3 the first new one: the crash comes after it.
    with pytest.raises(RuntimeError, match="killed after 4 chunks"):
        world.apply(bigger, store=CrashAfter(world.store, 4))
    # Readers still see the old version, whole: the profile was never switched.
    assert world.profile(BAKERY).knowledge_set == live
    assert world.search(BAKERY, "sourdough")[0] == "bakery/prices.md#1"
    assert not any("more" in c for c in world.search(BAKERY, "croissant costs"))
    world.stub.reset()
    world.apply(bigger)
    done = world.profile(BAKERY).knowledge_set
    assert done.chunks == 6 and done.previous == live.version
    inputs = [text for request in world.stub.embedding_requests for text in request["inputs"]]
    assert len(inputs) == 2, "the chunk written before the crash is not embedded or written again"
    assert world.search(BAKERY, "croissant number 2")[0] == "bakery/more2.md#1"


def test_a_set_embedded_with_another_model_is_refused_not_searched_empty(world: World) -> None:
    world.apply(BOTH)
    stale = replace(world.profile(BAKERY).knowledge_set, dimensions=DIMS * 2)
    with pytest.raises(KnowledgeMismatch, match="run the profiles build again"):
        KnowledgeSearch(world.embedder, world.store, 4, 0.9).search(BAKERY, stale, "bread", 10)


def test_a_search_reads_only_what_it_returns_and_honours_top_k(world: World) -> None:
    world.apply(BOTH)
    ks = world.profile(BAKERY).knowledge_set
    vector = world.embedder.embed(["prices bread cakes"], 10)[0]
    reads = world.store.reads
    found = world.store.nearest(BAKERY, ks.version, vector, 1, 2.0)
    assert len(found) == 1 and world.store.reads - reads == 1
    assert found[0].source == "bakery/prices.md" and found[0].title == "Prices" and 0 <= found[0].distance <= 2

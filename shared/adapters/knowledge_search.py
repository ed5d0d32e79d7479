"""Retrieval for one message: embed its text once, then one vector query on its business's live chunks.

Both the answer path and ``make eval`` retrieve through here, so what the
evaluation measures is what a customer gets. The search refuses a
knowledge set embedded with another model or length than this process's
settings: its vectors and the query's would not be comparable, and a
silently empty search would look like "no chunk is close".
"""

from __future__ import annotations

import time
from typing import Any, Callable

from shared.adapters.knowledge_store import FirestoreKnowledge
from shared.adapters.openai_embeddings import Embedder
from shared.config import Settings
from shared.domain.knowledge import KnowledgeSet
from shared.domain.knowledge_prompt import Retrieved


class KnowledgeMismatch(Exception):
    """The business's chunks were embedded with another model or dimensions than the settings name."""


class KnowledgeSearch:
    def __init__(self, embedder: Embedder, store: FirestoreKnowledge, top_k: int, max_distance: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.embedder = embedder
        self.store = store
        self.top_k = top_k
        self.max_distance = max_distance
        self._clock = clock

    def check(self, knowledge: KnowledgeSet) -> None:
        if (knowledge.model, knowledge.dimensions) != (self.embedder.model, self.embedder.dimensions):
            raise KnowledgeMismatch(
                f"the chunks were embedded with {knowledge.model} ({knowledge.dimensions} dimensions), this "
                f"deployment embeds with {self.embedder.model} ({self.embedder.dimensions}): run the profiles "
                "build again"
            )

    def search(self, business: str, knowledge: KnowledgeSet, text: str, budget_seconds: float) -> list[Retrieved]:
        """The nearest chunks of ``business``'s version within the threshold, nearest first.

        One embedding call and one vector query, both inside ``budget_seconds``.
        """
        self.check(knowledge)
        if not knowledge.searchable or not text.strip():
            return []
        started = self._clock()
        vector = self.embedder.embed([text], budget_seconds)[0]
        left = max(0.5, budget_seconds - (self._clock() - started))
        return self.store.nearest(business, knowledge.version, vector, self.top_k, self.max_distance, timeout=left)

    def usage(self) -> dict[str, int]:
        """Embedding calls and chunk reads so far: zero for a business without knowledge."""
        return {"openai_embedding_calls": self.embedder.calls, "firestore_knowledge_reads": self.store.reads}


def build_search(settings: Settings, openai_api_key: Callable[[], str], refresh_key: Callable[[], bool],
                 client: Callable[[], Any]) -> KnowledgeSearch:
    """The search of the settings' model and collection, on the Firestore client ``client`` returns."""
    return KnowledgeSearch(Embedder.from_settings(settings, openai_api_key, refresh_key),
                           FirestoreKnowledge(client, settings.knowledge_collection),
                           settings.knowledge_top_k, settings.knowledge_max_distance)

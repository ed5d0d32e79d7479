"""Retrieval for one message: embed its text once, then one vector query on its business's live chunks.

Both the answer path and ``make eval`` retrieve through here, so what the
evaluation measures is what a customer gets. The search refuses a
knowledge set embedded with another model or length than this process's
settings: its vectors and the query's would not be comparable, and a
silently empty search would look like "no chunk is close".
"""

from __future__ import annotations

from shared.adapters.knowledge_store import FirestoreKnowledge
from shared.adapters.openai_embeddings import Embedder
from shared.domain.knowledge import KnowledgeSet
from shared.domain.knowledge_prompt import Retrieved


class KnowledgeMismatch(Exception):
    """The business's chunks were embedded with another model or dimensions than the settings name."""


class KnowledgeSearch:
    def __init__(self, embedder: Embedder, store: FirestoreKnowledge, top_k: int, max_distance: float) -> None:
        self.embedder = embedder
        self.store = store
        self.top_k = top_k
        self.max_distance = max_distance

    def check(self, knowledge: KnowledgeSet) -> None:
        if (knowledge.model, knowledge.dimensions) != (self.embedder.model, self.embedder.dimensions):
            raise KnowledgeMismatch(
                f"the chunks were embedded with {knowledge.model} ({knowledge.dimensions} dimensions), this "
                f"deployment embeds with {self.embedder.model} ({self.embedder.dimensions}): run the profiles "
                "build again"
            )

    def search(self, business: str, knowledge: KnowledgeSet, text: str, budget_seconds: float) -> list[Retrieved]:
        """The nearest chunks of ``business``'s version within the threshold, nearest first."""
        self.check(knowledge)
        if not knowledge.searchable or not text.strip():
            return []
        vector = self.embedder.embed([text], budget_seconds)[0]
        return self.store.nearest(business, knowledge.version, vector, self.top_k, self.max_distance)

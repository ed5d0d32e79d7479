"""The answer path's knowledge step: the model's call grounded in the business's own documents.

Between gather_context and the model's reply (shared/handlers/compose.py,
burst_turn.py), for a business whose profile has a searchable knowledge set:

    search   the user's text embedded once and that business's live chunks
             searched (shared/adapters/knowledge_search.py): one embedding
             call and one vector query, within a third of MODEL_BUDGET_SECONDS
    plan     the documents' block in the system prompt (nearest first, within
             KNOWLEDGE_PROMPT_TOKENS), or, under ``knowledge_only`` with nothing
             close enough, the unknown reply (and the handoff offer) with no
             model call (shared/domain/knowledge_prompt.py)
    ask      the model with what is left of the budget

A voice note's transcript is grounded like typed text; a photo goes to the
vision model as before. A business without knowledge, and every canned
reply, goes straight to the model as before: no embedding call, no read. What the model was given (chunk
ids, not text) goes onto the message entry in the answer's own write
(:func:`noting`). The step runs after the claim, so a duplicate delivery that
meets the claim's live lease never searches; a crash after the search and
before the answer write makes the next attempt (a new claim) search again:
at most one embedding call and one vector query per answer attempt. A failed
search fails the model call: the business's fallback reply, as when the
model is down.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from shared.adapters.knowledge_search import KnowledgeMismatch
from shared.domain.choices import Offer
from shared.domain.conversation import Conversation
from shared.domain.knowledge import KnowledgeSet, note_grounding
from shared.domain.knowledge_prompt import Retrieved, plan_answer
from shared.domain.profiles import BusinessProfile
from shared.domain.turns import Turn
from shared.handlers.deps import ProcessorDeps

log = logging.getLogger(__name__)

# The share of the model budget the search may take; the model gets the rest.
SEARCH_SHARE = 1 / 3


@dataclass(frozen=True)
class Grounding:
    """What one answer was grounded in: the version of the chunks, the ids given, or the unknown reply."""

    version: str
    chunks: tuple[str, ...]
    unknown: bool = False


class GroundedModel:
    """The model as the answer path calls it, with the business's documents when it has any.

    ``grounding`` says afterwards what the call was given (None: no knowledge).
    """

    def __init__(self, deps: ProcessorDeps, profile: BusinessProfile, log_fields: dict[str, object],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._deps = deps
        self._profile = profile
        self._fields = log_fields
        self._clock = clock
        self.grounding: Grounding | None = None
        self.offer: Offer | None = None  # the model's reply_with_choices, when the profile offers it

    def reply(self, history: list[Turn], user_text: str, system_prompt: str | None = None, model: str | None = None,
              budget_seconds: float | None = None) -> str:
        """The answer to ``user_text`` (typed, or a voice note's transcript) with the business's prompt and model."""
        deps, profile = self._deps, self._profile
        knowledge = profile.knowledge_set
        if deps.knowledge is None or knowledge is None or not knowledge.searchable:
            return self._ask(history, user_text, profile.system_prompt, None)
        budget = deps.settings.model_budget_seconds
        started = self._clock()
        retrieved = self._search(knowledge, user_text, budget * SEARCH_SHARE)
        plan = plan_answer(profile.system_prompt or deps.settings.system_prompt, retrieved,
                           deps.settings.knowledge_prompt_tokens, profile.knowledge_only, profile.unknown_reply,
                           profile.handoff_keyword)
        given = plan.prompt.given if plan.prompt is not None else ()
        self.grounding = Grounding(knowledge.version, given, plan.unknown is not None)
        log.info("knowledge searched", extra={
            **self._fields, "event": "knowledge", "knowledge_version": knowledge.version[:12],
            "chunks": list(given), "matched": len(retrieved), "unknown": plan.unknown is not None,
            "search_ms": round((self._clock() - started) * 1000, 1),
        })
        if plan.unknown is not None:
            return plan.unknown
        assert plan.prompt is not None
        left = budget - (self._clock() - started)
        return self._ask(history, user_text, plan.prompt.system_prompt, left)

    def _ask(self, history: list[Turn], user_text: str, system_prompt: str | None, budget: float | None) -> str:
        """One model call; with ``model_choices`` it may answer with choices (kept in ``offer``)."""
        model, name = self._deps.model, self._profile.model
        if not self._profile.model_choices:
            if budget is None:
                return model.reply(history, user_text, system_prompt=system_prompt, model=name)
            return model.reply(history, user_text, system_prompt=system_prompt, model=name, budget_seconds=budget)
        text, self.offer = model.reply_or_choices(history, user_text, system_prompt=system_prompt, model=name,
                                                  budget_seconds=budget)
        return text

    def reply_with_images(self, history: list[Turn], user_text: str, images: list[str], model: str,
                          system_prompt: str | None = None) -> str:
        """Images go to the vision model as before: a photo's question is not searched for."""
        return self._deps.model.reply_with_images(history, user_text, images, model=model,  # type: ignore[attr-defined]
                                                  system_prompt=system_prompt)

    def transcribe(self, data: bytes, filename: str, content_type: str, model: str) -> str:
        return self._deps.model.transcribe(data, filename, content_type, model=model)  # type: ignore[attr-defined]

    def _search(self, knowledge: KnowledgeSet, text: str, budget: float) -> list[Retrieved]:
        assert self._deps.knowledge is not None
        try:
            return self._deps.knowledge.search(self._profile.address, knowledge, text, budget)
        except KnowledgeMismatch as exc:
            # Searching again cannot fix it; the documents are not used, never guessed from.
            log.error("knowledge set not searchable with this deployment's embeddings",
                      extra={**self._fields, "event": "knowledge_mismatch", "reason": str(exc)[:300]})
            return []


def noting(grounding: Grounding | None, sid: str,
           then: Callable[[Conversation, datetime], None] | None = None
           ) -> Callable[[Conversation, datetime], None] | None:
    """record_answer's ``after``: the grounding noted on the entry (and ``then``), in the answer's write."""
    if grounding is None:
        return then

    def after(conv: Conversation, now: datetime) -> None:
        note_grounding(conv.messages[sid], grounding.version, grounding.chunks, grounding.unknown)
        if then is not None:
            then(conv, now)

    return after

"""The knowledge step on the one answer path, with in-memory fakes: grounded, cited, unknown, once per attempt."""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.knowledge_search import KnowledgeMismatch
from shared.adapters.openai_embeddings import EmbeddingUnavailable
from shared.adapters.profile_store import StaticProfiles
from shared.config import Settings
from shared.domain.inbound import InboundMessage
from shared.domain.knowledge import KnowledgeSet, KnowledgeSource
from shared.domain.knowledge_prompt import HEADER, NOTHING_MATCHED, Retrieved
from shared.domain.lifecycle import ANSWERED
from shared.domain.profiles import BusinessProfile
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.processor import ProcessorDeps, process_message
from tests.fakes import IDS, Clock, FakeModel, FakeQueue, FakeStore, conversation_id

SENDER = "whatsapp:+34600111222"
BAKERY = "whatsapp:+14155238886"
PLAIN = "whatsapp:+15550009999"
KSET = KnowledgeSet("v1", "text-embedding-3-small", 1536, 3)
PRICES = Retrieved("prices.md#2", "prices.md", "Prices", "Bread", "Sourdough loaf 4.50 €.", 0.3)


class FakeKnowledge:
    """The search as the step sees it: what it was asked, and a script of answers or errors."""

    def __init__(self, found: list[Retrieved] | Exception) -> None:
        self.found = found
        self.searches: list[tuple[str, str, str, float]] = []

    def search(self, business: str, knowledge: KnowledgeSet, text: str, budget_seconds: float) -> list[Retrieved]:
        self.searches.append((business, knowledge.version, text, budget_seconds))
        if isinstance(self.found, Exception):
            raise self.found
        return list(self.found)


def profile(address: str = BAKERY, **values: Any) -> BusinessProfile:
    base = dict(address=address, system_prompt="You are the bakery.", knowledge=(KnowledgeSource("prices.md"),),
                knowledge_set=KSET, handoff_keyword="agent", unknown_reply="I don't know that.")
    base.update(values)
    return BusinessProfile(**base)


def make_deps(knowledge: FakeKnowledge, profiles: dict[str, BusinessProfile], **overrides: Any) -> ProcessorDeps:
    settings = Settings(rate_limit_messages=1000, model_budget_seconds=30)
    values = dict(settings=settings, store=FakeStore(), model=FakeModel("Sourdough is 4.50 € — from Prices"),
                  queue=FakeQueue(), faults=FaultPoints(), clock=Clock(), ids=IDS, knowledge=knowledge,
                  profiles=StaticProfiles(BusinessProfile(system_prompt="default"), profiles))
    values.update(overrides)
    return ProcessorDeps(**values)


def msg(n: int, body: str, business: str = BAKERY) -> InboundMessage:
    return InboundMessage(sid=f"SM{n:032x}", sender=SENDER, recipient=business, body=body)


def entry_of(deps: ProcessorDeps, n: int, business: str = BAKERY) -> Any:
    return deps.store.conversation(conversation_id(SENDER, business)).entry(msg(n, "").sid)


def test_the_model_gets_the_chunks_of_its_business_and_the_entry_their_ids() -> None:
    knowledge = FakeKnowledge([PRICES])
    deps = make_deps(knowledge, {BAKERY: profile()})
    assert process_message(msg(1, "how much is the sourdough?"), deps) == "answered"
    assert knowledge.searches == [(BAKERY, "v1", "how much is the sourdough?", 10.0)]
    prompt = deps.model.options[0]["system_prompt"]
    assert prompt.startswith("You are the bakery.\n\n" + HEADER) and 'id="prices.md#2"' in prompt
    assert "Sourdough loaf 4.50 €." in prompt
    assert 0 < deps.model.budgets[0] <= 30, "the model gets what the search left of the budget"
    entry = entry_of(deps, 1)
    assert entry.status == ANSWERED and entry.parts == ["Sourdough is 4.50 € — from Prices"]
    assert (entry.knowledge_version, entry.knowledge_chunks, entry.knowledge_unknown) == ("v1", ["prices.md#2"], False)


def test_knowledge_only_with_nothing_close_answers_unknown_with_the_handoff_and_no_model() -> None:
    deps = make_deps(FakeKnowledge([]), {BAKERY: profile(knowledge_only=True)})
    process_message(msg(1, "can I pay in bitcoin?"), deps)
    entry = entry_of(deps, 1)
    assert deps.model.calls == []
    assert entry.parts == ["I don't know that. Send AGENT to talk to a person."]
    assert entry.knowledge_unknown and entry.knowledge_chunks == []
    assert len(deps.queue.tasks) == 1, "the unknown reply goes out like any answer"


def test_without_knowledge_only_the_model_is_told_nothing_matched() -> None:
    deps = make_deps(FakeKnowledge([]), {BAKERY: profile()})
    process_message(msg(1, "can I pay in bitcoin?"), deps)
    assert NOTHING_MATCHED in deps.model.options[0]["system_prompt"]
    assert entry_of(deps, 1).knowledge_chunks == [] and not entry_of(deps, 1).knowledge_unknown


def test_a_business_without_knowledge_pays_nothing_and_nothing_is_noted() -> None:
    knowledge = FakeKnowledge([PRICES])
    deps = make_deps(knowledge, {PLAIN: BusinessProfile(address=PLAIN, system_prompt="plain")})
    process_message(msg(1, "hello", PLAIN), deps)
    assert knowledge.searches == []
    assert deps.model.options[0]["system_prompt"] == "plain" and deps.model.budgets == [None]
    assert entry_of(deps, 1, PLAIN).knowledge_version == ""


def test_a_keyword_answer_is_not_searched_for() -> None:
    from shared.domain.profiles import profile_from_mapping

    keyed = profile_from_mapping(BAKERY, {"keywords": [{"match": "hours", "reply": "7 to 20."}]}, profile())
    knowledge = FakeKnowledge([PRICES])
    deps = make_deps(knowledge, {BAKERY: keyed})
    process_message(msg(1, "hours"), deps)
    assert knowledge.searches == [] and entry_of(deps, 1).parts == ["7 to 20."]


def test_a_failed_search_is_the_fallback_reply_as_when_the_model_is_down() -> None:
    deps = make_deps(FakeKnowledge(EmbeddingUnavailable("down")), {BAKERY: profile(fallback_reply="Call us.")})
    process_message(msg(1, "sourdough?"), deps)
    assert deps.model.calls == [] and entry_of(deps, 1).parts == ["Call us."] and entry_of(deps, 1).fallback


def test_chunks_of_another_model_are_never_guessed_from() -> None:
    deps = make_deps(FakeKnowledge(KnowledgeMismatch("other model")), {BAKERY: profile(knowledge_only=True)})
    process_message(msg(1, "sourdough?"), deps)
    assert deps.model.calls == [] and entry_of(deps, 1).knowledge_unknown


def test_duplicates_do_not_search_again() -> None:
    knowledge = FakeKnowledge([PRICES])
    deps = make_deps(knowledge, {BAKERY: profile()})
    process_message(msg(1, "sourdough?"), deps)
    assert process_message(msg(1, "sourdough?"), deps) == "requeued"
    assert len(knowledge.searches) == 1 and len(deps.model.calls) == 1


@pytest.mark.parametrize("point", ["after_ai", "after_claim"])
def test_a_crash_before_the_answer_write_searches_at_most_once_per_attempt(point: str) -> None:
    knowledge = FakeKnowledge([PRICES])
    clock = Clock()
    deps = make_deps(knowledge, {BAKERY: profile()}, clock=clock, faults=FaultPoints((point,)))
    with pytest.raises(InjectedFault):
        process_message(msg(1, "sourdough?"), deps)
    searched = len(knowledge.searches)
    assert searched == (1 if point == "after_ai" else 0)
    clock.advance(deps.settings.processing_lease_seconds + 1)  # the claim's lease runs out; Pub/Sub delivers again
    deps = make_deps(knowledge, {BAKERY: profile()}, clock=clock, store=deps.store, queue=deps.queue)
    assert process_message(msg(1, "sourdough?"), deps) == "answered"
    assert len(knowledge.searches) == searched + 1, "one search for the new attempt, none for the duplicate"
    assert entry_of(deps, 1).attempts == 2 and entry_of(deps, 1).knowledge_chunks == ["prices.md#2"]


def test_a_burst_is_grounded_once_on_all_its_messages() -> None:
    import json

    from shared.adapters.cloud_tasks import BurstTask
    from shared.domain.lifecycle import MERGED
    from shared.handlers.processor import handle_push

    knowledge = FakeKnowledge([PRICES])
    settings = Settings(rate_limit_messages=1000, burst_window_seconds=2.0, processor_url="http://processor/")
    deps = make_deps(knowledge, {BAKERY: profile()}, settings=settings)
    assert process_message(msg(1, "hi"), deps) == "waiting"
    deps.clock.advance(1)
    assert process_message(msg(2, "how much is the sourdough?"), deps) == "joined"
    deps.clock.advance(2)
    tasks = [t for t in deps.queue.tasks.values() if isinstance(t, BurstTask)]
    envelopes = [json.loads(t.to_json()) for t in tasks]
    assert [handle_push(e["message"], e["subscription"], deps) for e in envelopes] == ["moved", "answered"]
    assert [s[2] for s in knowledge.searches] == ["hi\nhow much is the sourdough?"]
    head, member = entry_of(deps, 1), entry_of(deps, 2)
    assert head.knowledge_chunks == ["prices.md#2"] and member.status == MERGED


def test_admin_show_says_which_chunks_each_answer_was_given() -> None:
    from shared.ops.user_data import AdminDeps, show

    deps = make_deps(FakeKnowledge([PRICES]), {BAKERY: profile(knowledge_only=True)})
    process_message(msg(1, "sourdough?"), deps)
    deps.knowledge.found = []  # type: ignore[union-attr]
    process_message(msg(2, "bitcoin?"), deps)
    text = show(AdminDeps(deps.settings, deps.store, IDS, lambda: deps.queue, deps.clock), SENDER, BAKERY)
    assert f"{msg(1, '').sid}" in text and "knowledge: prices.md#2" in text
    assert "knowledge: unknown reply, nothing close enough" in text

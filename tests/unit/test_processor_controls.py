"""Business controls through the processor and the sender, with fakes: every control ends a message once."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shared.adapters.profile_store import FirestoreProfiles, StaticProfiles, defaults_from_settings
from shared.config import Settings
from shared.domain.lifecycle import IGNORED
from shared.domain.inbound import InboundMessage
from shared.domain.profiles import profile_from_mapping
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.processor import ProcessorDeps, process_message
from shared.handlers.sender import SenderDeps, deliver
from tests.fakes import IDS, Clock, FakeModel, FakeQueue, FakeStore, FakeTwilio, conversation_id

USER = "whatsapp:+34600111222"
SHOP = "whatsapp:+14155238886"
CLINIC = "whatsapp:+15550001111"
SETTINGS = Settings(max_context_messages=6, conversation_ttl_seconds=3600, rate_limit_messages=3, rate_limit_window_seconds=60)
SHOP_PROFILE = {
    "name": "Shop", "system_prompt": "You sell bread.", "model": "gpt-bread", "help": "Ask about bread.",
    "welcome": "Hi, I'm the bakery bot.", "keywords": [{"match": "hours\\??", "reply": "7 to 20."}],
    "handoff_keyword": "agent", "handoff_pause_seconds": 600, "fallback_reply": "Bakery is busy.",
}


@dataclass
class World:
    deps: ProcessorDeps
    sender: SenderDeps
    clock: Clock
    n: int = 0
    delivered: set[str] = field(default_factory=set)

    @property
    def model(self) -> FakeModel:
        return self.deps.model  # type: ignore[return-value]

    @property
    def twilio(self) -> FakeTwilio:
        return self.sender.twilio  # type: ignore[return-value]

    def say(self, body: str, to: str = SHOP, user: str = USER, sid: str = "") -> tuple[str, list[str]]:
        """Process one message and send every task it led to; returns the outcome and the bodies sent."""
        self.n += 1
        message = InboundMessage(sid=sid or f"SM{self.n:032x}", sender=user, recipient=to, body=body)
        before = len(self.twilio.sent)
        outcome = process_message(message, self.deps)
        self.flush()
        self.clock.advance(1)
        return outcome, [b for _, b, _ in self.twilio.sent[before:]]

    def flush(self) -> None:
        queue: FakeQueue = self.deps.queue  # type: ignore[assignment]
        while pending := [k for k in queue.tasks if k not in self.delivered]:
            for key in pending:
                self.delivered.add(key)
                deliver(queue.tasks[key], self.sender)

    def conv(self, to: str = SHOP, user: str = USER):  # noqa: ANN201
        return self.deps.store.conversation(conversation_id(user, to))  # type: ignore[attr-defined]

    def doc(self, to: str = SHOP, user: str = USER) -> dict:
        """The conversation document as stored (what ops tools and the chat page read)."""
        return self.deps.store.document(conversation_id(user, to))  # type: ignore[attr-defined]


def make_world(settings: Settings = SETTINGS, faults: FaultPoints | None = None, profiles=None) -> World:  # noqa: ANN001
    clock = Clock()
    store, queue = FakeStore(), FakeQueue()
    defaults = defaults_from_settings(settings)
    profiles = profiles or StaticProfiles(defaults, {SHOP: profile_from_mapping(SHOP, SHOP_PROFILE, defaults)})
    deps = ProcessorDeps(settings=settings, store=store, model=FakeModel(), queue=queue, faults=faults or FaultPoints(),
                         clock=clock, ids=IDS, profiles=profiles)
    sender = SenderDeps(settings=settings, store=store, twilio=FakeTwilio(), queue=queue, faults=FaultPoints(), clock=clock)
    return World(deps, sender, clock)


def test_the_business_prompt_and_model_are_used_and_the_welcome_is_part_one() -> None:
    w = make_world()
    outcome, sent = w.say("hello")
    assert outcome == "answered" and sent == ["Hi, I'm the bakery bot.", "Hello!"]
    assert w.model.options == [{"system_prompt": "You sell bread.", "model": "gpt-bread"}]
    _, sent = w.say("and cakes?")
    assert sent == ["Hello!"]


def test_an_unknown_business_gets_the_settings_defaults_and_no_welcome() -> None:
    w = make_world()
    _, sent = w.say("hello", to=CLINIC)
    assert sent == ["Hello!"]
    assert w.model.options == [{"system_prompt": SETTINGS.system_prompt, "model": SETTINGS.openai_model}]
    assert w.twilio.froms == [CLINIC]


def test_reset_forgets_and_the_next_message_starts_a_new_conversation() -> None:
    w = make_world()
    w.say("my name is Ana")
    outcome, sent = w.say(" /Reset ")
    assert outcome == "answered" and sent == [make_world().deps.profile(SHOP).reset_reply]
    assert len(w.model.calls) == 1
    assert w.conv().history == []
    _, sent = w.say("what is my name?")
    history, _ = w.model.calls[-1]
    assert history == [] and sent[0] == "Hi, I'm the bakery bot."


def test_help_and_keywords_answer_without_the_model() -> None:
    w = make_world()
    assert w.say("/help")[1] == ["Ask about bread."]
    assert w.say("Hours?")[1] == ["7 to 20."]
    assert w.model.calls == []
    # A keyword's answer is part of the conversation; /help is not.
    assert [t["content"] for t in w.conv().history] == ["Hours?", "7 to 20."]


def test_an_empty_message_gets_the_short_reply_and_a_location_goes_to_the_model() -> None:
    w = make_world()
    assert w.say(" \x00\x07 ")[1] == [w.deps.profile(SHOP).empty_reply]
    assert w.model.calls == []
    located = InboundMessage(sid=f"SM{99:032x}", sender=USER, recipient=SHOP, body="", latitude="40.4", longitude="-3.7")
    assert process_message(located, w.deps) == "answered"
    assert len(w.model.calls) == 1


def test_opt_out_then_nothing_at_all_until_start() -> None:
    w = make_world()
    w.say("hello")
    outcome, sent = w.say("stop")
    assert sent == [w.deps.profile(SHOP).opt_out_reply]
    conv = w.conv()
    assert conv.opted_out is True and conv.history == []
    assert conv.expire_at is None and conv.address == ""
    for text in ("hello?", "/help", "/reset", "agent", "STOP"):
        outcome, sent = w.say(text)
        assert (outcome, sent) == ("ignored", [])
    assert len(w.model.calls) == 1
    # The opt-out outlives the TTL (no expireAt, nothing expires it) and /reset.
    w.clock.advance(SETTINGS.conversation_ttl_seconds * 10)
    assert w.say("anyone?") == ("ignored", [])
    statuses = [e.status for e in w.conv().messages.values()]
    assert statuses.count(IGNORED) == 6
    assert all(e.reason == "opted out" for e in w.conv().messages.values() if e.status == IGNORED)
    outcome, sent = w.say("START")
    assert sent == [w.deps.profile(SHOP).opt_in_reply]
    assert w.conv().address == USER and "expireAt" in w.doc()
    assert w.say("back again")[1] == ["Hi, I'm the bakery bot.", "Hello!"]


def test_opt_out_is_per_business() -> None:
    w = make_world()
    w.say("STOP")
    assert w.say("hello", to=CLINIC)[1] == ["Hello!"]


def test_rate_limit_one_notice_per_window_and_the_rest_recorded() -> None:
    w = make_world()
    w.clock.advance(0)
    outcomes = []
    for n in range(6):
        message = InboundMessage(sid=f"SM{100 + n:032x}", sender=USER, recipient=CLINIC, body=f"q{n}")
        outcomes.append(process_message(message, w.deps))
    w.flush()
    assert outcomes == ["answered"] * 4 + ["ignored"] * 2
    assert [b for _, b, _ in w.twilio.sent] == ["Hello!"] * 3 + [w.deps.profile(CLINIC).rate_limit_reply]
    assert len(w.model.calls) == 3
    reasons = [e.reason for e in w.conv(CLINIC).messages.values() if e.status == IGNORED]
    assert reasons == ["rate limited", "rate limited"]
    w.clock.advance(61)
    assert w.say("later", to=CLINIC)[1] == ["Hello!"]


def test_the_rate_limit_is_per_business_overridable() -> None:
    settings = Settings(rate_limit_messages=1000)
    defaults = defaults_from_settings(settings)
    strict = profile_from_mapping(SHOP, {"rate_limit_messages": 1}, defaults)
    w = make_world(settings, profiles=StaticProfiles(defaults, {SHOP: strict}))
    for text in ("a", "b", "c"):
        process_message(InboundMessage(sid=f"SM{ord(text):032x}", sender=USER, recipient=SHOP, body=text), w.deps)
    w.flush()
    assert len(w.model.calls) == 1 and len(w.twilio.sent) == 2


def test_handoff_keyword_pauses_records_and_the_model_sees_it_after() -> None:
    w = make_world()
    _, sent = w.say("agent")
    assert sent == [w.deps.profile(SHOP).handoff_reply]
    assert w.say("my order is late") == ("ignored", [])
    assert w.model.calls == []
    w.clock.advance(601)
    w.say("hello?")
    history, _ = w.model.calls[0]
    assert [t["content"] for t in history] == ["agent", w.deps.profile(SHOP).handoff_reply, "my order is late"]


def test_a_crash_after_the_claim_keeps_the_decision_and_counts_once() -> None:
    w = make_world(faults=FaultPoints(("after_claim",)))
    message = InboundMessage(sid=f"SM{1:032x}", sender=USER, recipient=SHOP, body="/help")
    with pytest.raises(InjectedFault):
        process_message(message, w.deps)
    w.clock.advance(SETTINGS.processing_lease_seconds + 1)
    w.deps = ProcessorDeps(**{**w.deps.__dict__, "faults": FaultPoints()})
    assert process_message(message, w.deps) == "answered"
    w.flush()
    assert [b for _, b, _ in w.twilio.sent] == ["Ask about bread."]
    assert w.conv().rate.count == 1
    assert w.doc()["messages"][message.sid]["decided"] == {"kind": "reply", "reason": "help"}


def test_a_plain_message_costs_what_it_cost_before_and_an_ignored_one_less() -> None:
    w = make_world()
    w.say("warm up")
    store: FakeStore = w.deps.store  # type: ignore[assignment]
    reads, writes = store.ops.reads, store.ops.writes
    w.say("a plain question")
    assert (store.ops.reads - reads, store.ops.writes - writes) == (2, 5)
    w.say("STOP")
    reads, writes = store.ops.reads, store.ops.writes
    w.say("ignored")
    assert (store.ops.reads - reads, store.ops.writes - writes) == (1, 2)


class FakeDocs:
    """The few Firestore client calls FirestoreProfiles makes."""

    def __init__(self, docs: dict[str, dict]) -> None:
        self.docs = docs
        self.gets = 0

    def collection(self, name: str) -> "FakeDocs":
        return self

    def document(self, key: str) -> "FakeDocs":
        self.key = key
        return self

    def get(self) -> "FakeDocs":
        self.gets += 1
        self.exists = self.key in self.docs
        self.data = self.docs.get(self.key)
        return self

    def to_dict(self) -> dict | None:
        return self.data


def test_profiles_are_read_at_most_once_per_ttl_and_bad_documents_give_the_defaults() -> None:
    now = {"t": 0.0}
    docs = FakeDocs({SHOP: {"name": "Shop", "help": "v1", "updatedAt": 1}, CLINIC: {"keywords": [{"match": "("}]}})
    profiles = FirestoreProfiles(lambda: docs, "business_profiles", defaults_from_settings(SETTINGS), 60, clock=lambda: now["t"])
    assert profiles.get(SHOP).help == "v1"
    docs.docs[SHOP]["help"] = "v2"
    now["t"] = 59
    assert profiles.get(SHOP).help == "v1" and docs.gets == 1
    now["t"] = 61
    assert profiles.get(SHOP).help == "v2" and docs.gets == 2
    assert profiles.get(CLINIC).keywords == () and profiles.get(CLINIC).address == CLINIC
    assert profiles.get("whatsapp:+1999").system_prompt == SETTINGS.system_prompt

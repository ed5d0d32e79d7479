"""A reply ending in choices, processor to sender with fakes: buttons inside the window, numbered text otherwise,
and a retry after a lost answer sends nothing twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Mapping

import pytest

from shared.adapters.content_records import ContentTemplates, MemoryContentRecords
from shared.adapters.profile_store import StaticProfiles
from shared.config import Settings
from shared.domain.choices import QUICK_REPLY
from shared.domain.lifecycle import SENT
from shared.domain.profiles import BusinessProfile, profile_from_mapping
from shared.faults import FaultPoints
from shared.handlers.processor import process_message
from shared.handlers.send_steps import RetryLater
from shared.handlers.sender import SenderDeps, deliver
from tests.fakes import Clock, FakeTwilio, conversation_id
from tests.unit.test_processor import SENDER, make_deps, msg

BUSINESS = "whatsapp:+14155238886"
PROFILE = profile_from_mapping(BUSINESS, {"menus": [{"id": "main", "keywords": ["menu"], "text": "Pick one", "items": [
    {"id": "a", "title": "First", "reply": "First it is."}, {"id": "b", "title": "Second", "reply": "Second."}]}]},
    BusinessProfile())


class Api:
    def __init__(self, fail: bool = False) -> None:
        self.made: list[Mapping[str, Any]] = []
        self.fail = fail

    def create(self, types: Mapping[str, Any], friendly_name: str, language: str = "en") -> str:
        if self.fail:
            raise RuntimeError("Twilio refused the Content resource (503)")
        self.made.append(types)
        return f"HX{len(self.made):032x}"


def world(api: Api) -> tuple[Any, SenderDeps, Clock]:
    clock = Clock()
    pdeps = make_deps(clock=clock, profiles=StaticProfiles(BusinessProfile(), {BUSINESS: PROFILE}))
    sdeps = SenderDeps(settings=Settings(send_max_attempts=3), store=pdeps.store, twilio=FakeTwilio(),
                       queue=pdeps.queue, faults=FaultPoints(), clock=clock,
                       content=ContentTemplates(api, MemoryContentRecords(), clock))
    return pdeps, sdeps, clock


def send_menu(pdeps: Any, sdeps: SenderDeps, n: int = 1) -> str:
    assert process_message(msg(n, "menu"), pdeps) == "answered"
    task = next(t for t in pdeps.queue.tasks.values() if t.sid == msg(n).sid)
    return deliver(task, sdeps)


def test_inside_the_window_the_choices_go_as_their_content_resource_made_once() -> None:
    api = Api()
    pdeps, sdeps, _ = world(api)
    assert send_menu(pdeps, sdeps) == "sent"
    assert sdeps.twilio.sent == [] and [t[1] for t in sdeps.twilio.templates] == ["HX" + "0" * 31 + "1"]
    assert len(api.made) == 1 and QUICK_REPLY in api.made[0]
    entry = pdeps.store.conversation(conversation_id(SENDER)).entry(msg(1).sid)
    assert entry.status == SENT and entry.choices == {}  # finished: the choices go with the parts
    assert process_message(msg(2, "menu"), pdeps) == "answered"
    assert len(api.made) == 1


def test_a_content_api_failure_sends_the_numbered_text() -> None:
    pdeps, sdeps, _ = world(Api(fail=True))
    assert send_menu(pdeps, sdeps) == "sent"
    assert sdeps.twilio.templates == []
    assert [body for _, body, _ in sdeps.twilio.sent] == ["Pick one\n\n1. First\n2. Second"]


def test_outside_the_window_no_content_is_made_and_the_window_rule_holds() -> None:
    api = Api()
    pdeps, sdeps, clock = world(api)
    assert process_message(msg(1, "menu"), pdeps) == "answered"
    clock.advance(timedelta(hours=25).total_seconds())
    task = next(iter(pdeps.queue.tasks.values()))
    assert deliver(task, sdeps) == "failed"
    assert api.made == [] and sdeps.twilio.sent == [] and sdeps.twilio.templates == []


def test_a_lost_answer_is_asked_about_as_a_template_part_and_not_sent_again() -> None:
    pdeps, sdeps, clock = world(Api())
    sdeps.twilio.lost_answers = 1
    assert process_message(msg(1, "menu"), pdeps) == "answered"
    task = next(iter(pdeps.queue.tasks.values()))
    with pytest.raises(RetryLater):  # Twilio took it, the answer was lost: the mark stays
        deliver(task, sdeps)
    clock.advance(sdeps.in_flight_grace.total_seconds() + 1)
    assert deliver(task, sdeps) == "sent"
    assert len(sdeps.twilio.templates) == 1 and sdeps.twilio.lookups == 1


def test_the_models_choices_go_as_buttons_only_for_a_business_that_turns_them_on() -> None:
    from shared.domain.choices import model_offer
    from tests.fakes import FakeModel

    api, model = Api(), FakeModel("Plain words.")
    model.offer = model_offer("Which size?", ["Small", "A very large family-size cake for twenty"])
    pdeps, sdeps, _ = world(api)
    on = profile_from_mapping(BUSINESS, {"model_choices": True}, BusinessProfile())
    pdeps = make_deps(clock=sdeps.clock, store=pdeps.store, queue=pdeps.queue, model=model,
                      profiles=StaticProfiles(BusinessProfile(), {BUSINESS: on}))
    assert process_message(msg(1, "a cake please"), pdeps) == "answered"
    task = next(t for t in pdeps.queue.tasks.values() if t.sid == msg(1).sid)
    assert deliver(task, sdeps) == "sent" and model.choice_calls == 1
    [made] = api.made
    titles = [a["title"] for a in made[QUICK_REPLY]["actions"]]
    assert made[QUICK_REPLY]["body"] == "Which size?" and titles[0] == "Small"
    assert len(titles[1]) <= 20 and titles[1].endswith("…")  # shortened, never refused by Twilio
    # A typed number answers the model's choices: the model is told what was chosen.
    assert process_message(msg(2, "2"), pdeps) == "answered"
    assert "A very large family-size cake for twenty" in model.calls[-1][1]

    plain = FakeModel("Plain words.")
    plain.offer = model.offer
    off = make_deps(clock=sdeps.clock, model=plain, profiles=StaticProfiles(BusinessProfile(), {}))
    assert process_message(msg(3, "a cake please"), off) == "answered"
    assert plain.choice_calls == 0 and len(plain.calls) == 1

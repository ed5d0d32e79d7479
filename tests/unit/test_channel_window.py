"""The 24-hour window in the sender, with the fakes' controllable clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.domain.lifecycle import FAILED, SENT
from shared.adapters.conversation_document import DELETE
from shared.domain.conversation import Conversation
from shared.domain.delivery import OUTSIDE_WINDOW
from shared.domain.window import window_open
from shared.handlers.processor import process_message
from shared.handlers.sender import deliver
from tests.fakes import Clock, FakeTwilio, conversation_id
from tests.unit.test_processor import SENDER, msg
from tests.unit.test_sender import task_for, world  # noqa: F401 - fixture

DAY = 24 * 3600


class TemplateTwilio(FakeTwilio):
    def __init__(self) -> None:
        super().__init__()
        self.templates: list[tuple[str, str, str]] = []

    def send_template(self, to: str, content_sid: str, content_variables: str = "", from_: str = "") -> str:
        sid = f"SM{len(self.sent) + len(self.templates) + 100:032x}"
        self.templates.append((to, content_sid, content_variables))
        return sid


def test_the_window_rule() -> None:
    clock = Clock()
    conv = Conversation(last_inbound_at=clock())
    assert window_open(conv, clock() + timedelta(seconds=DAY))
    assert not window_open(conv, clock() + timedelta(seconds=DAY + 1))
    assert not window_open(Conversation(), clock()) and window_open(Conversation(), clock(), unknown_is_open=True)


def test_a_reply_inside_the_window_is_sent(world) -> None:  # noqa: F811
    pdeps, sdeps = world
    process_message(msg(1), pdeps)
    sdeps.clock.advance(DAY - 60)
    assert deliver(task_for(pdeps, 1), sdeps) == "sent"


def test_a_reply_past_the_window_is_failed_without_calling_twilio(world) -> None:  # noqa: F811
    pdeps, sdeps = world
    process_message(msg(1), pdeps)
    sdeps.clock.advance(DAY + 1)
    assert deliver(task_for(pdeps, 1), sdeps) == "failed"
    assert sdeps.twilio.sent == [] and sdeps.twilio.froms == []
    conv = pdeps.store.conversation(conversation_id(SENDER))
    assert conv.entry(msg(1).sid).status == FAILED
    assert conv.entry(msg(1).sid).reason.startswith(OUTSIDE_WINDOW)
    assert pdeps.store.failures[msg(1).sid]["reason"].startswith(OUTSIDE_WINDOW)


def test_past_the_window_the_reengagement_template_goes_instead(world) -> None:  # noqa: F811
    pdeps, sdeps = world
    sdeps = replace(sdeps, twilio=TemplateTwilio(), settings=replace(sdeps.settings, reengagement_content_sid="HX" + "1" * 32))
    process_message(msg(1), pdeps)
    sdeps.clock.advance(DAY + 1)
    assert deliver(task_for(pdeps, 1), sdeps) == "sent"
    assert sdeps.twilio.sent == [] and sdeps.twilio.templates == [(SENDER, "HX" + "1" * 32, "")]
    entry = pdeps.store.conversation(conversation_id(SENDER)).entry(msg(1).sid)
    assert entry.status == SENT and entry.content_sid == "HX" + "1" * 32


def test_a_conversation_from_before_the_window_field_is_left_to_twilio(world) -> None:  # noqa: F811
    pdeps, sdeps = world
    process_message(msg(1), pdeps)
    cid = conversation_id(SENDER)
    snap = pdeps.store.load(cid)
    pdeps.store.apply(cid, {"lastInboundAt": DELETE}, snap.version)
    sdeps.clock.advance(DAY + 1)
    assert deliver(task_for(pdeps, 1), sdeps) == "sent"


def test_past_the_window_the_business_own_reengagement_template_goes(world) -> None:  # noqa: F811
    from shared.adapters.profile_store import StaticProfiles, defaults_from_settings
    from shared.domain.profiles import profile_from_mapping

    pdeps, sdeps = world
    business, own = "whatsapp:+14155238886", "HX" + "2" * 32
    defaults = defaults_from_settings(sdeps.settings)
    own_profile = profile_from_mapping(business, {"reengagement_content_sid": own}, defaults)
    profiles = StaticProfiles(defaults, {business: own_profile})
    sdeps = replace(sdeps, twilio=TemplateTwilio(), profiles=profiles,
                    settings=replace(sdeps.settings, reengagement_content_sid="HX" + "1" * 32))
    process_message(msg(1), pdeps)
    sdeps.clock.advance(DAY + 1)
    assert deliver(task_for(pdeps, 1), sdeps) == "sent"
    assert sdeps.twilio.templates == [(SENDER, own, "")]

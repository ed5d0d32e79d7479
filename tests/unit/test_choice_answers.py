"""Choices on the answer path: what a tap or a typed number decides, the model's turn, the reply's parts."""

from __future__ import annotations

from datetime import datetime, timezone

from shared.domain.choice_answers import (
    ITEM_REPLY,
    MENU_PREFIX,
    SHOW_MENU,
    menu_offer,
    offer_parts,
    offered,
    route_for,
    turn_text,
    with_choices,
)
from shared.domain.choice_routing import NOT_A_CHOICE
from shared.domain.choices import Choice, Offer, numbered_text
from shared.domain.controls import HANDOFF, IGNORE, MODEL, REPLY, Decision
from shared.domain.conversation import Conversation
from shared.domain.entry import MessageEntry
from shared.domain.inbound import InboundMessage
from shared.domain.profiles import BusinessProfile, profile_from_mapping

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
PROFILE = profile_from_mapping("whatsapp:+1", {"handoff_reply": "A person will write.", "menus": [
    {"id": "main", "keywords": ["menu"], "welcome": True, "text": "How can we help?", "items": [
        {"id": "hours", "title": "Opening hours", "reply": "9 to 18."},
        {"id": "person", "title": "Talk to a person", "handoff": True},
        {"id": "more", "title": "More", "menu": "more"},
        {"id": "prices", "title": "Prices", "topic": "the price list"}]},
    {"id": "more", "text": "And also:", "items": [{"id": "wifi", "title": "Wi-Fi", "reply": "cafe / 1234"}]},
]}, BusinessProfile())


def message(body: str = "", **fields: str) -> InboundMessage:
    return InboundMessage(sid="SM" + "1" * 32, sender="whatsapp:+34600111222", recipient="whatsapp:+1", body=body,
                          **fields)  # type: ignore[arg-type]


def offering(offer: Offer) -> Conversation:
    conv = Conversation(history=[{"role": "user", "content": "menu", "sid": "SMa"},
                                 {"role": "assistant", "content": numbered_text(offer), "sid": "SMa"}])
    conv.offer = {"sid": "SMa", **offer.to_json()}
    return conv


def test_taps_decide_canned_replies_handoffs_and_menus_without_the_model() -> None:
    model = Decision(MODEL)
    hours = with_choices(model, route_for(message(button_payload="menu:main:hours"), PROFILE, Conversation()),
                         PROFILE, NOW)
    assert (hours.kind, hours.reason, hours.reply, hours.in_history) == (REPLY, ITEM_REPLY, "9 to 18.", True)
    person = with_choices(model, route_for(message(list_id="menu:main:person"), PROFILE, Conversation()), PROFILE, NOW)
    assert (person.kind, person.reason, person.reply) == (REPLY, HANDOFF, "A person will write.")
    assert person.state.paused_until is not None and person.state.paused_until > NOW
    more = with_choices(model, route_for(message(button_payload="menu:main:more"), PROFILE, Conversation()),
                        PROFILE, NOW)
    assert (more.reason, more.reply) == (MENU_PREFIX + "more", "And also:")
    topic = with_choices(model, route_for(message(button_payload="menu:main:prices"), PROFILE, Conversation()),
                         PROFILE, NOW)
    assert topic == model


def test_controls_that_come_first_are_never_replaced() -> None:
    ignored = Decision(IGNORE, "opted out")
    route = route_for(message(button_payload="menu:main:hours"), PROFILE, Conversation())
    assert with_choices(ignored, route, PROFILE, NOW) is ignored


def test_a_keyword_shows_its_menu_and_a_typed_number_answers_the_newest_offer_only() -> None:
    route = route_for(message("MENU"), PROFILE, Conversation())
    assert route.kind == SHOW_MENU and route.menu is not None and route.menu.id == "main"
    conv = offering(PROFILE.menus[0].offer())
    typed = with_choices(Decision(MODEL), route_for(message("1"), PROFILE, conv), PROFILE, NOW)
    assert typed.reply == "9 to 18."
    # Once the bot said something else, "1" is just text.
    conv.history = [*(conv.history or []), {"role": "assistant", "content": "Anything else?", "sid": "SMb"}]
    assert offered(conv) is None
    assert route_for(message("1"), PROFILE, conv).kind == NOT_A_CHOICE


def test_the_models_turn_says_what_was_chosen_and_what_was_quoted() -> None:
    chose = message(button_payload="choice:1:Large pizza", button_text="Large pizza")
    assert turn_text(chose, route_for(chose, PROFILE, Conversation()), Conversation()) == (
        "[The customer chose “Large pizza” from the options offered.]")
    prices = message(button_payload="menu:main:prices", button_text="Prices")
    assert "tell them about the price list" in turn_text(prices, route_for(prices, PROFILE, Conversation()),
                                                         Conversation())
    conv = Conversation(history=[{"role": "user", "content": "hi", "sid": "SMin"},
                                 {"role": "assistant", "content": "Hello!", "sid": "SMin"}],
                        messages={"SMin": MessageEntry(status="sent", twilio_sids=["SMout"])})
    quoting = message("and you?", replied_sid="SMout")
    assert turn_text(quoting, route_for(quoting, PROFILE, conv), conv) == (
        "[The customer is replying to your earlier message: “Hello!”]\nand you?")


def test_the_menu_ends_the_parts_and_the_welcome_menu_follows_a_first_answer() -> None:
    shown = Decision(REPLY, MENU_PREFIX + "main", "How can we help?")
    offer = menu_offer(shown, PROFILE)
    assert offer is not None
    parts, recorded = offer_parts([], offer)
    assert parts == [numbered_text(offer)] and recorded is not None and len(recorded["choices"]) == 4
    first = menu_offer(Decision(MODEL, welcome="Hi!"), PROFILE)
    assert first is not None and first.body == "How can we help?"
    assert menu_offer(Decision(MODEL), PROFILE) is None
    assert offer_parts(["a", "b"], None) == (["a", "b"], None)


def test_a_long_offer_loses_nothing_and_too_many_choices_go_as_plain_parts() -> None:
    long = Offer("word " * 400, (Choice("a", "A"), Choice("b", "B")))
    parts, recorded = offer_parts(["intro"], long)
    assert parts[0] == "intro" and len(parts) >= 3 and parts[-1].endswith("1. A\n2. B")
    assert recorded is not None and recorded["body"] != long.body
    many = Offer("Pick", tuple(Choice(f"c{i}", "x" * 90, "y" * 190) for i in range(10)))
    parts, recorded = offer_parts([], many)
    assert len(parts) > 1 and recorded is not None and parts[-1] != numbered_text(Offer.from_json(recorded))

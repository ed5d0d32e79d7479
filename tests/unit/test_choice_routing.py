"""Taps, typed numbers and quoted replies: where each goes, from the conversation's own record."""

from __future__ import annotations

import pytest

from shared.domain.choice_routing import (
    ACTION,
    CHOSE,
    NOT_A_CHOICE,
    Quote,
    chosen_for_model,
    find_quote,
    parse_payload,
    quote_for_model,
    route_payload,
    route_typed,
    typed_choice,
)
from shared.domain.choices import model_offer
from shared.domain.profiles import BusinessProfile, profile_from_mapping

MENUS = profile_from_mapping("whatsapp:+1", {"menus": [{
    "id": "main", "keywords": ["menu"], "text": "How can we help?",
    "items": [
        {"id": "hours", "title": "Opening hours", "reply": "9 to 18."},
        {"id": "person", "title": "Talk to a person", "handoff": True},
    ],
}]}, BusinessProfile()).menus
MAIN = MENUS[0].offer()


def test_a_tap_on_a_menu_item_routes_to_its_action_without_the_model() -> None:
    route = route_payload("menu:main:hours", "Opening hours", MENUS)
    assert route.kind == ACTION
    assert route.item is not None and route.item.target == "9 to 18."
    assert route.menu is MENUS[0]


def test_a_tap_on_an_item_the_profile_no_longer_has_goes_to_the_model_as_chosen() -> None:
    route = route_payload("menu:main:gone", "Old choice", MENUS)
    assert (route.kind, route.chosen) == (CHOSE, "Old choice")
    assert route_payload("menu:other:hours", "", MENUS).chosen == "hours"


def test_a_model_choice_reaches_the_model_with_its_full_title() -> None:
    offer = model_offer("Which size?", ["Large family pizza with extra cheese", "Small"])
    route = route_payload(offer.choices[0].id, "Large family pizza…", MENUS)
    assert (route.kind, route.chosen) == (CHOSE, "Large family pizza with extra cheese")
    assert chosen_for_model(route) == (
        "[The customer chose “Large family pizza with extra cheese” from the options offered.]")


def test_a_template_buttons_payload_goes_to_the_model_with_what_it_showed() -> None:
    route = route_payload("confirm_booking", "Yes, confirm", MENUS)
    assert (route.kind, route.chosen, route.payload) == (CHOSE, "Yes, confirm", "confirm_booking")
    assert route_payload("", "", MENUS).kind == NOT_A_CHOICE


@pytest.mark.parametrize(("payload", "parsed"), [
    ("menu:main:hours", ("menu", "main", "hours")),
    ("choice:2:Tea: green", ("choice", "Tea: green", "")),
    ("menu:main", ("other", "menu:main", "")),
    ("choice:", ("other", "choice:", "")),
    ("anything", ("other", "anything", "")),
])
def test_payloads(payload: str, parsed: tuple[str, str, str]) -> None:
    assert parse_payload(payload) == parsed


@pytest.mark.parametrize(("typed", "index"), [
    ("1", 0), (" 2 ", 1), ("2.", 1), ("#2", 1), ("2)", 1), ("2️⃣", 1), ("opening hours", 0),
    ("Talk to a person!", 1),
    ("3", None), ("0", None), ("12", None), ("2 please", None), ("hours", None), ("", None),
])
def test_a_typed_answer_to_numbered_choices(typed: str, index: int | None) -> None:
    choice = typed_choice(typed, MAIN)
    assert choice == (None if index is None else MAIN.choices[index])


def test_a_typed_number_routes_like_the_tap_on_that_choice() -> None:
    assert route_typed("2", MAIN, MENUS).item is not None
    assert route_typed("2", MAIN, MENUS).item.id == "person"  # type: ignore[union-attr]
    assert route_typed("2", None, MENUS).kind == NOT_A_CHOICE
    assert route_typed("hello", MAIN, MENUS).kind == NOT_A_CHOICE


RECORD_MESSAGES = {
    "SMin1": {"status": "sent", "twilioSids": ["SMout1", "SMout2"]},
    "SMin2": {"status": "sent", "twilioSids": ["SMout3"], "lateTwilioSids": ["SMlate"]},
    "SMgone": {"status": "sent", "twilioSids": ["SMout9"]},
}
HISTORY = [
    {"role": "user", "content": "When are you open?", "sid": "SMin1"},
    {"role": "assistant", "content": "9 to 18, Monday to Saturday.", "sid": "SMin1"},
    {"role": "user", "content": "And prices?", "sid": "SMin2"},
    {"role": "assistant", "content": "From 10 euros.", "sid": "SMin2"},
]


def test_a_quoted_bot_reply_is_found_by_the_twilio_sids_the_sender_recorded() -> None:
    found = find_quote(RECORD_MESSAGES, HISTORY, "SMout2")
    assert found == Quote("SMout2", "assistant", "9 to 18, Monday to Saturday.")
    assert find_quote(RECORD_MESSAGES, HISTORY, "SMlate").text == "From 10 euros."
    told = quote_for_model(find_quote(RECORD_MESSAGES, HISTORY, "SMout3"))
    assert told == "[The customer is replying to your earlier message: “From 10 euros.”]"


def test_the_customers_own_quoted_message_is_found_by_its_sid() -> None:
    quote = find_quote(RECORD_MESSAGES, HISTORY, "SMin2")
    assert quote == Quote("SMin2", "user", "And prices?")
    assert "their own earlier message: “And prices?”" in quote_for_model(quote)


def test_a_quote_no_longer_in_the_record_is_unknown_never_invented() -> None:
    for sid in ("SMout9", "SMnever"):
        quote = find_quote(RECORD_MESSAGES, HISTORY, sid)
        assert not quote.known and quote.text == ""
        assert "no longer in this conversation's record" in quote_for_model(quote)
    assert quote_for_model(find_quote(RECORD_MESSAGES, HISTORY, "")) == ""


def test_a_long_quote_is_bounded() -> None:
    history = [{"role": "assistant", "content": "x" * 5000, "sid": "SMin1"}]
    told = quote_for_model(find_quote(RECORD_MESSAGES, history, "SMout1"))
    assert len(told) < 600 and "…" in told

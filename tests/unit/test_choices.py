"""Choices as WhatsApp shapes: which shape, every text within WhatsApp's limits, the content hash."""

from __future__ import annotations

import pytest

from shared.domain.choices import (
    BODY_MAX,
    BUTTON_TITLE_MAX,
    ID_MAX,
    LIST_BUTTON_MAX,
    LIST_DESCRIPTION_MAX,
    LIST_PICKER,
    LIST_ROW_MAX,
    MAX_CHOICES,
    NUMBERED,
    QUICK_REPLY,
    Choice,
    Offer,
    content_hash,
    content_types,
    friendly_name,
    layout,
    lead_and_body,
    menu_payload,
    model_offer,
    numbered_text,
    shorten,
)
from shared.domain.splitting import utf16_len


def offer(n: int, title: str = "Option", description: str = "") -> Offer:
    return Offer("Pick one", tuple(Choice(f"id{i}", f"{title} {i}", description) for i in range(1, n + 1)))


@pytest.mark.parametrize(("n", "kind"), [(1, QUICK_REPLY), (3, QUICK_REPLY), (4, LIST_PICKER), (10, LIST_PICKER),
                                         (11, NUMBERED), (0, NUMBERED)])
def test_layout_by_count(n: int, kind: str) -> None:
    assert layout(offer(n)) == kind


def test_quick_reply_types_as_the_content_api_takes_them() -> None:
    types = content_types(Offer("When?", (Choice("a", "Today"), Choice("b", "Tomorrow"))))
    assert types == {QUICK_REPLY: {"body": "When?", "actions": [{"title": "Today", "id": "a"},
                                                                 {"title": "Tomorrow", "id": "b"}]}}


def test_list_picker_types_as_the_content_api_takes_them() -> None:
    types = content_types(Offer("Which?", tuple(Choice(f"r{i}", f"Row {i}", f"About {i}") for i in range(5)), "Menu"))
    body = types[LIST_PICKER]
    assert body["body"] == "Which?" and body["button"] == "Menu"
    assert body["items"][0] == {"item": "Row 0", "id": "r0", "description": "About 0"}
    assert len(body["items"]) == 5


def test_numbered_text_has_no_content_types() -> None:
    assert content_types(offer(12)) == {}


@pytest.mark.parametrize("title", [
    "Book a table for tonight, please",
    "A" * 200,
    "Réservez une table 🍽️🍽️🍽️🍽️🍽️ pour ce soir",
    "word " * 40,
    "👩‍👩‍👧‍👦" * 10,
])
def test_every_text_fits_whatsapps_limits_and_is_never_empty(title: str) -> None:
    buttons = content_types(Offer("b" * 3000, (Choice("x" * 500, title, "d" * 300), Choice("y", title))))
    for action in buttons[QUICK_REPLY]["actions"]:
        assert 0 < utf16_len(action["title"]) <= BUTTON_TITLE_MAX
        assert 0 < len(action["id"]) <= ID_MAX
    assert utf16_len(buttons[QUICK_REPLY]["body"]) <= BODY_MAX
    rows = content_types(Offer("b", tuple(Choice(f"i{n}", title, "d " * 100) for n in range(6)), "b" * 40))
    picker = rows[LIST_PICKER]
    assert utf16_len(picker["button"]) <= LIST_BUTTON_MAX
    for item in picker["items"]:
        assert 0 < utf16_len(item["item"]) <= LIST_ROW_MAX
        assert utf16_len(item["description"]) <= LIST_DESCRIPTION_MAX


def test_shortening_cuts_at_a_word_and_says_so() -> None:
    assert shorten("Book a table for tonight, please", 20) == "Book a table for…"
    assert shorten("  Opening\n hours  ", 20) == "Opening hours"
    assert shorten("Supercalifragilisticexpialidocious", 20).endswith("…")
    assert utf16_len(shorten("Supercalifragilisticexpialidocious", 20)) == 20


def test_titles_stay_unique_after_shortening() -> None:
    """WhatsApp refuses two buttons with the same title."""
    long = "Check the status of my order number"
    types = content_types(Offer("?", (Choice("a", long + " one"), Choice("b", long + " two"), Choice("c", long))))
    titles = [a["title"] for a in types[QUICK_REPLY]["actions"]]
    assert len({t.casefold() for t in titles}) == 3
    assert all(utf16_len(t) <= BUTTON_TITLE_MAX for t in titles)


def test_a_long_text_before_choices_loses_nothing() -> None:
    text = ("First paragraph. " * 60).strip() + "\n\nLast: which one?"
    lead, body = lead_and_body(text)
    assert lead and body
    assert utf16_len(body) <= BODY_MAX
    assert " ".join(lead + [body]).replace("\n", " ").split() == text.replace("\n", " ").split()
    assert lead_and_body("Short?") == ([], "Short?")


def test_numbered_text_shows_every_choice_with_its_number() -> None:
    text = numbered_text(Offer("What now?", (Choice("a", "Hours"), Choice("b", "Prices", "What it costs"))))
    assert text == "What now?\n\n1. Hours\n2. Prices — What it costs"
    assert numbered_text(offer(12)).splitlines()[-1] == "12. Option 12"


def test_model_offer_keeps_the_full_title_in_the_payload_and_drops_junk() -> None:
    made = model_offer("Pick", ["Tea", {"title": "Coffee", "description": "hot"}, "", "tea", None, {"x": 1}])
    assert [c.title for c in made.choices] == ["Tea", "Coffee"]
    assert made.choices[1].description == "hot"
    assert made.choices[0].id == "choice:1:Tea"
    long = model_offer("Pick", ["x" * 500])
    assert len(long.choices[0].id) <= ID_MAX
    assert len(model_offer("Pick", [f"o{i}" for i in range(100)]).choices) == MAX_CHOICES


def test_content_hash_names_exactly_what_is_sent() -> None:
    one = content_types(Offer("Pick", (Choice(menu_payload("main", "a"), "A"),)))
    same = content_types(Offer("Pick", (Choice(menu_payload("main", "a"), "A"),)))
    other = content_types(Offer("Pick", (Choice(menu_payload("main", "a"), "B"),)))
    assert content_hash(one) == content_hash(same)
    assert content_hash(one) != content_hash(other)
    assert content_hash(one) != content_hash(one, language="es")
    assert len(content_hash(one)) == 64
    assert friendly_name(content_hash(one)).startswith("wa-choices-")


def test_offer_round_trips_through_json() -> None:
    made = Offer("Pick", (Choice("a", "A", "first"), Choice("b", "B")), "See")
    assert Offer.from_json(made.to_json()) == made


def test_reply_with_choices_definition_and_lenient_arguments() -> None:
    from shared.domain.reply_with_choices import DEFINITION, NAME, offer_from_arguments

    assert DEFINITION["function"]["name"] == NAME == "reply_with_choices"
    assert DEFINITION["function"]["parameters"]["required"] == ["text", "choices"]
    made = offer_from_arguments(
        '{"text": "Which size?", "choices": [{"title": "Small"}, "Large", 7], "button": "Sizes"}')
    assert made is not None and [c.title for c in made.choices] == ["Small", "Large", "7"]
    assert made.button == "Sizes"
    assert offer_from_arguments('{"text": "Only text", "choices": "nope"}') == Offer("Only text", ())
    for junk in ("", "not json", "[]", '{"text": 3, "choices": []}'):
        assert offer_from_arguments(junk) is None


def test_the_built_in_function_ends_the_answer_with_its_offer() -> None:
    from shared.domain.choice_answers import offer_parts
    from shared.domain.reply_with_choices import DEFINITION, ReplyWithChoices

    function = ReplyWithChoices()
    assert function.name == "reply_with_choices" and function.definition() is DEFINITION
    result = function.run({"text": "Which size?", "choices": ["Small", "Large"]})
    assert result.final is not None and [c.title for c in result.final.choices] == ["Small", "Large"]
    parts, recorded = offer_parts([], result.final)
    assert parts == ["Which size?\n\n1. Small\n2. Large"] and recorded == result.final.to_json()
    assert function.run({"text": "no options"}).final is None

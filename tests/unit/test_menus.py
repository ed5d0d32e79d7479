"""The ``menus:`` profile key: what it accepts, and every mistake refused with the business and key named."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.choices import Choice
from shared.domain.menus import HANDOFF, MENU, REPLY, TOOL, TOPIC, find_menu, menu_for_text, welcome_menu
from shared.domain.profiles import BusinessProfile, ProfileError, profile_from_mapping

ADDRESS = "whatsapp:+14155238886"


def main_menu(**changes: Any) -> dict[str, Any]:
    menu: dict[str, Any] = {
        "id": "main",
        "welcome": True,
        "keywords": ["menu", "Options"],
        "text": "How can we help?",
        "items": [
            {"id": "hours", "title": "Opening hours", "reply": "9 to 18, Monday to Saturday."},
            {"id": "prices", "title": "Prices", "description": "What things cost", "topic": "price list"},
            {"id": "person", "title": "Talk to a person", "handoff": True},
            {"id": "book", "title": "Book a table", "tool": "book_table"},
            {"id": "more", "title": "More", "menu": "other"},
        ],
    }
    menu.update(changes)
    return menu


ITEM = r"menus\[1\].items\[1\]"
OTHER = {"id": "other", "text": "And also:", "items": [{"id": "wifi", "title": "Wi-Fi", "reply": "cafe / 1234"}]}


def load(*menus: Any, **profile: Any) -> BusinessProfile:
    return profile_from_mapping(ADDRESS, {"menus": list(menus), **profile}, BusinessProfile())


def test_a_valid_menu_loads_with_every_action() -> None:
    profile = load(main_menu(), OTHER)
    main = find_menu(profile.menus, "main")
    assert main is not None and main.welcome and main.keywords == ("menu", "Options")
    assert [(i.id, i.action, i.target) for i in main.items] == [
        ("hours", REPLY, "9 to 18, Monday to Saturday."), ("prices", TOPIC, "price list"), ("person", HANDOFF, ""),
        ("book", TOOL, "book_table"), ("more", MENU, "other"),
    ]
    assert main.offer().choices[1] == Choice("menu:main:prices", "Prices", "What things cost")
    assert welcome_menu(profile.menus) is main
    assert menu_for_text(profile.menus, "  OPTIONS ") is main
    assert menu_for_text(profile.menus, "options please") is None
    assert BusinessProfile().menus == ()


@pytest.mark.parametrize(("menus", "key", "problem"), [
    ("not a list", "menus", "must be a list"),
    ([main_menu(id="has space"), OTHER], r"menus\[1\].id", "letters, digits"),
    ([main_menu(colour="red"), OTHER], r"menus\[1\].colour", "unknown key"),
    ([main_menu(text=""), OTHER], r"menus\[1\].text", "non-empty"),
    ([main_menu(items=[]), OTHER], r"menus\[1\].items", "non-empty list"),
    ([main_menu(items=[{"id": f"i{n}", "title": "t", "reply": "r"} for n in range(11)]), OTHER],
     r"menus\[1\].items", "at most 10"),
    ([main_menu(items=[{"id": "a", "title": "t"}]), OTHER], r"menus\[1\].items\[1\]", "exactly one action"),
    ([main_menu(items=[{"id": "a", "title": "t", "reply": "r", "handoff": True}]), OTHER],
     r"menus\[1\].items\[1\]", "exactly one action"),
    ([main_menu(items=[{"id": "a", "title": "t", "handoff": "yes"}]), OTHER], ITEM + ".handoff", "must be true"),
    ([main_menu(items=[{"id": "a", "title": "t", "tool": "no spaces"}]), OTHER], ITEM + ".tool", "must name"),
    ([main_menu(items=[{"id": "a", "title": "", "reply": "r"}]), OTHER], ITEM + ".title", "non-empty"),
    ([main_menu(items=[{"id": "a", "title": "t" * 101, "reply": "r"}]), OTHER], ITEM + ".title", "at most 100"),
    ([main_menu(items=[{"id": "a", "title": "t", "reply": "r"}, {"id": "a", "title": "u", "reply": "r"}]), OTHER],
     r"menus\[1\].items", "more than once"),
    ([main_menu(), OTHER, dict(OTHER)], "menus", "menu id 'other' appears more than once"),
    ([main_menu()], r"menus.main.more.menu", "names no menu"),
    ([main_menu(keywords=["STOP"]), OTHER], r"menus\[1\].keywords", "already a command"),
    ([main_menu(keywords=["/help"]), OTHER], r"menus\[1\].keywords", "already a command"),
    ([main_menu(), OTHER, {**OTHER, "id": "third", "welcome": True}], "menus", "more than one menu has welcome"),
    ([main_menu(), {**OTHER, "keywords": ["menu"]}], "menus", "opens both"),
    ([main_menu(items=[{"id": "a", "title": "t", "reply": "r"}]), OTHER], "menus", "never shown"),
    ([main_menu(welcome="yes"), OTHER], r"menus\[1\].welcome", "true or false"),
])
def test_mistakes_are_refused_naming_business_and_key(menus: Any, key: str, problem: str) -> None:
    with pytest.raises(ProfileError, match=rf"business 'whatsapp:\+14155238886': key '{key}.*{problem}"):
        profile_from_mapping(ADDRESS, {"menus": menus}, BusinessProfile())


def test_a_keyword_the_profile_made_a_command_is_refused_too() -> None:
    with pytest.raises(ProfileError, match="already a command"):
        load(main_menu(keywords=["agent"]), OTHER, handoff_keyword="agent")
    assert load(main_menu(keywords=["agent"]), OTHER).menus[0].keywords == ("agent",)

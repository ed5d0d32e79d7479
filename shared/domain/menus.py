"""A profile's ``menus:``: a keyword, or the welcome, answered with fixed choices.

Each item has an id and exactly one action::

    menus:
      - id: main
        welcome: true              # shown with the welcome, on a first message
        keywords: [menu, options]  # and whenever the whole message is one of these
        text: How can we help?
        button: See options        # the list's button (4 to 10 items)
        items:
          - {id: hours, title: Opening hours, reply: "We're open 9 to 18, Monday to Saturday."}
          - {id: prices, title: Prices, description: What things cost, topic: price list}
          - {id: person, title: Talk to a person, handoff: true}
          - {id: book, title: Book a table, tool: book_table}
          - {id: more, title: More, menu: other}

``reply`` answers with that text, ``topic`` asks the business's knowledge
about it, ``handoff`` hands the conversation to a person, ``tool`` calls that
business tool, ``menu`` shows another menu. A tap on an item runs its action
without the model (shared/domain/choice_routing.py).

Everything that would misbehave at the first tap is refused when the profile
is loaded, with the business and the key named: unknown keys, ids that are
not short words or repeat, an item with no action or two, a ``menu`` that
names no menu, more than 10 items, a keyword that a command already owns.
Titles are not refused for length: they are fitted to WhatsApp's limits when
sent (shared/domain/choices.py). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from shared.domain.choices import DEFAULT_LIST_BUTTON, MAX_LIST_ROWS, Choice, Offer, menu_payload

REPLY = "reply"
TOPIC = "topic"
HANDOFF = "handoff"
TOOL = "tool"
MENU = "menu"
ACTIONS = (REPLY, TOPIC, HANDOFF, TOOL, MENU)

MAX_MENUS = 20
MAX_KEYWORDS = 10
MAX_TITLE_CHARS = 100
MAX_DESCRIPTION_CHARS = 200
MAX_TEXT_CHARS = 1600
MAX_TOPIC_CHARS = 200
_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MENU_FIELDS = frozenset({"id", "text", "items", "keywords", "welcome", "button"})
_ITEM_FIELDS = frozenset({"id", "title", "description", *ACTIONS})

# (address, key, problem) -> the exception to raise: the profile's own error type.
Fail = Callable[[str, str, str], Exception]


@dataclass(frozen=True)
class MenuItem:
    """One choice of a menu and what a tap on it does (``action`` names it, ``target`` says with what)."""

    id: str
    title: str
    action: str
    target: str = ""
    description: str = ""


@dataclass(frozen=True)
class Menu:
    id: str
    text: str
    items: tuple[MenuItem, ...]
    keywords: tuple[str, ...] = ()
    welcome: bool = False
    button: str = DEFAULT_LIST_BUTTON

    def offer(self) -> Offer:
        """The menu as choices; each tap names this menu and the item, so it routes without the model."""
        return Offer(self.text, tuple(Choice(menu_payload(self.id, i.id), i.title, i.description) for i in self.items),
                     self.button)

    def item(self, item_id: str) -> MenuItem | None:
        return next((i for i in self.items if i.id == item_id), None)


def _words(profile: Any) -> set[str]:
    """Words a command already answers: a menu keyword must not take them (the command would win anyway)."""
    words: set[str] = set()
    for key in ("opt_out_keywords", "opt_in_keywords", "reset_commands", "help_commands"):
        words.update(w.casefold() for w in getattr(profile, key, ()) or ())
    handoff = getattr(profile, "handoff_keyword", "")
    if handoff:
        words.add(handoff.casefold())
    return words


def _text(address: str, where: str, raw: Any, limit: int, fail: Fail, required: bool = True) -> str:
    if raw is None and not required:
        return ""
    if not isinstance(raw, str) or (required and not raw.strip()):
        raise fail(address, where, "must be non-empty text")
    value = raw.strip()
    if len(value) > limit:
        raise fail(address, where, f"is {len(value)} characters long, at most {limit}")
    return value


def _identifier(address: str, where: str, raw: Any, fail: Fail) -> str:
    if not isinstance(raw, str) or not _ID.fullmatch(raw):
        raise fail(address, where, f"must be 1 to 40 letters, digits, '_' or '-', got {raw!r}")
    return raw


def _item(address: str, where: str, raw: Any, fail: Fail) -> MenuItem:
    if not isinstance(raw, Mapping):
        raise fail(address, where, "must be a mapping with an id, a title and one action")
    extra = sorted(str(k) for k in raw if k not in _ITEM_FIELDS)
    if extra:
        raise fail(address, f"{where}.{extra[0]}", f"unknown key (an item has id, title, description and one of "
                                                   f"{', '.join(ACTIONS)})")
    item_id = _identifier(address, f"{where}.id", raw.get("id"), fail)
    title = _text(address, f"{where}.title", raw.get("title"), MAX_TITLE_CHARS, fail)
    description = _text(address, f"{where}.description", raw.get("description"), MAX_DESCRIPTION_CHARS, fail,
                        required=False)
    actions = [a for a in ACTIONS if a in raw]
    if len(actions) != 1:
        raise fail(address, where, f"must have exactly one action of {', '.join(ACTIONS)}, got "
                                   f"{', '.join(actions) or 'none'}")
    action, value = actions[0], raw[actions[0]]
    if action == REPLY:
        target = _text(address, f"{where}.reply", value, MAX_TEXT_CHARS, fail)
    elif action == TOPIC:
        target = _text(address, f"{where}.topic", value, MAX_TOPIC_CHARS, fail)
    elif action == HANDOFF:
        if value is not True:
            raise fail(address, f"{where}.handoff", "must be true (leave it out for no handoff)")
        target = ""
    elif action == TOOL:
        if not isinstance(value, str) or not _TOOL_NAME.fullmatch(value):
            raise fail(address, f"{where}.tool", f"must name a tool of this profile, got {value!r}")
        target = value
    else:
        target = _identifier(address, f"{where}.menu", value, fail)
    return MenuItem(item_id, title, action, target, description)


def _menu(address: str, where: str, raw: Any, reserved: set[str], fail: Fail) -> Menu:
    if not isinstance(raw, Mapping):
        raise fail(address, where, "must be a mapping with an id, a text and items")
    extra = sorted(str(k) for k in raw if k not in _MENU_FIELDS)
    if extra:
        raise fail(address, f"{where}.{extra[0]}", f"unknown key (a menu has {', '.join(sorted(_MENU_FIELDS))})")
    menu_id = _identifier(address, f"{where}.id", raw.get("id"), fail)
    text = _text(address, f"{where}.text", raw.get("text"), MAX_TEXT_CHARS, fail)
    button = _text(address, f"{where}.button", raw.get("button"), MAX_TITLE_CHARS, fail, required=False)
    welcome = raw.get("welcome", False)
    if not isinstance(welcome, bool):
        raise fail(address, f"{where}.welcome", f"must be true or false, got {type(welcome).__name__}")
    keywords = raw.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) and k.strip() for k in keywords):
        raise fail(address, f"{where}.keywords", "must be a list of non-empty texts")
    if len(keywords) > MAX_KEYWORDS:
        raise fail(address, f"{where}.keywords", f"has {len(keywords)} keywords, at most {MAX_KEYWORDS}")
    taken = [k for k in keywords if k.strip().casefold() in reserved]
    if taken:
        raise fail(address, f"{where}.keywords", f"{taken[0]!r} is already a command of this profile")
    items_raw = raw.get("items")
    if not isinstance(items_raw, list) or not items_raw:
        raise fail(address, f"{where}.items", "must be a non-empty list of items")
    if len(items_raw) > MAX_LIST_ROWS:
        raise fail(address, f"{where}.items", f"has {len(items_raw)} items, at most {MAX_LIST_ROWS} "
                                              "(WhatsApp's list holds 10)")
    items = tuple(_item(address, f"{where}.items[{n}]", item, fail) for n, item in enumerate(items_raw, start=1))
    ids = [i.id for i in items]
    repeated = next((i for i in ids if ids.count(i) > 1), None)
    if repeated:
        raise fail(address, f"{where}.items", f"item id {repeated!r} appears more than once")
    return Menu(menu_id, text, items, tuple(k.strip() for k in keywords), welcome, button or DEFAULT_LIST_BUTTON)


def parse_menus(address: str, raw: Any, profile: Any, fail: Fail) -> tuple[Menu, ...]:
    """The ``menus`` key of ``address``'s profile, validated; ``profile`` holds its commands (never shadowed)."""
    if not isinstance(raw, list):
        raise fail(address, "menus", f"must be a list of menus, got {type(raw).__name__}")
    if len(raw) > MAX_MENUS:
        raise fail(address, "menus", f"has {len(raw)} menus, at most {MAX_MENUS}")
    reserved = _words(profile)
    menus = tuple(_menu(address, f"menus[{n}]", m, reserved, fail) for n, m in enumerate(raw, start=1))
    ids = [m.id for m in menus]
    repeated = next((i for i in ids if ids.count(i) > 1), None)
    if repeated:
        raise fail(address, "menus", f"menu id {repeated!r} appears more than once")
    if sum(m.welcome for m in menus) > 1:
        raise fail(address, "menus", "more than one menu has welcome: true")
    seen: dict[str, str] = {}
    for menu in menus:
        for keyword in menu.keywords:
            other = seen.setdefault(keyword.casefold(), menu.id)
            if other != menu.id:
                raise fail(address, "menus", f"keyword {keyword!r} opens both {other!r} and {menu.id!r}")
        for item in menu.items:
            if item.action == MENU and item.target not in ids:
                raise fail(address, f"menus.{menu.id}.{item.id}.menu",
                           f"names no menu of this profile: {item.target!r}")
    opened = {i.target for m in menus for i in m.items if i.action == MENU}
    hidden = next((m.id for m in menus if not m.keywords and not m.welcome and m.id not in opened), None)
    if hidden:
        raise fail(address, "menus", f"menu {hidden!r} is never shown: give it keywords, welcome: true, "
                                     "or open it from another menu's item")
    return menus


def menu_for_text(menus: tuple[Menu, ...], text: str) -> Menu | None:
    """The menu a whole message asks for by keyword (case and surrounding spaces ignored)."""
    wanted = text.strip().casefold()
    if not wanted:
        return None
    return next((m for m in menus if any(k.casefold() == wanted for k in m.keywords)), None)


def welcome_menu(menus: tuple[Menu, ...]) -> Menu | None:
    return next((m for m in menus if m.welcome), None)


def find_menu(menus: tuple[Menu, ...], menu_id: str) -> Menu | None:
    return next((m for m in menus if m.id == menu_id), None)

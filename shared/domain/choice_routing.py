"""What a tap, a typed "2" or a swipe-reply means, as pure functions.

* A tap on a menu item (payload ``menu:<menu>:<item>``) runs the item's action
  without the model, when the business's profile still has that item.
* Any other tap (a choice the model offered, a button of an approved template
  the business sent, an item of a menu since removed) goes to the model as
  "the customer chose X", with the full text of what was chosen.
* A typed answer to the choices last offered (a number, "#2", "2.", the
  keycap emoji, or the choice's title) is understood as a tap on that choice.
* A reply to a quoted message tells the model which message it was and what
  it said, found in the conversation's own record: a bot reply by the Twilio
  SIDs the sender recorded, the customer's own message by its SID. Something
  no longer in the record is said to be unknown, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from shared.domain.choices import MENU_PREFIX, MODEL_PREFIX, Choice, Offer
from shared.domain.menus import Menu, MenuItem, find_menu

ACTION = "action"
CHOSE = "chose"
NOT_A_CHOICE = "none"
# A quoted text shown to the model is bounded like the rest of its prompt.
MAX_QUOTE_CHARS = 500
_NUMBER = re.compile(r"#?\s*(\d{1,2})\s*[.)\]:]?")
_KEYCAP = re.compile(r"(\d)\ufe0f?\u20e3")


@dataclass(frozen=True)
class Route:
    """Where an answer to choices goes: a menu item's action, or the model told what was chosen."""

    kind: str
    chosen: str = ""
    menu: Menu | None = None
    item: MenuItem | None = None
    payload: str = ""


def parse_payload(payload: str) -> tuple[str, str, str]:
    """``(kind, a, b)``: ("menu", menu id, item id), ("choice", title, "") or ("other", payload, "")."""
    if payload.startswith(MENU_PREFIX):
        menu_id, _, item_id = payload[len(MENU_PREFIX):].partition(":")
        if menu_id and item_id:
            return "menu", menu_id, item_id
    if payload.startswith(MODEL_PREFIX):
        _, sep, title = payload[len(MODEL_PREFIX):].partition(":")
        if sep and title:
            return "choice", title, ""
    return "other", payload, ""


def route_payload(payload: str, shown: str, menus: tuple[Menu, ...]) -> Route:
    """The route of a tap with ``payload`` (ButtonPayload or ListId) whose visible text was ``shown``."""
    if not payload:
        return Route(NOT_A_CHOICE)
    kind, a, b = parse_payload(payload)
    if kind == "menu":
        menu = find_menu(menus, a)
        item = menu.item(b) if menu is not None else None
        if item is not None:
            return Route(ACTION, item.title, menu, item, payload)
        return Route(CHOSE, shown or b, payload=payload)
    if kind == "choice":
        return Route(CHOSE, a, payload=payload)
    return Route(CHOSE, shown or payload, payload=payload)


def typed_choice(text: str, offer: Offer | None) -> Choice | None:
    """The choice a typed answer picks from ``offer``: its number (1-based) or its exact title, else None."""
    if offer is None or not offer.choices:
        return None
    answer = text.strip()
    match = _NUMBER.fullmatch(answer) or _KEYCAP.fullmatch(answer)
    if match:
        n = int(match.group(1))
        return offer.choices[n - 1] if 1 <= n <= len(offer.choices) else None
    wanted = answer.casefold().rstrip(".!")
    return next((c for c in offer.choices if c.title.casefold() == wanted), None)


def route_typed(text: str, offer: Offer | None, menus: tuple[Menu, ...]) -> Route:
    """A typed answer routed as a tap on the choice it names; NOT_A_CHOICE when it names none."""
    choice = typed_choice(text, offer)
    if choice is None:
        return Route(NOT_A_CHOICE)
    return route_payload(choice.id, choice.title, menus)


def chosen_for_model(route: Route) -> str:
    """The customer's turn, as the model reads it, when they picked a choice with no action of its own."""
    return f"[The customer chose “{route.chosen}” from the options offered.]"


@dataclass(frozen=True)
class Quote:
    """The message a reply quotes: ``role`` "assistant" (ours) or "user" (theirs), "" when not in the record."""

    sid: str
    role: str = ""
    text: str = ""

    @property
    def known(self) -> bool:
        return bool(self.role)


def _turn(history: list[Mapping[str, Any]], sid: str, role: str) -> str | None:
    for turn in reversed(history):
        if turn.get("sid") == sid and turn.get("role") == role:
            return str(turn.get("content", ""))
    return None


def find_quote(messages: Mapping[str, Mapping[str, Any]], history: list[Mapping[str, Any]], quoted_sid: str) -> Quote:
    """The quoted message in the conversation's record: its entries (``twilioSids`` per reply) and history.

    A bot reply is found through the entry whose recorded Twilio SIDs include
    ``quoted_sid``, then the assistant turn of that entry; the customer's own
    message is the user turn with that SID. Anything else is unknown.
    """
    if not quoted_sid:
        return Quote("")
    for sid, entry in messages.items():
        sent = [*entry.get("twilioSids", []), *entry.get("lateTwilioSids", [])]
        if quoted_sid in {str(s) for s in sent}:
            text = _turn(history, sid, "assistant")
            return Quote(quoted_sid, "assistant", text) if text else Quote(quoted_sid)
    text = _turn(history, quoted_sid, "user")
    return Quote(quoted_sid, "user", text) if text else Quote(quoted_sid)


def quote_for_model(quote: Quote) -> str:
    """What the model is told about the quoted message, bounded; never a guess at what it said."""
    if not quote.sid:
        return ""
    if not quote.known:
        return "[The customer is replying to an earlier message that is no longer in this conversation's record.]"
    text = quote.text if len(quote.text) <= MAX_QUOTE_CHARS else quote.text[: MAX_QUOTE_CHARS - 1] + "…"
    whose = "your earlier message" if quote.role == "assistant" else "their own earlier message"
    return f"[The customer is replying to {whose}: “{text}”]"

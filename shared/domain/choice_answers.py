"""Choices on the one answer path, as pure rules: what a tap decides, what the model reads, which parts go.

* :func:`route_for` finds what a message answers: a tap (its payload), a typed
  answer to the choices the newest answer offered, or a menu's keyword.
* :func:`with_choices` turns the business controls' decision into the menu's:
  a canned reply, a handoff, another menu. It only ever replaces a decision
  that would call the model, so opt-out, pause, rate limits and commands come
  first, as for any message.
* :func:`turn_text` is the customer's turn as the model reads it: what they
  chose, and the message they quoted, from the conversation's own record.
* :func:`offer_parts` makes the reply's parts: the text as plain parts, the
  choices as the last part (numbered text, which the sender sends as buttons
  or a list when it can).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.choice_routing import (
    ACTION,
    CHOSE,
    NOT_A_CHOICE,
    Route,
    chosen_for_model,
    find_quote,
    quote_for_model,
    route_payload,
    route_typed,
)
from shared.domain.choices import Offer, lead_and_body, numbered_text
from shared.domain.controls import HANDOFF, MODEL, REPLY, ControlState, Decision
from shared.domain.conversation import Conversation
from shared.domain.inbound import InboundMessage, describe_for_model
from shared.domain.menus import MENU, REPLY as MENU_REPLY, TOOL, TOPIC, find_menu, menu_for_text, welcome_menu
from shared.domain.profiles import BusinessProfile
from shared.domain.splitting import TWILIO_BODY_LIMIT, split_reply, utf16_len

SHOW_MENU = "show menu"
# Decision reasons (logged, and kept in the entry so a re-claim decides the same).
MENU_PREFIX = "menu:"
ITEM_REPLY = "menu_reply"


def offered(conv: Conversation) -> Offer | None:
    """The choices of the newest answer, while it is the newest thing the bot said; None otherwise."""
    if not conv.offer:
        return None
    newest = next((t for t in reversed(conv.history or []) if t.get("role") == "assistant"), None)
    if newest is None or newest.get("sid") != conv.offer.get("sid"):
        return None
    return Offer.from_json(conv.offer)


def route_for(msg: InboundMessage, profile: BusinessProfile, conv: Conversation) -> Route:
    """What the message answers: a tap, a typed answer to the choices just offered, or a menu keyword."""
    if msg.tap_payload:
        return route_payload(msg.tap_payload, msg.tap_text, profile.menus)
    if msg.media or (msg.latitude and msg.longitude):
        return Route(NOT_A_CHOICE)
    typed = route_typed(msg.body, offered(conv), profile.menus)
    if typed.kind != NOT_A_CHOICE:
        return typed
    menu = menu_for_text(profile.menus, msg.body)
    return Route(SHOW_MENU, menu.text, menu) if menu is not None else Route(NOT_A_CHOICE)


def with_choices(decision: Decision, route: Route, profile: BusinessProfile, now: datetime) -> Decision:
    """The decision once the choice is taken into account; any decision but the model's stands."""
    if decision.kind != MODEL:
        return decision
    menu = route.menu
    if route.kind == SHOW_MENU and menu is not None:
        return Decision(REPLY, MENU_PREFIX + menu.id, menu.text, in_history=True, welcome=decision.welcome,
                        state=decision.state)
    if route.kind != ACTION or route.item is None:
        return decision
    item = route.item
    if item.action == MENU_REPLY:
        return Decision(REPLY, ITEM_REPLY, item.target, in_history=True, state=decision.state)
    if item.action == MENU:
        target = find_menu(profile.menus, item.target)
        text = target.text if target is not None else item.title
        return Decision(REPLY, MENU_PREFIX + item.target, text, in_history=True, state=decision.state)
    if item.action == "handoff":
        until = now + timedelta(seconds=profile.handoff_pause_seconds)
        return Decision(REPLY, HANDOFF, profile.handoff_reply, in_history=True,
                        state=replace(decision.state, paused_until=until))
    return decision


def turn_text(msg: InboundMessage, route: Route, conv: Conversation) -> str:
    """The customer's turn for the model: the choice in words, and what the quoted message said."""
    item = route.item
    if route.kind == CHOSE:
        text = chosen_for_model(route)
    elif route.kind == ACTION and item is not None and item.action == TOPIC:
        text = f"[The customer chose “{item.title}” from the menu: tell them about {item.target}.]"
    elif route.kind == ACTION and item is not None and item.action == TOOL:
        text = f"[The customer chose “{item.title}” from the menu; the tool {item.target} does it.]"
    else:
        text = describe_for_model(msg)
    if msg.replied_sid and not msg.tap_payload:
        entries = {sid: {"twilioSids": e.twilio_sids, "lateTwilioSids": e.late_twilio_sids}
                   for sid, e in conv.messages.items()}
        quote = quote_for_model(find_quote(entries, conv.history or [], msg.replied_sid))
        text = f"{quote}\n{text}"
    return text


def menu_offer(decision: Decision, profile: BusinessProfile) -> Offer | None:
    """The choices an answer ends with: the menu the decision shows, or the welcome menu on a first message."""
    if decision.reason.startswith(MENU_PREFIX):
        menu = find_menu(profile.menus, decision.reason[len(MENU_PREFIX):])
        return menu.offer() if menu is not None else None
    welcome = welcome_menu(profile.menus) if decision.kind == MODEL and decision.welcome else None
    return welcome.offer() if welcome is not None else None


def offer_parts(before: list[str], offer: Offer | None) -> tuple[list[str], dict[str, Any] | None]:
    """``before`` (the plain parts) then ``offer`` as the last part, and the choices to record (None: none).

    The offer's body past 1024 characters goes as plain parts first. Choices
    that cannot be one message (numbered text past 1600 characters) go as
    plain parts and are still recorded, so a typed number is understood; the
    sender sends buttons or a list only for a last part that is the whole offer.
    """
    parts = [p for p in before if p]
    if offer is None or not offer.choices:
        return parts, None
    lead, body = lead_and_body(offer.body)
    shaped = Offer(body, offer.choices, offer.button)
    last = numbered_text(shaped)
    tail = [last] if utf16_len(last) <= TWILIO_BODY_LIMIT else split_reply(last)
    return [*parts, *lead, *tail], shaped.to_json()

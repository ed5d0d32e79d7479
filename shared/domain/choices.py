"""Choices the bot offers, shaped for WhatsApp: quick-reply buttons, a list picker, or numbered text.

Pure rules, no I/O. A set of choices becomes one of three shapes:

* up to 3 choices: ``twilio/quick-reply`` buttons (WhatsApp allows 3 in a
  session message that is not an approved template);
* up to 10: a ``twilio/list-picker`` (WhatsApp's list message, 10 rows);
* more than 10, outside the 24-hour window, or when the Content API fails:
  numbered text, which every phone shows and a "2" answers.

Every text is fitted to WhatsApp's limits before Twilio sees it (button titles
20 characters, list rows 24, row descriptions 72, the list's button 20, the
body 1024), shortened at a word with "…" rather than refused; lengths count
UTF-16 code units, as Twilio counts a message body, so an emoji never pushes a
title over a limit that counts it twice. Titles stay unique after shortening,
since WhatsApp refuses two buttons with the same title.

The Content resource for a shape is named by :func:`content_hash` of exactly
what is sent, so the same menu is created once through the Content API and
reused for every later message (docs/decisions/0023-whatsapp-native.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from shared.domain.splitting import split_reply, utf16_len

QUICK_REPLY = "twilio/quick-reply"
LIST_PICKER = "twilio/list-picker"
NUMBERED = "numbered"

MAX_BUTTONS = 3
MAX_LIST_ROWS = 10
BUTTON_TITLE_MAX = 20
LIST_ROW_MAX = 24
LIST_DESCRIPTION_MAX = 72
LIST_BUTTON_MAX = 20
BODY_MAX = 1024
ID_MAX = 200
# The most choices one message may carry at all; numbered text past the list's 10.
MAX_CHOICES = 30
DEFAULT_LIST_BUTTON = "Options"
# Twilio requires a language on every Content resource; it only matters for approval, which these never ask.
CONTENT_LANGUAGE = "en"
ELLIPSIS = "…"

# Payloads: what a tap sends back (ButtonPayload / ListId). A menu item is
# routed by its menu and item id; a choice the model offered carries its title.
MENU_PREFIX = "menu:"
MODEL_PREFIX = "choice:"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Choice:
    """One option: ``id`` comes back in the tap, ``title`` is what the user sees and taps."""

    id: str
    title: str
    description: str = ""


@dataclass(frozen=True)
class Offer:
    """A message that ends in choices: the text above them and the options, in order."""

    body: str
    choices: tuple[Choice, ...]
    button: str = DEFAULT_LIST_BUTTON

    def to_json(self) -> dict[str, Any]:
        return {
            "body": self.body,
            "button": self.button,
            "choices": [{"id": c.id, "title": c.title, "description": c.description} for c in self.choices],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Offer":
        choices = tuple(
            Choice(str(c["id"]), str(c["title"]), str(c.get("description", ""))) for c in data.get("choices", ())
        )
        return cls(str(data.get("body", "")), choices, str(data.get("button") or DEFAULT_LIST_BUTTON))


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, within ``limit`` UTF-16 units: cut at a word and marked with "…" when too long."""
    flat = _SPACES.sub(" ", text).strip()
    if utf16_len(flat) <= limit:
        return flat
    first = split_reply(flat, limit - 1, max_parts=2)[0]
    return (first.rstrip(" ,.;:-–—") or first) + ELLIPSIS


def _unique(titles: Sequence[str], limit: int) -> list[str]:
    """Titles made distinct (WhatsApp refuses repeats): a repeat gets " 2", " 3"... within ``limit``."""
    seen: set[str] = set()
    out: list[str] = []
    for title in titles:
        candidate, n = title, 1
        while candidate.casefold() in seen:
            n += 1
            suffix = f" {n}"
            candidate = shorten(title, limit - len(suffix)).removesuffix(ELLIPSIS) + suffix
        seen.add(candidate.casefold())
        out.append(candidate)
    return out


def model_payload(index: int, title: str) -> str:
    """The id of a choice the model offered: its place and its full title, so a tap says what was chosen."""
    return shorten(f"{MODEL_PREFIX}{index}:{title}", ID_MAX)


def menu_payload(menu_id: str, item_id: str) -> str:
    return f"{MENU_PREFIX}{menu_id}:{item_id}"


def model_offer(text: str, options: Iterable[Any], button: str = DEFAULT_LIST_BUTTON) -> Offer:
    """The model's ``reply_with_choices`` arguments as an offer: options as texts or {title, description}.

    Empty or repeated options are dropped, at most MAX_CHOICES kept: the
    model's output is input like any other and must not be refused.
    """
    choices: list[Choice] = []
    seen: set[str] = set()
    for option in options:
        if isinstance(option, Mapping):
            title, description = str(option.get("title") or ""), str(option.get("description") or "")
        else:
            title, description = str(option or ""), ""
        title = _SPACES.sub(" ", title).strip()
        if not title or title.casefold() in seen or len(choices) >= MAX_CHOICES:
            continue
        seen.add(title.casefold())
        choices.append(Choice(model_payload(len(choices) + 1, title), title, description.strip()))
    return Offer(text.strip(), tuple(choices), button or DEFAULT_LIST_BUTTON)


def layout(offer: Offer) -> str:
    """Which WhatsApp shape the offer takes when the rich shapes can be sent."""
    if not offer.choices:
        return NUMBERED
    if len(offer.choices) <= MAX_BUTTONS:
        return QUICK_REPLY
    if len(offer.choices) <= MAX_LIST_ROWS:
        return LIST_PICKER
    return NUMBERED


def content_types(offer: Offer) -> dict[str, Any]:
    """The Content API ``types`` of the offer, every text within WhatsApp's limits; {} when it is numbered text."""
    kind = layout(offer)
    body = shorten_body(offer.body) or ELLIPSIS
    ids = [shorten(c.id, ID_MAX) for c in offer.choices]
    if kind == QUICK_REPLY:
        titles = _unique([shorten(c.title, BUTTON_TITLE_MAX) for c in offer.choices], BUTTON_TITLE_MAX)
        return {QUICK_REPLY: {"body": body, "actions": [{"title": t, "id": i} for t, i in zip(titles, ids)]}}
    if kind == LIST_PICKER:
        titles = _unique([shorten(c.title, LIST_ROW_MAX) for c in offer.choices], LIST_ROW_MAX)
        items = [
            # Twilio lists the description as required: a row without one shows its whole title there.
            {"item": t, "id": i, "description": shorten(c.description or c.title, LIST_DESCRIPTION_MAX)}
            for t, i, c in zip(titles, ids, offer.choices)
        ]
        return {LIST_PICKER: {"body": body, "button": shorten(offer.button, LIST_BUTTON_MAX) or DEFAULT_LIST_BUTTON,
                              "items": items}}
    return {}


def shorten_body(text: str) -> str:
    """The body above the choices, within 1024: whole when it fits, else cut at a sentence or word with "…"."""
    text = text.strip()
    if utf16_len(text) <= BODY_MAX:
        return text
    return split_reply(text, BODY_MAX - 1, max_parts=2)[0] + ELLIPSIS


def lead_and_body(text: str) -> tuple[list[str], str]:
    """A long text before choices: the parts sent as plain text first, and the last one, kept above the choices.

    The message with the buttons can hold 1024 characters; a longer answer
    goes as text parts and its final paragraph (or piece) carries the choices,
    so nothing the model wrote is lost.
    """
    text = text.strip()
    if utf16_len(text) <= BODY_MAX:
        return [], text
    pieces = split_reply(text, BODY_MAX)
    return pieces[:-1], pieces[-1]


def numbered_text(offer: Offer) -> str:
    """The offer as text any phone shows: the body, then "1. Title — description" lines."""
    lines = [f"{n}. {c.title}" + (f" — {c.description}" if c.description else "") for n, c in
             enumerate(offer.choices, start=1)]
    return "\n\n".join(p for p in (offer.body.strip(), "\n".join(lines)) if p)


def content_hash(types: Mapping[str, Any], language: str = CONTENT_LANGUAGE) -> str:
    """The identity of a Content resource: a hash of exactly what Twilio is asked to create."""
    canonical = json.dumps({"language": language, "types": types}, ensure_ascii=False, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def friendly_name(digest: str) -> str:
    """The Content resource's name in Twilio's console: recognisable, and findable by its hash."""
    return f"wa-choices-{digest[:24]}"


def offered_titles(offer: Offer) -> tuple[str, ...]:
    return tuple(c.title for c in offer.choices)

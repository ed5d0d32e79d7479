"""``reply_with_choices``: the function the model may call to answer with choices.

Offered beside the business's tools in the chat-completions ``tools``
parameter (the name is kept from business tools, shared/domain/tools.py).
Calling it *is* the answer: its ``text`` and ``choices`` become the reply, sent
as buttons, a list or numbered text (shared/domain/choices.py); nothing is
called and no second model round is needed. The arguments are the model's
output, so they are read leniently: wrong types and junk options are dropped
rather than failing the answer, and an empty call falls back to its text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from shared.domain.choices import DEFAULT_LIST_BUTTON, MAX_CHOICES, MAX_LIST_ROWS, Offer, model_offer

NAME = "reply_with_choices"
# The model's text is bounded like any reply (MAX_REPLY_CHARS applies after).
MAX_ARGUMENT_CHARS = 20_000

DEFINITION: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": NAME,
        "description": (
            "Answer the customer with a short text followed by options they can tap, when the next step is a "
            f"choice between a few clear options (at most {MAX_LIST_ROWS}; 3 or fewer show as buttons). "
            "Use the customer's language. Do not use it for open questions."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "What you say above the options."},
                "choices": {
                    "type": "array",
                    "description": "The options, in order; keep each title short (about 20 characters).",
                    "items": {
                        "type": "object",
                        "properties": {
                            "title": {"type": "string"},
                            "description": {"type": "string", "description": "Optional, one short line."},
                        },
                        "required": ["title"],
                    },
                    "minItems": 1,
                    "maxItems": MAX_LIST_ROWS,
                },
                "button": {"type": "string", "description": "Optional label of the button that opens a list."},
            },
            "required": ["text", "choices"],
        },
    },
}


def offer_from_arguments(arguments: str) -> Offer | None:
    """The offer the call makes, or None when its arguments hold no text and no usable choice."""
    try:
        data = json.loads(arguments[:MAX_ARGUMENT_CHARS]) if arguments else {}
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    text = data.get("text") if isinstance(data.get("text"), str) else ""
    options = data.get("choices") if isinstance(data.get("choices"), list) else []
    button = data.get("button") if isinstance(data.get("button"), str) else ""
    offer = model_offer(text, options[:MAX_CHOICES], button.strip() or DEFAULT_LIST_BUTTON)
    if not offer.body and not offer.choices:
        return None
    return offer


@dataclass(frozen=True)
class ChoicesResult:
    """What running the function gives the rounds: ``content`` for the model, ``final`` ends the answer."""

    content: str
    final: Offer | None = None


@dataclass(frozen=True)
class ReplyWithChoices:
    """The built-in function the function-calling rounds offer beside a business's tools.

    Its shape is the rounds' built-in function (``name``, ``definition()``,
    ``run(arguments)`` with ``content`` and ``final``): its final payload is
    the :class:`Offer` the answer ends with (shared/domain/choice_answers.py,
    ``offer_parts``), and nothing is called.
    """

    name: str = NAME

    def definition(self) -> dict[str, Any]:
        return DEFINITION

    def run(self, arguments: Mapping[str, Any]) -> ChoicesResult:
        offer = offer_from_arguments(json.dumps(dict(arguments)))
        if offer is None or not offer.choices:
            return ChoicesResult("No choices were given: answer in words.")
        return ChoicesResult("The choices are shown to the customer.", offer)

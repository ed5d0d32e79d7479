"""The history's turns, and the bounds every stored text keeps.

A turn is ``{role, content, sid}`` (and ``by`` for an assistant turn a person
or the business wrote): the shape the model is given and the document stores.
"""

from __future__ import annotations

Turn = dict[str, str]


def trim_history(history: list[Turn], max_messages: int, max_chars: int | None = None) -> list[Turn]:
    """Keep the newest turns within both limits; never start on an assistant turn without its question.

    A message the business started (``by: business``, the outbound API) had no
    question, so it may open the history.
    """
    kept = history[-max_messages:] if max_messages > 0 else []
    if max_chars is not None:
        while kept and sum(len(turn.get("content", "")) for turn in kept) > max_chars:
            kept = kept[1:]
    while kept and kept[0].get("role") == "assistant" and kept[0].get("by") != "business":
        kept = kept[1:]
    return kept


def cap_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked as cut so nobody mistakes it for the whole."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"

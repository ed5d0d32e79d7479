"""Split a long reply into WhatsApp-sized parts.

Twilio rejects a WhatsApp body over 1600 characters, counted in UTF-16 code
units. Parts break at a paragraph, else a sentence, else a word; a single
"word" longer than a part (a long URL) is cut between characters, never inside
a surrogate pair or before a combining mark, so nothing renders broken.
"""

from __future__ import annotations

import re
import unicodedata

TWILIO_BODY_LIMIT = 1600

_PARAGRAPH = re.compile(r"\n\s*\n")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")
_WORD = re.compile(r"\s+")
_BOUNDARIES = (_PARAGRAPH, _LINE, _SENTENCE, _WORD)
_JOINERS = {"\u200d", "\u200c"}


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _prefix_within(text: str, limit: int) -> int:
    """Largest index i such that text[:i] is at most ``limit`` UTF-16 units."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def _safe_hard_cut(text: str, end: int) -> int:
    """Move a forced cut left so it does not split a character cluster."""
    cut = end
    while cut > 1 and (
        unicodedata.combining(text[cut])
        or text[cut] in _JOINERS
        or text[cut - 1] in _JOINERS
        or 0xFE00 <= ord(text[cut]) <= 0xFE0F
        or 0x1F3FB <= ord(text[cut]) <= 0x1F3FF
    ):
        cut -= 1
    return cut if cut > 0 else end


def _cut_point(text: str, limit: int) -> tuple[int, int]:
    """Where the first part ends and the rest begins."""
    end = _prefix_within(text, limit)
    window = text[: end + 1]
    floor = end // 2
    for boundary in _BOUNDARIES:
        best = None
        for match in boundary.finditer(window):
            if match.start() > end:
                break
            if match.start() >= floor or boundary is _WORD:
                best = match
        if best is not None and best.start() > 0:
            return best.start(), best.end()
    cut = _safe_hard_cut(text, end)
    return cut, cut


def split_reply(text: str, limit: int = TWILIO_BODY_LIMIT) -> list[str]:
    """Parts of at most ``limit`` UTF-16 units whose order reads as the original."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    rest = text.strip()
    parts: list[str] = []
    while rest:
        if utf16_len(rest) <= limit:
            parts.append(rest)
            break
        cut, resume = _cut_point(rest, limit)
        part = rest[:cut].rstrip()
        if part:
            parts.append(part)
        rest = rest[resume:].lstrip()
    return parts

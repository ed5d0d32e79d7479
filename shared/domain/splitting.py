"""Split a long reply into WhatsApp-sized parts.

Twilio rejects a WhatsApp body over 1600 characters, counted in UTF-16 code
units. Parts break at a paragraph, else a sentence, else a word; a single
"word" longer than a part (a long URL) is cut between characters, never inside
a surrogate pair or before a combining mark, so nothing renders broken.

Whatever the text, the number of parts is bounded: a "character" longer than
half a part (a letter under thousands of combining marks, characters chained by
zero-width joiners) is cut where the part is full rather than kept whole, which
would make a part per character, and a reply never has more than MAX_PARTS
parts (the last one then ends with "…"). Each part is a WhatsApp message
through the rate-limited queue, so a text crafted to split badly must not
become hundreds of them.
"""

from __future__ import annotations

import re
import unicodedata

TWILIO_BODY_LIMIT = 1600
# MAX_REPLY_CHARS is at most 20,000: 13 full parts; a few more for parts cut short at a word.
MAX_PARTS = 16

# Each pattern's "cut" group is the whitespace dropped between two parts; a
# sentence keeps its closing quote or bracket, which sits before that group.
_PARAGRAPH = re.compile(r"(?P<cut>\n\s*\n)")
_LINE = re.compile(r"(?P<cut>\n)")
_SENTENCE = re.compile(r"[.!?…。！？][\"'”’)\]]*(?P<cut>\s+)")
_WORD = re.compile(r"(?P<cut>\s+)")
_BOUNDARIES = (_PARAGRAPH, _LINE, _SENTENCE, _WORD)
_JOINERS = {"\u200d", "\u200c"}


def utf16_len(text: str) -> int:
    """Length as Twilio counts it; a stray surrogate (possible in decoded JSON) counts one, not raises."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _prefix_within(text: str, limit: int) -> int:
    """Largest index i such that text[:i] is at most ``limit`` UTF-16 units."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def _is_regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _splits_cluster(text: str, cut: int) -> bool:
    """True when a cut before ``text[cut]`` would tear one visible character apart.

    Marks are matched by category, not by combining class: many vowel signs
    (Devanagari, Thai) and the keycap mark have class 0 yet attach to the
    character before them.
    """
    ch, before = text[cut], text[cut - 1]
    code = ord(ch)
    if unicodedata.category(ch).startswith("M") or ch in _JOINERS or before in _JOINERS:
        return True
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:  # variation selectors
        return True
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:  # skin tones, flag tags
        return True
    if _is_regional_indicator(ch) and _is_regional_indicator(before):
        run = 0
        while cut - 1 - run >= 0 and _is_regional_indicator(text[cut - 1 - run]):
            run += 1
        return run % 2 == 1  # flags are pairs: an odd run before the cut ends mid-flag
    return False


def _safe_hard_cut(text: str, end: int) -> int:
    """Move a forced cut left so it does not split a character cluster, by at most half the part.

    A cluster longer than that is no real character anyone can read whole:
    it is cut at ``end``, so every part but the last is at least half full.
    """
    floor = max(1, end // 2)
    cut = end
    while cut > floor and _splits_cluster(text, cut):
        cut -= 1
    return end if _splits_cluster(text, cut) else cut


def _cut_point(text: str, limit: int) -> tuple[int, int]:
    """Where the first part ends and the rest begins."""
    end = _prefix_within(text, limit)
    window = text[: end + 1]
    floor = end // 2
    for boundary in _BOUNDARIES:
        best = None
        for match in boundary.finditer(window):
            if match.start("cut") > end:
                break
            if match.start("cut") >= floor or boundary is _WORD:
                best = match
        if best is not None and best.start("cut") > 0:
            return best.start("cut"), best.end("cut")
    cut = _safe_hard_cut(text, end)
    return cut, cut


def split_reply(text: str, limit: int = TWILIO_BODY_LIMIT, max_parts: int = MAX_PARTS) -> list[str]:
    """At most ``max_parts`` parts of at most ``limit`` UTF-16 units whose order reads as the original."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    rest = text.strip()
    parts: list[str] = []
    while rest:
        if utf16_len(rest) <= limit:
            parts.append(rest)
            break
        if len(parts) == max_parts - 1:
            cut = _safe_hard_cut(rest, _prefix_within(rest, limit - 1))
            parts.append(rest[:cut].rstrip() + "…")
            break
        cut, resume = _cut_point(rest, limit)
        part = rest[:cut].rstrip()
        if part:
            parts.append(part)
        rest = rest[resume:].lstrip()
    return parts

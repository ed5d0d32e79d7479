"""split_reply: WhatsApp-sized parts that read as the original and never render broken."""

from __future__ import annotations

import random
import unicodedata

import pytest

from shared.domain.splitting import MAX_PARTS, TWILIO_BODY_LIMIT, split_reply, utf16_len

ZWJ = "\u200d"
CODER = "👩\u200d💻"  # woman technologist: three code points, one glyph
E_ACUTE = "e\u0301"  # e + combining acute accent
FLAG = "🇪🇸"  # two regional indicators
THUMB = "👍🏽"  # thumbs up + skin tone modifier
KEYCAP = "1\ufe0f\u20e3"  # digit + variation selector + combining enclosing keycap
DEVANAGARI_KI = "\u0915\u093f"  # क + vowel sign i (a spacing mark of combining class 0)


def starts_inside_a_cluster(part: str) -> bool:
    first = part[0]
    code = ord(first)
    return (
        unicodedata.category(first).startswith("M")
        or first == ZWJ
        or 0xFE00 <= code <= 0xFE0F
        or 0x1F3FB <= code <= 0x1F3FF
    )


def assert_invariants(text: str, parts: list[str], limit: int) -> None:
    """Every part fits, is trimmed, and the parts are the text in order, cut only at whitespace
    or (when a part holds no whitespace at all) between whole characters."""
    pos = 0
    previous = ""
    for part in parts:
        assert part, "empty part"
        assert part == part.strip(), f"untrimmed part {part!r}"
        assert utf16_len(part) <= limit, f"part of {utf16_len(part)} units over {limit}"
        gap_start = pos
        while pos < len(text) and text[pos].isspace():
            pos += 1
        assert text.startswith(part, pos), f"part {part[:30]!r} is not the text at {pos}"
        if previous and pos == gap_start:
            # A cut with no whitespace: only allowed when there was no whitespace to cut at.
            assert not any(ch.isspace() for ch in previous), f"word split although a space existed: {previous[-30:]!r}"
            assert not starts_inside_a_cluster(part), f"cut inside a character: {part[:5]!r}"
            assert not previous.endswith(ZWJ)
        pos += len(part)
        previous = part
    assert text[pos:].strip() == "", "text left over after the last part"


def test_utf16_len_counts_astral_characters_twice() -> None:
    assert utf16_len("") == 0
    assert utf16_len("abc") == 3
    assert utf16_len("é") == 1
    assert utf16_len("😀") == 2
    assert utf16_len(CODER) == 5
    assert utf16_len("a😀b") == len("a😀b".encode("utf-16-le")) // 2


def test_utf16_len_of_a_stray_surrogate_does_not_raise() -> None:
    assert utf16_len("a\ud83db") == 3


@pytest.mark.parametrize("text", ["Hello!", "  Hello there.  ", "a" * TWILIO_BODY_LIMIT, "😀" * (TWILIO_BODY_LIMIT // 2)])
def test_text_within_the_limit_is_one_part(text: str) -> None:
    assert split_reply(text) == [text.strip()]


@pytest.mark.parametrize("text", ["", " ", "\n\n", " \t\n  \u00a0 "])
def test_empty_or_whitespace_gives_no_parts(text: str) -> None:
    assert split_reply(text) == []


def test_limit_below_two_is_refused() -> None:
    with pytest.raises(ValueError):
        split_reply("abc", limit=1)


def test_limit_is_counted_in_utf16_units() -> None:
    text = "😀" * (TWILIO_BODY_LIMIT // 2 + 1)  # 801 code points, 1602 units
    parts = split_reply(text)
    assert [len(p) for p in parts] == [TWILIO_BODY_LIMIT // 2, 1]
    assert "".join(parts) == text


def test_one_unit_over_the_limit_splits() -> None:
    parts = split_reply("a" * (TWILIO_BODY_LIMIT + 1))
    assert [len(p) for p in parts] == [TWILIO_BODY_LIMIT, 1]


def test_prefers_the_paragraph_break() -> None:
    first = " ".join(["word"] * 180) + "."  # 900 characters
    second = "Next one. " * 120
    text = f"{first}\n\n{second.strip()}"
    parts = split_reply(text)
    assert parts[0] == first
    assert_invariants(text, parts, TWILIO_BODY_LIMIT)


def test_prefers_the_sentence_end_to_a_later_space() -> None:
    sentence = "This sentence ends here."
    text = sentence + " and then words go on" * 5
    parts = split_reply(text, limit=40)
    assert parts[0] == sentence
    assert_invariants(text, parts, 40)


def test_a_line_break_beats_a_sentence_end() -> None:
    text = "Line one. Still line one\nline two goes on and on"
    parts = split_reply(text, limit=30)
    assert parts[0] == "Line one. Still line one"
    assert_invariants(text, parts, 30)


def test_a_break_in_the_first_half_is_not_used_for_a_tiny_part() -> None:
    text = "Hi.\n\n" + "word " * 40
    parts = split_reply(text, limit=100)
    assert parts[0].startswith("Hi.\n\nword")
    assert len(parts[0]) > 50
    assert_invariants(text, parts, 100)


def test_falls_back_to_a_word_boundary() -> None:
    text = " ".join(f"w{i:03d}" for i in range(100))
    parts = split_reply(text, limit=50)
    assert all(len(p) <= 50 for p in parts)
    assert " ".join(parts).split() == text.split()
    assert_invariants(text, parts, 50)


@pytest.mark.parametrize(("opener", "closer"), [('"', '"'), ("“", "”"), ("‘", "’"), ("(", ")"), ("[", "]"), ("'", "'")])
def test_a_closing_quote_stays_with_its_sentence(opener: str, closer: str) -> None:
    text = f"He said {opener}Stop.{closer} And then he left the room quietly"
    parts = split_reply(text, limit=30)
    assert parts[0].endswith(f".{closer}")
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")
    assert_invariants(text, parts, 30)


def test_a_long_word_after_words_starts_its_own_part() -> None:
    url = "https://example.com/" + "x" * 100
    text = f"See {url}"
    parts = split_reply(text, limit=60)
    assert parts[0] == "See"
    assert "".join(parts[1:]) == url


def test_a_4000_char_url_is_hard_cut() -> None:
    url = "https://example.com/path?" + "&".join(f"k{i}=v{i}" for i in range(600))
    url = url[:4000]
    parts = split_reply(url)
    assert len(parts) == 3
    assert [utf16_len(p) for p in parts[:2]] == [TWILIO_BODY_LIMIT, TWILIO_BODY_LIMIT]
    assert "".join(parts) == url


@pytest.mark.parametrize("prefix", ["", "a", "ab"])
def test_astral_characters_are_never_split(prefix: str) -> None:
    text = prefix + "𝒜" * 2000  # mathematical script A: outside the BMP
    parts = split_reply(text)
    assert "".join(parts) == text
    for part in parts:
        assert utf16_len(part) <= TWILIO_BODY_LIMIT
        part.encode("utf-16-le")  # no lone surrogates
    assert utf16_len(parts[0]) >= TWILIO_BODY_LIMIT - 1


@pytest.mark.parametrize("prefix", ["", "a", "ab", "abc", "abcd"])
@pytest.mark.parametrize(
    "cluster", [CODER, E_ACUTE, FLAG, THUMB, KEYCAP, DEVANAGARI_KI, "❤\ufe0f", "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"]
)
def test_hard_cuts_keep_clusters_whole(prefix: str, cluster: str) -> None:
    text = prefix + cluster * (4000 // utf16_len(cluster))
    parts = split_reply(text)
    assert len(parts) >= 2
    assert "".join(parts) == text
    body = "".join(parts)[len(prefix):]
    assert body == cluster * (len(body) // len(cluster))
    offset = -len(prefix)
    for part in parts:
        assert utf16_len(part) <= TWILIO_BODY_LIMIT
        # Every cut falls on a cluster boundary of the repeated sequence.
        offset += len(part)
        assert offset % len(cluster) == 0 or offset == len(body)
        assert utf16_len(part) > TWILIO_BODY_LIMIT - 2 * utf16_len(cluster) or part is parts[-1]


def test_small_limits_still_make_progress_on_a_cluster_longer_than_the_limit() -> None:
    text = "e" + "\u0301" * 20
    parts = split_reply(text, limit=4)
    assert "".join(parts) == text
    assert all(utf16_len(p) <= 4 for p in parts)


def test_windows_line_endings() -> None:
    text = ("Paragraph one is here.\r\n\r\n" * 5).strip()
    parts = split_reply(text, limit=50)
    assert all(not p.endswith("\r") for p in parts)
    assert_invariants(text, parts, 50)


TOKENS = ["😀", CODER, E_ACUTE, FLAG, THUMB, KEYCAP, "\n", "\n\n", ".", "!", "”", "—", "ñandú", "a"]


def random_text(rng: random.Random) -> str:
    pieces: list[str] = []
    for _ in range(rng.randint(0, 400)):
        roll = rng.random()
        if roll < 0.55:
            pieces.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 12))))
        elif roll < 0.9:
            pieces.append(rng.choice(TOKENS))
        elif roll < 0.97:
            pieces.append(rng.choice(["  ", "\t", " \n "]))
        else:
            pieces.append("".join(rng.choice(["x", "😀", CODER, E_ACUTE]) for _ in range(rng.randint(20, 300))))
        pieces.append(rng.choice([" ", " ", " ", "", "\n"]))
    return "".join(pieces)


@pytest.mark.parametrize("seed", range(4))
def test_randomized_invariants(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        text = random_text(rng)
        limit = rng.choice([16, 24, 50, 120, 400, TWILIO_BODY_LIMIT])
        # No cap on the count here: the invariants hold for every part (the cap has its own test).
        parts = split_reply(text, limit=limit, max_parts=len(text) + 1)
        assert_invariants(text, parts, limit)
        capped = split_reply(text, limit=limit)
        assert len(capped) <= MAX_PARTS and capped[:-1] == parts[: len(capped) - 1]
        if utf16_len(text.strip()) <= limit:
            assert parts == ([text.strip()] if text.strip() else [])


@pytest.mark.parametrize(
    "text",
    [
        "a" + "\u0301" * 2000,  # one letter under 2,000 combining accents
        ZWJ.join("x" * 1000),  # 1,999 characters chained by zero-width joiners
        "👩" + (ZWJ + "💻") * 700,  # a joiner sequence far longer than a part
    ],
)
def test_a_cluster_longer_than_a_part_is_cut_into_full_parts(text: str) -> None:
    parts = split_reply(text)
    assert "".join(parts) == text
    assert len(parts) == -(-utf16_len(text) // TWILIO_BODY_LIMIT)
    assert all(utf16_len(p) >= TWILIO_BODY_LIMIT // 2 for p in parts[:-1])


def test_no_text_makes_more_than_max_parts() -> None:
    # Each long word forces a tiny part before it: the worst case for the number of parts.
    text = " ".join(["a", "w" * 1599] * 40)
    parts = split_reply(text)
    assert len(parts) <= MAX_PARTS
    assert all(utf16_len(p) <= TWILIO_BODY_LIMIT for p in parts)
    assert parts[-1].endswith("…")

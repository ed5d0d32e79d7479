"""Keyword rules: bounded time for any input, and validation that refuses what cannot be bounded."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from shared.domain.profiles import BusinessProfile, ProfileError, profile_from_mapping

SHOP = "whatsapp:+14155238886"
DEFAULTS = BusinessProfile()
# The rule: plausible, accepted by validation, exponential under backtracking.
NESTED = r"(\w+\s?)+\?"


def rules(*patterns: str) -> dict:
    return {"keywords": [{"match": p, "reply": f"reply {n}"} for n, p in enumerate(patterns)]}


def test_a_nested_quantifier_rule_on_a_long_message_ends_at_once() -> None:
    """Run in a child process: a backtracking engine holds the GIL for hours on this input, and the child is
    killed at the time-out; a linear one answers in milliseconds. The bound is generous: it tells hours from
    milliseconds, not fast from slow."""
    code = textwrap.dedent(f"""
        from shared.domain.profiles import BusinessProfile, profile_from_mapping
        profile = profile_from_mapping({SHOP!r}, {{"keywords": [{{"match": {NESTED!r}, "reply": "x"}}]}},
                                       BusinessProfile())
        texts = ["a" * 40, "ab " * 1333, ("hola señor " * 364)[:4000]]
        print([profile.keywords[0].matches(t) for t in texts])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[False, False, False]"


def test_the_rule_still_matches_what_it_should_in_any_language() -> None:
    profile = profile_from_mapping(SHOP, rules(NESTED, r"\d+ personas?", r"direcci[oó]n\??"), DEFAULTS)
    nested, people, address = profile.keywords
    assert nested.matches("¿Qué horario tienen?".lstrip("¿")) and nested.matches("OPENING HOURS?")
    assert not nested.matches("hours")
    assert people.matches("४ personas")  # Devanagari digit: Unicode \d, as in Python
    assert address.matches("DIRECCIÓN?")


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a+)\1", "for RE2"),  # a backreference: no linear-time engine can match it
        (r"hours(?=\?)", "RE2"),  # lookahead
        (r"(?<!not )hours", "RE2"),  # lookbehind
        (r"\bhours\b", "word boundary"),
        (r"[\W]+", "[^...]"),
        ("x" * 501, "at most 500"),
        (r"(?s)(.{1000}){5}", "RE2"),  # too large to compile within the memory bound
        (r"(?s).{900}", "RE2 instructions"),
    ],
)
def test_what_cannot_be_bounded_is_refused_with_the_reason(pattern: str, why: str) -> None:
    with pytest.raises(ProfileError) as refused:
        profile_from_mapping(SHOP, rules(pattern), DEFAULTS)
    assert "keywords[1].match" in str(refused.value) and why in str(refused.value)


def test_a_business_rules_together_are_bounded_too() -> None:
    from shared.domain.keyword_rules import MAX_PROFILE_PROGRAM_SIZE

    each = r"(\w+\s?)+\?"
    profile_from_mapping(SHOP, rules(*[each] * 10), DEFAULTS)
    with pytest.raises(ProfileError, match=f"at most {MAX_PROFILE_PROGRAM_SIZE}"):
        profile_from_mapping(SHOP, rules(*[each] * 20), DEFAULTS)


def test_the_benchmark_figure_uses_a_rule_validation_accepts_and_a_4000_character_input() -> None:
    from bench.keyword_rules import worst_case

    figure = worst_case(repeats=1)
    profile_from_mapping(SHOP, rules(figure["rule"]), DEFAULTS)
    assert figure["input_chars"] == 4000 and figure["seconds"] > 0
    assert figure["profile_rules"] >= 1 and figure["profile_seconds"] >= figure["seconds"]

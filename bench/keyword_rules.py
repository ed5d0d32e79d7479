"""Keyword rules' worst case: the slowest rule validation accepts, on the worst 4,000-character message.

``python -m bench.keyword_rules`` prints the figure; ``make bench`` reports it
too. No stack is needed: matching happens inside the processor, in RE2
(shared/domain/keyword_rules.py), whose time is bounded by the message length
times the rule's program size. The candidates are the shapes that make RE2's
DFA build a new state at almost every character (".*a" followed by a counted
run: the state remembers where each recent "a" was) or that exercised
backtracking engines (nested quantifiers), each grown to the largest size
validation accepts, against inputs built to keep them alive. The floor is a
literal rule on the same input, measured in the same run.
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any, Callable

from shared.domain.keyword_rules import MAX_PROFILE_PROGRAM_SIZE, RuleError, compile_rule
from shared.domain.profiles import MAX_KEYWORD_RULES

INPUT_CHARS = 4000


def _largest(make: Callable[[int], str]) -> str:
    """The pattern ``make(n)`` for the largest n that validation still accepts."""
    best, n = make(1), 1
    while True:
        try:
            compile_rule(make(n * 2))
        except RuleError:
            break
        n *= 2
    lo, hi = n, n * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            compile_rule(make(mid))
            lo = mid
        except RuleError:
            hi = mid
    best = make(lo)
    compile_rule(best)
    return best


def candidates() -> list[str]:
    return [
        _largest(lambda n: f"(?s).*a.{{{n}}}"),
        _largest(lambda n: f"(?s).*a.{{{n}}}b"),
        _largest(lambda n: f"(?s)(.*a.{{{n}}}){{4}}b"),
        _largest(lambda n: f"(?s)(.*a[^x]{{{n}}})*x"),
        _largest(lambda n: r"(\w+\s?)+\?" + "x" * (n - 1)),
        r"(\w+\s?)+\?",
        r"((a|b)*a(a|b){100})*c",
    ]


def inputs() -> dict[str, str]:
    rng = random.Random(17)
    return {
        "random a/b": "".join(rng.choice("ab") for _ in range(INPUT_CHARS)),
        "random a/b/space": "".join(rng.choice("ab ") for _ in range(INPUT_CHARS)),
        "a repeated": "a" * INPUT_CHARS,
        "words, no question mark": ("hola señor " * (INPUT_CHARS // 11 + 1))[:INPUT_CHARS],
        "random letters and accents": "".join(rng.choice("aábñ ") for _ in range(INPUT_CHARS)),
    }


def _time(match: Callable[[str], bool], text: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        match(text)
        best = min(best, time.perf_counter() - started)
    return best


def worst_case(repeats: int = 5) -> dict[str, Any]:
    """The slowest (rule, input) pair, and a whole business of such rules: what one message can cost."""
    texts = inputs()
    worst: dict[str, Any] = {"seconds": -1.0}
    for rule in candidates():
        pattern = compile_rule(rule)
        for name, text in texts.items():
            seconds = _time(pattern.fullmatch, text, repeats)
            if seconds > worst["seconds"]:
                worst = {"rule": rule, "program_size": pattern.size, "input": name, "seconds": seconds}
    pattern = compile_rule(worst["rule"])
    text = texts[worst["input"]]
    count = max(1, min(MAX_KEYWORD_RULES, MAX_PROFILE_PROGRAM_SIZE // pattern.size))
    profile = [compile_rule(worst["rule"]) for _ in range(count)]
    profile_seconds = _time(lambda t: any(p.fullmatch(t) for p in profile), text, repeats)
    floor = compile_rule("hours")
    floor_seconds = _time(floor.fullmatch, text, repeats)
    return {
        **worst,
        "input_chars": len(text),
        "profile_rules": count,
        "profile_seconds": profile_seconds,
        "floor_rule": "hours",
        "floor_seconds": floor_seconds,
    }


def report_rows(figure: dict[str, Any]) -> list[list[str] | str]:
    """Figure 10 of ``make bench``: no goal, a bound (decision 0012) and what reaches it."""
    from bench.report import note_row

    return [
        "10. keyword rules (RE2 in the processor): the worst rule validation accepts, worst 4,000-character message",
        note_row("  one rule", f"{figure['seconds'] * 1000:.1f} ms: {figure['rule'][:40]!r} (size "
                              f"{figure['program_size']}) on {figure['input']}"),
        note_row(f"  a business of {figure['profile_rules']} such rules",
                 f"{figure['profile_seconds'] * 1000:.1f} ms per message"),
        note_row("  floor: the literal rule 'hours'", f"{figure['floor_seconds'] * 1e6:.1f} µs"),
    ]


def main() -> None:
    figure = worst_case()
    print(
        f"keyword rules, worst case: {figure['rule'][:60]!r} (RE2 program size {figure['program_size']}) on a "
        f"{figure['input_chars']}-character {figure['input']} message: {figure['seconds'] * 1000:.2f} ms; "
        f"a business of {figure['profile_rules']} such rules: {figure['profile_seconds'] * 1000:.1f} ms per message "
        f"(floor, the literal rule 'hours': {figure['floor_seconds'] * 1e6:.1f} µs)"
    )
    json.dump(figure, sys.stderr, indent=2, ensure_ascii=False)
    print(file=sys.stderr)


if __name__ == "__main__":
    main()

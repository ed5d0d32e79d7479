"""Keyword rule patterns: matched by RE2, in time linear in the message, whatever the rule.

A rule runs on every text message of its business, inside the processor, so a
rule that backtracks (``(\\w+\\s?)+\\?`` under Python's ``re``) would let one user
freeze an instance. RE2 (google-re2) simulates the pattern's automaton instead
of backtracking: the time is at most proportional to the message's length
times the size of the compiled program, which validation bounds per rule and
per business (docs/decisions/0012-business-controls.md). What cannot be
bounded, backreferences and lookaround, RE2 does not compile, and validation
refuses it with RE2's reason.

The syntax is RE2's, which is Python's for everything a keyword rule needs,
with one difference made good here: RE2's ``\\w``, ``\\d`` and ``\\s`` are
ASCII, Python's are Unicode, and a business writing "¿qué horario?" expects
Python's. They are rewritten to Unicode classes before compiling. ``\\b`` and
``\\B`` have no Unicode form in RE2 and are refused: a rule matches the whole
message, so a word boundary is seldom needed, and an ASCII one would silently
misjudge "señor".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import re2

# A pattern is short text; its compiled size is what bounds the time.
MAX_PATTERN_CHARS = 500
# RE2 program instructions, per rule and summed over a business's rules. The
# Unicode \w alone is about 1,350 (UTF-8 byte ranges of every letter and digit).
MAX_PROGRAM_SIZE = 5_000
MAX_PROFILE_PROGRAM_SIZE = 20_000
# RE2's memory for one rule (program and DFA cache); past it RE2 falls back from
# its DFA to the NFA, still linear, rather than grow.
MAX_MEMORY_BYTES = 1 << 20

_OUTSIDE_CLASS = {
    "w": r"[\p{L}\p{N}_]",
    "W": r"[^\p{L}\p{N}_]",
    "d": r"\p{Nd}",
    "D": r"\P{Nd}",
    "s": r"[\t-\r\x{1c}-\x{1f}\x{85}\p{Z}]",
    "S": r"[^\t-\r\x{1c}-\x{1f}\x{85}\p{Z}]",
}
_INSIDE_CLASS = {
    "w": r"\p{L}\p{N}_",
    "d": r"\p{Nd}",
    "s": r"\t-\r\x{1c}-\x{1f}\x{85}\p{Z}",
}


class RuleError(ValueError):
    """A pattern that must not be used; the message says why."""


def unicode_classes(pattern: str) -> str:
    """``pattern`` with ``\\w``, ``\\d``, ``\\s`` (and their negations) as Unicode classes, for RE2.

    Raises :class:`RuleError` for ``\\b``/``\\B`` and for a negated class
    escape inside brackets (``[\\W]``), which RE2 cannot express in Unicode.
    """
    out: list[str] = []
    i, in_class, class_opened = 0, False, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt == "Q":  # literal text up to \E: nothing in it is an escape
                end = pattern.find("\\E", i + 2)
                end = len(pattern) if end < 0 else end + 2
                out.append(pattern[i:end])
                i, class_opened = end, False
                continue
            if nxt in "bB":
                raise RuleError(f"\\{nxt} (a word boundary) is not supported: a rule matches the whole message")
            if in_class and nxt in "WDS":
                raise RuleError(f"\\{nxt} inside [...] is not supported: write the class as [^...] instead")
            table = _INSIDE_CLASS if in_class else _OUTSIDE_CLASS
            out.append(table.get(nxt, pattern[i : i + 2]))
            i, class_opened = i + 2, False
            continue
        if in_class:
            if ch == "]" and not class_opened:
                in_class = False
            elif ch == "[" and pattern.startswith("[:", i):  # a POSIX class such as [:alpha:]
                end = pattern.find(":]", i + 2)
                end = len(pattern) if end < 0 else end + 2
                out.append(pattern[i:end])
                i, class_opened = end, False
                continue
            class_opened = class_opened and ch == "^"
        elif ch == "[":
            in_class, class_opened = True, True
        out.append(ch)
        i += 1
    return "".join(out)


def _options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.never_capture = True
    options.max_mem = MAX_MEMORY_BYTES
    options.log_errors = False
    return options


@dataclass(frozen=True)
class RulePattern:
    """A compiled rule; ``size`` is its RE2 program size, what its worst-case time is proportional to."""

    source: str
    size: int
    compiled: Any = field(compare=False, repr=False)

    def fullmatch(self, text: str) -> bool:
        return self.compiled.fullmatch(text) is not None


def compile_rule(pattern: str) -> RulePattern:
    """The rule, compiled case-insensitively for whole-message matching; :class:`RuleError` says what is wrong."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise RuleError(f"is {len(pattern)} characters long, at most {MAX_PATTERN_CHARS}")
    translated = unicode_classes(pattern)
    try:
        compiled = re2.compile(translated, _options())
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RuleError(
            f"is not a valid regular expression for RE2 ({reason}); backreferences and lookaround are not supported"
        ) from None
    size = int(compiled.programsize)
    if size > MAX_PROGRAM_SIZE:
        raise RuleError(f"compiles to {size} RE2 instructions, at most {MAX_PROGRAM_SIZE}: make it simpler")
    return RulePattern(pattern, size, compiled)

"""The one table on stdout, and the goals it is judged by."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from bench.stats import Summary


@dataclass(frozen=True)
class Goal:
    name: str
    measured: float
    limit: float
    comparison: str  # "<=" or "=="
    detail: str

    @property
    def passed(self) -> bool:
        if math.isnan(self.measured):
            return False
        if self.comparison == "==":
            return self.measured == self.limit
        return self.measured <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {
            "goal": self.name,
            "measured": None if math.isnan(self.measured) else round(self.measured, 3),
            "limit": self.limit,
            "comparison": self.comparison,
            "pass": self.passed,
            "detail": self.detail,
        }


def verdict(goal: Goal) -> str:
    return f"{'PASS' if goal.passed else 'FAIL'} ({goal.comparison}{goal.limit:g})"


HEADER = ("figure", "N", "p50", "p99", "min", "max", "floor p50", "floor p99", "ratio", "goal")


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def dist_row(label: str, s: Summary, floor: Summary | None = None, ratio: float | None = None,
             goal: Goal | None = None, floor_p50: float | None = None, floor_p99: float | None = None,
             digits: int = 1) -> list[str]:
    """A distribution in ms with its floor beside it; ``floor_p50``/``floor_p99`` override the floor's."""
    f50 = floor_p50 if floor_p50 is not None else (floor.p50 if floor else None)
    f99 = floor_p99 if floor_p99 is not None else (floor.p99 if floor else None)
    return [
        label, str(s.n), fmt(s.p50, digits), fmt(s.p99, digits), fmt(s.min, digits), fmt(s.max, digits),
        fmt(f50, digits), fmt(f99, digits), "-" if ratio is None else f"{fmt(ratio, 2)}x",
        verdict(goal) if goal else "",
    ]


def note_row(label: str, text: str, n: int | str = "", goal: Goal | None = None) -> list[str]:
    """A row whose figure is not a distribution: the text spans the numeric columns."""
    return [label, str(n), text, "", "", "", "", "", "", verdict(goal) if goal else ""]


def _is_note(row: list[str]) -> bool:
    return all(cell == "" for cell in row[3:9])


def render(rows: Sequence[list[str] | str]) -> str:
    """Fixed-width columns; a plain string row is a section title, a note's text spans the numbers."""
    table = [list(HEADER)] + [r for r in rows if not isinstance(r, str)]
    numeric = [list(HEADER)] + [r for r in table[1:] if not _is_note(r)]
    widths = [max(len(r[i]) for r in (table if i in (0, 1, 9) else numeric)) for i in range(len(HEADER))]
    span = sum(widths[2:9]) + 2 * 6

    def line(r: list[str]) -> str:
        if _is_note(r) and r is not table[0]:
            return "  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].ljust(span), r[9]]).rstrip()
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 9)] + [r[9]]
        return "  ".join(cells).rstrip()

    lines = [line(table[0]), "-" * (sum(widths) + 2 * (len(HEADER) - 1))]
    lines += [r if isinstance(r, str) else line(r) for r in rows]
    return "\n".join(lines)

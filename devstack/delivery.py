"""Did each user's replies come back once each and in order? One count for tests and benchmarks."""

from __future__ import annotations

from typing import NamedTuple


class Damage(NamedTuple):
    lost: int
    duplicated: int
    reordered: int


def count_damage(expected: list[str], delivered: list[str]) -> Damage:
    """Compare one user's delivered markers with the expected ones, in the order they were sent.

    Markers that were not expected are ignored here; callers count them if they care.
    """
    wanted = set(expected)
    got = [marker for marker in delivered if marker in wanted]
    firsts = list(dict.fromkeys(got))
    position = {marker: i for i, marker in enumerate(expected)}
    return Damage(
        lost=len(wanted - set(got)),
        duplicated=len(got) - len(firsts),
        reordered=sum(1 for a, b in zip(firsts, firsts[1:]) if position[b] < position[a]),
    )

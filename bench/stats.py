"""Summaries with their N and spread, so no figure is ever quoted without them."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """One distribution: N, median, p99, extremes, mean and standard deviation."""

    n: int
    p50: float
    p99: float
    min: float
    max: float
    mean: float
    stdev: float

    def scaled(self, factor: float) -> "Summary":
        return Summary(
            self.n, self.p50 * factor, self.p99 * factor, self.min * factor,
            self.max * factor, self.mean * factor, self.stdev * factor,
        )

    def to_json(self, digits: int = 3) -> dict[str, Any]:
        def r(x: float) -> float | None:
            return None if math.isnan(x) else round(x, digits)

        return {
            "n": self.n, "p50": r(self.p50), "p99": r(self.p99), "min": r(self.min),
            "max": r(self.max), "mean": r(self.mean), "stdev": r(self.stdev),
        }


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan)
    return Summary(
        n=len(values),
        p50=percentile(values, 50),
        p99=percentile(values, 99),
        min=min(values),
        max=max(values),
        mean=statistics.fmean(values),
        stdev=statistics.stdev(values) if len(values) > 1 else 0.0,
    )


def ratio(numerator: float, denominator: float) -> float:
    """A ratio that is NaN rather than an exception when a floor is missing."""
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return numerator / denominator

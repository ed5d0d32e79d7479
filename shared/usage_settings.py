"""The usage accounting's settings: part of the one ``Settings`` object (shared/config.py), declared here.

``Settings`` inherits these fields (as it does the inbox's), so every reader
still has one typed object read once; they live apart to keep
shared/config.py short (docs/decisions/0024-usage-and-budgets.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from shared.domain.usage import DEFAULT_PRICES, Price, PriceError, parse_prices
from shared.env_values import ConfigError, _float, _int, _text

USAGE_COUNTERS = ("budgeted", "all")


@dataclass(frozen=True)
class UsageSettings:
    """The price table the estimated cost comes from (USD per million tokens, per minute of audio), where the
    per-business counters are and how many shards each business's month has, which businesses are counted
    (``budgeted``: those with a budget, the only ones whose counters anything reads per message; ``all``:
    every business, one more document in the answer's commit), and how long a process trusts a spend it read."""

    model_prices: Mapping[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    usage_collection: str = "usage_counters"
    usage_shards: int = 20
    usage_counters: str = "budgeted"
    budget_cache_seconds: float = 30.0
    budget_alerts_collection: str = "budget_alerts"


def usage_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The fields above from the environment, checked: a bad value fails at start-up with its reason."""
    d = UsageSettings()
    try:
        prices = parse_prices(_text(env, "MODEL_PRICES"))
    except PriceError as exc:
        raise ConfigError(f"MODEL_PRICES: {exc}") from None
    counters = _text(env, "USAGE_COUNTERS", d.usage_counters).lower()
    if counters not in USAGE_COUNTERS:
        raise ConfigError(f"USAGE_COUNTERS must be one of {', '.join(USAGE_COUNTERS)}, got {counters!r}")
    return dict(
        model_prices=prices,
        usage_collection=_text(env, "USAGE_COLLECTION", d.usage_collection),
        usage_shards=_int(env, "USAGE_SHARDS", d.usage_shards, 1, 500),
        usage_counters=counters,
        budget_cache_seconds=_float(env, "BUDGET_CACHE_SECONDS", d.budget_cache_seconds, 0.0, 3600.0),
        budget_alerts_collection=_text(env, "BUDGET_ALERTS_COLLECTION", d.budget_alerts_collection),
    )

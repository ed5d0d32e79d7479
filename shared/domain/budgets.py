"""A business's model budget: the profile keys, and the rule that answers without the model once it is spent.

    daily_token_budget: 200000     # tokens a UTC day (prompt, completion, embeddings, transcription)
    monthly_cost_budget: 25.0      # estimated US dollars a UTC month (shared/domain/usage.py's prices)
    budget_reply: "We are busy right now; a person will get back to you."

Once either is spent, a message the model would have answered gets the
``budget_reply`` instead, without a model call; commands, opt-out, opt-in,
the handoff keyword, keyword rules and menus still work, since the rule only
changes a ``MODEL`` decision, after every control of shared/domain/controls.py
has had its say (``within_budget`` there). It resumes by itself at the next UTC day (the month, for the
cost budget), as the spend read then is the new day's. The bound on how far
a budget can be overshot is in docs/decisions/0024-usage-and-budgets.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

DAILY_TOKEN_BUDGET = "daily_token_budget"
MONTHLY_COST_BUDGET = "monthly_cost_budget"
BUDGET_REPLY = "budget_reply"
BUDGET_KEYS = frozenset({DAILY_TOKEN_BUDGET, MONTHLY_COST_BUDGET, BUDGET_REPLY})
DEFAULT_BUDGET_REPLY = "We cannot answer automatically right now. Please try again tomorrow."
MAX_REPLY_CHARS = 1000

Fail = Callable[[str, str], Exception]


@dataclass(frozen=True)
class Budget:
    """A business's limits; 0 means none of that kind."""

    daily_tokens: int = 0
    monthly_cost_usd: float = 0.0
    reply: str = DEFAULT_BUDGET_REPLY

    @property
    def any(self) -> bool:
        return self.daily_tokens > 0 or self.monthly_cost_usd > 0


@dataclass(frozen=True)
class Spend:
    """What a business spent so far: tokens today, estimated dollars this month (its counters, summed)."""

    day_tokens: int = 0
    month_cost_usd: float = 0.0


def budget_values(raw: Mapping[str, Any], fail: Fail) -> dict[str, Any]:
    """The profile's ``budget`` field from the budget keys present in ``raw`` (none present: nothing)."""
    if not BUDGET_KEYS & set(raw):
        return {}
    tokens = raw.get(DAILY_TOKEN_BUDGET, 0)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise fail(DAILY_TOKEN_BUDGET, f"must be a whole number of tokens (0: none), got {tokens!r}")
    cost = raw.get(MONTHLY_COST_BUDGET, 0)
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0:
        raise fail(MONTHLY_COST_BUDGET, f"must be US dollars, a number >= 0 (0: none), got {cost!r}")
    reply = raw.get(BUDGET_REPLY, DEFAULT_BUDGET_REPLY)
    if not isinstance(reply, str) or not reply.strip() or len(reply) > MAX_REPLY_CHARS:
        raise fail(BUDGET_REPLY, f"must be non-empty text of at most {MAX_REPLY_CHARS} characters")
    if not tokens and not cost:
        raise fail(BUDGET_REPLY, f"needs {DAILY_TOKEN_BUDGET} or {MONTHLY_COST_BUDGET} above 0")
    return {"budget": Budget(int(tokens), float(cost), reply.strip())}


def exhausted(budget: Budget | None, spend: Spend) -> bool:
    """Whether the day's tokens or the month's cost have reached the budget."""
    if budget is None:
        return False
    return (budget.daily_tokens > 0 and spend.day_tokens >= budget.daily_tokens) or \
        (budget.monthly_cost_usd > 0 and spend.month_cost_usd >= budget.monthly_cost_usd)


"""The answer path's usage step: a budget checked before the claim, the answer's usage counted in its write.

    budget_spent   before the claim, for a business with a budget only: the
                   spend of its counters (cached per process,
                   shared/adapters/usage_store.py) against the budget; a
                   business without one reads nothing
    counting       record_answer's ``after``: the usage the answer's model calls
                   reported on the entry and, for a budgeted business (or every
                   one with ``USAGE_COUNTERS=all``), its counter shard's
                   increment in the same commit, so it counts once per answer
    alert_spent    one ERROR ``budget_exhausted`` line per business and UTC day,
                   whatever the number of instances (a marker created once)

docs/decisions/0024-usage-and-budgets.md says why and what it costs.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable, Iterable

from shared.domain.conversation import Conversation
from shared.domain.budgets import exhausted
from shared.domain.profiles import BusinessProfile
from shared.domain.usage import Metered, Usage, day_key, note_usage, total
from shared.handlers.deps import ProcessorDeps

log = logging.getLogger(__name__)


def budget_spent(deps: ProcessorDeps, profile: BusinessProfile, now: datetime) -> bool:
    """Whether ``profile``'s budget is spent; False (and no read) for a business without one."""
    if profile.budget is None or not profile.budget.any or deps.usage is None:
        return False
    return exhausted(profile.budget, deps.usage.spend(profile.address, now))


def counted(deps: ProcessorDeps, profile: BusinessProfile) -> bool:
    """Whether this business's answers go into the counters (its budget reads them; ``all``: every business)."""
    return (profile.budget is not None and profile.budget.any) or deps.settings.usage_counters == "all"


def usage_of(deps: ProcessorDeps, calls: Iterable[Metered]) -> Usage:
    return total(calls, deps.settings.model_prices)


def counting(deps: ProcessorDeps, profile: BusinessProfile, sid: str, usage: Usage,
             then: Callable[[Conversation, datetime], None] | None = None) -> Callable[[Conversation, datetime], None]:
    """record_answer's ``after``: the usage noted (and counted) in the answer's write, then ``then``."""
    shards, count = deps.settings.usage_shards, counted(deps, profile)

    def after(conv: Conversation, now: datetime) -> None:
        note_usage(conv, sid, usage, now, shards, count)
        if then is not None:
            then(conv, now)

    return after


def alert_spent(deps: ProcessorDeps, profile: BusinessProfile, now: datetime) -> None:
    """The business got its budget reply: ops hear of it once that day (a failed marker write only warns)."""
    if deps.usage is None:
        return
    try:
        first = deps.usage.alert_once(profile.address, now)
    except Exception as exc:  # the answer stands; the next budget reply tries again
        log.warning("budget alert not recorded", extra={"event": "budget_alert_failed", "business": profile.address,
                                                         "reason": repr(exc)[:300]})
        return
    if first:
        budget = profile.budget
        log.error("model budget spent, answering with the budget reply until it resumes", extra={
            "event": "budget_exhausted", "business": profile.address, "day": day_key(now),
            "daily_token_budget": budget.daily_tokens if budget else 0,
            "monthly_cost_budget": budget.monthly_cost_usd if budget else 0})

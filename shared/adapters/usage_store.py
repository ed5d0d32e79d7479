"""Firestore: the per-business usage counters, read for a budget, a report or an alert.

The answers write them (shared/adapters/firestore_store.py: one shard
document's ``Increment`` in the answer's own commit, shared/domain/usage.py
names it); this reads them. A business's month is at most ``USAGE_SHARDS``
documents, found by one query on ``business`` and ``month`` (equality
filters only: Firestore's single-field indexes serve it), so a change of the
shard count never hides a shard. The spend a budget is checked against is
cached per process for ``BUDGET_CACHE_SECONDS``: a budgeted business's
messages cost those reads once per interval and instance, not per message
(the overshoot this allows: docs/decisions/0024-usage-and-budgets.md).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.adapters.compare_and_set import OpCounter
from shared.adapters.lazy import Lazy
from shared.domain.budgets import Spend
from shared.domain.usage import day_key, month_key, summed


class UsageCounters:
    """The counters of every business; the client is built on first use."""

    def __init__(self, client_factory: Callable[[], firestore.Client], collection: str, alerts: str,
                 cache_seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._client = Lazy(client_factory)
        self._collection = collection
        self._alerts = alerts
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, dict[str, dict[str, float]]]] = {}
        self._alerted: set[tuple[str, str]] = set()
        self.ops = OpCounter()

    @classmethod
    def of(cls, settings: Any, store: Any) -> "UsageCounters":
        """The settings' counters on the conversation store's client, their reads counted with the store's."""
        counters = cls(lambda: store.client, settings.usage_collection, settings.budget_alerts_collection,
                       settings.budget_cache_seconds)
        counters.ops = store.ops
        return counters

    @property
    def client(self) -> firestore.Client:
        return self._client.get()

    def month(self, business: str, month: str) -> dict[str, dict[str, float]]:
        """One business's month, its shards added up: day (``"04"``) -> field -> total (one query, no cache)."""
        query = (self.client.collection(self._collection)
                 .where(filter=firestore.FieldFilter("business", "==", business))
                 .where(filter=firestore.FieldFilter("month", "==", month)))
        documents = [snap.to_dict() or {} for snap in query.stream()]
        self.ops.add(reads=max(1, len(documents)))
        return summed(documents)

    def spend(self, business: str, now: datetime) -> Spend:
        """Today's tokens and this month's estimated cost of ``business``, at most ``cache_seconds`` old."""
        key = (business, month_key(now))
        with self._lock:
            cached = self._cache.get(key)
        if cached is None or self._monotonic() - cached[0] >= self._cache_seconds:
            cached = (self._monotonic(), self.month(business, key[1]))
            with self._lock:
                self._cache[key] = cached
        days = cached[1]
        today = days.get(day_key(now)[-2:], {})
        return Spend(int(today.get("tokens", 0)), sum(d.get("costUsd", 0) for d in days.values()))

    def alert_once(self, business: str, now: datetime) -> bool:
        """True for exactly one caller per business and UTC day, whatever instance: a marker made with ``create``."""
        key = (business, day_key(now))
        with self._lock:
            if key in self._alerted:
                return False
            self._alerted.add(key)
        try:
            self.client.collection(self._alerts).document(f"{business}|{key[1]}").create(
                {"business": business, "day": key[1], "at": now, "expireAt": now + timedelta(days=40)})
        except gexc.Conflict:  # AlreadyExists: another instance alerted today
            return False
        except gexc.GoogleAPICallError:
            with self._lock:
                self._alerted.discard(key)  # the next budget reply of this instance tries again
            raise
        finally:
            self.ops.add(writes=1)
        return True

    def businesses(self, months: Iterable[str]) -> list[str]:
        """The businesses with counters in any of ``months`` (the report of every business)."""
        found: set[str] = set()
        for month in months:
            query = self.client.collection(self._collection).where(filter=firestore.FieldFilter("month", "==", month))
            rows = [snap.to_dict() or {} for snap in query.select(["business"]).stream()]
            self.ops.add(reads=max(1, len(rows)))
            found.update(str(row.get("business", "")) for row in rows)
        return sorted(found - {""})


def report_rows(counters: Any, business: str | None, days: int, now: datetime) -> list[dict[str, Any]]:
    """``make admin ARGS="usage"``: per business and UTC day, newest first: messages, tokens, estimated cost."""
    wanted = [now - timedelta(days=n) for n in range(max(1, days))]
    months = sorted({month_key(d) for d in wanted})
    names = [business] if business else counters.businesses(months)
    rows: list[dict[str, Any]] = []
    for name in names:
        by_month = {month: counters.month(name, month) for month in months}
        for day in wanted:
            values = by_month[month_key(day)].get(day_key(day)[-2:], {})
            if values:
                rows.append({"business": name, "day": day_key(day), "messages": int(values.get("messages", 0)),
                             "tokens": int(values.get("tokens", 0)),
                             "prompt_tokens": int(values.get("promptTokens", 0)),
                             "completion_tokens": int(values.get("completionTokens", 0)),
                             "embedding_tokens": int(values.get("embeddingTokens", 0)),
                             "transcription_seconds": round(values.get("transcriptionSeconds", 0), 1),
                             "cost_usd": round(values.get("costUsd", 0), 6)})
    return rows

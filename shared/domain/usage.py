"""What one answer cost: the tokens the API reported, the estimated price, and where it is counted.

Each model call of an answer reports its ``usage`` (chat completions:
``prompt_tokens``, ``completion_tokens``, every tool round included;
embeddings: ``prompt_tokens``; transcriptions: ``seconds`` of audio, or
input and output tokens for the token-billed models). The adapters note each
as a :class:`Metered` item; :func:`total` folds them into the answer's
:class:`Usage`, priced from a table of US dollars per million tokens (per
minute of audio for a duration-billed transcription model).

The counters a business's budget reads (shared/domain/budgets.py) are
sharded: one document per business, month and shard, its fields per day.
:func:`note_usage` puts the usage on the message entry and asks for the
shard's increment in the same commit as the answer
(docs/decisions/0024-usage-and-budgets.md), so it is counted exactly once
per answered message, whatever is redelivered or retried.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

CHAT = "chat"
EMBEDDING = "embedding"
TRANSCRIPTION = "transcription"


@dataclass(frozen=True)
class Price:
    """US dollars per million input and output tokens, and per minute of audio (duration-billed models)."""

    input: float = 0.0
    output: float = 0.0
    minute: float = 0.0


# OpenAI's list prices of the default models (USD per 1M tokens; whisper-1 per minute), 2026-12.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(input=0.15, output=0.60),
    "gpt-4o": Price(input=2.50, output=10.00),
    "gpt-4.1-mini": Price(input=0.40, output=1.60),
    "text-embedding-3-small": Price(input=0.02),
    "text-embedding-3-large": Price(input=0.13),
    "gpt-4o-mini-transcribe": Price(input=1.25, output=5.00),
    "gpt-4o-transcribe": Price(input=2.50, output=10.00),
    "whisper-1": Price(minute=0.006),
}


class PriceError(ValueError):
    """A price table that is not ``{model: {input, output, minute}}`` with non-negative numbers."""


def parse_prices(text: str) -> dict[str, Price]:
    """The default table with ``text``'s models (JSON ``{"model": {"input": 0.15, "output": 0.6}}``) over it."""
    prices = dict(DEFAULT_PRICES)
    if not text.strip():
        return prices
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise PriceError(f"not JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise PriceError("must be a JSON object of model name -> {input, output, minute}")
    for model, entry in raw.items():
        if not isinstance(entry, Mapping) or not set(entry) <= {"input", "output", "minute"}:
            raise PriceError(f"{model}: must be an object with input, output and/or minute")
        values = {k: v for k, v in entry.items()}
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in values.values()):
            raise PriceError(f"{model}: prices must be non-negative numbers, got {dict(entry)}")
        prices[str(model)] = Price(**{k: float(v) for k, v in values.items()})
    return prices


@dataclass(frozen=True)
class Metered:
    """One model call's reported usage: its kind, the model, input and output tokens, seconds of audio."""

    kind: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Usage:
    """An answer's usage, as stored on its entry and logged on its ``answered`` line."""

    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    transcription_tokens: int = 0
    transcription_seconds: float = 0.0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        """Every token the answer was billed for: what a ``daily_token_budget`` counts."""
        return self.prompt_tokens + self.completion_tokens + self.embedding_tokens + self.transcription_tokens

    @property
    def empty(self) -> bool:
        return self.tokens == 0 and self.transcription_seconds == 0 and self.model is None

    def log_fields(self) -> dict[str, Any]:
        """The ``answered`` line's usage fields (the names the analytics queries use)."""
        return {"model": self.model, "tokens": self.tokens, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "embedding_tokens": self.embedding_tokens,
                "transcription_seconds": self.transcription_seconds, "cost_usd": self.cost_usd}

    def to_data(self) -> dict[str, Any]:
        data = {"model": self.model, "promptTokens": self.prompt_tokens, "completionTokens": self.completion_tokens,
                "embeddingTokens": self.embedding_tokens, "transcriptionTokens": self.transcription_tokens,
                "transcriptionSeconds": self.transcription_seconds, "costUsd": self.cost_usd}
        return {k: v for k, v in data.items() if v}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "Usage":
        return cls(model=data.get("model") or None, prompt_tokens=int(data.get("promptTokens", 0) or 0),
                   completion_tokens=int(data.get("completionTokens", 0) or 0),
                   embedding_tokens=int(data.get("embeddingTokens", 0) or 0),
                   transcription_tokens=int(data.get("transcriptionTokens", 0) or 0),
                   transcription_seconds=float(data.get("transcriptionSeconds", 0) or 0),
                   cost_usd=float(data.get("costUsd", 0) or 0))


def cost_of(item: Metered, prices: Mapping[str, Price]) -> float:
    """The estimated price of one call; a model missing from the table costs 0 (and says so in the table's docs)."""
    price = prices.get(item.model)
    if price is None:
        return 0.0
    return (item.input_tokens * price.input + item.output_tokens * price.output) / 1_000_000 \
        + item.seconds / 60 * price.minute


def total(items: Iterable[Metered], prices: Mapping[str, Price]) -> Usage:
    """The answer's usage: the calls summed by kind, the chat model named, the cost rounded to a micro-dollar."""
    items = list(items)
    chat = [i for i in items if i.kind == CHAT]
    embedding = [i for i in items if i.kind == EMBEDDING]
    audio = [i for i in items if i.kind == TRANSCRIPTION]
    if not items:
        return Usage()
    return Usage(
        model=chat[-1].model if chat else None,
        prompt_tokens=sum(i.input_tokens for i in chat), completion_tokens=sum(i.output_tokens for i in chat),
        embedding_tokens=sum(i.input_tokens for i in embedding),
        transcription_tokens=sum(i.input_tokens + i.output_tokens for i in audio),
        transcription_seconds=round(sum(i.seconds for i in audio), 3),
        cost_usd=round(sum(cost_of(i, prices) for i in items), 6),
    )


def shard_for(sid: str, shards: int) -> int:
    """The counter shard of a message: stable across processes (not Python's salted ``hash``), spread evenly."""
    return int.from_bytes(hashlib.sha256(sid.encode()).digest()[:8], "big") % max(1, shards)


def day_key(now: datetime) -> str:
    """The UTC day a count belongs to (budgets reset at 00:00 UTC): ``2026-12-04``."""
    return now.astimezone(timezone.utc).strftime("%Y-%m-%d")


def month_key(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y-%m")


@dataclass(frozen=True)
class Count:
    """One shard increment asked for by a change: business, month, day of it, shard, and what it adds."""

    business: str
    month: str
    day: str
    shard: int
    usage: Usage = field(default_factory=Usage)

    @property
    def document_id(self) -> str:
        """Shard documents are named, so an increment needs no read: ``{business}|{month}|{shard}``."""
        return f"{self.business}|{self.month}|{self.shard:02d}"

    def increments(self) -> dict[str, float]:
        """The day's fields this answer adds to (Firestore ``Increment`` each)."""
        u = self.usage
        added: dict[str, float] = {"messages": 1, "tokens": u.tokens, "promptTokens": u.prompt_tokens,
                                   "completionTokens": u.completion_tokens, "embeddingTokens": u.embedding_tokens,
                                   "transcriptionSeconds": u.transcription_seconds, "costUsd": u.cost_usd}
        return {k: v for k, v in added.items() if v}


def note_usage(conv: Any, sid: str, usage: Usage, now: datetime, shards: int, counted: bool) -> None:
    """In the answer's change: the usage on the entry and, when ``counted``, its shard's increment in the commit.

    Nothing for an answer that made no model call (a canned reply), so it costs nothing.
    """
    if usage.empty:
        return
    conv.messages[sid].usage = usage.to_data()
    if counted:
        conv.new_counts.append(Count(conv.business or conv.messages[sid].business, month_key(now), day_key(now)[-2:],
                                     shard_for(sid, shards), usage))


def summed(documents: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The shard documents of one month added up: day (``"04"``) -> field -> total."""
    days: dict[str, dict[str, float]] = {}
    for document in documents:
        for day, values in (document.get("days") or {}).items():
            into = days.setdefault(str(day), {})
            for name, value in (values or {}).items():
                into[name] = into.get(name, 0) + (value or 0)
    return days

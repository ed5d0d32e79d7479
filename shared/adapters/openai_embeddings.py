"""Embeddings through the openai SDK (``POST /v1/embeddings`` of any OpenAI-compatible server).

The same server, key and retry rules as the chat model (shared/adapters/openai_model.py):
``OPENAI_BASE_URL``, the key from Secret Manager, the SDK's own retries off
and ours kept inside a time budget, so embedding a message can never outlive
its claim. The model and the dimensions come from the settings
(``OPENAI_EMBEDDING_MODEL``, ``OPENAI_EMBEDDING_DIMENSIONS``); a vector of
any other length is refused, because the vector index (terraform/firestore.tf)
only holds vectors of exactly that length and a query of another length
finds nothing, silently.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Sequence

import openai

from shared.adapters import usage_meter
from shared.adapters.openai_model import INITIAL_RETRY_SECONDS, MAX_RETRY_SECONDS, RETRYABLE_STATUS, retry_after_seconds
from shared.config import Settings
from shared.domain.usage import EMBEDDING
from shared.log import redact_credentials

log = logging.getLogger(__name__)

# OpenAI takes up to 2048 inputs and 300,000 tokens a request; smaller requests retry cheaper.
BATCH_INPUTS = 64
BATCH_CHARS = 200_000


class EmbeddingUnavailable(Exception):
    """No usable embedding within the budget (server down, refused, or a vector of the wrong length)."""


def _retryable(exc: openai.OpenAIError) -> bool:
    if isinstance(exc, openai.APIConnectionError):
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500)


def batches(texts: Sequence[str]) -> list[list[str]]:
    """The inputs in request-sized batches, in order."""
    out: list[list[str]] = []
    current: list[str] = []
    size = 0
    for text in texts:
        if current and (len(current) >= BATCH_INPUTS or size + len(text) > BATCH_CHARS):
            out.append(current)
            current, size = [], 0
        current.append(text)
        size += len(text)
    if current:
        out.append(current)
    return out


class Embedder:
    """Vectors for texts, each call within a time budget; the client is built on first use."""

    def __init__(
        self,
        model: str,
        dimensions: int,
        api_key: Callable[[], str],
        base_url: str,
        timeout_seconds: float,
        max_retries: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        refresh_key: Callable[[], bool] = lambda: False,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.model = model
        self.dimensions = dimensions
        self._api_key = api_key
        self._base_url = base_url or None
        self._timeout = timeout_seconds
        self._max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        self._refresh_key = refresh_key
        self._client: Any = None
        self._client_factory = client_factory or self._openai_client
        self._lock = threading.Lock()
        self.calls = 0

    def _openai_client(self) -> openai.OpenAI:
        return openai.OpenAI(api_key=self._api_key(), base_url=self._base_url, timeout=self._timeout, max_retries=0)

    @classmethod
    def from_settings(cls, settings: Settings, openai_api_key: Callable[[], str],
                      refresh_key: Callable[[], bool] = lambda: False) -> "Embedder":
        """The settings' model and dimensions on the chat model's server, time-out and retries."""
        return cls(model=settings.openai_embedding_model, dimensions=settings.openai_embedding_dimensions,
                   api_key=openai_api_key, base_url=settings.openai_base_url,
                   timeout_seconds=settings.openai_timeout_seconds, max_retries=settings.openai_max_retries,
                   refresh_key=refresh_key)

    @property
    def client(self) -> Any:
        """The SDK client, built on first use (again after the key was rotated)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._client_factory()
        return self._client

    def embed(self, texts: Sequence[str], budget_seconds: float) -> list[list[float]]:
        """One vector per text, in order; every request and wait ends within ``budget_seconds`` from now."""
        if any(not text.strip() for text in texts):
            raise ValueError("an embedding input must not be empty")
        deadline = self._clock() + budget_seconds
        vectors: list[list[float]] = []
        for batch in batches(texts):
            vectors.extend(self._batch(batch, deadline, budget_seconds))
        return vectors

    def _batch(self, inputs: list[str], deadline: float, budget: float) -> list[list[float]]:
        attempt = 0
        refreshed = False
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise EmbeddingUnavailable(f"no time left in the {budget:g}s budget")
            self.calls += 1
            try:
                response = self.client.embeddings.create(
                    model=self.model, input=inputs, dimensions=self.dimensions, timeout=min(self._timeout, remaining)
                )
                vectors = self._vectors(response, len(inputs))
                usage_meter.note(EMBEDDING, self.model, getattr(response, "usage", None))
                return vectors
            except openai.OpenAIError as exc:
                failure = redact_credentials(f"{type(exc).__name__}: {exc}")[:300]
                if isinstance(exc, openai.AuthenticationError) and not refreshed and self._refresh_key():
                    refreshed = True
                    with self._lock:
                        self._client = None
                    continue
                if not _retryable(exc) or attempt >= self._max_retries:
                    raise EmbeddingUnavailable(failure) from exc
                asked = retry_after_seconds(exc) if isinstance(exc, openai.APIStatusError) else None
                wait = asked if asked is not None else min(INITIAL_RETRY_SECONDS * 2**attempt, MAX_RETRY_SECONDS)
                if self._clock() + wait + min(self._timeout, 1.0) >= deadline:
                    raise EmbeddingUnavailable(
                        f"{failure} (next attempt in {wait:g}s would pass the {budget:g}s budget)"[:300]
                    ) from exc
                log.warning("embedding attempt failed, retrying",
                            extra={"event": "embedding_retry", "wait_seconds": wait, "reason": failure})
                self._sleep(wait)
                attempt += 1

    def _vectors(self, response: object, expected: int) -> list[list[float]]:
        data = getattr(response, "data", None)
        if not isinstance(data, list) or len(data) != expected:
            raise EmbeddingUnavailable(f"the server returned {len(data) if isinstance(data, list) else 'no'} "
                                       f"embeddings for {expected} inputs")
        ordered = sorted(data, key=lambda item: getattr(item, "index", 0))
        vectors = []
        for item in ordered:
            vector = [float(x) for x in getattr(item, "embedding", None) or ()]
            if len(vector) != self.dimensions:
                raise EmbeddingUnavailable(
                    f"{self.model} returned a vector of {len(vector)} dimensions, not the {self.dimensions} of "
                    "OPENAI_EMBEDDING_DIMENSIONS (and of the vector index)"
                )
            vectors.append(vector)
        return vectors

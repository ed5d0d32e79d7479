"""The embeddings adapter: batches in order, retries inside its budget, refuses vectors of the wrong length."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx2 as httpx
import openai
import pytest

from shared.adapters.openai_embeddings import BATCH_INPUTS, Embedder, EmbeddingUnavailable, batches


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://x/v1/embeddings")
    response = httpx.Response(status, headers=headers or {}, request=request)
    cls = {401: openai.AuthenticationError, 429: openai.RateLimitError}.get(status, openai.InternalServerError)
    return cls("failed", response=response, body=None)


class FakeEmbeddings:
    """The SDK's ``client.embeddings``: answers each call from a script of vectors lengths or errors."""

    def __init__(self, dims: int, script: list[Any] | None = None) -> None:
        self.dims = dims
        self.script = list(script or [])
        self.calls: list[dict[str, Any]] = []

    def create(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        dims = step if isinstance(step, int) else self.dims
        data = [SimpleNamespace(index=i, embedding=[float(i + 1)] * dims) for i in range(len(kwargs["input"]))]
        return SimpleNamespace(data=list(reversed(data)))


def embedder(fake: FakeEmbeddings, clock: Clock, **kwargs: Any) -> Embedder:
    built: list[str] = kwargs.pop("built", [])

    def client() -> Any:
        built.append("client")
        return SimpleNamespace(embeddings=fake)

    return Embedder("text-embedding-3-small", fake.dims, lambda: "k", "", 5.0, kwargs.pop("max_retries", 2),
                    clock=clock, sleep=clock.sleep, client_factory=client, **kwargs)


def test_vectors_come_back_in_input_order_with_the_settings_model_and_dimensions() -> None:
    fake = FakeEmbeddings(4)
    vectors = embedder(fake, Clock()).embed(["a", "b", "c"], 10)
    assert vectors == [[1.0] * 4, [2.0] * 4, [3.0] * 4]
    assert fake.calls[0]["model"] == "text-embedding-3-small" and fake.calls[0]["dimensions"] == 4
    assert fake.calls[0]["input"] == ["a", "b", "c"]


def test_many_inputs_go_in_batches() -> None:
    texts = [f"t{n}" for n in range(BATCH_INPUTS * 2 + 5)]
    assert [len(b) for b in batches(texts)] == [BATCH_INPUTS, BATCH_INPUTS, 5]
    assert [len(b) for b in batches(["x" * 150_000, "y" * 150_000])] == [1, 1]
    fake = FakeEmbeddings(2)
    assert len(embedder(fake, Clock()).embed(texts, 10)) == len(texts) and len(fake.calls) == 3


def test_a_vector_of_another_length_is_refused() -> None:
    with pytest.raises(EmbeddingUnavailable, match="returned a vector of 3 dimensions, not the 4"):
        embedder(FakeEmbeddings(4, [3]), Clock()).embed(["a"], 10)


def test_a_server_error_is_retried_within_the_budget() -> None:
    clock = Clock()
    fake = FakeEmbeddings(2, [status_error(500), status_error(429, {"retry-after": "1"})])
    e = embedder(fake, clock)
    assert e.embed(["a"], 10) == [[1.0, 1.0]]
    assert len(fake.calls) == 3 and clock.slept == [0.5, 1.0] and e.calls == 3


def test_no_wait_passes_the_budget() -> None:
    clock = Clock()
    fake = FakeEmbeddings(2, [status_error(429, {"retry-after": "30"})])
    with pytest.raises(EmbeddingUnavailable, match="would pass the 4s budget"):
        embedder(fake, clock).embed(["a"], 4)
    assert clock.slept == [] and len(fake.calls) == 1


def test_every_attempt_is_given_only_what_is_left_of_the_budget() -> None:
    clock = Clock()
    fake = FakeEmbeddings(2, [status_error(500)])
    embedder(fake, clock).embed(["a"], 3)
    assert fake.calls[0]["timeout"] == 3 and fake.calls[1]["timeout"] == pytest.approx(2.5)


def test_a_rotated_key_is_read_again_once() -> None:
    refreshed: list[bool] = []
    built: list[str] = []
    fake = FakeEmbeddings(2, [status_error(401), status_error(401)])
    e = embedder(fake, Clock(), refresh_key=lambda: refreshed.append(True) or True, built=built)
    with pytest.raises(EmbeddingUnavailable, match="AuthenticationError"):
        e.embed(["a"], 10)
    # One refresh and a new client with the new key; a second refusal is final.
    assert refreshed == [True] and built == ["client", "client"] and len(fake.calls) == 2


def test_a_refused_request_is_not_retried() -> None:
    request = httpx.Request("POST", "http://x")
    bad = openai.BadRequestError("bad", response=httpx.Response(400, request=request), body=None)
    fake = FakeEmbeddings(2, [bad])
    with pytest.raises(EmbeddingUnavailable, match="BadRequestError"):
        embedder(fake, Clock()).embed(["a"], 10)
    assert len(fake.calls) == 1


def test_an_empty_input_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        embedder(FakeEmbeddings(2), Clock()).embed(["a", "  "], 10)

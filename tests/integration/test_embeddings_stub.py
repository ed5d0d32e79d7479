"""The offline embeddings endpoint through the real openai SDK: both encodings, and OpenAI's refusals."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Iterator

import openai
import pytest

from devstack.openai_stub import OpenAIStub, OpenAIStubAdmin


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    running = OpenAIStub().start()
    yield running
    running.stop()


def client(stub: OpenAIStub, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=stub.base_url, max_retries=0, timeout=5)


def test_the_sdk_default_base64_and_floats_give_the_same_vectors(stub: OpenAIStub) -> None:
    sdk = client(stub)
    packed = sdk.embeddings.create(model="text-embedding-3-small", input=["sourdough loaf", "baguette"], dimensions=64)
    floats = sdk.embeddings.create(model="text-embedding-3-small", input=["sourdough loaf", "baguette"], dimensions=64,
                                   encoding_format="float")
    assert [len(d.embedding) for d in packed.data] == [64, 64]
    for a, b in zip(packed.data, floats.data):
        assert a.index == b.index and all(abs(x - y) < 1e-6 for x, y in zip(a.embedding, b.embedding))
    assert packed.usage.prompt_tokens > 0 and packed.model == "text-embedding-3-small"
    recorded = OpenAIStubAdmin(stub.base_url).embedding_requests()
    assert recorded[-1]["inputs"] == ["sourdough loaf", "baguette"] and recorded[-1]["dimensions"] == 64


def test_refusals_reach_the_sdk_as_its_own_errors(stub: OpenAIStub) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client(stub).embeddings.create(model="gpt-4o-mini", input="x")
    with pytest.raises(openai.BadRequestError, match="between 1 and 1536"):
        client(stub).embeddings.create(model="text-embedding-3-small", input="x", dimensions=4096)
    request = urllib.request.Request(f"{stub.base_url}/embeddings", method="POST", data=json.dumps(
        {"model": "text-embedding-3-small", "input": "x"}).encode(), headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 401, "no key, no embeddings"


def test_programmed_failures_and_the_admin_endpoints(stub: OpenAIStub) -> None:
    admin = OpenAIStubAdmin(stub.base_url)
    admin.clear_embeddings()
    admin.configure(embedding_fail_times=1, embedding_fail_status=503)
    with pytest.raises(openai.InternalServerError):
        client(stub).embeddings.create(model="text-embedding-3-small", input="x")
    assert client(stub).embeddings.create(model="text-embedding-3-small", input="x").data
    assert len(admin.embedding_requests()) == 2

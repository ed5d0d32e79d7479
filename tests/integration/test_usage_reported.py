"""The OpenAI adapters note the usage the API reports, through the real openai client against the stand-in,
which reports it as OpenAI does (CompletionUsage, the embeddings' usage, a transcription's tokens or seconds)."""

from __future__ import annotations

from typing import Iterator

import pytest

from devstack.openai_stub import OpenAIStub
from shared.adapters.openai_embeddings import Embedder
from shared.adapters.openai_model import ChatModel
from shared.adapters.usage_meter import metering
from shared.domain.usage import CHAT, DEFAULT_PRICES, EMBEDDING, TRANSCRIPTION, total


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    running = OpenAIStub().start()
    try:
        yield running
    finally:
        running.stop()


def chat(stub: OpenAIStub) -> ChatModel:
    return ChatModel(model="gpt-4o-mini", system_prompt="You are brief.", api_key=lambda: "sk-test",
                     base_url=stub.base_url, timeout_seconds=5.0, max_retries=0, budget_seconds=10.0)


def test_every_call_of_an_answer_is_noted_with_what_the_api_reported(stub: OpenAIStub) -> None:
    model = chat(stub)
    embedder = Embedder("text-embedding-3-small", 1536, lambda: "sk-test", stub.base_url, 5.0, 0)
    with metering() as calls:
        model.reply([], "How much is the sourdough loaf today?")
        model.reply([{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "yes"}], "and now?")
        embedder.embed(["How much is the sourdough?"], 5.0)
        model.transcribe(b"\x00" * 8000, "voice.ogg", "audio/ogg", model="gpt-4o-mini-transcribe")
        model.transcribe(b"\x00" * 8000, "voice.ogg", "audio/ogg", model="whisper-1")
    assert [c.kind for c in calls] == [CHAT, CHAT, EMBEDDING, TRANSCRIPTION, TRANSCRIPTION]
    assert all(c.input_tokens > 0 and c.output_tokens > 0 for c in calls[:2])
    assert calls[2].input_tokens > 0 and calls[2].model == "text-embedding-3-small"
    assert calls[3].input_tokens > 0 and calls[3].seconds == 0
    assert calls[4].seconds == 4.0 and calls[4].input_tokens == 0
    usage = total(calls, DEFAULT_PRICES)
    assert usage.model == "gpt-4o-mini" and usage.transcription_seconds == 4.0 and usage.cost_usd > 0


def test_a_failed_call_notes_nothing(stub: OpenAIStub) -> None:
    stub.fail_next(times=1, status=400)
    with metering() as calls:
        with pytest.raises(Exception):
            chat(stub).reply([], "refused")
    assert calls == []

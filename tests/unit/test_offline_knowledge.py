"""The offline model's knowledge: embeddings that find a paragraph by its words, refusals as OpenAI's."""

from __future__ import annotations

import base64
import math
import struct

import pytest

from devstack.offline_knowledge import (
    OFFLINE_MAX_DISTANCE,
    OFFLINE_UNKNOWN,
    EmbeddingRequestError,
    content_words,
    embedding_inputs,
    embeddings_response,
    offline_embedding,
    offline_knowledge_reply,
)
from devstack.openai_stub import message_text, offline_reply
from shared.domain.knowledge_prompt import Retrieved, knowledge_prompt

PARAGRAPHS = {
    "bread": "Bread › Prices\n\nSourdough loaf 800 g: 4.50 €. Baguette: 1.20 €. Rye sourdough: 4.80 €.",
    "hours": "Opening hours\n\nMonday to Saturday 7:00 to 20:00, Sunday 8:00 to 14:00.",
    "returns": "Returns\n\nBring it back the same day with the receipt and we refund it in full.",
}


def distance(a: list[float], b: list[float]) -> float:
    return 1 - sum(x * y for x, y in zip(a, b))


def test_vectors_are_deterministic_unit_vectors_of_the_asked_length() -> None:
    for dims in (8, 256, 1536):
        v = offline_embedding("Sourdough loaf", dims)
        assert len(v) == dims and math.isclose(sum(x * x for x in v), 1.0)
        assert v == offline_embedding("Sourdough loaf", dims)
    assert offline_embedding("the and of", 64) != [0.0] * 64, "no zero vector, even for common words only"


@pytest.mark.parametrize(("question", "nearest"), [
    ("How much is the sourdough?", "bread"),
    ("When do you open on Sunday?", "hours"),
    ("Can I get a refund?", "returns"),
    ("cuánto cuesta la baguette", "bread"),
])
def test_a_question_sharing_a_word_with_a_paragraph_finds_it_within_the_threshold(question: str, nearest: str) -> None:
    q = offline_embedding(question, 1536)
    distances = {name: distance(q, offline_embedding(text, 1536)) for name, text in PARAGRAPHS.items()}
    assert min(distances, key=distances.__getitem__) == nearest
    assert distances[nearest] < OFFLINE_MAX_DISTANCE


def test_a_question_sharing_no_word_is_beyond_the_threshold() -> None:
    q = offline_embedding("Who won the football match yesterday?", 1536)
    assert all(distance(q, offline_embedding(t, 1536)) > OFFLINE_MAX_DISTANCE for t in PARAGRAPHS.values())


def test_words_are_folded_and_common_words_dropped() -> None:
    assert content_words("How much are the Croissants? ¿Cuánto?") == ["croissant"]


def test_requests_are_checked_as_openai_checks_them() -> None:
    assert embedding_inputs({"model": "text-embedding-3-small", "input": "hi", "dimensions": 256}) == (
        "text-embedding-3-small", ["hi"], 256, "float")
    bad = [
        ({"model": "gpt-4o", "input": "x"}, 404, "does not exist"),
        ({"input": "x"}, 400, "model parameter"),
        ({"model": "text-embedding-3-small", "input": ""}, 400, "empty string"),
        ({"model": "text-embedding-3-small", "input": [1, 2, 3]}, 400, "token arrays"),
        ({"model": "text-embedding-3-small", "input": ["x"] * 2049}, 400, "at most 2048"),
        ({"model": "text-embedding-3-small", "input": "x" * 40000}, 400, "maximum context length"),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": 3072}, 400, "between 1 and 1536"),
        ({"model": "text-embedding-ada-002", "input": "x", "dimensions": 512}, 400, "does not support"),
        ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"}, 400, "encoding_format"),
    ]
    for body, status, text in bad:
        with pytest.raises(EmbeddingRequestError, match=text) as caught:
            embedding_inputs(body)
        assert caught.value.status == status, body


def test_base64_answers_are_little_endian_float32() -> None:
    floats = embeddings_response("text-embedding-3-small", ["a b c", "d"], 16, "float")
    packed = embeddings_response("text-embedding-3-small", ["a b c", "d"], 16, "base64")
    raw = base64.b64decode(packed["data"][0]["embedding"])
    decoded = list(struct.unpack("<16f", raw))
    assert all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7) for x, y in zip(decoded, floats["data"][0]["embedding"]))
    assert [d["index"] for d in packed["data"]] == [0, 1] and packed["usage"]["prompt_tokens"] >= 2


def test_the_offline_reply_quotes_the_excerpt_that_answers_and_names_it() -> None:
    retrieved = [
        Retrieved("hours.md#1", "hours.md", "Opening hours", "", "Monday to Saturday 7:00 to 20:00.", 0.5),
        Retrieved("prices.md#2", "prices.md", "Prices", "Bread",
                  "| Sourdough loaf | 800 g | 4.50 € |\n| Baguette | 250 g | 1.20 € |", 0.6),
    ]
    prompt = knowledge_prompt("You are the bakery.", retrieved, 1500).system_prompt
    messages = [{"role": "system", "content": prompt}, {"role": "user", "content": "How much is the sourdough?"}]
    assert offline_reply(messages) == "[offline model] Sourdough loaf | 800 g | 4.50 € — from Prices"
    nothing = knowledge_prompt("You are the bakery.", [], 1500).system_prompt
    assert offline_knowledge_reply([{"role": "system", "content": nothing}, {"role": "user", "content": "x"}],
                                   message_text) == OFFLINE_UNKNOWN


def test_without_documents_the_offline_model_echoes_as_before() -> None:
    reply = offline_reply([{"role": "system", "content": "plain"}, {"role": "user", "content": "hola"}])
    assert reply == "[offline model] You said: «hola». (turn 1)"

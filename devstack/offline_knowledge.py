"""The offline model's knowledge: deterministic embeddings, and answers quoted from the excerpts it is given.

Embeddings: a hashed bag of words and character trigrams, normalised. Words
are lower-cased, stripped of accents and of a plural ``s``, and common words
(English and Spanish) are left out, so a question sharing a content word with
a paragraph ("sourdough", "refund") is near it and one sharing none is far.
Each feature lands in one of ``dimensions`` slots with a sign, both from a
hash of the feature, so the vectors have the length the request asks for and
the same text always gives the same vector. It is not a language model: it
knows no synonyms, and its distances are larger than a real model's, hence
its own threshold (:data:`OFFLINE_MAX_DISTANCE`, which the local stack sets as
``KNOWLEDGE_MAX_DISTANCE``).

Answers: when the system prompt carries the business's documents
(shared/domain/knowledge_prompt.py), the offline reply quotes the lines of
the excerpt that share most words with the question and names its source,
"— from Prices"; when it says no excerpt matched, the reply says so.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
import struct
import unicodedata
from typing import Any, Sequence

from shared.domain.knowledge_prompt import HEADER, NOTHING_MATCHED

# Cosine distance below which the offline embeddings call a chunk close (shared content words).
OFFLINE_MAX_DISTANCE = 0.9
TRIGRAM_WEIGHT = 0.35
SLOTS_PER_FEATURE = 8
_WORD = re.compile(r"\w+", re.UNICODE)
_EXCERPT = re.compile(
    r'<excerpt source="(?P<source>[^"]*)"(?: section="(?P<section>[^"]*)")? id="(?P<id>[^"]*)">\n'
    r"(?P<text>.*?)\n</excerpt>",
    re.DOTALL,
)
STOP_WORDS = frozenset("""
a about above after again all am an and any are as at be been before being below between both but by can could
did do does doing down during each few for from further had has have having he her here hers him his how i if in
into is it its itself just me more most my no nor not now of off on once only or other our ours out over own same
she should so some such than that the their theirs them then there these they this those through to too under
until up very was we were what when where which while who whom why will with would you your yours please tell
know want need get got hi hello hey thanks thank much many
el la los las un una unos unas de del al y o que en es son por para con sin se su sus lo le les me mi mis tu tus
como cual cuales cuando donde quien hay muy mas pero si no ya hola gracias cuanto cuanta cuantos cuantas
""".split())
OFFLINE_UNKNOWN = "[offline model] I don't have that information in the business's documents."


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def content_words(text: str) -> list[str]:
    """The words that carry meaning, folded: lower case, no accents, no plural s, no common words."""
    words = []
    for word in _WORD.findall(_fold(text)):
        if word in STOP_WORDS or (len(word) < 2 and not word.isdigit()):
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        words.append(word)
    return words


def _slots(feature: str, dimensions: int) -> list[tuple[int, float]]:
    """Where a feature lands: SLOTS_PER_FEATURE slots, each with a sign, so one collision never cancels it."""
    digest = hashlib.blake2b(feature.encode(), digest_size=8 * SLOTS_PER_FEATURE).digest()
    out = []
    for n in range(SLOTS_PER_FEATURE):
        value = int.from_bytes(digest[8 * n:8 * n + 8], "big")
        out.append((value % dimensions, 1.0 if (value >> 63) & 1 else -1.0))
    return out


def offline_embedding(text: str, dimensions: int) -> list[float]:
    """The deterministic unit vector of ``text``, ``dimensions`` long."""
    counts: dict[str, float] = {}
    for word in content_words(text):
        counts[f"w:{word}"] = counts.get(f"w:{word}", 0.0) + 1.0
        padded = f"#{word}#"
        grams = [padded[i:i + 3] for i in range(len(padded) - 2)]
        for gram in grams:
            key = f"c:{gram}"
            counts[key] = counts.get(key, 0.0) + TRIGRAM_WEIGHT / math.sqrt(len(grams))
    if not counts:
        counts = {"empty": 1.0}
    vector = [0.0] * dimensions
    for feature, count in counts.items():
        weight = 1.0 + math.log(count) if count >= 1 else count
        for slot, sign in _slots(feature, dimensions):
            vector[slot] += sign * weight
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _best_lines(text: str, question: set[str], limit: int = 1) -> str:
    """The ``limit`` lines or sentences of ``text`` sharing most words with the question (ties: the first), in order."""
    lines = [part.strip(" -*|#\t") for line in text.split("\n") for part in re.split(r"(?<=[.!?])\s+", line)
             if part.strip(" -*|#\t")]
    scored = sorted(((len(question & set(content_words(line))), -n, line) for n, line in enumerate(lines)),
                    reverse=True)
    best = [line for score, _, line in scored[:limit] if score > 0] or lines[:1]
    order = {line: n for n, line in enumerate(lines)}
    return " ".join(sorted(best, key=order.__getitem__))


def offline_knowledge_reply(messages: Sequence[dict[str, Any]], text_of: Any) -> str | None:
    """The offline answer from the documents in the system prompt; None when the prompt carries none."""
    system = "\n".join(text_of(m) for m in messages if m.get("role") == "system")
    users = [text_of(m) for m in messages if m.get("role") == "user"]
    if NOTHING_MATCHED in system:
        return OFFLINE_UNKNOWN
    if HEADER not in system:
        return None
    question = set(content_words(users[-1] if users else ""))
    excerpts = list(_EXCERPT.finditer(system))
    if not excerpts:
        return OFFLINE_UNKNOWN
    best = max(excerpts, key=lambda m: (len(question & set(content_words(m.group("text")))), -m.start()))
    source = html.unescape(best.group("source"))
    return f"[offline model] {_best_lines(best.group('text'), question)} — from {source}"


# The embedding models OpenAI serves and their native dimensions; ``dimensions`` may shorten the v3 ones only.
EMBEDDING_MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536,
                    "offline-embedding": 2048}
MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000


class EmbeddingRequestError(ValueError):
    """A request OpenAI would refuse: ``status``, message and the parameter at fault."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def embedding_inputs(body: Any) -> tuple[str, list[str], int, str]:
    """The model, inputs, dimensions and encoding of an embeddings request, checked as OpenAI checks them."""
    if not isinstance(body, dict):
        raise EmbeddingRequestError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise EmbeddingRequestError(400, "you must provide a model parameter", "model")
    if model not in EMBEDDING_MODELS:
        raise EmbeddingRequestError(404, f"The model `{model}` does not exist or you do not have access to it.",
                                    "model")
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise EmbeddingRequestError(400, "'input' must be a non-empty string or array of strings "
                                         "(this stand-in does not take token arrays).", "input")
    if len(inputs) > MAX_INPUTS:
        raise EmbeddingRequestError(400, f"'input' has {len(inputs)} items, at most {MAX_INPUTS}.", "input")
    if any(not i for i in inputs):
        raise EmbeddingRequestError(400, "'input' cannot contain an empty string.", "input")
    longest = max(_tokens(i) for i in inputs)
    if longest > MAX_INPUT_TOKENS:
        raise EmbeddingRequestError(400, f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however "
                                         f"you requested {longest} tokens.", "input")
    if sum(_tokens(i) for i in inputs) > MAX_REQUEST_TOKENS:
        raise EmbeddingRequestError(400, f"Requested more than {MAX_REQUEST_TOKENS} tokens in one request.", "input")
    native = EMBEDDING_MODELS[model]
    dimensions = body.get("dimensions", native)
    if "dimensions" in body and model == "text-embedding-ada-002":
        raise EmbeddingRequestError(400, "This model does not support specifying dimensions.", "dimensions")
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= native:
        raise EmbeddingRequestError(400, f"'dimensions' must be an integer between 1 and {native} for {model}.",
                                    "dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise EmbeddingRequestError(400, "'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    return model, inputs, dimensions, encoding


def embeddings_response(model: str, inputs: list[str], dimensions: int, encoding: str) -> dict[str, Any]:
    """The ``list`` object OpenAI answers, vectors as floats or as base64 little-endian float32."""
    data = []
    for index, text in enumerate(inputs):
        vector = offline_embedding(text, dimensions)
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(_tokens(i) for i in inputs)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

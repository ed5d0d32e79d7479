"""The model calls of one answer, as the API reported them: noted by the OpenAI adapters, read by the processor.

An answer's calls happen deep in its steps (the knowledge search's embedding,
the tool rounds' completions, a voice note's transcription), each through its
own adapter. Rather than thread a tally through every signature, the
processor opens a :func:`metering` scope around the answer's composition and
each adapter notes what the API's ``usage`` said with :func:`note`; outside a
scope (the profiles build embedding documents, a script) noting does nothing.
The scope is a context variable, so concurrent requests of one instance,
each on its own thread, never see each other's calls.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

from shared.domain.usage import CHAT, EMBEDDING, TRANSCRIPTION, Metered

_CURRENT: contextvars.ContextVar[list[Metered] | None] = contextvars.ContextVar("usage_meter", default=None)


@contextlib.contextmanager
def metering() -> Iterator[list[Metered]]:
    """A scope whose model calls are collected in the list it yields."""
    calls: list[Metered] = []
    token = _CURRENT.set(calls)
    try:
        yield calls
    finally:
        _CURRENT.reset(token)


def _number(usage: Any, name: str) -> float:
    value = getattr(usage, name, None) if not isinstance(usage, dict) else usage.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def note(kind: str, model: str, usage: Any) -> None:
    """One call's ``usage`` object (CompletionUsage, the embeddings' Usage, a transcription's tokens or duration)."""
    calls = _CURRENT.get()
    if calls is None or usage is None:
        return
    if kind == CHAT:
        calls.append(Metered(CHAT, model, int(_number(usage, "prompt_tokens")), int(_number(usage, "completion_tokens"))))
    elif kind == EMBEDDING:
        calls.append(Metered(EMBEDDING, model, int(_number(usage, "prompt_tokens"))))
    elif kind == TRANSCRIPTION:
        calls.append(Metered(TRANSCRIPTION, model, int(_number(usage, "input_tokens")),
                             int(_number(usage, "output_tokens")), _number(usage, "seconds")))

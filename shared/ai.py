"""The language model, through the openai SDK (any chat-completions server)."""

from __future__ import annotations

import threading
from typing import Callable

import openai


class ModelUnavailable(Exception):
    """The model gave no usable answer after the SDK's own retries."""


class ChatModel:
    """Chat completions with the SDK's retries and timeout; the client is built on first use.

    ``base_url`` empty means OpenAI itself; the SDK also honours OPENAI_BASE_URL,
    but we pass it explicitly so configuration stays in one place.
    """

    def __init__(
        self,
        model: str,
        system_prompt: str,
        api_key: Callable[[], str],
        base_url: str,
        timeout_seconds: float,
        max_retries: int,
    ) -> None:
        self._model = model
        self._system_prompt = system_prompt
        self._api_key = api_key
        self._base_url = base_url or None
        self._timeout = timeout_seconds
        self._max_retries = max_retries
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = openai.OpenAI(
                        api_key=self._api_key(),
                        base_url=self._base_url,
                        timeout=self._timeout,
                        max_retries=self._max_retries,
                    )
        return self._client

    def reply(self, history: list[dict[str, str]], user_text: str) -> str:
        messages = [{"role": "system", "content": self._system_prompt}]
        messages += [{"role": turn["role"], "content": turn["content"]} for turn in history]
        messages.append({"role": "user", "content": user_text})
        self.calls += 1
        try:
            completion = self.client.chat.completions.create(model=self._model, messages=messages)
        except openai.OpenAIError as exc:
            raise ModelUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
        try:
            content = (completion.choices[0].message.content or "").strip() if completion.choices else ""
        except (AttributeError, IndexError, TypeError) as exc:
            # A chat-completions server (or a proxy before it) answered 2xx with
            # something that is not a completion, e.g. an HTML error page.
            raise ModelUnavailable(f"malformed answer from the model: {type(exc).__name__}") from exc
        if not content:
            raise ModelUnavailable("the model returned an empty answer")
        return content

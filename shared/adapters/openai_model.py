"""The language model, through the openai SDK (any chat-completions server)."""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from typing import Any, Callable

import openai

from shared.domain.tool_calls import ModelTurn, RequestedCall
from shared.domain.choices import Offer
from shared.domain.reply_with_choices import DEFINITION as CHOICES_DEFINITION
from shared.domain.reply_with_choices import NAME as CHOICES_NAME
from shared.domain.reply_with_choices import offer_from_arguments
from shared.adapters import usage_meter
from shared.domain.usage import CHAT, TRANSCRIPTION
from shared.log import redact_credentials

log = logging.getLogger(__name__)

# The SDK's own backoff between attempts, used when the server names no wait.
INITIAL_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 8.0
RETRYABLE_STATUS = frozenset({408, 409, 429})


class ModelUnavailable(Exception):
    """The model gave no usable answer after the SDK's own retries."""


def retry_after_seconds(exc: openai.APIStatusError) -> float | None:
    """The wait the server asked for (``retry-after-ms``, ``retry-after`` in seconds or as a date)."""
    headers = exc.response.headers
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(raw) if divisor == 1.0 else None
            if parsed is None:
                continue
            value = float(email.utils.mktime_tz(parsed) - time.time())
        if math.isfinite(value):
            return max(0.0, value)
    return None


def _retryable(exc: openai.OpenAIError) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes the time-out
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500)


class ChatModel:
    """Chat completions within one time budget; the client is built on first use.

    The SDK retries by itself and honours ``Retry-After`` up to two minutes per
    retry, so its total time has no bound we can set: one call could outlive
    the processing lease and Pub/Sub's ack deadline, and every redelivery would
    call the model again. So the SDK's retries are off and this class retries
    the same errors with the same backoff, but never starts a wait or an
    attempt that would end past ``budget_seconds`` (docs/decisions/0008-liveness.md).

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
        budget_seconds: float = 60.0,
        max_tokens: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        refresh_key: Callable[[], bool] = lambda: False,
    ) -> None:
        self._refresh_key = refresh_key
        self._model = model
        self._system_prompt = system_prompt
        self._api_key = api_key
        self._base_url = base_url or None
        self._timeout = timeout_seconds
        self._max_retries = max_retries
        self._budget = budget_seconds
        self._max_tokens = max_tokens
        self._clock = clock
        self._sleep = sleep
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
                        max_retries=0,
                    )
        return self._client

    def reply(
        self, history: list[dict[str, str]], user_text: str, system_prompt: str | None = None, model: str | None = None,
        budget_seconds: float | None = None,
    ) -> str:
        """One answer; ``system_prompt`` and ``model`` are the business's (its profile), else the settings'.

        ``budget_seconds``: what is left of the model budget when a step before
        the call spent some of it (the knowledge search); default: all of it.
        """
        return self._answer(history, user_text, system_prompt, model, budget_seconds)

    def reply_or_choices(
        self, history: list[dict[str, str]], user_text: str, system_prompt: str | None = None, model: str | None = None,
        budget_seconds: float | None = None,
    ) -> tuple[str, Offer | None]:
        """One answer offering ``reply_with_choices`` (one call, as :meth:`reply`): the text, and the
        choices when the model answered by calling it (their text above them is then the text)."""
        text, calls = self._answer_or_calls(history, user_text, system_prompt, model, [CHOICES_DEFINITION],
                                            budget_seconds)
        for name, arguments in calls:
            offer = offer_from_arguments(arguments) if name == CHOICES_NAME else None
            if offer is not None and offer.choices:
                return offer.body, offer
            if offer is not None and not text:
                text = offer.body
        if not text:
            raise ModelUnavailable("the model returned an empty answer")
        return text, None

    def _answer(
        self, history: list[dict[str, str]], user_content: str | list[dict[str, Any]], system_prompt: str | None,
        model: str | None, budget_seconds: float | None = None,
    ) -> str:
        """The conversation so far plus the user's turn, answered within the budget, as trimmed text."""
        content, _ = self._answer_or_calls(history, user_content, system_prompt, model, None, budget_seconds)
        if not content:
            raise ModelUnavailable("the model returned an empty answer")
        return content

    def conversation(
        self, history: list[dict[str, str]], user_content: str | list[dict[str, Any]], system_prompt: str | None = None,
    ) -> list[dict[str, Any]]:
        """The chat messages of one turn: the business's instructions, the history, the user's turn."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt or self._system_prompt}]
        messages += [{"role": turn["role"], "content": turn["content"]} for turn in history]
        messages.append({"role": "user", "content": user_content})
        return messages

    def tool_round(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], final: bool, deadline: float,
        model: str | None = None,
    ) -> ModelTurn:
        """One function-calling round (shared/domain/tool_rounds.py): text, or the calls the model asks for.

        ``final`` sends ``tool_choice: "none"``: the model must answer in words.
        ``deadline`` (on this object's clock, ``time.monotonic``) is the whole
        answer's, so retries of this round never outlive the rounds' budget.
        """
        self.calls += 1
        request: dict[str, Any] = {"tools": tools, "tool_choice": "none" if final else "auto"} if tools else {}
        completion = self._create(messages, model=model, deadline=deadline, **request)
        try:
            message = completion.choices[0].message  # type: ignore[attr-defined]
            content = (message.content or "").strip()
            calls = tuple(
                RequestedCall(str(call.id or ""), str(call.function.name or ""), str(call.function.arguments or ""))
                for call in (message.tool_calls or []) if getattr(call, "type", "function") == "function"
            )
        except (AttributeError, IndexError, TypeError) as exc:
            raise ModelUnavailable(f"malformed answer from the model: {type(exc).__name__}") from exc
        return ModelTurn(content, calls)

    def _answer_or_calls(
        self, history: list[dict[str, str]], user_content: str | list[dict[str, Any]], system_prompt: str | None,
        model: str | None, tools: list[dict[str, Any]] | None, budget_seconds: float | None = None,
    ) -> tuple[str, list[tuple[str, str]]]:
        """The answer's trimmed text and the functions it calls, as (name, arguments)."""
        messages = self.conversation(history, user_content, system_prompt)
        self.calls += 1
        completion = self._create(messages, model=model, budget=budget_seconds, **({"tools": tools} if tools else {}))
        try:
            if not completion.choices:
                return "", []
            message = completion.choices[0].message
            content = (message.content or "").strip()
            calls = [(c.function.name, c.function.arguments or "") for c in (message.tool_calls or [])
                     if getattr(c, "type", "") == "function"] if tools else []
        except (AttributeError, IndexError, TypeError) as exc:
            # A chat-completions server (or a proxy before it) answered 2xx with
            # something that is not a completion, e.g. an HTML error page.
            raise ModelUnavailable(f"malformed answer from the model: {type(exc).__name__}") from exc
        return content, calls

    def _create(
        self, messages: list[dict[str, Any]], model: str | None = None, budget: float | None = None,
        deadline: float | None = None, **request: Any,
    ) -> Any:
        """One completion, retried within the budget (a shorter ``budget``, or ``deadline`` if sooner); raises
        ModelUnavailable when it runs out."""
        budget = self._budget if budget is None else min(budget, self._budget)
        deadline = min(self._clock() + budget, deadline if deadline is not None else float("inf"))
        extra = {"max_tokens": self._max_tokens, **request} if self._max_tokens else dict(request)
        attempt = 0
        refreshed = False
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ModelUnavailable(f"no time left of the {budget:g}s budget")
            try:
                completion = self.client.chat.completions.create(
                    model=model or self._model, messages=messages, timeout=min(self._timeout, remaining), **extra
                )
                usage_meter.note(CHAT, model or self._model, getattr(completion, "usage", None))
                return completion
            except openai.OpenAIError as exc:
                # OpenAI quotes the (partly masked) key back in a 401: never keep it.
                failure = redact_credentials(f"{type(exc).__name__}: {exc}")[:300]
                if isinstance(exc, openai.AuthenticationError) and not refreshed and self._refresh_key():
                    # The key was rotated: a client with the new one tries again at once.
                    refreshed = True
                    with self._lock:
                        self._client = None
                    continue
                if not _retryable(exc) or attempt >= self._max_retries:
                    raise ModelUnavailable(failure) from exc
                asked = retry_after_seconds(exc) if isinstance(exc, openai.APIStatusError) else None
                wait = asked if asked is not None else min(INITIAL_RETRY_SECONDS * 2**attempt, MAX_RETRY_SECONDS)
                # An attempt needs time too: give up rather than wait into the lease.
                if self._clock() + wait + min(self._timeout, 1.0) >= deadline:
                    raise ModelUnavailable(
                        f"{failure} (next attempt in {wait:g}s would pass the {budget:g}s budget)"[:300]
                    ) from exc
                log.warning("model attempt failed, retrying", extra={"event": "ai_retry", "wait_seconds": wait, "reason": failure})
                self._sleep(wait)
                attempt += 1

    def reply_with_images(
        self,
        history: list[dict[str, str]],
        user_text: str,
        images: list[str],
        model: str,
        system_prompt: str | None = None,
    ) -> str:
        """A reply to a turn with images, as ``data:`` URLs in image content parts beside the text.

        Same budget and retries as :meth:`reply`; ``model`` must be vision-capable.
        """
        content: list[dict[str, Any]] = [{"type": "text", "text": user_text}]
        content += [{"type": "image_url", "image_url": {"url": url}} for url in images]
        return self._answer(history, content, system_prompt, model)

    def transcribe(self, audio: bytes, filename: str, content_type: str, model: str) -> str:
        """The words of a voice note (``POST /audio/transcriptions``), within the model's time budget.

        One attempt: a failed transcription ends in a friendly reply, never a
        redelivery, so retrying here would only spend the budget twice.
        """
        self.calls += 1
        try:
            result = self.client.audio.transcriptions.create(
                model=model, file=(filename, audio, content_type), timeout=min(self._timeout, self._budget),
            )
        except openai.OpenAIError as exc:
            raise ModelUnavailable(redact_credentials(f"transcription failed: {type(exc).__name__}: {exc}")[:300]) from exc
        usage_meter.note(TRANSCRIPTION, model, getattr(result, "usage", None))
        text = getattr(result, "text", result if isinstance(result, str) else "")
        return str(text or "").strip()

"""ChatModel over a real openai client whose HTTP layer is an in-memory mock transport."""

from __future__ import annotations

import json
from typing import Any, Callable

import httpx2
import openai
import pytest

from shared.adapters.openai_model import ChatModel, ModelUnavailable

BASE_URL = "http://model.test/v1"
SYSTEM = "You are the shop's assistant."


def completion(content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_795_000_000,
        "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        **extra,
    }


class Recorder:
    """The mock transport's handler: records each request and answers from a script."""

    def __init__(self, *responses: httpx2.Response | Callable[[httpx2.Request], httpx2.Response]) -> None:
        self.responses = list(responses)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.responses.pop(0)
        return answer(request) if callable(answer) else answer

    def body(self, i: int = 0) -> dict[str, Any]:
        return json.loads(self.requests[i].content)


class FakeTime:
    """A clock the model's waits advance, so budget tests take no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def model_with(recorder: Recorder, max_retries: int = 0, budget: float = 60.0, time: FakeTime | None = None) -> ChatModel:
    time = time or FakeTime()
    model = ChatModel(
        "gpt-test", SYSTEM, lambda: "sk-test", BASE_URL, timeout_seconds=5.0, max_retries=max_retries,
        budget_seconds=budget, max_tokens=321, clock=time.clock, sleep=time.sleep,
    )
    model._client = openai.OpenAI(
        api_key="sk-test",
        base_url=BASE_URL,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(recorder)),
    )
    return model


def overloaded(retry_after: str | None = None, status: int = 429) -> httpx2.Response:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return httpx2.Response(status, json={"error": {"message": "slow down", "type": "rate_limit"}}, headers=headers)


def test_retry_after_within_the_budget_is_honoured() -> None:
    time = FakeTime()
    recorder = Recorder(overloaded("3"), httpx2.Response(200, json=completion("ok")))
    assert model_with(recorder, max_retries=2, time=time).reply([], "hi") == "ok"
    assert time.sleeps == [3.0]
    assert len(recorder.requests) == 2


def test_retry_after_past_the_budget_gives_up_at_once_instead_of_waiting() -> None:
    # The SDK would sleep the 120 s the server asked for, past the lease and the ack deadline.
    time = FakeTime()
    recorder = Recorder(overloaded("120"), httpx2.Response(200, json=completion("too late")))
    with pytest.raises(ModelUnavailable, match="budget"):
        model_with(recorder, max_retries=5, budget=30.0, time=time).reply([], "hi")
    assert time.sleeps == [] and len(recorder.requests) == 1


def test_retries_stop_at_the_budget_whatever_the_retry_count() -> None:
    time = FakeTime()

    def slow_failure(request: httpx2.Request) -> httpx2.Response:
        time.now += 4.0  # each attempt takes 4 s before failing
        return overloaded(status=503)

    recorder = Recorder(*[slow_failure] * 50)
    with pytest.raises(ModelUnavailable):
        model_with(recorder, max_retries=50, budget=20.0, time=time).reply([], "hi")
    assert time.now - 1000.0 < 20.0
    assert 2 <= len(recorder.requests) < 50


def test_each_attempt_gets_at_most_the_time_left() -> None:
    time = FakeTime()
    seen: list[float] = []

    def record_timeout(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.extensions["timeout"]["read"])
        time.now += 3.0
        return overloaded(status=500) if len(seen) == 1 else httpx2.Response(200, json=completion("ok"))

    assert model_with(Recorder(record_timeout, record_timeout), max_retries=1, budget=6.0, time=time).reply([], "hi") == "ok"
    assert seen[0] == 5.0 and seen[1] < 3.0


def test_max_tokens_bounds_the_reply() -> None:
    recorder = Recorder(httpx2.Response(200, json=completion("ok")))
    model_with(recorder).reply([], "hi")
    assert recorder.body()["max_tokens"] == 321


def test_success_returns_the_trimmed_content() -> None:
    recorder = Recorder(httpx2.Response(200, json=completion("  Open 9 to 5.  ")))
    model = model_with(recorder)
    assert model.reply([], "When are you open?") == "Open 9 to 5."
    assert model.calls == 1


def test_the_request_carries_system_prompt_history_and_user_text_in_order() -> None:
    recorder = Recorder(httpx2.Response(200, json=completion("Ana")))
    history = [
        {"role": "user", "content": "My name is Ana", "sid": "SM1"},
        {"role": "assistant", "content": "Hi Ana!", "sid": "SM1"},
    ]
    model_with(recorder).reply(history, "What is my name?")
    [request] = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    body = recorder.body()
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "My name is Ana"},
        {"role": "assistant", "content": "Hi Ana!"},
        {"role": "user", "content": "What is my name?"},
    ]


def test_server_error_without_retries_is_model_unavailable() -> None:
    recorder = Recorder(httpx2.Response(500, json={"error": {"message": "overloaded", "type": "server_error"}}))
    with pytest.raises(ModelUnavailable) as caught:
        model_with(recorder, max_retries=0).reply([], "hi")
    assert len(recorder.requests) == 1
    assert "InternalServerError" in str(caught.value)
    assert isinstance(caught.value.__cause__, openai.APIStatusError)


@pytest.mark.parametrize("status", [400, 401, 404, 429])
def test_client_errors_are_model_unavailable(status: int) -> None:
    recorder = Recorder(httpx2.Response(status, json={"error": {"message": "no", "type": "invalid_request_error"}}))
    with pytest.raises(ModelUnavailable):
        model_with(recorder).reply([], "hi")


def test_connection_failure_is_model_unavailable() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    with pytest.raises(ModelUnavailable) as caught:
        model_with(Recorder(refuse)).reply([], "hi")
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)


def test_error_text_is_bounded() -> None:
    recorder = Recorder(httpx2.Response(500, json={"error": {"message": "x" * 5000}}))
    with pytest.raises(ModelUnavailable) as caught:
        model_with(recorder).reply([], "hi")
    assert len(str(caught.value)) <= 300


@pytest.mark.parametrize("content", ["", "   \n ", None])
def test_empty_content_is_model_unavailable(content: str | None) -> None:
    with pytest.raises(ModelUnavailable, match="empty"):
        model_with(Recorder(httpx2.Response(200, json=completion(content)))).reply([], "hi")


def test_no_choices_is_model_unavailable() -> None:
    body = completion("x")
    body["choices"] = []
    with pytest.raises(ModelUnavailable):
        model_with(Recorder(httpx2.Response(200, json=body))).reply([], "hi")


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(200, text="<html>gateway says hello</html>", headers={"content-type": "text/html"}),
        httpx2.Response(200, json=[1, 2, 3]),
        httpx2.Response(200, json={"choices": [{"message": None}]}),
    ],
    ids=["html", "list", "null-message"],
)
def test_a_success_that_is_not_a_completion_is_model_unavailable(response: httpx2.Response) -> None:
    with pytest.raises(ModelUnavailable, match="malformed"):
        model_with(Recorder(response)).reply([], "hi")


def test_client_is_built_once_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    key_reads: list[int] = []

    class SpyOpenAI:
        def __init__(self, **kwargs: Any) -> None:
            seen.append(kwargs)

    def api_key() -> str:
        key_reads.append(1)
        return "sk-lazy"

    monkeypatch.setattr(openai, "OpenAI", SpyOpenAI)
    model = ChatModel("gpt-test", SYSTEM, api_key, "", timeout_seconds=7.0, max_retries=3)
    assert seen == [] and key_reads == []
    first = model.client
    assert model.client is first
    # Retries are ChatModel's own, within its budget: the SDK's are off.
    assert seen == [{"api_key": "sk-lazy", "base_url": None, "timeout": 7.0, "max_retries": 0}]
    assert key_reads == [1]


def tool_call(name: str, arguments: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
    body = completion(None)
    body["choices"][0]["message"]["tool_calls"] = [call]
    body["choices"][0]["finish_reason"] = "tool_calls"
    return body


def test_reply_with_choices_is_offered_and_its_call_is_the_answer() -> None:
    arguments = json.dumps({"text": "Which size?", "choices": [{"title": "Small"}, {"title": "Large"}]})
    recorder = Recorder(httpx2.Response(200, json=tool_call("reply_with_choices", arguments)),
                        httpx2.Response(200, json=completion("Just words.")), httpx2.Response(200, json=completion("x")))
    model = model_with(recorder)
    text, offer = model.reply_or_choices([], "a cake")
    assert text == "Which size?" and offer is not None and [c.title for c in offer.choices] == ["Small", "Large"]
    assert [t["function"]["name"] for t in recorder.body(0)["tools"]] == ["reply_with_choices"]
    assert model.reply_or_choices([], "hours?") == ("Just words.", None)
    # A business without model choices sends what it always sent: no tools.
    assert model.reply([], "hi") == "x" and "tools" not in recorder.body(2)


def test_a_call_of_another_function_or_with_no_choices_is_not_an_offer() -> None:
    recorder = Recorder(httpx2.Response(200, json=tool_call("reply_with_choices", '{"text": "Only words"}')),
                        httpx2.Response(200, json=tool_call("something_else", "{}")))
    model = model_with(recorder)
    assert model.reply_or_choices([], "a cake") == ("Only words", None)
    with pytest.raises(ModelUnavailable, match="empty"):
        model.reply_or_choices([], "a cake")

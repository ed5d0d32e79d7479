"""A local OpenAI-compatible chat-completions stand-in with a clearly labelled offline model.

It lets the whole pipeline run without an API key and lets tests make the
model slow, failing, hanging or verbose on demand. The real ``openai`` SDK
talks to it unchanged with ``base_url="http://127.0.0.1:PORT/v1"``.

The offline model is not a chatbot: its reply starts with ``[offline model]``
and only proves that it received the conversation (latest user message,
previous user message, number of user turns). It is deterministic.
Offered ``tools``, it calls one when the user's text names it
(devstack/offline_tools.py), and answers in words quoting what the tools
said; requests that OpenAI would refuse for their tools or tool messages get
OpenAI's 400.

Served endpoints
----------------
``POST /v1/chat/completions`` (also ``/chat/completions``)
    A ``chat.completion`` object (``finish_reason: tool_calls`` with the
    assistant's ``tool_calls`` when it calls a tool); errors in OpenAI's shape
    ``{"error": {"message", "type", "param", "code"}}``. Streaming is not offered.
``GET /v1/models``
    A one-model list.
``POST /v1/embeddings``
    The offline embeddings (devstack/offline_knowledge.py): deterministic, as
    long as ``dimensions`` asks, as floats or base64 as ``encoding_format``
    asks (the SDK asks base64), refused as OpenAI refuses an unknown model,
    empty input, too many inputs or dimensions the model does not have.
    ``embedding_requests`` lists them; ``fail_embeddings`` programs failures.
    When the system prompt carries a business's documents, the offline chat
    reply quotes the excerpt nearest the question and names its source.
``POST /v1/audio/transcriptions``
    Multipart ``file`` and ``model``; answers ``{"text": "transcript of N bytes
    HASH", "usage": ...}`` (deterministic; ``usage`` as OpenAI reports it).
    ``transcriptions`` lists them, ``fail_transcriptions`` programs failures. Image content parts of chat requests are recorded with
    the request, so a test can decode the ``data:`` URL and compare the bytes.

Admin endpoints, for a stand-in running in another process:

``GET /_stub/embeddings``, ``DELETE /_stub/embeddings``
    The embedding requests received (``{"model", "inputs", "dimensions",
    "received_at"}``), and forgetting them.
``GET /_stub/requests``
    JSON list of received chat requests, oldest first, each
    ``{"model", "messages", "received_at", "tools", "tool_choice"}`` (``tools``: the offered names).
``DELETE /_stub/requests``
    Forget them.
``POST /_stub/config``
    JSON, every key optional: ``{"delay_seconds": S, "fail_times": N,
    "fail_status": 500, "hang_times": N, "reply_text": "..." | null,
    "embedding_fail_times": N, "embedding_fail_status": 500,
    "embedding_delay_seconds": S}``;
    ``reply_text: null`` restores the offline model.

Run it alone: ``python -m devstack.openai_stub [--port N] [--delay S]`` prints
``READY http://127.0.0.1:PORT/v1`` and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from devstack.offline_knowledge import (
    EmbeddingRequestError,
    embedding_inputs,
    embeddings_response,
    offline_knowledge_reply,
)
from devstack.httpserver import (
    DROP,
    Drop,
    RecordingStub,
    Request,
    Response,
    StubHandler,
    call_admin,
    serve_until_signalled,
)
from devstack.offline_tools import OFFLINE_PREFIX, offline_tool_answer, request_problem

OFFLINE_MODEL_ID = "offline-model"
# Quotes are shortened so an echo never balloons past what the user sent.
QUOTE_LIMIT = 300
# A hung answer is released after this long even if the client never gives up.
MAX_HANG_SECONDS = 300.0

# Text, the assistant message's fields ({"content", "tool_calls"}) for scripted tool calls, or one function
# call {name, arguments} (sent only when the request offers that function).
Responder = Callable[[list[dict[str, Any]]], "str | dict[str, Any]"]

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def openai_error(
    status: int, message: str, param: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """A response in OpenAI's error shape, which the SDK maps to its exception classes."""
    kind, code = _ERROR_TYPES.get(status, ("server_error", None))
    return Response.json(
        status,
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        {"x-request-id": "req_" + secrets.token_hex(16), **(headers or {})},
    )


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message whether ``content`` is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > QUOTE_LIMIT:
        text = text[: QUOTE_LIMIT - 1] + "…"
    return f"«{text}»"


def offline_reply(messages: Sequence[dict[str, Any]]) -> str:
    """The offline model: a deterministic echo showing which conversation it was given."""
    from_documents = offline_knowledge_reply(messages, message_text)
    if from_documents is not None:
        return from_documents
    user_texts = [message_text(m) for m in messages if m.get("role") == "user"]
    turn = len(user_texts)
    if not user_texts:
        return f"{OFFLINE_PREFIX} I was given no user message. (turn 0)"
    reply = f"{OFFLINE_PREFIX} You said: {_quote(user_texts[-1])}."
    if turn > 1:
        reply += f" Earlier you said: {_quote(user_texts[-2])}."
    return f"{reply} (turn {turn})"


# A WhatsApp voice note is Opus at about 16 kbit/s: 2,000 bytes a second of audio.
VOICE_BYTES_PER_SECOND = 2000


def transcription_usage(model: str, audio: bytes, text: str) -> dict[str, Any]:
    """The ``usage`` of a JSON transcription as OpenAI reports it: seconds of audio for whisper-1 (billed by the
    minute), input (audio) and output tokens for the token-billed gpt-4o transcribe models."""
    seconds = round(len(audio) / VOICE_BYTES_PER_SECOND, 2)
    if model == "whisper-1":
        return {"type": "duration", "seconds": seconds}
    audio_tokens, output_tokens = max(1, round(seconds * 10)), _approx_tokens(text)
    return {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": output_tokens,
            "total_tokens": audio_tokens + output_tokens,
            "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0}}


def transcript_of(audio: bytes) -> str:
    """The stand-in's transcript: deterministic, and naming the bytes so a test can tell files apart."""
    return f"transcript of {len(audio)} bytes {hashlib.sha256(audio).hexdigest()[:8]}"


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes, str]]:
    """Form parts by name: (filename, bytes, content type)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts: dict[str, tuple[str, bytes, str]] = {}
    if not message.is_multipart():
        return parts
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            parts[str(name)] = (part.get_filename() or "", part.get_payload(decode=True) or b"", part.get_content_type())
    return parts


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4)


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completions request as the stand-in received it."""

    model: str
    messages: list[dict[str, Any]]
    received_at: float
    body: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "messages": self.messages, "received_at": self.received_at,
                "tools": self.tool_names, "tool_choice": self.body.get("tool_choice")}

    @property
    def tool_names(self) -> list[str]:
        """The functions the request offered, in its order."""
        return [str(t.get("function", {}).get("name")) for t in self.body.get("tools") or [] if isinstance(t, dict)]


class OpenAIStub(RecordingStub[ChatRequest]):
    """OpenAI's chat-completions endpoint, answered by the offline model or a test's script.

    ``wait_for(count, timeout)`` waits for received chat requests;
    ``delay_seconds`` holds every answer back.
    """

    records_path = "/_stub/requests"

    def __init__(self, port: int = 0, delay_seconds: float = 0.0) -> None:
        super().__init__(port, delay_seconds)
        self._fail_times = 0
        self._fail_status = 500
        self._fail_retry_after: float | None = None
        self._hang_times = 0
        # None: the offline model (with function calling); otherwise a test's script.
        self._responder: Responder | None = None
        self._transcriptions: list[dict[str, Any]] = []
        self._transcribe_faults: list[int] = []
        self._embeddings: list[dict[str, Any]] = []
        self._embedding_faults: list[int] = []
        # Embeddings have their own delay: a slow chat model (bench, fault tests) leaves them alone.
        self._embedding_delay = 0.0

    @property
    def base_url(self) -> str:
        """The URL to give the SDK as ``base_url``: it appends ``/chat/completions``."""
        return f"{self.root_url}/v1"

    @property
    def root_url(self) -> str:
        return super().base_url

    @property
    def requests(self) -> list[ChatRequest]:
        """Received chat requests, oldest first."""
        return self._snapshot()

    def reset(self) -> None:
        """Back to a fresh stand-in: no records, no faults, no delay, the offline model."""
        with self._lock:
            self._records.clear()
            self._delay_seconds = 0.0
            self._fail_times = 0
            self._fail_status = 500
            self._fail_retry_after = None
            self._hang_times = 0
            self._responder = None
            self._transcriptions.clear()
            self._transcribe_faults.clear()
            self._embeddings.clear()
            self._embedding_faults.clear()
            self._embedding_delay = 0.0

    def fail_next(self, times: int = 1, status: int = 500, retry_after: float | None = None) -> None:
        """The next ``times`` requests answer ``status`` with OpenAI's error body.

        ``retry_after`` adds the ``Retry-After`` header OpenAI sends with a 429.
        """
        if times < 0:
            raise ValueError("times must be >= 0")
        with self._lock:
            self._fail_times = times
            self._fail_status = status
            self._fail_retry_after = retry_after

    def hang_next(self, times: int = 1) -> None:
        """The next ``times`` requests are never answered, so the client's timeout fires."""
        if times < 0:
            raise ValueError("times must be >= 0")
        with self._lock:
            self._hang_times = times

    def set_responder(self, responder: Responder | None) -> None:
        """Answer with ``responder(messages)`` (text, or ``{"content", "tool_calls"}``); None restores the offline model."""
        with self._lock:
            self._responder = responder

    def set_reply_text(self, text: str | None) -> None:
        """Always answer ``text``; None restores the offline model."""
        self.set_responder(None if text is None else (lambda _messages: text))

    def handle(self, request: Request, handler: StubHandler) -> Response | Drop:
        if request.path == "/_stub/embeddings":
            if request.method == "DELETE":
                with self._lock:
                    self._embeddings.clear()
                return Response.json(200, {"cleared": True})
            return Response.json(200, self.embedding_requests)
        if request.path.startswith("/_stub/"):
            return self._admin(request)
        path = request.path.removeprefix("/v1")
        if path == "/models" and request.method == "GET":
            return Response.json(
                200,
                {
                    "object": "list",
                    "data": [{"id": OFFLINE_MODEL_ID, "object": "model", "created": 0, "owned_by": "devstack"}],
                },
            )
        if path == "/audio/transcriptions" and request.method == "POST":
            return self._transcribe(request)
        if path == "/embeddings" and request.method == "POST":
            return self._embed(request, handler)
        if path != "/chat/completions":
            return openai_error(404, f"Unknown request URL: {request.method} {request.path}.")
        if request.method != "POST":
            return openai_error(405, f"Method {request.method} not allowed.")
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return openai_error(401, "You didn't provide an API key.")
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            return openai_error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return openai_error(400, "The request body must be a JSON object.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return openai_error(400, "'messages' must be a non-empty array of objects.", "messages")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return openai_error(400, "you must provide a model parameter", "model")
        if body.get("stream"):
            return openai_error(400, "This stand-in does not stream; call without stream=True.", "stream")
        problem = request_problem(body)
        if problem is not None:
            return openai_error(400, *problem)

        with self._lock:
            self._add_record(ChatRequest(model, messages, time.time(), body))
            hang = self._hang_times > 0
            if hang:
                self._hang_times -= 1
            fail_status = 0
            fail_headers: dict[str, str] = {}
            if not hang and self._fail_times > 0:
                self._fail_times -= 1
                fail_status = self._fail_status
                if self._fail_retry_after is not None:
                    fail_headers["retry-after"] = f"{self._fail_retry_after:g}"
            delay = self._delay_seconds
            responder = self._responder

        if hang:
            self.wait_or_stop(MAX_HANG_SECONDS, handler)
            return DROP
        if delay and not self.wait_or_stop(delay, handler):
            return DROP
        if fail_status:
            return openai_error(
                fail_status, "The server had an error while processing your request. Sorry about that!", headers=fail_headers
            )
        if responder is None:
            answer: str | dict[str, Any] = (
                offline_tool_answer(messages, body.get("tools"), body.get("tool_choice")) or offline_reply(messages))
        else:
            answer = responder(messages)
        offered = {t.get("function", {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        if isinstance(answer, dict) and "name" in answer and answer.get("name") not in offered:
            answer = offline_reply(messages)  # a model calls only the functions it is offered
        return Response.json(200, self._completion(model, messages, answer), {"x-request-id": "req_" + secrets.token_hex(16)})

    def set_reply_call(self, name: str | None, arguments: Mapping[str, Any] | None = None) -> None:
        """Answer by calling the function ``name`` with ``arguments`` when the request offers it; None restores
        the offline model."""
        call = {"name": name, "arguments": json.dumps(dict(arguments or {}))}
        self.set_responder(None if name is None else (lambda _messages: call))

    @staticmethod
    def _completion(model: str, messages: list[dict[str, Any]], answer: "str | dict[str, Any]") -> dict[str, Any]:
        if isinstance(answer, dict) and "name" in answer:  # one function call
            answer = {"content": None, "tool_calls": [
                {"id": "call_" + secrets.token_hex(12), "type": "function", "function": answer}]}
        fields = answer if isinstance(answer, dict) else {"content": answer}
        content = fields.get("content")
        tool_calls = fields.get("tool_calls") or None
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        if tool_calls:
            message["tool_calls"] = tool_calls
        prompt_tokens = sum(_approx_tokens(message_text(m)) for m in messages)
        completion_tokens = _approx_tokens((content or "") + json.dumps(tool_calls or ""))
        return {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "service_tier": "default",
            "system_fingerprint": "fp_offline",
        }

    @property
    def transcriptions(self) -> list[dict[str, Any]]:
        """Transcription requests, oldest first: ``{"model", "filename", "content_type", "size", "sha256"}``."""
        with self._lock:
            return list(self._transcriptions)

    def fail_transcriptions(self, times: int = 1, status: int = 500) -> None:
        """The next ``times`` transcription requests answer ``status``."""
        with self._lock:
            self._transcribe_faults = [status] * times

    def _transcribe(self, request: Request) -> Response:
        """``POST /v1/audio/transcriptions`` (multipart): a deterministic transcript of the file."""
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return openai_error(401, "You didn't provide an API key.")
        fields = _multipart(request.headers.get("content-type", ""), request.body)
        upload = fields.get("file")
        model = fields.get("model")
        if upload is None or not isinstance(model, tuple) or not model[1]:
            return openai_error(400, "'file' and 'model' are required multipart fields.", "file")
        data = upload[1]
        with self._lock:
            self._transcriptions.append({
                "model": model[1].decode(), "filename": upload[0], "content_type": upload[2], "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            })
            fault = self._transcribe_faults.pop(0) if self._transcribe_faults else 0
        if fault:
            return openai_error(fault, "The server had an error while processing your request. Sorry about that!")
        text = transcript_of(data)
        return Response.json(200, {"text": text, "usage": transcription_usage(model[1].decode(), data, text)})

    @property
    def embedding_requests(self) -> list[dict[str, Any]]:
        """Embedding requests, oldest first: ``{"model", "inputs", "dimensions", "received_at"}``."""
        with self._lock:
            return [dict(r) for r in self._embeddings]

    def fail_embeddings(self, times: int = 1, status: int = 500) -> None:
        """The next ``times`` embedding requests answer ``status``."""
        with self._lock:
            self._embedding_faults = [status] * times

    def delay_embeddings(self, seconds: float) -> None:
        """Every embedding answer waits ``seconds`` (0: none)."""
        with self._lock:
            self._embedding_delay = max(0.0, float(seconds))

    def _embed(self, request: Request, handler: StubHandler) -> Response | Drop:
        """``POST /v1/embeddings``: the offline embeddings, refused where OpenAI refuses."""
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return openai_error(401, "You didn't provide an API key.")
        try:
            model, inputs, dimensions, encoding = embedding_inputs(request.json())
        except (ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, EmbeddingRequestError):
                return openai_error(exc.status, str(exc), exc.param)
            return openai_error(400, "We could not parse the JSON body of your request.")
        with self._lock:
            self._embeddings.append({"model": model, "inputs": inputs, "dimensions": dimensions,
                                     "received_at": time.time()})
            fault = self._embedding_faults.pop(0) if self._embedding_faults else 0
            delay = self._embedding_delay
        if delay and not self.wait_or_stop(delay, handler):
            return DROP
        if fault:
            return openai_error(fault, "The server had an error while processing your request. Sorry about that!")
        return Response.json(200, embeddings_response(model, inputs, dimensions, encoding),
                             {"x-request-id": "req_" + secrets.token_hex(16)})

    def _configure(self, spec: Mapping[str, Any]) -> None:
        super()._configure(spec)
        if "embedding_delay_seconds" in spec:
            self.delay_embeddings(float(spec["embedding_delay_seconds"]))
        if "embedding_fail_times" in spec:
            self.fail_embeddings(int(spec["embedding_fail_times"]), int(spec.get("embedding_fail_status", 500)))
        if "fail_times" in spec:
            self.fail_next(int(spec["fail_times"]), int(spec.get("fail_status", 500)))
        if "hang_times" in spec:
            self.hang_next(int(spec["hang_times"]))
        if "reply_text" in spec:
            text = spec["reply_text"]
            self.set_reply_text(None if text is None else str(text))


class OpenAIStubAdmin:
    """Drives an OpenAIStub running in another process through its admin endpoints."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.root_url = url.rstrip("/").removesuffix("/v1")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        return call_admin(self.root_url + path, method, payload, self.timeout)

    def requests(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_stub/requests"))

    def clear(self) -> None:
        self._call("DELETE", "/_stub/requests")

    def configure(self, **spec: Any) -> None:
        self._call("POST", "/_stub/config", spec)

    def embedding_requests(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_stub/embeddings"))

    def clear_embeddings(self) -> None:
        self._call("DELETE", "/_stub/embeddings")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local OpenAI-compatible stand-in with an offline model.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before every answer")
    args = parser.parse_args(argv)
    stub = OpenAIStub(port=args.port, delay_seconds=args.delay).start()
    serve_until_signalled(stub, stub.base_url)


if __name__ == "__main__":
    main()

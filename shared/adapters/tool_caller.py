"""Business tools over HTTPS: one signed JSON request per call, to the profile's URL and nowhere else.

The request is the tool's ``method`` to its ``url`` exactly as the profile
says (the arguments never reach the URL, so no argument can point a call
somewhere else), with the arguments as the JSON body, the call's
``Idempotency-Key`` and the signature headers (shared/domain/tool_signature.py).
Redirects are not followed, proxies from the environment are not used, the
answer is read up to ``max_response_bytes`` and within the call's time-out,
however slowly it trickles in.

Every way a call can go wrong is an answer for the model, never an
exception (:class:`shared.domain.tool_rounds.ToolAnswer`): ``failed`` when
nothing happened as far as we can tell (refused, an error status, could not
connect), ``unknown`` when a write may have happened without our learning it
(timed out after sending, the connection broke, a 2xx we cannot read). A
refused signature (401, 403) makes it re-read the secret once, for a secret
rotated since we read it. Each call logs one line: business, tool, effect,
status, time and key; the arguments only if the tool's ``log_arguments``
allows it; never the secret.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import requests
import urllib3

from shared.adapters.lazy import Lazy
from shared.adapters.secret_manager import Secrets, SecretUnavailable
from shared.domain.tool_calls import ToolAnswer
from shared.domain.tool_ledger import DONE, FAILED, MAX_RESULT_CHARS, UNKNOWN, error_result
from shared.domain.tool_rounds import CallTool
from shared.domain.tool_signature import signing_headers
from shared.domain.tools import ToolSpec

log = logging.getLogger(__name__)

CHUNK = 16 * 1024
CONNECT_TIMEOUT_SECONDS = 3.0
USER_AGENT = "whatsapp-assistant-tools/1"


class _TooLarge(Exception):
    pass


class ToolCaller:
    """Calls business tools for every message of this process; the HTTP session is created on first use and reused."""

    def __init__(
        self,
        secrets: Secrets,
        max_response_bytes: int,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        self._secrets = secrets
        self._max_bytes = max_response_bytes
        self._clock = clock
        self._monotonic = monotonic
        self._session = Lazy(lambda: _untrusting(session_factory()))
        self.calls = 0

    @property
    def session(self) -> requests.Session:
        return self._session.get()

    def for_message(self, business: str, sid: str) -> CallTool:
        """The caller the rounds of one message use: its log lines name the business and the message."""
        def call(tool: ToolSpec, arguments: str, key: str, timeout: float) -> ToolAnswer:
            answer = self.call(tool, arguments, key, timeout)
            _log(business, sid, tool, arguments, key, answer)
            return answer
        return call

    def call(self, tool: ToolSpec, arguments: str, key: str, timeout: float) -> ToolAnswer:
        started = self._monotonic()
        try:
            answer = self._send(tool, arguments.encode(), key, timeout, started)
            if answer.http_status in (401, 403) and self._secrets.refresh_tool_secret(tool.secret):
                # Refused, so not done: the same key again, signed with the secret as it is now.
                answer = self._send(tool, arguments.encode(), key, timeout - (self._monotonic() - started), started)
        except SecretUnavailable as exc:
            answer = ToolAnswer(FAILED, error_result("the tool is not set up (its secret is missing); nothing was done"),
                                0, 0.0, "secret_missing")
            log.error("tool secret unavailable", extra={"event": "tool_failed", "tool": tool.name, "reason": str(exc)[:300]})
        return answer

    def _send(self, tool: ToolSpec, body: bytes, key: str, timeout: float, started: float) -> ToolAnswer:
        secrets = [self._secrets.tool_secret(tool.secret), self._secrets.previous_tool_secret(tool.secret) or ""]
        headers = {
            "Content-Type": "application/json; charset=utf-8", "Accept": "application/json", "User-Agent": USER_AGENT,
            **signing_headers(secrets, int(self._clock()), key, body),
        }
        deadline = started + timeout
        self.calls += 1

        def elapsed() -> float:
            return (self._monotonic() - started) * 1000

        try:
            response = self.session.request(
                tool.method, tool.url, data=body, headers=headers, allow_redirects=False, stream=True,
                timeout=(min(CONNECT_TIMEOUT_SECONDS, max(timeout, 0.1)), max(timeout, 0.1)),
            )
        except requests.ConnectTimeout:
            return ToolAnswer(FAILED, error_result("could not reach the tool; nothing was done"), 0, elapsed(),
                              "unreachable")
        except requests.ConnectionError as exc:
            if _never_connected(exc):
                return ToolAnswer(FAILED, error_result("could not reach the tool; nothing was done"), 0, elapsed(),
                                  "unreachable")
            return _unknown(tool, "the connection to the tool broke off", 0, elapsed(), "connection_broken")
        except requests.Timeout:
            return _unknown(tool, f"the tool did not answer within {timeout:.1f}s", 0, elapsed(), "timeout")
        except requests.RequestException as exc:
            return ToolAnswer(FAILED, error_result(f"the request could not be made: {type(exc).__name__}"), 0, elapsed(),
                              "request_error")
        with response:
            status = response.status_code
            try:
                data = self._read(response, deadline)
            except _TooLarge:
                if 200 <= status < 300:
                    return _unknown(tool, f"the tool's answer is over {self._max_bytes} bytes", status, elapsed(),
                                    "too_large")
                data = b""
            except requests.RequestException:
                if 200 <= status < 300:
                    return _unknown(tool, "the tool's answer broke off or came too slowly", status, elapsed(),
                                    "timeout")
                data = b""
        return _interpret(tool, status, data, elapsed())

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        """The body, read as it arrives, each wait cut to what is left of the call's time: a trickle cannot stretch it."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise _TooLarge()
        data = bytearray()
        raw = response.raw
        while True:
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise requests.Timeout("the answer came too slowly")
            sock = getattr(getattr(raw, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(max(remaining, 0.05))
            try:
                chunk = raw.read1(CHUNK, decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise requests.Timeout(f"the answer broke off: {type(exc).__name__}") from exc
            if not chunk:
                return bytes(data)
            data += chunk
            if len(data) > self._max_bytes:
                raise _TooLarge()


def _never_connected(exc: requests.ConnectionError) -> bool:
    """Refused or unresolvable: the request never left, so nothing can have happened."""
    text = repr(exc)
    return any(sign in text for sign in ("NewConnectionError", "NameResolutionError", "Connection refused"))


def _unknown(tool: ToolSpec, why: str, status: int, ms: float, reason: str) -> ToolAnswer:
    """A write that may have happened (a read changed nothing, so it just failed)."""
    if tool.writes:
        return ToolAnswer(UNKNOWN, error_result(
            f"{why}; the action may or may not have happened. Do not repeat it: tell the user it is being checked.",
            outcome="unknown"), status, ms, reason)
    return ToolAnswer(FAILED, error_result(why), status, ms, reason)


def _interpret(tool: ToolSpec, status: int, data: bytes, ms: float) -> ToolAnswer:
    """The HTTP answer as the model should hear it."""
    if 300 <= status < 400:
        return ToolAnswer(FAILED, error_result(f"the tool answered a redirect (HTTP {status}), which is not followed; "
                                               "nothing was done"), status, ms, "redirect")
    if status in (401, 403):
        return ToolAnswer(FAILED, error_result(f"the tool refused the request (HTTP {status}); nothing was done"),
                          status, ms, "refused")
    parsed: Any = None
    if data.strip():
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            parsed = None
            if 200 <= status < 300:
                return _unknown(tool, f"the tool answered HTTP {status} with something that is not JSON", status, ms,
                                "not_json")
    if not 200 <= status < 300:
        detail = parsed.get("error") if isinstance(parsed, dict) else None
        more = {"detail": str(detail)[:300]} if detail else {}
        return ToolAnswer(FAILED, error_result(f"the tool answered HTTP {status}; nothing was done", **more), status, ms,
                          "http_error")
    content = json.dumps(parsed if parsed is not None else {"status": status}, ensure_ascii=False, separators=(",", ":"))
    if len(content) > MAX_RESULT_CHARS:
        content = json.dumps({"truncated": True, "result": content[: MAX_RESULT_CHARS - 100]}, ensure_ascii=False)
    return ToolAnswer(DONE, content, status, ms)


def _log(business: str, sid: str, tool: ToolSpec, arguments: str, key: str, answer: ToolAnswer) -> None:
    fields: dict[str, Any] = {
        "event": "tool_called" if answer.status == DONE else "tool_failed", "business": business, "sid": sid,
        "tool": tool.name, "effect": tool.effect, "status": answer.status, "tool_ms": answer.ms, "key": key,
        "http_status": answer.http_status,
    }
    if answer.status != DONE:
        fields["reason"] = answer.reason or "failed"
    if tool.log_arguments:
        fields["arguments"] = arguments[:500]
    log.log(logging.INFO if answer.status == DONE else logging.WARNING,
            "tool called" if answer.status == DONE else "tool call failed", extra=fields)


def _untrusting(session: requests.Session) -> requests.Session:
    """A session that takes no proxy or .netrc from the environment: only the profile's URL is called."""
    session.trust_env = False
    return session

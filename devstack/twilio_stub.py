"""A local stand-in for Twilio's Messages API, and a poster that signs webhooks as Twilio does.

The sender talks to Twilio through the official twilio-python client; this
stand-in answers the one call it makes, in Twilio's own shapes, so the real
client (and its error handling) runs unchanged against it::

    stub = TwilioStub("AC...", "token").start()
    client = twilio.rest.Client("AC...", "token")
    client.api.base_url = stub.base_url

Served endpoints
----------------
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``
    Form fields To, From, Body (StatusCallback optional), HTTP Basic auth
    ``AccountSid:AuthToken``. 201 with a Message resource; errors in Twilio's
    JSON shape ``{"code", "message", "more_info", "status"}`` (401/20003 for
    bad credentials, 400/21602, 21603, 21604, 21617 for invalid fields).

    With ``ContentSid`` (and ``ContentVariables``) instead of Body, a Content
    API template: the stand-in knows the templates added with
    :meth:`TwilioStub.add_content` (``POST /_stub/content``) and, like Twilio,
    refuses any other ContentSid (400/21655). The Message resource then holds
    the text rendered from the template, variables filled in, and, like
    Twilio's, no Content SID: a sender cannot find a template by its SID.

``GET /2010-04-01/Accounts/{AccountSid}/Messages.json``
    The message list (To and From filters, newest first, one page), which the
    sender reads to learn whether Twilio took a message it never heard back on.

Admin endpoints, for a stand-in running in another process (no auth):

``GET /_stub/messages``
    JSON list of accepted messages, oldest first, each
    ``{"sid", "to", "from", "body", "status_callback", "received_at"}``.
``DELETE /_stub/messages``
    Forget all recorded messages.
``POST /_stub/faults``
    JSON ``{"status": 429, "code": 20429, "times": 1, "body_prefix": "...",
    "message": "...", "action": "error" | "disconnect"}``: the next ``times``
    sends (only those whose Body starts with ``body_prefix``, when given)
    fail with that status, or, with ``"action": "disconnect"``, are accepted
    and recorded but the connection is closed before any answer.
``DELETE /_stub/faults``
    Remove all pending faults.
``POST /_stub/config``
    JSON ``{"delay_seconds": S}``: every send waits S seconds before answering;
    ``{"status_callback_url": URL}`` sets where status callbacks go when a send
    names no StatusCallback (``""`` turns them off).
``GET /_stub/callbacks``
    JSON list of the status callbacks sent, oldest first, each ``{"message_sid",
    "status", "url", "http_status", "sent_at"}`` (``http_status`` 0: no answer).
``POST /_stub/content``
    JSON ``{"sid": "HX...", "body": "Hi {{1}}, ..."}``: a Content template
    this account may send, rendered with ContentVariables (``{{1}}`` → value).
``POST /_stub/media``
    The raw bytes of a file, with its Content-Type: stored as the media of a new
    inbound message; answers ``{"message_sid": "MM...", "media_sid": "ME...",
    "url", "content_type"}``. The url is the Twilio media URL below.

Media, as Twilio serves an inbound message's media (HTTP Basic auth required):

``GET /2010-04-01/Accounts/{AccountSid}/Messages/{MM...}/Media/{ME...}``
    The stored bytes with their Content-Type.

``POST /v1/Content``, ``GET /v1/Content/{HX...}`` (Twilio's Content API, same port)
    Content resources created as twilio-python creates them, validated as
    strictly as Twilio documents (devstack/twilio_content.py). A send naming
    one as its ContentSid is accepted; its Message resource's body is the
    content's body, and the stand-in records which content went out
    (``content_sid``, ``types``), so the chat page can draw the buttons and a
    test can tap one. ``POST /_stub/faults`` with ``"target": "content"`` fails
    the next creations; ``GET /_stub/content-resources`` lists what was created.

``POST /v2/Indicators/Typing.json`` (Twilio's messaging API, same port)
    Form fields messageId, channel; HTTP Basic auth. Recorded; ``GET
    /_stub/typing`` lists them. ``fail_typing`` and ``fail_media`` program
    failures of the indicator and of media downloads.

Status callbacks: after each accepted send the stand-in posts ``sent``, then
``delivered``, then ``read`` (MessageSid, MessageStatus, To, From, AccountSid,
...) to the send's StatusCallback, or else to the default callback URL,
signed with the auth token in ``X-Twilio-Signature`` exactly as Twilio signs.

Run it alone: ``python -m devstack.twilio_stub --account-sid AC... --auth-token T [--port N]``
prints ``READY http://127.0.0.1:PORT`` and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import heapq
import hmac
import json
import logging
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Callable, Mapping

from twilio.request_validator import RequestValidator

from devstack.httpserver import (
    DROP,
    Drop,
    RecordingStub,
    Request,
    Response,
    StubHandler,
    apply_admin_spec,
    call_admin,
    serve_until_signalled,
)
from devstack.twilio_content import CONTENT_PATH, ContentStandIn, Refused, parse_body

API_VERSION = "2010-04-01"
MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
MEDIA_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<message>MM[0-9a-f]{32})/Media/(?P<media>ME[0-9a-f]{32})$"
)
# The statuses a delivered and read WhatsApp message goes through after "queued",
# each with the delay after the send (or the previous callback) it is posted at.
STATUS_SEQUENCE: tuple[tuple[str, float], ...] = (("sent", 0.15), ("delivered", 0.35), ("read", 0.6))
MAX_MEDIA_BYTES = 5 * 1024 * 1024
# Twilio's messaging API (messaging.twilio.com); the stand-in serves it on the same port.
TYPING_PATH = "/v2/Indicators/Typing.json"
# Twilio rejects a Body longer than this with error 21617, WhatsApp included.
MAX_BODY_CHARS = 1600
DEFAULT_ACCOUNT_SID = "AC00000000000000000000000000000000"
CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
_VARIABLE = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")

Predicate = Callable[[dict[str, str]], bool]
log = logging.getLogger("devstack.twilio_stub")


def new_sid(prefix: str = "SM") -> str:
    """A fresh Twilio-shaped SID: two-letter prefix and 32 lowercase hex characters."""
    return prefix + secrets.token_hex(16)


def twilio_error(status: int, code: int, message: str, detail: str | None = None) -> Response:
    """A response in Twilio's legacy error shape, which twilio-python turns into TwilioRestException."""
    payload: dict[str, Any] = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    if detail:
        payload["detail"] = detail
    return Response.json(status, payload)


@dataclass(frozen=True)
class SentMessage:
    """One message the stand-in accepted, as the sender asked for it."""

    sid: str
    to: str
    from_: str
    body: str
    received_at: float
    status_callback: str | None = None
    params: Mapping[str, str] = field(default_factory=dict, repr=False)
    # A send with a Content API resource: its SID and its types (buttons, a list).
    content_sid: str = ""
    types: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status_callback": self.status_callback,
            "received_at": self.received_at,
            "content_sid": self.content_sid,
            "types": dict(self.types),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SentMessage":
        return cls(
            sid=str(data["sid"]),
            to=str(data["to"]),
            from_=str(data["from"]),
            body=str(data["body"]),
            received_at=float(data["received_at"]),
            status_callback=data.get("status_callback"),
            content_sid=str(data.get("content_sid") or ""),
            types=dict(data.get("types") or {}),
        )


@dataclass(frozen=True)
class CallbackRecord:
    """One status callback the stand-in posted, with the answer it got (0: none)."""

    message_sid: str
    status: str
    url: str
    http_status: int
    sent_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "message_sid": self.message_sid,
            "status": self.status,
            "url": self.url,
            "http_status": self.http_status,
            "sent_at": self.sent_at,
        }


@dataclass(frozen=True)
class StoredMedia:
    """A file stored as the media of an inbound message, served back at ``url``."""

    message_sid: str
    media_sid: str
    content_type: str
    data: bytes = field(repr=False)
    url: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "message_sid": self.message_sid,
            "media_sid": self.media_sid,
            "url": self.url,
            "content_type": self.content_type,
            "size": len(self.data),
        }


@dataclass
class _Fault:
    predicate: Predicate | None
    status: int
    code: int
    message: str
    times: int | None
    disconnect: bool = False


def body_starts_with(prefix: str) -> Predicate:
    """A fault predicate matching sends whose Body starts with ``prefix``."""

    def predicate(params: dict[str, str]) -> bool:
        return params.get("Body", "").startswith(prefix)

    return predicate


def _segments(body: str, to: str) -> int:
    """Roughly how Twilio counts segments; WhatsApp messages are always one."""
    if to.startswith("whatsapp:") or len(body) == 0:
        return 1
    single, multi = (160, 153) if body.isascii() else (70, 67)
    if len(body) <= single:
        return 1
    return -(-len(body) // multi)


class TwilioStub(RecordingStub[SentMessage]):
    """Twilio's Messages API for one account, with recording and programmable faults.

    ``wait_for(count, timeout)`` waits for accepted messages; ``delay_seconds``
    holds every send back before it is answered.
    """

    records_path = "/_stub/messages"

    def __init__(
        self, account_sid: str, auth_token: str, port: int = 0, status_callback_url: str | None = None
    ) -> None:
        super().__init__(port)
        self.account_sid = account_sid
        self._auth_token = auth_token
        self._faults: list[_Fault] = []
        self._attempts: list[tuple[str, str]] = []
        self._status_callback_url = status_callback_url or ""
        self._callbacks: list[CallbackRecord] = []
        self._media: dict[str, StoredMedia] = {}
        # Content templates of this account: Content SID → body with {{n}} variables.
        self._content: dict[str, str] = {}
        # Content resources made through the Content API.
        self.content_api = ContentStandIn()
        self._typing: list[dict[str, Any]] = []
        # Off: no automatic status callbacks, so a test can post its own, in any order.
        self.send_callbacks = True
        self._typing_faults: list[int] = []
        self._media_faults: list[int] = []
        # Pending callbacks: (due, order, message, status index, url).
        self._due: list[tuple[float, int, SentMessage, int, str]] = []
        self._order = 0
        self._callback_thread: threading.Thread | None = None

    @property
    def status_callback_url(self) -> str:
        """Where status callbacks go when a send names no StatusCallback; empty: nowhere."""
        with self._lock:
            return self._status_callback_url

    @status_callback_url.setter
    def status_callback_url(self, url: str | None) -> None:
        with self._lock:
            self._status_callback_url = url or ""

    @property
    def callbacks(self) -> list[CallbackRecord]:
        """Status callbacks posted so far, oldest first."""
        with self._lock:
            return list(self._callbacks)

    def add_content(self, sid: str, body: str) -> None:
        """A Content template this account may send (as if made in the Content Template Builder)."""
        if not CONTENT_SID.fullmatch(sid):
            raise ValueError(f"a Content SID is HX and 32 hex digits, got {sid!r}")
        with self._lock:
            self._content[sid] = body

    def _render(self, params: Mapping[str, str]) -> str | Response:
        """The body Twilio shows for a send: the Body, or the template with its variables filled in."""
        sid = params.get("ContentSid", "")
        if not sid:
            return params.get("Body", "")
        created = self.content_api.get(sid)
        if created is not None:
            return created.body
        with self._lock:
            template = self._content.get(sid) if CONTENT_SID.fullmatch(sid) else None
        if template is None:
            return twilio_error(400, 21655, "The ContentSid is Invalid")
        try:
            variables = json.loads(params.get("ContentVariables") or "{}")
        except ValueError:
            variables = None
        if not isinstance(variables, dict):
            return twilio_error(400, 21656, "The Content Variables parameter is invalid.")
        return _VARIABLE.sub(lambda m: str(variables.get(m.group(1), m.group(0))), template)

    def add_media(self, data: bytes, content_type: str) -> StoredMedia:
        """Store ``data`` as the media of a new inbound message; Twilio's URL for it is ``url``."""
        if len(data) > MAX_MEDIA_BYTES:
            raise ValueError(f"media larger than {MAX_MEDIA_BYTES} bytes")
        message_sid, media_sid = new_sid("MM"), new_sid("ME")
        url = f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages/{message_sid}/Media/{media_sid}"
        media = StoredMedia(message_sid, media_sid, content_type or "application/octet-stream", data, url)
        with self._lock:
            self._media[media_sid] = media
        return media

    def start(self) -> "TwilioStub":
        super().start()
        if self._callback_thread is None:
            self._callback_thread = threading.Thread(target=self._post_callbacks, name="twilio-stub-callbacks", daemon=True)
            self._callback_thread.start()
        return self

    def stop(self) -> None:
        super().stop()
        with self._lock:
            self._lock.notify_all()
        thread, self._callback_thread = self._callback_thread, None
        if thread is not None:
            thread.join(timeout=5)

    def _schedule_callbacks(self, message: SentMessage) -> None:
        """Queue sent → delivered → read for ``message``, as Twilio reports a read WhatsApp message."""
        url = message.status_callback or self._status_callback_url
        if not url or not self.send_callbacks:
            return
        self._push(message, 0, url, time.monotonic())

    def _push(self, message: SentMessage, index: int, url: str, after: float) -> None:
        with self._lock:
            self._order += 1
            heapq.heappush(self._due, (after + STATUS_SEQUENCE[index][1], self._order, message, index, url))
            self._lock.notify_all()

    def _post_callbacks(self) -> None:
        """One thread posts every callback in due order, so a message's statuses never overtake each other."""
        while not self.stopping.is_set():
            with self._lock:
                now = time.monotonic()
                if not self._due or self._due[0][0] > now:
                    self._lock.wait(0.5 if not self._due else min(0.5, self._due[0][0] - now))
                    continue
                _, _, message, index, url = heapq.heappop(self._due)
            status = STATUS_SEQUENCE[index][0]
            http_status = self._post_callback(message, status, url)
            with self._lock:
                self._callbacks.append(CallbackRecord(message.sid, status, url, http_status, time.time()))
            if index + 1 < len(STATUS_SEQUENCE):
                self._push(message, index + 1, url, time.monotonic())

    def _post_callback(self, message: SentMessage, status: str, url: str) -> int:
        params = {
            "SmsSid": message.sid,
            "SmsStatus": status,
            "MessageStatus": status,
            "ChannelToAddress": message.to.split(":", 1)[-1],
            "To": message.to,
            "ChannelPrefix": message.to.split(":", 1)[0] if ":" in message.to else "sms",
            "MessageSid": message.sid,
            "AccountSid": self.account_sid,
            "From": message.from_,
            "ApiVersion": API_VERSION,
        }
        try:
            return sign_and_post(url, params, self._auth_token, timeout=5)[0]
        except OSError as exc:
            log.warning(
                "status callback not delivered",
                extra={"event": "status_callback_failed", "twilio_sid": message.sid, "status": status, "error": repr(exc)},
            )
            return 0

    @property
    def messages(self) -> list[SentMessage]:
        """Accepted messages, oldest first."""
        return self._snapshot()

    def clear(self) -> None:
        """Forget accepted messages, attempts and callbacks; faults, media and the delay stay."""
        with self._lock:
            super().clear()
            self._attempts.clear()
            self._callbacks.clear()
            self._typing.clear()

    def fail_next(
        self,
        times: int = 1,
        status: int = 429,
        code: int = 20429,
        message: str = "Too Many Requests",
    ) -> None:
        """The next ``times`` sends fail with this Twilio error."""
        self.add_rule(None, status=status, code=code, times=times, message=message)

    def add_rule(
        self,
        predicate: Predicate | None,
        status: int,
        code: int,
        times: int | None = 1,
        message: str = "Error",
    ) -> None:
        """Fail sends whose form fields match ``predicate``; ``times=None`` means every match."""
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        with self._lock:
            self._faults.append(_Fault(predicate, status, code, message, times))

    def accept_then_disconnect(self, times: int = 1, predicate: Predicate | None = None) -> None:
        """Record the next sends as accepted, then close the connection without answering.

        This is the case where Twilio queued the message but the sender never
        learned it, so a retry would send it twice.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(_Fault(predicate, 0, 0, "", times, disconnect=True))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._typing_faults.clear()
            self._media_faults.clear()
            self._delay_seconds = 0.0
        self.content_api.clear_faults()

    def _take_fault(self, params: dict[str, str], disconnect: bool) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.disconnect != disconnect:
                    continue
                if fault.predicate is None or fault.predicate(params):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _record(self, params: dict[str, str], body: str) -> SentMessage:
        created = self.content_api.get(params.get("ContentSid", ""))
        message = SentMessage(
            sid=new_sid("SM"),
            to=params.get("To", ""),
            from_=params.get("From", ""),
            body=body,
            received_at=time.time(),
            status_callback=params.get("StatusCallback") or None,
            params=dict(params),
            content_sid=created.sid if created is not None else "",
            types=dict(created.types) if created is not None else {},
        )
        self._add_record(message)
        self._schedule_callbacks(message)
        return message

    def handle(self, request: Request, handler: StubHandler) -> Response | Drop:
        if request.path.startswith("/_stub/"):
            return self._admin(request)
        media = MEDIA_PATH.match(request.path)
        if media is not None:
            return self._serve_media(request, media)
        if request.path == TYPING_PATH:
            return self._typing_indicator(request)
        content = CONTENT_PATH.match(request.path)
        if content is not None:
            return self._content_request(request, content.group("sid"))
        match = MESSAGES_PATH.match(request.path)
        if match is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        if request.method not in ("POST", "GET"):
            return twilio_error(405, 20004, "Method not allowed")
        if not self._authorized(request.headers.get("authorization", "")):
            return self._unauthorized()
        if match.group("account") != self.account_sid:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        if request.method == "GET":
            return self._list(request)

        params = {name: values[-1] for name, values in request.form().items()}
        with self._lock:
            self._attempts.append((params.get("To", ""), params.get("Body", "")))
        delay = self.delay_seconds
        if delay and not self.wait_or_stop(delay, handler):
            return DROP
        fault = self._take_fault(params, disconnect=False)
        if fault is not None:
            return twilio_error(fault.status, fault.code, fault.message)
        invalid = self._validate(params)
        if invalid is not None:
            return invalid
        body = self._render(params)
        if isinstance(body, Response):
            return body
        message = self._record(params, body)
        if self._take_fault(params, disconnect=True) is not None:
            return DROP
        return Response.json(201, self._resource(message))

    @property
    def typing(self) -> list[dict[str, Any]]:
        """Typing indicator requests, oldest first: ``{"message_id", "channel", "at", "http_status"}``."""
        with self._lock:
            return list(self._typing)

    def fail_typing(self, times: int = 1, status: int = 500) -> None:
        """The next ``times`` typing indicator requests answer ``status``."""
        with self._lock:
            self._typing_faults = [status] * times

    def fail_media(self, times: int = 1, status: int = 500) -> None:
        """The next ``times`` media downloads answer ``status``."""
        with self._lock:
            self._media_faults = [status] * times

    def _typing_indicator(self, request: Request) -> Response:
        """``POST /v2/Indicators/Typing.json``: messageId and channel, recorded (a test checks the order)."""
        if request.method != "POST":
            return twilio_error(405, 20004, "Method not allowed")
        if not self._authorized(request.headers.get("authorization", "")):
            return self._unauthorized()
        params = {name: values[-1] for name, values in request.form().items()}
        with self._lock:
            status = self._typing_faults.pop(0) if self._typing_faults else 200
            self._typing.append({"message_id": params.get("messageId", ""), "channel": params.get("channel", ""),
                                 "at": time.time(), "http_status": status})
        if status != 200:
            return twilio_error(status, 20500, "Internal Server Error")
        return Response.json(200, {"success": True})

    def _serve_media(self, request: Request, match: re.Match[str]) -> Response:
        """Media URLs need the account's credentials, as Twilio's do when media auth is on."""
        if request.method not in ("GET", "HEAD"):
            return twilio_error(405, 20004, "Method not allowed")
        if not self._authorized(request.headers.get("authorization", "")):
            return self._unauthorized()
        with self._lock:
            fault = self._media_faults.pop(0) if self._media_faults else 0
        if fault:
            return twilio_error(fault, 20500, "Internal Server Error")
        with self._lock:
            media = self._media.get(match.group("media"))
        if (
            media is None
            or match.group("account") != self.account_sid
            or media.message_sid != match.group("message")
        ):
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return Response(200, media.data, {"Content-Type": media.content_type})

    def _content_request(self, request: Request, sid: str | None) -> Response:
        """The Content API: create (POST /v1/Content) and fetch (GET /v1/Content/HX...)."""
        if not self._authorized(request.headers.get("authorization", "")):
            return self._unauthorized()
        if sid is not None and request.method == "GET":
            found = self.content_api.get(sid)
            if found is None:
                return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
            return Response.json(200, found.to_json(self.account_sid))
        if sid is not None or request.method != "POST":
            return twilio_error(405, 20004, "Method not allowed")
        try:
            created = self.content_api.create(parse_body(request.body))
        except Refused as exc:
            return twilio_error(400, 20001, f"Invalid parameter: {exc}")
        except RuntimeError as fault:
            return twilio_error(int(fault.args[0]), 20500, "Internal Server Error")
        return Response.json(201, created.to_json(self.account_sid))

    @staticmethod
    def _unauthorized() -> Response:
        response = twilio_error(401, 20003, "Authenticate", "Your AccountSid or AuthToken was incorrect.")
        return Response(response.status, response.body, {**response.headers, "WWW-Authenticate": 'Basic realm="Twilio API"'})

    def _list(self, request: Request) -> Response:
        """``GET Messages.json``: newest first, filtered by To and From, one page."""
        to = request.query.get("To", [""])[-1]
        from_ = request.query.get("From", [""])[-1]
        size = int(request.query.get("PageSize", ["50"])[-1])
        chosen = [
            self._resource(m)
            for m in reversed(self.messages)
            if (not to or m.to == to) and (not from_ or m.from_ == from_)
        ][:size]
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json?PageSize={size}&Page=0"
        return Response.json(
            200,
            {
                "messages": chosen,
                "end": max(len(chosen) - 1, 0),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            },
        )

    @property
    def attempts(self) -> list[tuple[str, str]]:
        """Every send request (To, Body) that passed authentication, failed or not."""
        with self._lock:
            return list(self._attempts)

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.account_sid) and hmac.compare_digest(password, self._auth_token)

    @staticmethod
    def _validate(params: dict[str, str]) -> Response | None:
        if not params.get("To"):
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not params.get("From") and not params.get("MessagingServiceSid"):
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not params.get("Body") and not params.get("MediaUrl") and not params.get("ContentSid"):
            return twilio_error(400, 21602, "Message body is required.")
        if len(params.get("Body", "")) > MAX_BODY_CHARS:
            return twilio_error(
                400, 21617, f"The concatenated message body exceeds the {MAX_BODY_CHARS} character limit."
            )
        return None

    def _resource(self, message: SentMessage) -> dict[str, Any]:
        """The Message resource as Twilio returns it; twilio-python's MessageInstance reads these keys."""
        created = format_datetime(datetime.fromtimestamp(message.received_at, timezone.utc))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{message.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": message.body,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": message.from_,
            "messaging_service_sid": message.params.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(_segments(message.body, message.to)),
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": message.to,
            "uri": f"{uri}.json",
        }

    def _admin(self, request: Request) -> Response:
        if request.path == "/_stub/typing" and request.method == "GET":
            return Response.json(200, self.typing)
        if request.path == "/_stub/callbacks" and request.method == "GET":
            return Response.json(200, [c.to_json() for c in self.callbacks])
        if request.path == "/_stub/content-resources" and request.method == "GET":
            return Response.json(200, [r.to_json(self.account_sid) for r in self.content_api.resources])
        if request.path == "/_stub/content" and request.method == "POST":
            return apply_admin_spec(request, self._add_content_spec)
        if request.path == "/_stub/media" and request.method == "POST":
            try:
                media = self.add_media(request.body, request.headers.get("content-type", ""))
            except ValueError as exc:
                return Response.json(413, {"error": str(exc)})
            return Response.json(201, media.to_json())
        if request.path == "/_stub/faults" and request.method == "DELETE":
            self.clear_faults()
            return Response.json(200, {"cleared": True})
        if request.path == "/_stub/faults" and request.method == "POST":
            return apply_admin_spec(request, self._add_fault_spec)
        return super()._admin(request)

    def _configure(self, spec: Mapping[str, Any]) -> None:
        super()._configure(spec)
        if "status_callback_url" in spec:
            self.status_callback_url = str(spec["status_callback_url"] or "")

    def _add_content_spec(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        self.add_content(str(spec.get("sid", "")), str(spec.get("body", "")))
        return {"added": True}

    def _add_fault_spec(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        times = int(spec.get("times", 1))
        if spec.get("target") == "content":
            self.content_api.fail_next(times, int(spec.get("status", 500)))
            return {"added": True}
        prefix = spec.get("body_prefix")
        predicate = body_starts_with(str(prefix)) if prefix else None
        if spec.get("action", "error") == "disconnect":
            self.accept_then_disconnect(times, predicate)
        else:
            self.add_rule(
                predicate,
                status=int(spec.get("status", 429)),
                code=int(spec.get("code", 20429)),
                times=times,
                message=str(spec.get("message", "Error")),
            )
        return {"added": True}


class TwilioStubAdmin:
    """Drives a TwilioStub running in another process through its admin endpoints."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        return call_admin(self.base_url + path, method, payload, self.timeout)

    def messages(self) -> list[SentMessage]:
        return [SentMessage.from_json(m) for m in self._call("GET", "/_stub/messages")]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[SentMessage]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def clear(self) -> None:
        self._call("DELETE", "/_stub/messages")
        self._call("DELETE", "/_stub/faults")

    def add_fault(self, **spec: Any) -> None:
        self._call("POST", "/_stub/faults", spec)

    def add_content(self, sid: str, body: str) -> None:
        """A Content template the stand-in's account may send."""
        self._call("POST", "/_stub/content", {"sid": sid, "body": body})

    def content_resources(self) -> list[dict[str, Any]]:
        """The Content resources created through the Content API, oldest first."""
        return list(self._call("GET", "/_stub/content-resources"))

    def fail_content(self, times: int = 1, status: int = 500) -> None:
        """The next ``times`` Content API creations answer ``status``."""
        self._call("POST", "/_stub/faults", {"target": "content", "times": times, "status": status})

    def set_delay(self, seconds: float) -> None:
        self._call("POST", "/_stub/config", {"delay_seconds": seconds})

    def callbacks(self) -> list[dict[str, Any]]:
        """The status callbacks the stand-in posted, oldest first."""
        return list(self._call("GET", "/_stub/callbacks"))

    def add_media(self, data: bytes, content_type: str) -> dict[str, Any]:
        """Store a file as inbound media; the answer holds its message sid and Twilio media URL."""
        request = urllib.request.Request(
            self.base_url + "/_stub/media", data=data, method="POST", headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return dict(json.loads(response.read()))


def inbound_message(
    from_: str,
    body: str,
    to: str,
    sid: str | None = None,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    **extra: str,
) -> dict[str, str]:
    """The form fields of a WhatsApp inbound text message, in the shape Twilio posts.

    ``WaId`` is only present when the sender is a phone number; a sender who
    hides their number arrives with a business-scoped id instead, and Twilio
    then sends ``ExternalUserId``. ``extra`` adds or overrides any field.
    """
    message_sid = sid or new_sid("SM")
    fields: dict[str, str] = {
        "SmsMessageSid": message_sid,
        "NumMedia": "0",
        "ProfileName": "Test User",
        "MessageType": "text",
        "SmsSid": message_sid,
        "SmsStatus": "received",
        "Body": body,
        "To": to,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": message_sid,
        "AccountSid": account_sid,
        "From": from_,
        "ApiVersion": API_VERSION,
    }
    address = from_.split(":", 1)[1] if ":" in from_ else from_
    if re.fullmatch(r"\+?\d{6,15}", address):
        fields["WaId"] = address.lstrip("+")
    else:
        fields["ExternalUserId"] = address
    fields.update({name: str(value) for name, value in extra.items()})
    return fields


def sign_and_post(
    url: str,
    params: Mapping[str, str],
    auth_token: str,
    timeout: float = 10,
    post_url: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """POST ``params`` form-encoded with a valid X-Twilio-Signature, as Twilio's webhook would.

    The signature covers ``url``, the address Twilio was configured with; pass
    ``post_url`` when the request must physically go elsewhere (e.g. the
    public URL is a tunnel in front of 127.0.0.1). Returns status, headers
    and body without raising on 4xx/5xx.
    """
    signature = RequestValidator(auth_token).compute_signature(url, dict(params))
    data = urllib.parse.urlencode(list(params.items())).encode("utf-8")
    request = urllib.request.Request(
        post_url or url,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers.items()), error.read()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local stand-in for Twilio's Messages API.")
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    stub = TwilioStub(args.account_sid, args.auth_token, port=args.port).start()
    serve_until_signalled(stub, stub.base_url)


if __name__ == "__main__":
    main()

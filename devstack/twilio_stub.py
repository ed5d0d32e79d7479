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
    JSON ``{"delay_seconds": S}``: every send waits S seconds before answering.

Run it alone: ``python -m devstack.twilio_stub --account-sid AC... --auth-token T [--port N]``
prints ``READY http://127.0.0.1:PORT`` and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import re
import secrets
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

API_VERSION = "2010-04-01"
MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
# Twilio rejects a Body longer than this with error 21617, WhatsApp included.
MAX_BODY_CHARS = 1600
DEFAULT_ACCOUNT_SID = "AC00000000000000000000000000000000"

Predicate = Callable[[dict[str, str]], bool]


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

    def to_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status_callback": self.status_callback,
            "received_at": self.received_at,
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
        )


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

    def __init__(self, account_sid: str, auth_token: str, port: int = 0) -> None:
        super().__init__(port)
        self.account_sid = account_sid
        self._auth_token = auth_token
        self._faults: list[_Fault] = []
        self._attempts: list[tuple[str, str]] = []

    @property
    def messages(self) -> list[SentMessage]:
        """Accepted messages, oldest first."""
        return self._snapshot()

    def clear(self) -> None:
        """Forget accepted messages and attempts; faults and the delay stay."""
        with self._lock:
            super().clear()
            self._attempts.clear()

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
            self._delay_seconds = 0.0

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

    def _record(self, params: dict[str, str]) -> SentMessage:
        message = SentMessage(
            sid=new_sid("SM"),
            to=params.get("To", ""),
            from_=params.get("From", ""),
            body=params.get("Body", ""),
            received_at=time.time(),
            status_callback=params.get("StatusCallback") or None,
            params=dict(params),
        )
        self._add_record(message)
        return message

    def handle(self, request: Request, handler: StubHandler) -> Response | Drop:
        if request.path.startswith("/_stub/"):
            return self._admin(request)
        match = MESSAGES_PATH.match(request.path)
        if match is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        if request.method not in ("POST", "GET"):
            return twilio_error(405, 20004, "Method not allowed")
        if not self._authorized(request.headers.get("authorization", "")):
            response = twilio_error(
                401, 20003, "Authenticate", "Your AccountSid or AuthToken was incorrect."
            )
            return Response(response.status, response.body, {**response.headers, "WWW-Authenticate": 'Basic realm="Twilio API"'})
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
        message = self._record(params)
        if self._take_fault(params, disconnect=True) is not None:
            return DROP
        return Response.json(201, self._resource(message))

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
        if request.path == "/_stub/faults" and request.method == "DELETE":
            self.clear_faults()
            return Response.json(200, {"cleared": True})
        if request.path == "/_stub/faults" and request.method == "POST":
            return apply_admin_spec(request, self._add_fault_spec)
        return super()._admin(request)

    def _add_fault_spec(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        times = int(spec.get("times", 1))
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

    def set_delay(self, seconds: float) -> None:
        self._call("POST", "/_stub/config", {"delay_seconds": seconds})


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

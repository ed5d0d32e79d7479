"""Fuzzing handle_webhook: no input gives a 5xx, and nothing is published without a valid signature.

Bounded in count (max_examples) and derandomized, so a run takes seconds and
fails the same way every time. The publisher is a fake that records what it
was given; signatures are computed with twilio's own RequestValidator.
"""

from __future__ import annotations

import io
import json
import logging
import string
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import quote, urlencode

import flask
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from shared.config import Settings
from shared.domain.inbound import InboundMessage, InvalidWebhook, parse_webhook
from shared.handlers.webhook import FORM_TYPE, WebhookDeps, handle_webhook
from shared.log import JsonFormatter

TOKEN = "fuzz-auth-token-0123456789abcdef"
LIMIT = 2048
NOW = 1_795_000_000.0
APP = flask.Flask(__name__)
FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
TWILIO_FIELDS = [
    "MessageSid",
    "SmsMessageSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "ProfileName",
    "WaId",
    "MessageType",
    "MessageStatus",
    "SmsStatus",
    "ErrorCode",
    "Latitude",
    "Longitude",
    "ButtonPayload",
    "AccountSid",
]


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[InboundMessage] = []

    def publish(self, message: InboundMessage) -> str:
        self.published.append(message)
        return f"pubsub-{len(self.published)}"

    def publish_status(self, callback: object) -> str:
        return "pubsub-status"


class Records(logging.Handler):
    """The webhook's log records of one example (caplog is per test, not per example)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("shared.handlers.webhook")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@dataclass(frozen=True)
class Request:
    method: str
    content_type: str
    query: bytes
    body: bytes
    chunked: bool
    signature: str
    validly_signed: bool


def run(request: Request, records: Records) -> tuple[flask.Response, RecordingPublisher, list[logging.LogRecord]]:
    publisher = RecordingPublisher()
    deps = WebhookDeps(
        settings=Settings(webhook_max_body_bytes=LIMIT),
        validator=lambda: RequestValidator(TOKEN),
        publisher=publisher,
        clock=lambda: NOW,
    )
    headers = {"X-Twilio-Signature": request.signature} if request.signature else {}
    options: dict[str, object] = {
        "method": request.method,
        "headers": headers,
        "content_type": request.content_type,
        "environ_overrides": {"QUERY_STRING": request.query.decode("latin-1")},
    }
    if request.chunked:
        headers["Transfer-Encoding"] = "chunked"
        options["input_stream"] = io.BytesIO(request.body)
        options["environ_overrides"] = {**options["environ_overrides"], "wsgi.input_terminated": True}  # type: ignore[dict-item]
    else:
        options["data"] = request.body
    start = len(records.records)
    with APP.test_request_context("/", base_url="http://localhost", **options) as ctx:
        response = handle_webhook(ctx.request, deps)
    return response, publisher, records.records[start:]


def url_for(query: bytes) -> str:
    return "http://localhost/" + (f"?{query.decode()}" if query else "")


def sign(query: bytes, pairs: list[tuple[str, str]]) -> str:
    return RequestValidator(TOKEN).compute_signature(url_for(query), MultiDict(pairs))


sids = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).map(lambda h: "SM" + h),
    st.text(max_size=40),
)
senders = st.one_of(
    st.integers(min_value=10**7, max_value=10**14).map(lambda n: f"whatsapp:+{n}"),
    st.text(max_size=30),
)
values = st.text(max_size=60)
keys = st.one_of(st.sampled_from(TWILIO_FIELDS), st.text(max_size=12))
pair_lists = st.lists(st.tuples(keys, values), max_size=12)


@st.composite
def forms(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Twilio-like field lists: required fields present or not, repeated or not, plus noise."""
    pairs: list[tuple[str, str]] = []
    if draw(st.booleans()):
        pairs.append(("MessageSid", draw(sids)))
    if draw(st.booleans()):
        pairs.append(("From", draw(senders)))
    if draw(st.booleans()):
        pairs.append(("NumMedia", draw(st.one_of(st.integers(-3, 20).map(str), values))))
    if draw(st.booleans()):
        pairs.append(("MessageStatus", draw(st.sampled_from(["delivered", "read", "failed", "received", ""]))))
    pairs += draw(pair_lists)
    if pairs and draw(st.booleans()):
        pairs.append(draw(st.sampled_from(pairs)))
    return draw(st.permutations(pairs))


@st.composite
def encoded_bodies(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> bytes:
    """The form as Twilio sends it, or broken: latin-1, raw bytes, bad escapes, padding past the limit."""
    kind = draw(st.sampled_from(["utf-8", "latin-1", "raw-bytes", "bad-escape", "padded"]))
    if kind == "utf-8":
        return urlencode(pairs).encode()
    if kind == "latin-1":
        return urlencode(pairs, encoding="latin-1", errors="replace").encode()
    if kind == "raw-bytes":
        return draw(st.binary(max_size=300))
    if kind == "bad-escape":
        body = urlencode(pairs)
        at = draw(st.integers(0, len(body)))
        escape = draw(st.sampled_from(["%FF", "%C3", "%E9", "%", "%G1", "%C3%28", "%ED%A0%80"]))
        return (body[:at] + escape + body[at:]).encode()
    size = draw(st.sampled_from([LIMIT - 1, LIMIT, LIMIT + 1, 2 * LIMIT, 5 * LIMIT]))
    body = urlencode([*pairs, ("Pad", "")]).encode()
    return body + b"a" * max(0, size - len(body))


queries = st.one_of(
    st.just(b""),
    st.text(alphabet=string.ascii_letters + string.digits + "=&-_.", max_size=20).map(str.encode),
    st.text(max_size=10).map(lambda t: f"x={quote(t)}".encode()),
    st.sampled_from([b"x=%FF", b"x=%zz", b"x=\xff", b"\xc3\x28", b"tenant=caf\xe9", b"%"]),
    st.binary(max_size=20),
)


@st.composite
def any_requests(draw: st.DrawFn) -> Request:
    pairs = draw(forms())
    query = draw(queries)
    body = draw(encoded_bodies(pairs))
    signature = draw(st.sampled_from(["none", "random", "valid-for-the-form", "valid-for-other-form"]))
    signature_value = {
        "none": "",
        "random": draw(st.text(alphabet=string.ascii_letters + string.digits + "+/=", min_size=1, max_size=40)),
        "valid-for-the-form": "",
        "valid-for-other-form": "",
    }[signature]
    valid = False
    try:
        url_ok = True
        query.decode()
    except UnicodeDecodeError:
        url_ok = False
    if signature == "valid-for-the-form" and url_ok:
        signature_value, valid = sign(query, pairs), True
    elif signature == "valid-for-other-form" and url_ok:
        signature_value = sign(query, draw(forms()))
    return Request(
        method=draw(st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH"])),
        content_type=draw(
            st.sampled_from(
                [FORM_TYPE] * 8
                + [f"{FORM_TYPE}; charset=latin-1", "application/json", "text/plain", "multipart/form-data", ""]
            )
        ),
        query=query,
        body=body,
        chunked=draw(st.booleans()),
        signature=signature_value,
        validly_signed=valid,
    )


def assert_logged_safely(response: flask.Response, logs: list[logging.LogRecord]) -> None:
    """Every refusal leaves exactly one structured line with its reason; every line is JSON."""
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(record)) for record in logs]
    rejected = [line for line in lines if line.get("event") == "webhook_rejected"]
    if response.status_code >= 400:
        assert len(rejected) == 1, lines
        assert rejected[0]["http_status"] == response.status_code
        assert rejected[0]["reason"]
    else:
        assert rejected == []
    assert all(TOKEN not in json.dumps(line) for line in lines)


def assert_well_formed(published: list[InboundMessage]) -> None:
    for message in published:
        assert InboundMessage.from_json(message.to_json()) == message


@FUZZ
@given(request=any_requests())
def test_no_input_gives_a_5xx_or_publishes_without_a_valid_signature(request: Request, records: Records) -> None:
    response, publisher, logs = run(request, records)
    assert response.status_code < 500
    assert response.status_code in {200, 400, 403, 405, 413}
    if not request.validly_signed:
        assert publisher.published == []
        assert response.status_code != 200
    assert len(publisher.published) <= 1
    assert_well_formed(publisher.published)
    assert_logged_safely(response, logs)


@FUZZ
@given(pairs=forms(), query=st.one_of(st.just(b""), st.text(max_size=10).map(lambda t: f"t={quote(t)}".encode())))
def test_validly_signed_random_forms_answer_200_or_400_and_publish_only_usable_messages(
    pairs: list[tuple[str, str]], query: bytes, records: Records
) -> None:
    body = urlencode(pairs).encode()
    request = Request("POST", FORM_TYPE, query, body, False, sign(query, pairs), True)
    response, publisher, logs = run(request, records)
    first_values = dict(reversed(pairs))
    if len(body) > LIMIT:
        assert response.status_code == 413
        assert publisher.published == []
        return
    try:
        expected = parse_webhook(first_values, received_at=NOW)
    except InvalidWebhook as exc:
        assert response.status_code == 400
        assert response.get_data(as_text=True).strip() == exc.reason
        assert publisher.published == []
    else:
        assert response.status_code == 200
        assert publisher.published == ([expected] if isinstance(expected, InboundMessage) else [])
    assert_well_formed(publisher.published)
    assert_logged_safely(response, logs)


bad_queries = st.one_of(
    st.binary(min_size=1, max_size=20).filter(lambda b: not b.isascii()),
    st.sampled_from([b"x=\xff", b"\xc3\x28", b"tenant=caf\xe9", b"a=\xed\xa0\x80"]),
)


@FUZZ
@given(pairs=forms(), data=st.data(), query=st.one_of(queries, bad_queries), chunked=st.booleans())
def test_signed_posts_with_broken_encodings_answer_4xx_not_5xx(
    pairs: list[tuple[str, str]], data: st.DataObject, query: bytes, chunked: bool, records: Records
) -> None:
    """The requests that get past the cheap checks: POST, form-encoded, with some signature."""
    body = data.draw(encoded_bodies(pairs))
    signature = RequestValidator(TOKEN).compute_signature(url_for(query.decode("latin-1").encode()), MultiDict(pairs))
    request = Request("POST", FORM_TYPE, query, body, chunked, signature, False)
    response, publisher, logs = run(request, records)
    assert response.status_code in {200, 400, 403, 413}
    if not query.isascii() or not body.isascii():
        assert response.status_code in {400, 403, 413}
        assert publisher.published == []
    assert_well_formed(publisher.published)
    assert_logged_safely(response, logs)

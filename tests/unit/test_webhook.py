"""handle_webhook at the HTTP level: real Twilio signatures, a fake publisher, no sockets."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import urlencode

import flask
import pytest
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from shared.config import Settings
from shared.domain.inbound import InboundMessage, StatusCallback
from shared.handlers.webhook import EMPTY_TWIML, FORM_TYPE, WebhookDeps, handle_webhook, signed_url, signed_urls
from shared.log import JsonFormatter, mask_address

TOKEN = "0123456789abcdef0123456789abcdef"
SENDER = "whatsapp:+34600111222"
RAW_DIGITS = "34600111222"
SAMPLES = Path(__file__).parents[1] / "samples" / "twilio"
NOW = 1_795_000_000.5
APP = flask.Flask(__name__)


class FakePublisher:
    def __init__(self, error: Exception | None = None) -> None:
        self.published: list[InboundMessage] = []
        self.statuses: list[StatusCallback] = []
        self.error = error

    def publish(self, message: InboundMessage) -> str:
        if self.error is not None:
            raise self.error
        self.published.append(message)
        return f"pubsub-{len(self.published)}"

    def publish_status(self, callback: StatusCallback) -> str:
        if self.error is not None:
            raise self.error
        self.statuses.append(callback)
        return f"pubsub-status-{len(self.statuses)}"


class CountingValidator:
    """The real validator, counting how often the secret was needed."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> RequestValidator:
        self.calls += 1
        return RequestValidator(TOKEN)


def make_deps(publisher: FakePublisher | None = None, **settings: object) -> WebhookDeps:
    return WebhookDeps(
        settings=Settings(**settings),  # type: ignore[arg-type]
        validator=CountingValidator(),
        publisher=publisher or FakePublisher(),
        clock=lambda: NOW,
    )


def sign(url: str, form: Mapping[str, str]) -> str:
    return RequestValidator(TOKEN).compute_signature(url, form if isinstance(form, MultiDict) else dict(form))


def text_form(**changes: str) -> dict[str, str]:
    form = {
        "SmsMessageSid": "SM0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "NumMedia": "0",
        "ProfileName": "Ana",
        "MessageType": "text",
        "WaId": RAW_DIGITS,
        "SmsStatus": "received",
        "Body": "Hola! What are your opening hours?",
        "To": "whatsapp:+14155238886",
        "MessageSid": "SM0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "AccountSid": "AC11111111111111111111111111111111",
        "From": SENDER,
        "ApiVersion": "2010-04-01",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def post(
    deps: WebhookDeps,
    form: Mapping[str, str] | None = None,
    *,
    url: str = "http://localhost/",
    signed_for: str | None = None,
    signature: str | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    body: bytes | None = None,
    content_type: str = FORM_TYPE,
    chunked: bool = False,
) -> flask.Response:
    """Post ``form`` to ``url`` signed for ``signed_for`` (default: ``url``) and run the handler."""
    form = text_form() if form is None else form
    all_headers = dict(headers or {})
    if signature is None:
        signature = sign(signed_for or url, form)
    if signature:
        all_headers["X-Twilio-Signature"] = signature
    data = urlencode(form).encode() if body is None else body
    base, _, path = url.partition("://")[2].partition("/")
    scheme = url.partition("://")[0]
    options: dict[str, object] = {"method": method, "headers": all_headers, "content_type": content_type}
    if chunked:
        all_headers["Transfer-Encoding"] = "chunked"
        options["input_stream"] = io.BytesIO(data)
        options["environ_overrides"] = {"wsgi.input_terminated": True}
    else:
        options["data"] = data
    with APP.test_request_context("/" + path, base_url=f"{scheme}://{base}", **options) as ctx:
        if chunked:
            assert ctx.request.content_length is None
        return handle_webhook(ctx.request, deps)


@pytest.fixture(autouse=True)
def no_raw_numbers_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test does, no log line may carry the sender's number."""
    caplog.set_level(logging.DEBUG)
    yield
    formatter = JsonFormatter()
    for record in caplog.records:
        line = formatter.format(record)
        json.loads(line)
        assert RAW_DIGITS not in line, f"raw number logged: {line}"


def webhook_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "shared.handlers.webhook"]


def test_valid_message_is_published_once_and_answered_with_empty_twiml(caplog: pytest.LogCaptureFixture) -> None:
    publisher = FakePublisher()
    response = post(make_deps(publisher), text_form())
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert response.get_data(as_text=True) == EMPTY_TWIML
    assert len(publisher.published) == 1
    message = publisher.published[0]
    assert message.sid == "SM0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    assert message.sender == SENDER
    assert message.recipient == "whatsapp:+14155238886"
    assert message.body == "Hola! What are your opening hours?"
    assert message.profile_name == "Ana"
    assert message.received_at == NOW
    lines = webhook_lines(caplog)
    received = [line for line in lines if line.get("event") == "received"]
    assert len(received) == 1
    assert received[0]["pubsub_message_id"] == "pubsub-1"
    assert received[0]["sid"] == message.sid
    assert received[0]["sender"] == mask_address(SENDER)


@pytest.mark.parametrize("name", ["inbound-text", "inbound-image", "inbound-voice-note", "inbound-location", "inbound-button-reply"])
def test_every_inbound_sample_is_accepted(name: str) -> None:
    form = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    publisher = FakePublisher()
    response = post(make_deps(publisher), form)
    assert response.status_code == 200
    assert [m.sid for m in publisher.published] == [form["MessageSid"]]


@pytest.mark.parametrize("name", ["status-delivered", "status-read", "status-failed-63016"])
def test_status_callback_is_published_as_a_status_not_as_a_message(name: str, caplog: pytest.LogCaptureFixture) -> None:
    form = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    publisher = FakePublisher()
    response = post(make_deps(publisher), form)
    assert response.status_code == 200
    assert publisher.published == []
    [callback] = publisher.statuses
    assert (callback.sid, callback.status, callback.recipient) == (form["MessageSid"], form["MessageStatus"], form["To"])
    assert callback.error_code == form.get("ErrorCode", "") and callback.sender == form["From"]
    [line] = [line for line in webhook_lines(caplog) if line.get("event") == "status_callback"]
    assert line["status"] == form["MessageStatus"]
    assert line["severity"] == ("WARNING" if form["MessageStatus"] == "failed" else "INFO")
    assert line["error_code"] == form.get("ErrorCode", "")


def test_status_callbacks_switched_off_are_only_logged() -> None:
    form = json.loads((SAMPLES / "status-read.json").read_text(encoding="utf-8"))
    publisher = FakePublisher()
    assert post(make_deps(publisher, delivery_status_callbacks=False), form).status_code == 200
    assert publisher.statuses == [] and publisher.published == []


def test_a_failed_status_publish_asks_twilio_to_retry() -> None:
    form = json.loads((SAMPLES / "status-read.json").read_text(encoding="utf-8"))
    assert post(make_deps(FakePublisher(error=RuntimeError("down"))), form).status_code == 503


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_only_post_is_accepted(method: str) -> None:
    publisher = FakePublisher()
    response = post(make_deps(publisher), method=method)
    assert response.status_code == 405
    assert publisher.published == []


def test_missing_signature_is_refused_without_reading_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    deps = make_deps()
    response = post(deps, signature="")
    assert response.status_code == 403
    assert deps.publisher.published == []  # type: ignore[attr-defined]
    assert deps.validator.calls == 0  # type: ignore[attr-defined]
    assert any(line.get("reason") == "no signature" for line in webhook_lines(caplog))


def test_wrong_signature_is_refused() -> None:
    deps = make_deps()
    good = sign("http://localhost/", text_form())
    response = post(deps, signature="A" + good[1:] if good[0] != "A" else "B" + good[1:])
    assert response.status_code == 403
    assert deps.publisher.published == []  # type: ignore[attr-defined]


def test_signature_for_other_params_is_refused() -> None:
    deps = make_deps()
    response = post(deps, text_form(Body="tampered"), signature=sign("http://localhost/", text_form()))
    assert response.status_code == 403
    assert deps.publisher.published == []  # type: ignore[attr-defined]


def test_signature_for_another_url_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    deps = make_deps()
    response = post(deps, url="http://localhost/hook", signed_for="http://localhost/other")
    assert response.status_code == 403
    assert deps.publisher.published == []  # type: ignore[attr-defined]
    [line] = [line for line in webhook_lines(caplog) if line.get("reason") == "bad signature"]
    assert line["url"] == "http://localhost/hook"


def test_json_body_is_refused() -> None:
    deps = make_deps()
    body = json.dumps(text_form()).encode()
    response = post(deps, body=body, content_type="application/json", signature=sign("http://localhost/", {}))
    assert response.status_code == 400
    assert FORM_TYPE in response.get_data(as_text=True)
    assert deps.publisher.published == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(("missing", "reason"), [("From", "missing From"), ("MessageSid", "missing MessageSid")])
def test_signed_form_without_a_required_field_is_refused_with_the_reason(missing: str, reason: str) -> None:
    deps = make_deps()
    form = text_form()
    del form[missing]
    response = post(deps, form)
    assert response.status_code == 400
    assert response.get_data(as_text=True).strip() == reason
    assert deps.publisher.published == []  # type: ignore[attr-defined]


def test_signed_form_with_a_bad_sid_is_refused() -> None:
    response = post(make_deps(), text_form(MessageSid="not-a-sid"))
    assert response.status_code == 400
    assert "SID" in response.get_data(as_text=True)


def test_sender_that_is_not_a_phone_number_is_published_as_given() -> None:
    publisher = FakePublisher()
    response = post(make_deps(publisher), text_form(From="whatsapp:bsuid.AB12cd34", ExternalUserId="AB12cd34"))
    assert response.status_code == 200
    assert publisher.published[0].sender == "whatsapp:bsuid.AB12cd34"


def padded_form(total: int) -> dict[str, str]:
    """A form whose urlencoded body is exactly ``total`` bytes."""
    form = text_form(Body="")
    form["Body"] = "a" * (total - len(urlencode(form)))
    assert len(urlencode(form)) == total
    return form


LIMIT = 2048


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_is_refused(chunked: bool) -> None:
    deps = make_deps(webhook_max_body_bytes=LIMIT)
    response = post(deps, padded_form(LIMIT + 1), chunked=chunked)
    assert response.status_code == 413
    assert deps.publisher.published == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_far_over_the_limit_is_refused(chunked: bool) -> None:
    deps = make_deps(webhook_max_body_bytes=LIMIT)
    response = post(deps, padded_form(LIMIT * 50), chunked=chunked)
    assert response.status_code == 413


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_of_exactly_the_limit_is_accepted(chunked: bool) -> None:
    deps = make_deps(webhook_max_body_bytes=LIMIT)
    form = padded_form(LIMIT)
    response = post(deps, form, chunked=chunked)
    assert response.status_code == 200
    assert deps.publisher.published[0].body == form["Body"]  # type: ignore[attr-defined]


def test_oversized_unsigned_body_is_refused_before_anything_else() -> None:
    deps = make_deps(webhook_max_body_bytes=LIMIT)
    response = post(deps, padded_form(LIMIT + 100), signature="")
    assert response.status_code == 413
    assert deps.validator.calls == 0  # type: ignore[attr-defined]


def test_publisher_failure_answers_503_so_twilio_retries(caplog: pytest.LogCaptureFixture) -> None:
    error = RuntimeError(f"ordering key {SENDER} is paused (number {RAW_DIGITS})")
    deps = make_deps(FakePublisher(error))
    response = post(deps)
    assert response.status_code == 503
    [line] = [line for line in webhook_lines(caplog) if line.get("event") == "publish_failed"]
    assert line["severity"] == "ERROR"
    assert "RuntimeError" in str(line["error"]) and "is paused" in str(line["error"])
    assert "RuntimeError" in str(line["stack_trace"])
    assert mask_address(SENDER) in str(line["error"])


def test_public_webhook_url_is_the_signed_url() -> None:
    public = "https://public.example/hook"
    deps = make_deps(public_webhook_url=public)
    assert post(deps, url="http://internal:8080/", signed_for=public).status_code == 200
    assert post(deps, url="http://internal:8080/", signed_for="http://internal:8080/").status_code == 403
    assert len(deps.publisher.published) == 1  # type: ignore[attr-defined]


def test_public_webhook_url_keeps_the_query_string() -> None:
    public = "https://public.example/hook"
    deps = make_deps(public_webhook_url=public)
    url = "http://internal:8080/?tenant=acme"
    assert post(deps, url=url, signed_for=f"{public}?tenant=acme").status_code == 200
    assert post(deps, url=url, signed_for=public).status_code == 403


def test_public_webhook_url_with_its_own_query_string() -> None:
    public = "https://public.example/hook?tenant=acme"
    deps = make_deps(public_webhook_url=public)
    assert post(deps, url="http://internal:8080/hook?tenant=acme", signed_for=public).status_code == 200


def test_forwarded_headers_are_used_only_when_trusted() -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example"}
    url, public = "http://internal:8080/hook?x=1", "https://public.example/hook?x=1"
    trusted = make_deps(trust_forwarded_headers=True)
    assert post(trusted, url=url, signed_for=public, headers=headers).status_code == 200
    untrusted = make_deps()
    assert post(untrusted, url=url, signed_for=public, headers=headers).status_code == 403
    assert post(untrusted, url=url, signed_for=url, headers=headers).status_code == 200


def test_forwarded_headers_with_several_hops_use_the_first() -> None:
    headers = {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "public.example, lb.internal"}
    deps = make_deps(trust_forwarded_headers=True)
    response = post(deps, url="http://internal:8080/hook", signed_for="https://public.example/hook", headers=headers)
    assert response.status_code == 200


def test_forwarded_without_headers_falls_back_to_the_request() -> None:
    deps = make_deps(trust_forwarded_headers=True)
    assert post(deps, url="http://internal:8080/hook?a=b").status_code == 200


@pytest.mark.parametrize("trusted", [False, True])
def test_escaped_query_string_is_signed_as_received(trusted: bool) -> None:
    url = "http://localhost/hook?key=ab%2Fcd%2B%3D&next=https%3A%2F%2Fx"
    deps = make_deps(trust_forwarded_headers=trusted)
    assert post(deps, url=url).status_code == 200


def test_signed_url_keeps_the_mount_point() -> None:
    with APP.test_request_context("/hook?q=1", base_url="http://internal:8080/prefix", method="POST") as ctx:
        assert signed_url(ctx.request, Settings()) == "http://internal:8080/prefix/hook?q=1"
        forwarded = Settings(trust_forwarded_headers=True)
        assert signed_url(ctx.request, forwarded) == "http://internal:8080/prefix/hook?q=1"


def test_no_path_and_no_query() -> None:
    with APP.test_request_context("/", base_url="http://internal:8080", method="POST") as ctx:
        assert signed_url(ctx.request, Settings()) == "http://internal:8080/"


def test_port_in_the_signed_url_is_optional() -> None:
    """Twilio's validator accepts the URL with or without the default port."""
    deps = make_deps(public_webhook_url="https://public.example/hook")
    assert post(deps, url="http://internal:8080/", signed_for="https://public.example:443/hook").status_code == 200


def rejections(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [line for line in webhook_lines(caplog) if line.get("event") == "webhook_rejected"]


def post_raw(
    deps: WebhookDeps,
    body: bytes,
    *,
    query: bytes = b"",
    signature: str = "c2lnbmF0dXJl",
    method: str = "POST",
) -> flask.Response:
    """Post raw bytes, with a raw query string, as a broken or hostile client could."""
    environ = {"QUERY_STRING": query.decode("latin-1")}
    headers = {"X-Twilio-Signature": signature} if signature else {}
    with APP.test_request_context(
        "/", method=method, data=body, content_type=FORM_TYPE, headers=headers, environ_overrides=environ
    ) as ctx:
        return handle_webhook(ctx.request, deps)


REJECTED_CASES = {
    "get": (405, "method not allowed", lambda deps: post(deps, method="GET")),
    "content-length over the limit": (413, "body too large", lambda deps: post(deps, padded_form(LIMIT + 1))),
    "chunked over the limit": (413, "body too large", lambda deps: post(deps, padded_form(LIMIT + 1), chunked=True)),
    "no signature": (403, "no signature", lambda deps: post(deps, signature="")),
    "json": (
        400,
        "not form-encoded",
        lambda deps: post(deps, body=b"{}", content_type="application/json", signature=sign("http://localhost/", {})),
    ),
    "query not utf-8": (400, "query string is not UTF-8", lambda deps: post_raw(deps, b"a=b", query=b"x=\xff")),
    "raw body not utf-8": (400, "form is not UTF-8", lambda deps: post_raw(deps, b"Body=caf\xe9")),
    "escaped body not utf-8": (400, "form is not UTF-8", lambda deps: post_raw(deps, b"Body=caf%E9")),
    "bad signature": (403, "bad signature", lambda deps: post(deps, signed_for="http://localhost/other")),
    "missing From": (400, "missing From", lambda deps: post(deps, text_form(From=None))),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", list(REJECTED_CASES))
def test_every_rejection_is_logged_once_with_its_reason(case: str, caplog: pytest.LogCaptureFixture) -> None:
    status, reason, send = REJECTED_CASES[case]
    deps = make_deps(webhook_max_body_bytes=LIMIT)
    response = send(deps)
    assert response.status_code == status
    assert deps.publisher.published == []  # type: ignore[attr-defined]
    [line] = rejections(caplog)
    assert line["reason"] == reason
    assert line["http_status"] == status
    assert line["severity"] == "WARNING"
    assert TOKEN not in json.dumps(line)


def test_a_rejection_log_carries_no_signature_or_secret(caplog: pytest.LogCaptureFixture) -> None:
    signature = sign("http://localhost/other", text_form())
    post(make_deps(), signature=signature)
    [line] = rejections(caplog)
    assert signature not in json.dumps(line) and TOKEN not in json.dumps(line)


def test_accepted_message_logs_no_rejection(caplog: pytest.LogCaptureFixture) -> None:
    assert post(make_deps()).status_code == 200
    assert rejections(caplog) == []


@pytest.mark.parametrize("query", [b"x=\xff", b"tenant=\xc3", b"\x80\x81"])
def test_query_string_that_is_not_utf8_is_refused_with_400_before_the_secret_is_read(query: bytes) -> None:
    deps = make_deps()
    response = post_raw(deps, urlencode(text_form()).encode(), query=query)
    assert response.status_code == 400
    assert response.get_data(as_text=True).strip() == "query string is not UTF-8"
    assert deps.validator.calls == 0  # type: ignore[attr-defined]


def test_query_string_with_escaped_non_utf8_bytes_is_signed_as_received() -> None:
    """Escapes stay escaped in the signed URL, so %FF is no reason to refuse."""
    url = "http://localhost/hook?x=%FF%FE"
    assert post(make_deps(), url=url).status_code == 200


RETRIES = "rc=3&rp=ct,rt,4xx,5xx&rt=5000"


def test_the_sdk_signs_the_fragment_when_given_one() -> None:
    """Why signed_urls tries two URLs: the same request has two possible signatures."""
    plain = "https://public.example/hook"
    assert sign(plain, text_form()) != sign(f"{plain}#{RETRIES}", text_form())


@pytest.mark.parametrize("signed_with_fragment", [False, True], ids=["signed-without-fragment", "signed-with-fragment"])
def test_public_url_with_connection_overrides_accepts_either_signature(signed_with_fragment: bool) -> None:
    public = f"https://public.example/hook#{RETRIES}"
    signed_for = public if signed_with_fragment else "https://public.example/hook"
    deps = make_deps(public_webhook_url=public)
    assert post(deps, url="http://internal:8080/", signed_for=signed_for).status_code == 200
    assert len(deps.publisher.published) == 1  # type: ignore[attr-defined]


def test_public_url_with_connection_overrides_refuses_another_fragment() -> None:
    deps = make_deps(public_webhook_url=f"https://public.example/hook#{RETRIES}")
    response = post(deps, url="http://internal:8080/", signed_for="https://public.example/hook#rc=5")
    assert response.status_code == 403
    assert deps.publisher.published == []  # type: ignore[attr-defined]


def test_plain_public_url_refuses_a_signature_over_the_fragment() -> None:
    """If Twilio signs the fragment, PUBLIC_WEBHOOK_URL must carry it too."""
    deps = make_deps(public_webhook_url="https://public.example/hook")
    response = post(deps, url="http://internal:8080/", signed_for=f"https://public.example/hook#{RETRIES}")
    assert response.status_code == 403


@pytest.mark.parametrize("signed_with_fragment", [False, True], ids=["signed-without-fragment", "signed-with-fragment"])
def test_connection_overrides_after_a_query_string(signed_with_fragment: bool) -> None:
    public = f"https://public.example/hook?tenant=acme#{RETRIES}"
    signed_for = public if signed_with_fragment else "https://public.example/hook?tenant=acme"
    deps = make_deps(public_webhook_url=public)
    assert post(deps, url="http://internal:8080/hook?tenant=acme", signed_for=signed_for).status_code == 200


def test_signed_urls_lists_the_plain_url_first() -> None:
    with APP.test_request_context("/", base_url="http://internal:8080", method="POST") as ctx:
        plain = Settings(public_webhook_url="https://public.example/hook")
        assert signed_urls(ctx.request, plain) == ("https://public.example/hook",)
        with_fragment = Settings(public_webhook_url=f"https://public.example/hook#{RETRIES}")
        assert signed_url(ctx.request, with_fragment) == "https://public.example/hook"
        assert signed_urls(ctx.request, with_fragment) == (
            "https://public.example/hook",
            f"https://public.example/hook#{RETRIES}",
        )


def test_repeated_fields_are_all_signed() -> None:
    """Twilio's SDK signs every value of a repeated field; so does the check."""
    pairs = [*text_form().items(), ("Body", "second value")]
    body = urlencode(pairs).encode()
    every_value = MultiDict(pairs)
    deps = make_deps()
    assert post(deps, body=body, signature=sign("http://localhost/", every_value)).status_code == 200
    assert deps.publisher.published[0].body == text_form()["Body"]  # type: ignore[attr-defined]
    first_values = make_deps()
    assert post(first_values, body=body, signature=sign("http://localhost/", text_form())).status_code == 403
    assert first_values.publisher.published == []  # type: ignore[attr-defined]


def test_a_captured_webhook_replayed_under_a_new_message_sid_is_refused() -> None:
    """Twilio's signature joins keys and values without a separator: moving ``MessageType``'s
    key and value into ``MessageSid`` keeps the signature valid. Only Twilio's SID shapes pass."""
    deps = make_deps()
    original = text_form()
    forged = {k: v for k, v in original.items() if k != "MessageType"}
    forged["MessageSid"] = original["MessageSid"] + "MessageTypetext"
    signature = sign("http://localhost/", original)
    assert RequestValidator(TOKEN).validate("http://localhost/", forged, signature)
    assert post(deps, original, signature=signature).status_code == 200
    response = post(deps, forged, signature=signature)
    assert response.status_code == 400 and b"not a Twilio SID" in response.data
    assert [m.sid for m in deps.publisher.published] == [original["MessageSid"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("sid", ["SM" + "0a" * 16, "MM" + "F" * 32])
def test_message_and_media_sids_are_accepted(sid: str) -> None:
    deps = make_deps()
    assert post(deps, text_form(MessageSid=sid, SmsMessageSid=sid)).status_code == 200


@pytest.mark.parametrize("sid", ["SM" + "0" * 31 + "g", "AB" + "0" * 32, "SM" + "0" * 40, "SMabcdef0123"])
def test_other_sid_shapes_are_refused(sid: str) -> None:
    assert post(make_deps(), text_form(MessageSid=sid)).status_code == 400

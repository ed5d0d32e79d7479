"""The Twilio and OpenAI stand-ins, driven by the real twilio and openai clients."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import openai
import pytest
import requests
from openai.types.chat import ChatCompletionMessageParam
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from devstack.openai_stub import OFFLINE_PREFIX, OpenAIStub, OpenAIStubAdmin
from devstack.twilio_stub import TwilioStub, TwilioStubAdmin, inbound_message, sign_and_post
from tests.integration.helpers import start_module, stop_module

SAMPLE = Path(__file__).parents[1] / "samples" / "twilio" / "inbound-text.json"
ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "test-auth-token"
WA_FROM = "whatsapp:+14155238886"
WA_USER = "whatsapp:+34600111222"
SID_RE = re.compile(r"^SM[0-9a-f]{32}$")


@pytest.fixture
def twilio_stub() -> Iterator[TwilioStub]:
    stub = TwilioStub(ACCOUNT_SID, AUTH_TOKEN).start()
    try:
        yield stub
    finally:
        stub.stop()


def twilio_client(stub: TwilioStub, token: str = AUTH_TOKEN, timeout: float = 5.0) -> Client:
    client = Client(ACCOUNT_SID, token, http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = stub.base_url
    return client


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    stub = OpenAIStub().start()
    try:
        yield stub
    finally:
        stub.stop()


def openai_client(stub: OpenAIStub, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=stub.base_url, max_retries=0, timeout=timeout)


# Twilio


def test_real_twilio_client_send_is_recorded(twilio_stub: TwilioStub) -> None:
    client = twilio_client(twilio_stub)
    sent = client.messages.create(to=WA_USER, from_=WA_FROM, body="Hello from the sender",
                                  status_callback="http://127.0.0.1:1/status")

    assert SID_RE.match(sent.sid)
    assert sent.status == "queued"
    assert sent.account_sid == ACCOUNT_SID
    assert (sent.to, sent.from_, sent.body) == (WA_USER, WA_FROM, "Hello from the sender")
    assert sent.date_created is not None and sent.date_created.tzinfo is not None
    assert abs(sent.date_created.timestamp() - time.time()) < 60
    assert sent.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sent.sid}.json"

    recorded = twilio_stub.wait_for(1, timeout=2)
    assert len(recorded) == 1
    assert recorded[0].sid == sent.sid
    assert (recorded[0].to, recorded[0].from_, recorded[0].body) == (WA_USER, WA_FROM, "Hello from the sender")
    assert recorded[0].status_callback == "http://127.0.0.1:1/status"


def test_wrong_token_is_401_20003(twilio_stub: TwilioStub) -> None:
    client = twilio_client(twilio_stub, token="not-the-token")
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=WA_USER, from_=WA_FROM, body="x")
    assert caught.value.status == 401
    assert caught.value.code == 20003
    assert twilio_stub.messages == []


def test_fail_next_then_success(twilio_stub: TwilioStub) -> None:
    client = twilio_client(twilio_stub)
    twilio_stub.fail_next(times=1, status=429, code=20429, message="Too Many Requests")
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=WA_USER, from_=WA_FROM, body="first try")
    assert (caught.value.status, caught.value.code) == (429, 20429)
    assert twilio_stub.messages == []

    sent = client.messages.create(to=WA_USER, from_=WA_FROM, body="second try")
    assert [m.sid for m in twilio_stub.messages] == [sent.sid]


def test_rule_fails_only_matching_bodies(twilio_stub: TwilioStub) -> None:
    client = twilio_client(twilio_stub)
    twilio_stub.add_rule(lambda p: p.get("Body", "").startswith("BOOM"), status=500, code=20500, times=None)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as caught:
            client.messages.create(to=WA_USER, from_=WA_FROM, body="BOOM part 1")
        assert (caught.value.status, caught.value.code) == (500, 20500)
    client.messages.create(to=WA_USER, from_=WA_FROM, body="fine")
    assert [m.body for m in twilio_stub.messages] == ["fine"]


def test_accept_then_disconnect_records_but_client_sees_no_answer(twilio_stub: TwilioStub) -> None:
    client = twilio_client(twilio_stub)
    twilio_stub.accept_then_disconnect(times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.messages.create(to=WA_USER, from_=WA_FROM, body="lost answer")
    assert [m.body for m in twilio_stub.messages] == ["lost answer"]
    client.messages.create(to=WA_USER, from_=WA_FROM, body="next one")
    assert [m.body for m in twilio_stub.messages] == ["lost answer", "next one"]


def test_body_over_1600_chars_is_rejected_like_twilio(twilio_stub: TwilioStub) -> None:
    client = twilio_client(twilio_stub)
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=WA_USER, from_=WA_FROM, body="x" * 1601)
    assert (caught.value.status, caught.value.code) == (400, 21617)
    client.messages.create(to=WA_USER, from_=WA_FROM, body="x" * 1600)
    assert len(twilio_stub.messages) == 1


def test_delay_and_client_timeout(twilio_stub: TwilioStub) -> None:
    twilio_stub.delay_seconds = 0.3
    started = time.monotonic()
    twilio_client(twilio_stub).messages.create(to=WA_USER, from_=WA_FROM, body="slow")
    assert 0.3 <= time.monotonic() - started < 2

    twilio_stub.delay_seconds = 3
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        twilio_client(twilio_stub, timeout=0.3).messages.create(to=WA_USER, from_=WA_FROM, body="too slow")
    assert time.monotonic() - started < 2


def test_admin_endpoints_over_http(twilio_stub: TwilioStub) -> None:
    admin = TwilioStubAdmin(twilio_stub.base_url)
    client = twilio_client(twilio_stub)
    admin.add_fault(status=503, code=20503, times=1, body_prefix="Part 2")
    client.messages.create(to=WA_USER, from_=WA_FROM, body="Part 1")
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=WA_USER, from_=WA_FROM, body="Part 2 of 2")
    assert (caught.value.status, caught.value.code) == (503, 20503)
    client.messages.create(to=WA_USER, from_=WA_FROM, body="Part 2 of 2")

    remote = admin.wait_for(2, timeout=2)
    assert [m.body for m in remote] == ["Part 1", "Part 2 of 2"]
    assert [m.sid for m in remote] == [m.sid for m in twilio_stub.messages]
    admin.clear()
    assert admin.messages() == [] and twilio_stub.messages == []


def test_twilio_stub_runs_as_a_process() -> None:
    proc, url = start_module("devstack.twilio_stub", "--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN)
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=TwilioHttpClient(timeout=5))
        client.api.base_url = url
        sent = client.messages.create(to=WA_USER, from_=WA_FROM, body="cross-process")
        assert [(m.sid, m.body) for m in TwilioStubAdmin(url).messages()] == [(sent.sid, "cross-process")]
    finally:
        code = stop_module(proc)
    assert code == 0


# Webhook signing


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = []

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
        params = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        type(self).seen.append((self.path, params, dict(self.headers.items())))
        body = b"<Response/>"
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, str], dict[str, str]]]]]:
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = []
    handler = type("Receiver", (_Receiver,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_sign_and_post_signature_validates(receiver: tuple[str, list[Any]]) -> None:
    base, seen = receiver
    url = f"{base}/webhook?tenant=a"
    params = inbound_message(WA_USER, "Hola, ¿abrís mañana?", WA_FROM, account_sid=ACCOUNT_SID)
    status, headers, body = sign_and_post(url, params, AUTH_TOKEN, timeout=5)

    assert status == 200 and body == b"<Response/>"
    assert headers["Content-Type"] == "text/xml"
    path, got_params, got_headers = seen[0]
    assert path == "/webhook?tenant=a"
    assert got_params == params
    assert got_headers["Content-Type"] == "application/x-www-form-urlencoded"
    signature = got_headers["X-Twilio-Signature"]
    assert RequestValidator(AUTH_TOKEN).validate(url, got_params, signature)
    assert not RequestValidator("another-token").validate(url, got_params, signature)
    assert not RequestValidator(AUTH_TOKEN).validate(url, {**got_params, "Body": "tampered"}, signature)


def test_sign_and_post_signs_public_url_while_posting_locally(receiver: tuple[str, list[Any]]) -> None:
    base, seen = receiver
    public = "https://hooks.example.test/webhook"
    params = inbound_message(WA_USER, "hi", WA_FROM)
    status, _, _ = sign_and_post(public, params, AUTH_TOKEN, timeout=5, post_url=f"{base}/webhook")
    assert status == 200
    _, got_params, got_headers = seen[0]
    assert RequestValidator(AUTH_TOKEN).validate(public, got_params, got_headers["X-Twilio-Signature"])
    assert not RequestValidator(AUTH_TOKEN).validate(f"{base}/webhook", got_params, got_headers["X-Twilio-Signature"])


def test_sign_and_post_returns_error_status_without_raising(twilio_stub: TwilioStub) -> None:
    status, _, body = sign_and_post(f"{twilio_stub.base_url}/nowhere", {"a": "b"}, AUTH_TOKEN, timeout=5)
    assert status == 404
    assert json.loads(body)["code"] == 20404


def test_inbound_message_matches_documented_shape() -> None:
    sample = json.loads(SAMPLE.read_text())
    fields = inbound_message(WA_USER, "Hola!", WA_FROM, account_sid=ACCOUNT_SID, ProfileName="Ana")
    assert set(fields) == set(sample)
    assert fields["WaId"] == "34600111222"
    assert SID_RE.match(fields["MessageSid"])
    assert fields["MessageSid"] == fields["SmsSid"] == fields["SmsMessageSid"]
    assert (fields["From"], fields["To"], fields["Body"], fields["AccountSid"]) == (WA_USER, WA_FROM, "Hola!", ACCOUNT_SID)
    assert all(isinstance(v, str) for v in fields.values())
    assert inbound_message(WA_USER, "x", WA_FROM)["MessageSid"] != fields["MessageSid"]
    assert inbound_message(WA_USER, "x", WA_FROM, sid="SM" + "a" * 32)["MessageSid"] == "SM" + "a" * 32

    hidden = inbound_message("whatsapp:BS.ab12cd34", "x", WA_FROM)
    assert "WaId" not in hidden
    assert hidden["From"] == "whatsapp:BS.ab12cd34"


# OpenAI


def test_real_openai_sdk_gets_offline_reply(openai_stub: OpenAIStub) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What time do you open?"},
        {"role": "assistant", "content": "At nine."},
        {"role": "user", "content": "And on Sunday?"},
    ]
    completion = openai_client(openai_stub).chat.completions.create(model="gpt-4o-mini", messages=messages)

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    text = choice.message.content or ""
    assert text.startswith(OFFLINE_PREFIX)
    assert "«And on Sunday?»" in text and "«What time do you open?»" in text
    assert "(turn 2)" in text
    assert completion.usage is not None and completion.usage.total_tokens > 0

    recorded = openai_stub.wait_for(1, timeout=2)
    assert len(recorded) == 1
    assert recorded[0].messages == messages
    assert recorded[0].model == "gpt-4o-mini"


def test_fail_next_500_raises_internal_server_error(openai_stub: OpenAIStub) -> None:
    client = openai_client(openai_stub)
    openai_stub.fail_next(times=1, status=500)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 500
    ok = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert (ok.choices[0].message.content or "").startswith(OFFLINE_PREFIX)
    assert len(openai_stub.requests) == 2


def test_fail_next_429_is_rate_limit_error(openai_stub: OpenAIStub) -> None:
    openai_stub.fail_next(times=1, status=429)
    with pytest.raises(openai.RateLimitError):
        openai_client(openai_stub).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_hang_next_makes_client_time_out(openai_stub: OpenAIStub) -> None:
    openai_stub.hang_next(times=1)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        openai_client(openai_stub, timeout=0.5).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert time.monotonic() - started < 3
    ok = openai_client(openai_stub).chat.completions.create(model="m", messages=[{"role": "user", "content": "again"}])
    assert "«again»" in (ok.choices[0].message.content or "")


def test_custom_responder_long_reply(openai_stub: OpenAIStub) -> None:
    long_text = ("Lorem ipsum dolor sit amet. " * 200)[:4000]
    openai_stub.set_responder(lambda messages: long_text)
    completion = openai_client(openai_stub).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == long_text
    openai_stub.set_responder(None)
    again = openai_client(openai_stub).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert (again.choices[0].message.content or "").startswith(OFFLINE_PREFIX)


def test_delay_does_not_block_other_requests(openai_stub: OpenAIStub) -> None:
    openai_stub.delay_seconds = 0.6
    client = openai_client(openai_stub)
    durations: list[float] = []

    def call(i: int) -> None:
        started = time.monotonic()
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"n{i}"}])
        durations.append(time.monotonic() - started)

    started = time.monotonic()
    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    total = time.monotonic() - started
    assert len(durations) == 4
    assert min(durations) >= 0.6
    assert total < 4 * 0.6, f"requests were served one after another: {total:.2f}s"


def test_openai_admin_over_http(openai_stub: OpenAIStub) -> None:
    admin = OpenAIStubAdmin(openai_stub.base_url)
    admin.configure(reply_text="scripted answer")
    client = openai_client(openai_stub)
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    assert reply.choices[0].message.content == "scripted answer"
    admin.configure(fail_times=1, fail_status=503)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q2"}])
    admin.configure(reply_text=None)
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q3"}])
    assert (reply.choices[0].message.content or "").startswith(OFFLINE_PREFIX)

    remote = admin.requests()
    assert [r["messages"][-1]["content"] for r in remote] == ["q", "q2", "q3"]
    admin.clear()
    assert openai_stub.requests == []


def test_models_and_unprefixed_path(openai_stub: OpenAIStub) -> None:
    models = openai_client(openai_stub).models.list()
    assert [m.id for m in models.data]
    bare = openai.OpenAI(api_key="k", base_url=openai_stub.root_url, max_retries=0, timeout=5)
    reply = bare.chat.completions.create(model="m", messages=[{"role": "user", "content": "no prefix"}])
    assert "«no prefix»" in (reply.choices[0].message.content or "")


def test_openai_stub_runs_as_a_process() -> None:
    proc, url = start_module("devstack.openai_stub", "--delay", "0.2")
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        client = openai.OpenAI(api_key="k", base_url=url, max_retries=0, timeout=5)
        started = time.monotonic()
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "ping"}])
        assert time.monotonic() - started >= 0.2
        assert "«ping»" in (reply.choices[0].message.content or "")
        with urllib.request.urlopen(url.removesuffix("/v1") + "/_stub/requests", timeout=5) as resp:
            assert [r["messages"] for r in json.loads(resp.read())] == [[{"role": "user", "content": "ping"}]]
    finally:
        code = stop_module(proc)
    assert code == 0


def test_twilio_message_list_is_read_by_the_real_client_newest_first() -> None:
    from datetime import datetime, timedelta, timezone

    from shared.adapters.twilio_api import TwilioGateway

    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN) as stub:
        gateway = TwilioGateway(ACCOUNT_SID, "whatsapp:+14155238886", lambda: AUTH_TOKEN, stub.base_url, 5.0)
        since = datetime.now(timezone.utc) - timedelta(seconds=1)
        first = gateway.send("whatsapp:+34600111222", "first")
        gateway.send("whatsapp:+34600999888", "other user")
        assert gateway.find_sent("whatsapp:+34600111222", "first", since) == first
        assert gateway.find_sent("whatsapp:+34600111222", "never sent", since) is None
        assert gateway.find_sent("whatsapp:+34600999888", "first", since) is None
        assert stub.attempts == [("whatsapp:+34600111222", "first"), ("whatsapp:+34600999888", "other user")]


def test_a_template_send_returns_the_rendered_body_and_no_content_sid_like_twilio(twilio_stub: TwilioStub) -> None:
    template = "HX" + "d" * 32
    twilio_stub.add_content(template, "Hi {{1}}, your table for {{2}} is ready.")
    client = twilio_client(twilio_stub)
    message = client.messages.create(
        from_=WA_FROM, to=WA_USER, content_sid=template, content_variables=json.dumps({"1": "Ana", "2": "two"}),
    )
    assert message.body == "Hi Ana, your table for two is ready." and message.direction == "outbound-api"
    listed = client.messages.list(to=WA_USER, from_=WA_FROM, limit=20)
    assert [m.body for m in listed] == [message.body]
    assert not hasattr(listed[0], "content_sid")
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(from_=WA_FROM, to=WA_USER, content_sid="HX" + "e" * 32)
    assert refused.value.code == 21655

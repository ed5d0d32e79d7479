"""The Twilio stand-in's media store and status callbacks, against the real twilio client and validator."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import pytest
import twilio.rest
from twilio.request_validator import RequestValidator

from devstack.httpserver import Request, Response, StubHandler, StubServer
from devstack.twilio_stub import TwilioStub, TwilioStubAdmin
from tests.plugin import wait_until

ACCOUNT = "AC" + "0" * 32
TOKEN = "stub-token"


class CallbackSink(StubServer):
    """Records what is posted to it and answers 200, as the webhook answers status callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Request] = []

    def handle(self, request: Request, handler: StubHandler) -> Response:
        self.received.append(request)
        return Response(200)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_status_callbacks_are_signed_in_order_and_recorded() -> None:
    with CallbackSink() as sink, TwilioStub(ACCOUNT, TOKEN, status_callback_url=sink.base_url + "/hook") as stub:
        client = twilio.rest.Client(ACCOUNT, TOKEN)
        client.api.base_url = stub.base_url
        sent = client.messages.create(to="whatsapp:+15550001111", from_="whatsapp:+14155238886", body="hi")
        wait_until(lambda: len(stub.callbacks) == 3, timeout=10)
        validator = RequestValidator(TOKEN)
        forms = [{k: v[-1] for k, v in r.form().items()} for r in sink.received]
        assert [f["MessageStatus"] for f in forms] == ["sent", "delivered", "read"]
        assert {(f["MessageSid"], f["To"], f["From"], f["AccountSid"]) for f in forms} == {
            (sent.sid, "whatsapp:+15550001111", "whatsapp:+14155238886", ACCOUNT)
        }
        for request, form in zip(sink.received, forms):
            assert validator.validate(sink.base_url + "/hook", form, request.headers["x-twilio-signature"])
        assert [(c.status, c.http_status) for c in stub.callbacks] == [("sent", 200), ("delivered", 200), ("read", 200)]
        admin = TwilioStubAdmin(stub.base_url)
        assert [c["status"] for c in admin.callbacks()] == ["sent", "delivered", "read"]


def test_a_send_naming_its_status_callback_wins_and_none_means_no_callbacks() -> None:
    with CallbackSink() as named, TwilioStub(ACCOUNT, TOKEN) as stub:
        client = twilio.rest.Client(ACCOUNT, TOKEN)
        client.api.base_url = stub.base_url
        client.messages.create(to="whatsapp:+15550002222", from_="whatsapp:+1415", body="no callback")
        client.messages.create(
            to="whatsapp:+15550002222", from_="whatsapp:+1415", body="with", status_callback=named.base_url + "/s"
        )
        wait_until(lambda: len(stub.callbacks) == 3, timeout=10)
        assert {c.url for c in stub.callbacks} == {named.base_url + "/s"}
        assert len(named.received) == 3


def test_media_is_served_under_its_twilio_url_with_basic_auth_only() -> None:
    with TwilioStub(ACCOUNT, TOKEN) as stub:
        stored = TwilioStubAdmin(stub.base_url).add_media(b"\x89PNG-bytes", "image/png")
        assert stored["message_sid"].startswith("MM") and stored["url"].endswith(
            f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{stored['message_sid']}/Media/{stored['media_sid']}"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(stored["url"], timeout=5)
        assert refused.value.code == 401
        wrong = urllib.request.Request(stored["url"], headers={"Authorization": _basic(ACCOUNT, "wrong")})
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(wrong, timeout=5)
        assert bad.value.code == 401
        right = urllib.request.Request(stored["url"], headers={"Authorization": _basic(ACCOUNT, TOKEN)})
        with urllib.request.urlopen(right, timeout=5) as response:
            assert response.headers["Content-Type"] == "image/png"
            assert response.read() == b"\x89PNG-bytes"
        other = stored["url"].replace(stored["message_sid"], "MM" + "f" * 32)
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(urllib.request.Request(other, headers={"Authorization": _basic(ACCOUNT, TOKEN)}), timeout=5)
        assert missing.value.code == 404

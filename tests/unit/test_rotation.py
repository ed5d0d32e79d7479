"""Rotated credentials are picked up without a redeploy: webhooks, Twilio sends, OpenAI calls."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest
from twilio.request_validator import RequestValidator

import shared.adapters.twilio_api as twilio_api
from shared.adapters.openai_model import ChatModel, ModelUnavailable
from shared.adapters.secret_manager import OPENAI_API_KEY, TWILIO_AUTH_TOKEN
from shared.adapters.twilio_api import SendRetryable, TwilioGateway
from shared.adapters.twilio_signature import RotatingValidator
from tests.unit.test_twilio_api import ACCOUNT, FROM, TO, FakeHttp, created, error

URL = "https://example.test/webhook"
FORM = {"From": "whatsapp:+34600111222", "MessageSid": "SM" + "1" * 32, "Body": "hi"}


class RotatingSecrets:
    """Secret Manager as the callers see it: a current value, a refresh, the previous value."""

    def __init__(self, **values: str) -> None:
        self.values = dict(values)
        self.latest = dict(values)
        self.old: dict[str, str] = {}
        self.refreshes = 0

    def rotate(self, name: str, value: str) -> None:
        self.latest[name] = value  # a new version in Secret Manager; the process does not know yet

    def twilio_auth_token(self) -> str:
        return self.values[TWILIO_AUTH_TOKEN]

    def openai_api_key(self) -> str:
        return self.values[OPENAI_API_KEY]

    def address_hash_key(self) -> str:
        return "k" * 32

    def refresh(self, name: str) -> bool:
        self.refreshes += 1
        if self.latest[name] == self.values[name]:
            return False
        self.old[name], self.values[name] = self.values[name], self.latest[name]
        return True

    def previous(self, name: str) -> str | None:
        return self.old.get(name)


def sign(token: str) -> str:
    return RequestValidator(token).compute_signature(URL, FORM)


def test_webhooks_signed_with_a_new_token_pass_after_one_refresh() -> None:
    secrets = RotatingSecrets(TWILIO_AUTH_TOKEN="old-token")
    validator = RotatingValidator(secrets)
    assert validator.validate(URL, FORM, sign("old-token"))
    assert secrets.refreshes == 0, "a matching signature costs no Secret Manager call"
    secrets.rotate(TWILIO_AUTH_TOKEN, "new-token")
    assert validator.validate(URL, FORM, sign("new-token"))
    assert secrets.refreshes == 1
    # Webhooks Twilio signed just before the switch still pass during the overlap.
    assert validator.validate(URL, FORM, sign("old-token"))
    assert not validator.validate(URL, FORM, sign("a-forged-token"))


def test_a_sender_401_refreshes_the_token_and_sends_once(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = RotatingSecrets(TWILIO_AUTH_TOKEN="old-token")
    https = [FakeHttp(error(401, 20003, "Authenticate")), FakeHttp(created("SM" + "b" * 32, "Hello!"))]
    used: list[FakeHttp] = []

    def next_http(timeout: float) -> FakeHttp:
        used.append(https.pop(0))
        return used[-1]

    monkeypatch.setattr(twilio_api, "TwilioHttpClient", next_http)
    gw = TwilioGateway(ACCOUNT, FROM, secrets.twilio_auth_token, "", 10.0, refresh_token=lambda: secrets.refresh(TWILIO_AUTH_TOKEN))
    secrets.rotate(TWILIO_AUTH_TOKEN, "new-token")
    assert gw.send(TO, "Hello!") == "SM" + "b" * 32
    assert [len(h.requests) for h in used] == [1, 1]
    assert used[1].requests[0]["auth"] == (ACCOUNT, "new-token")


def test_a_sender_401_without_a_new_token_is_retryable_not_resent(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = RotatingSecrets(TWILIO_AUTH_TOKEN="wrong-token")
    http = FakeHttp(error(401, 20003, "Authenticate"))
    monkeypatch.setattr(twilio_api, "TwilioHttpClient", lambda timeout: http)
    gw = TwilioGateway(ACCOUNT, FROM, secrets.twilio_auth_token, "", 10.0, refresh_token=lambda: secrets.refresh(TWILIO_AUTH_TOKEN))
    with pytest.raises(SendRetryable):
        gw.send(TO, "Hello!")
    assert len(http.requests) == 1


def completion(content: str) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


def test_an_openai_401_refreshes_the_key_and_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = RotatingSecrets(OPENAI_API_KEY="sk-old")
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer sk-old":
            return httpx2.Response(401, json={"error": {"message": "Incorrect API key provided: sk-old****", "type": "invalid_request_error"}})
        return httpx2.Response(200, json=completion("fresh"))

    real = openai.OpenAI
    monkeypatch.setattr(openai, "OpenAI", lambda **kw: real(**kw, http_client=httpx2.Client(transport=httpx2.MockTransport(handler))))
    model = ChatModel("m", "sys", secrets.openai_api_key, "http://model.test/v1", 5.0, 0,
                      refresh_key=lambda: secrets.refresh(OPENAI_API_KEY))
    secrets.rotate(OPENAI_API_KEY, "sk-new")
    assert model.reply([], "hi") == "fresh"
    assert seen == ["Bearer sk-old", "Bearer sk-new"]


def test_an_openai_401_that_a_refresh_cannot_fix_names_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = RotatingSecrets(OPENAI_API_KEY="sk-proj-abcdef123456")

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = {"error": {"message": "Incorrect API key provided: sk-proj-****3456. You can find your API key at ...",
                          "type": "invalid_request_error"}}
        return httpx2.Response(401, content=json.dumps(body), headers={"content-type": "application/json"})

    real = openai.OpenAI
    monkeypatch.setattr(openai, "OpenAI", lambda **kw: real(**kw, http_client=httpx2.Client(transport=httpx2.MockTransport(handler))))
    model = ChatModel("m", "sys", secrets.openai_api_key, "http://model.test/v1", 5.0, 0,
                      refresh_key=lambda: secrets.refresh(OPENAI_API_KEY))
    with pytest.raises(ModelUnavailable) as caught:
        model.reply([], "hi")
    assert "sk-" not in str(caught.value) and "3456" not in str(caught.value)
    assert "[redacted]" in str(caught.value)

"""Twilio errors classified, and the gateway over a real twilio Client with a fake HTTP layer."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

import shared.adapters.twilio_api as twilio_api
from shared.adapters.twilio_api import (
    PERMANENT_CODES,
    SendPermanent,
    SendRetryable,
    SendUncertain,
    TwilioGateway,
    classify,
)
from shared.log import mask_address

ACCOUNT = "AC" + "1" * 32
FROM = "whatsapp:+14155238886"
TO = "whatsapp:+34600111222"
SENT_AT = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)


def rest_error(status: int, code: int | None = None, msg: str = "boom") -> TwilioRestException:
    return TwilioRestException(status, f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json", msg=msg, code=code, method="POST")


# --- classify --------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(PERMANENT_CODES))
def test_permanent_codes_are_permanent_whatever_the_status(code: int) -> None:
    for status in (400, 429, 500):
        outcome = classify(rest_error(status, code, "refused"))
        assert isinstance(outcome, SendPermanent)
        assert outcome.code == code
        assert str(code) in str(outcome) and "refused" in str(outcome)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_throttling_and_server_errors_are_retryable(status: int) -> None:
    outcome = classify(rest_error(status, 20429 if status == 429 else None))
    assert isinstance(outcome, SendRetryable)
    assert str(status) in str(outcome)


@pytest.mark.parametrize("status", [401, 403])
def test_credential_errors_are_retryable(status: int) -> None:
    outcome = classify(rest_error(status, 20003, "Authenticate"))
    assert isinstance(outcome, SendRetryable)
    assert "credentials" in str(outcome)


@pytest.mark.parametrize(("status", "code"), [(400, 21602), (400, None), (404, 20404), (400, 99999)])
def test_other_client_errors_are_permanent(status: int, code: int | None) -> None:
    outcome = classify(rest_error(status, code))
    assert isinstance(outcome, SendPermanent)
    assert outcome.code == code


def test_a_non_numeric_code_is_treated_as_absent() -> None:
    outcome = classify(rest_error(400, "21211", "x"))  # type: ignore[arg-type]
    assert isinstance(outcome, SendPermanent) and outcome.code is None


def test_the_destination_quoted_by_twilio_is_masked() -> None:
    outcome = classify(rest_error(400, 21211, f"The 'To' number {TO} is not a valid phone number."), TO)
    assert isinstance(outcome, SendPermanent)
    assert "34600111222" not in str(outcome)
    assert mask_address(TO) in str(outcome)


# --- the gateway over a fake HTTP client ----------------------------------------------


class FakeHttp(HttpClient):
    """Answers the twilio Client from a script; never opens a socket."""

    def __init__(self, *outcomes: Response | Exception) -> None:
        super().__init__(logging.getLogger("test.twilio"), False, 5.0)
        self.outcomes = list(outcomes)
        self.requests: list[dict[str, Any]] = []

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self.requests.append({"method": method, "uri": uri, "params": params, "data": data, "auth": auth, "timeout": timeout})
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def message_json(sid: str, body: str, created: datetime | None = SENT_AT, to: str = TO) -> dict[str, Any]:
    return {
        "sid": sid,
        "account_sid": ACCOUNT,
        "from": FROM,
        "to": to,
        "body": body,
        "status": "queued",
        "date_created": format_datetime(created) if created else None,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json",
    }


def created(sid: str, body: str) -> Response:
    return Response(201, json.dumps(message_json(sid, body)))


def listing(*messages: dict[str, Any]) -> Response:
    return Response(200, json.dumps({"messages": list(messages), "next_page_uri": None, "page": 0, "page_size": 20}))


def error(status: int, code: int, message: str) -> Response:
    return Response(status, json.dumps({"code": code, "message": message, "status": status}))


def gateway(http: FakeHttp) -> TwilioGateway:
    gw = TwilioGateway(ACCOUNT, FROM, lambda: "auth-token", "", 10.0)
    gw._client = Client(ACCOUNT, "auth-token", http_client=http)
    return gw


def test_send_posts_the_message_and_returns_its_sid() -> None:
    http = FakeHttp(created("SM" + "a" * 32, "Hello!"))
    gw = gateway(http)
    assert gw.send(TO, "Hello!") == "SM" + "a" * 32
    [req] = http.requests
    assert req["method"] == "POST"
    assert req["uri"] == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert req["data"] == {"To": TO, "From": FROM, "Body": "Hello!"}
    assert req["auth"] == (ACCOUNT, "auth-token")
    assert gw.calls == 1


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.exceptions.ConnectTimeout("connect timed out"), SendRetryable),
        (requests.exceptions.ReadTimeout("read timed out"), SendUncertain),
        (requests.exceptions.ConnectionError("connection reset"), SendUncertain),
        (requests.exceptions.ChunkedEncodingError("cut short"), SendUncertain),
    ],
)
def test_send_maps_transport_errors(exc: Exception, expected: type[Exception]) -> None:
    gw = gateway(FakeHttp(exc))
    with pytest.raises(expected) as caught:
        gw.send(TO, "Hello!")
    assert caught.value.__cause__ is exc


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (error(400, 63016, "outside the allowed window"), SendPermanent),
        (error(429, 20429, "Too Many Requests"), SendRetryable),
        (error(503, 20503, "Service unavailable"), SendUncertain),
        (error(500, 20500, "Internal error"), SendUncertain),
        (error(401, 20003, "Authenticate"), SendRetryable),
        (error(400, 21602, "Message body is required"), SendPermanent),
    ],
)
def test_send_maps_api_errors(response: Response, expected: type[Exception]) -> None:
    with pytest.raises(expected):
        gateway(FakeHttp(response)).send(TO, "Hello!")


def test_send_error_quoting_the_number_is_masked_and_not_chained() -> None:
    response = error(400, 21211, f"The 'To' number {TO} is not a valid phone number.")
    with pytest.raises(SendPermanent) as caught:
        gateway(FakeHttp(response)).send(TO, "Hello!")
    assert caught.value.code == 21211
    assert "34600111222" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_find_sent_matches_body_and_time() -> None:
    http = FakeHttp(
        listing(
            message_json("SM" + "1" * 32, "other body"),
            message_json("SM" + "2" * 32, "Hello!", created=SENT_AT - timedelta(hours=1)),
            message_json("SM" + "3" * 32, "Hello!", created=SENT_AT),
        )
    )
    gw = gateway(http)
    assert gw.find_sent(TO, "Hello!", since=SENT_AT + timedelta(milliseconds=500)) == "SM" + "3" * 32
    [req] = http.requests
    assert req["method"] == "GET"
    assert req["params"]["To"] == TO and req["params"]["From"] == FROM


def test_find_sent_ignores_an_older_message_with_the_same_body() -> None:
    http = FakeHttp(listing(message_json("SM" + "2" * 32, "Hello!", created=SENT_AT - timedelta(seconds=6))))
    assert gateway(http).find_sent(TO, "Hello!", since=SENT_AT) is None


def test_find_sent_allows_a_second_of_clock_skew() -> None:
    http = FakeHttp(listing(message_json("SM" + "2" * 32, "Hello!", created=SENT_AT - timedelta(seconds=1))))
    assert gateway(http).find_sent(TO, "Hello!", since=SENT_AT + timedelta(milliseconds=400)) == "SM" + "2" * 32


def test_find_sent_ignores_a_message_a_few_seconds_before_the_mark() -> None:
    http = FakeHttp(listing(message_json("SM" + "2" * 32, "Hello!", created=SENT_AT - timedelta(seconds=4))))
    assert gateway(http).find_sent(TO, "Hello!", since=SENT_AT) is None


def test_find_sent_without_a_date_cannot_be_ours() -> None:
    http = FakeHttp(listing(message_json("SM" + "4" * 32, "Hello!", created=None)))
    assert gateway(http).find_sent(TO, "Hello!", since=SENT_AT) is None


def test_find_sent_skips_sids_already_recorded_for_the_conversation() -> None:
    # Identical bodies (the fallback text, a repeated paragraph): the SID of
    # the part sent just before must not be taken for this one.
    earlier, ours = "SM" + "5" * 32, "SM" + "6" * 32
    http = FakeHttp(listing(message_json(earlier, "Sorry!", created=SENT_AT)))
    assert gateway(http).find_sent(TO, "Sorry!", since=SENT_AT, exclude=frozenset({earlier})) is None
    http = FakeHttp(listing(message_json(ours, "Sorry!", created=SENT_AT), message_json(earlier, "Sorry!", created=SENT_AT)))
    assert gateway(http).find_sent(TO, "Sorry!", since=SENT_AT, exclude=frozenset({earlier})) == ours


def test_find_sent_finds_nothing() -> None:
    assert gateway(FakeHttp(listing())).find_sent(TO, "Hello!", since=SENT_AT) is None


@pytest.mark.parametrize(
    "exc", [requests.exceptions.ReadTimeout("slow"), requests.exceptions.ConnectionError("down")]
)
def test_find_sent_transport_errors_are_retryable(exc: Exception) -> None:
    with pytest.raises(SendRetryable):
        gateway(FakeHttp(exc)).find_sent(TO, "Hello!", since=SENT_AT)


@pytest.mark.parametrize("status", [400, 404, 500])
def test_find_sent_page_errors_are_retryable_and_do_not_quote_the_answer(status: int) -> None:
    response = error(status, 21211, f"The 'To' number {TO} is not a valid phone number.")
    with pytest.raises(SendRetryable) as caught:
        gateway(FakeHttp(response)).find_sent(TO, "Hello!", since=SENT_AT)
    assert f"HTTP {status}" in str(caught.value)
    assert "34600111222" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_find_sent_unreadable_page_is_retryable() -> None:
    with pytest.raises(SendRetryable):
        gateway(FakeHttp(Response(200, "<html>proxy error</html>"))).find_sent(TO, "Hello!", since=SENT_AT)


def problem(status: int, code: int, title: str, detail: str) -> Response:
    """An RFC 9457 problem document, which the SDK raises as TwilioServiceException."""
    body = {"type": f"https://www.twilio.com/docs/errors/{code}", "title": title, "status": status, "code": code, "detail": detail}
    return Response(status, json.dumps(body))


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (problem(400, 63016, "Outside the window", "24 hours passed"), SendPermanent),
        (problem(400, 21211, "Invalid To", f"The 'To' number {TO} is not valid"), SendPermanent),
        (problem(429, 20429, "Too Many Requests", "slow down"), SendRetryable),
        (problem(503, 20503, "Unavailable", "later"), SendUncertain),
    ],
)
def test_send_maps_problem_documents(response: Response, expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught:
        gateway(FakeHttp(response)).send(TO, "Hello!")
    assert "34600111222" not in str(caught.value)
    if isinstance(caught.value, SendPermanent):
        assert caught.value.code in PERMANENT_CODES


def test_send_with_an_unreadable_success_is_uncertain() -> None:
    with pytest.raises(SendUncertain):
        gateway(FakeHttp(Response(201, "<html>accepted?</html>"))).send(TO, "Hello!")


def test_client_is_built_lazily_with_the_base_url_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[FakeHttp] = []
    token_reads: list[int] = []

    def fake_http_client(timeout: float) -> FakeHttp:
        http = FakeHttp(created("SM" + "b" * 32, "hi"), created("SM" + "c" * 32, "hi"))
        http.timeout = timeout
        built.append(http)
        return http

    def token() -> str:
        token_reads.append(1)
        return "lazy-token"

    monkeypatch.setattr(twilio_api, "TwilioHttpClient", fake_http_client)
    gw = TwilioGateway(ACCOUNT, FROM, token, "http://127.0.0.1:9999", 7.5)
    assert token_reads == [] and built == []
    gw.send(TO, "hi")
    gw.send(TO, "hi")
    assert len(built) == 1 and len(token_reads) == 1
    assert built[0].timeout == 7.5
    assert [r["uri"] for r in built[0].requests] == [f"http://127.0.0.1:9999/2010-04-01/Accounts/{ACCOUNT}/Messages.json"] * 2
    assert built[0].requests[0]["auth"] == (ACCOUNT, "lazy-token")


def test_every_send_names_the_status_callback_when_one_is_configured() -> None:
    http = FakeHttp(created("SM" + "b" * 32, "Hi"))
    gw = TwilioGateway(ACCOUNT, FROM, lambda: "auth-token", "", 10.0, status_callback="https://hook.example/")
    gw._client = Client(ACCOUNT, "auth-token", http_client=http)
    gw.send(TO, "Hi")
    assert http.requests[0]["data"]["StatusCallback"] == "https://hook.example/"


TEMPLATE_SID = "HX" + "c" * 32


def test_find_sent_finds_a_template_part_by_recipient_sender_and_time_whatever_twilio_rendered() -> None:
    # A Content API send: the Message resource holds the rendered text and no Content SID.
    rendered = message_json("SM" + "4" * 32, "Hi Ana, your appointment is tomorrow at 10:00.")
    rendered["direction"] = "outbound-api"
    http = FakeHttp(listing(rendered))
    found = gateway(http).find_sent(TO, f"[template {TEMPLATE_SID}]", since=SENT_AT, template=TEMPLATE_SID)
    assert found == "SM" + "4" * 32


def test_find_sent_for_a_template_skips_recorded_older_and_non_api_messages() -> None:
    older = message_json("SM" + "5" * 32, "Hi Ana", created=SENT_AT - timedelta(seconds=5))
    recorded = message_json("SM" + "6" * 32, "Your order shipped")
    reply = dict(message_json("SM" + "7" * 32, "typed by TwiML"), direction="outbound-reply")
    http = FakeHttp(listing(older, recorded, reply))
    found = gateway(http).find_sent(TO, "[template x]", since=SENT_AT, exclude=frozenset({"SM" + "6" * 32}),
                                    template=TEMPLATE_SID)
    assert found is None

"""The local Cloud Run front end, Pub/Sub push relay and token issuer against a recording upstream.

Real sockets on loopback, real tokens (the issuer's RSA key), no emulators:
what each stand-in lets through, what it refuses with Cloud Run's status,
and exactly what the container receives.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.cloud_run import SIGNATURE_REMOVED, CloudRunFrontEnd, Origin
from devstack.httpserver import Request, Response, StubHandler, StubServer
from devstack.push_relay import USER_AGENT, PushRelay
from devstack.terraform_env import Push, Service
from devstack.token_issuer import TokenIssuer

INVOKER = "wa-tasks-invoker@demo.iam.gserviceaccount.com"
OTHER = "someone@demo.iam.gserviceaccount.com"


class Upstream(StubServer):
    """A container that records each request and answers 200 (or sleeps first)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Request] = []
        self.sleep = 0.0

    def handle(self, request: Request, handler: StubHandler) -> Response:
        self.seen.append(request)
        if self.sleep:
            self.wait_or_stop(self.sleep)
        return Response(200, b"served", {"Content-Type": "text/plain", "X-From-Container": "yes"})


@pytest.fixture
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer() as running:
        yield running


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as running:
        yield running


def _service(url: str = "http://127.0.0.1:1", **changes: Any) -> Service:
    base = Service(key="sender", name="wa-sender", url=url, env={}, ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
                   timeout_seconds=5.0, invokers=frozenset({f"serviceAccount:{INVOKER}"}))
    return replace(base, **changes)


@pytest.fixture
def front(issuer: TokenIssuer, upstream: Upstream) -> Iterator[tuple[CloudRunFrontEnd, Origin]]:
    origin = Origin()
    server = CloudRunFrontEnd(_service(), upstream.port, issuer, origin)
    server.start()
    server.service = _service(server.base_url)  # its URL is known once it listens, as a run.app URL is
    yield server, origin
    server.stop()


def _post(url: str, headers: dict[str, str], body: bytes = b"{}") -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(), dict(error.headers)


def test_a_private_service_gets_the_token_without_its_signature_and_cloud_runs_headers(
    front: tuple[CloudRunFrontEnd, Origin], issuer: TokenIssuer, upstream: Upstream
) -> None:
    server, origin = front
    token = issuer.mint(INVOKER, server.base_url)
    status, body, headers = _post(server.base_url + "/path?caller_key=k%2Fx", {
        "Authorization": f"Bearer {token}", "X-Google-Spoofed": "1", "X-Caller-Key": "key",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", **origin.headers(),
    })
    assert (status, body, headers.get("X-From-Container")) == (200, b"served", "yes")
    (seen,) = upstream.seen
    assert seen.target == "/path?caller_key=k%2Fx", "the query string reaches the container as sent"
    head, payload, signature = seen.headers["authorization"].removeprefix("Bearer ").split(".")
    assert signature == SIGNATURE_REMOVED and f"{head}.{payload}" == token.rsplit(".", 1)[0]
    assert seen.headers["x-caller-key"] == "key"
    assert not [k for k in seen.headers if k.startswith("x-google-")], "X-Google-* never reaches the container"
    assert seen.headers["x-forwarded-for"] == "127.0.0.1" and seen.headers["x-forwarded-proto"] == "http"
    assert seen.headers["forwarded"] == 'for="127.0.0.1";proto=http'
    assert seen.headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert seen.headers["x-cloud-trace-context"].startswith("0af7651916cd43dd8448eb211c80319c/")


def test_x_serverless_authorization_is_checked_and_authorization_passes_untouched(
    front: tuple[CloudRunFrontEnd, Origin], issuer: TokenIssuer, upstream: Upstream
) -> None:
    server, origin = front
    token = issuer.mint(INVOKER, server.base_url)
    status, _, _ = _post(server.base_url, {"X-Serverless-Authorization": f"Bearer {token}",
                                           "Authorization": f"Bearer {token}", **origin.headers()})
    assert status == 200
    seen = upstream.seen[0].headers
    assert seen["x-serverless-authorization"].endswith("." + SIGNATURE_REMOVED)
    assert seen["authorization"] == f"Bearer {token}", "the application's own header keeps its signature"


def _refused(server: CloudRunFrontEnd, upstream: Upstream, headers: dict[str, str], status: int, reason: str) -> None:
    got, _, _ = _post(server.base_url, headers)
    assert got == status
    assert server.refusals[-1].status == status and reason in server.refusals[-1].reason
    assert upstream.seen == [], "a refused request never reaches the container"


def test_ingress_internal_only_answers_404_to_the_outside(
    front: tuple[CloudRunFrontEnd, Origin], issuer: TokenIssuer, upstream: Upstream
) -> None:
    server, _ = front
    token = issuer.mint(INVOKER, server.base_url)
    _refused(server, upstream, {"Authorization": f"Bearer {token}"}, 404, "ingress is internal only")
    _refused(server, upstream, {"Authorization": f"Bearer {token}", "X-Google-Devstack-Origin": "guess"}, 404,
             "ingress")


@pytest.mark.parametrize("case", ["no token", "another key", "wrong audience", "expired", "not an invoker"])
def test_a_caller_without_an_allowed_identity_never_reaches_the_container(
    front: tuple[CloudRunFrontEnd, Origin], issuer: TokenIssuer, upstream: Upstream, case: str
) -> None:
    server, origin = front
    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": "https://accounts.google.com", "aud": server.base_url, "email": INVOKER,
              "email_verified": True, "iat": now, "exp": now + 3600, "sub": "1", "azp": "1"}
    tokens = {
        "no token": None,
        "another key": jwt.encode(claims, forged_key, algorithm="RS256", headers={"kid": issuer.kid}),
        "wrong audience": issuer.mint(INVOKER, "http://127.0.0.1:1"),
        "expired": issuer.mint(INVOKER, server.base_url, now=now - 7200),
        "not an invoker": issuer.mint(OTHER, server.base_url),
    }
    expected = {"no token": (403, "no identity token"), "another key": (401, "not signed by Google"),
                "wrong audience": (401, "audience"), "expired": (401, "expired"),
                "not an invoker": (403, "lacks roles/run.invoker")}[case]
    token = tokens[case]
    headers = {**origin.headers(), **({"Authorization": f"Bearer {token}"} if token else {})}
    _refused(server, upstream, headers, *expected)


def test_a_public_service_lets_anyone_in_and_leaves_authorization_alone(
    front: tuple[CloudRunFrontEnd, Origin], upstream: Upstream
) -> None:
    server, _ = front
    server.service = replace(server.service, ingress="INGRESS_TRAFFIC_ALL", invokers=frozenset({"allUsers"}))
    status, _, _ = _post(server.base_url, {"Authorization": "Bearer a.b.c"})
    assert status == 200 and upstream.seen[0].headers["authorization"] == "Bearer a.b.c"


def test_the_request_timeout_is_a_504_and_a_dead_container_a_503(
    front: tuple[CloudRunFrontEnd, Origin], issuer: TokenIssuer, upstream: Upstream
) -> None:
    server, origin = front
    server.service = replace(server.service, timeout_seconds=0.5)
    upstream.sleep = 3.0
    headers = {"Authorization": f"Bearer {issuer.mint(INVOKER, server.base_url)}", **origin.headers()}
    started = time.monotonic()
    assert _post(server.base_url, headers)[0] == 504
    assert time.monotonic() - started < 2.5
    upstream.stop()
    assert _post(server.base_url, headers)[0] == 503


def test_the_issuer_publishes_its_keys_as_google_does(issuer: TokenIssuer) -> None:
    from google.auth.transport.requests import Request as GoogleRequest
    from google.oauth2 import id_token

    token = issuer.mint(INVOKER, "https://aud.example")
    claims = id_token.verify_token(token, GoogleRequest(), audience="https://aud.example", certs_url=issuer.certs_url)
    assert claims["email"] == INVOKER and claims["email_verified"] is True
    assert claims["iss"] == "https://accounts.google.com" and claims["sub"] == claims["azp"]
    assert claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": issuer.kid, "typ": "JWT"}
    jwks_claims = id_token.verify_token(token, GoogleRequest(), audience="https://aud.example",
                                        certs_url=issuer.base_url + "/oauth2/v3/certs")
    assert jwks_claims == claims


def test_the_relay_adds_the_subscriptions_token_and_returns_the_endpoints_status(
    issuer: TokenIssuer, upstream: Upstream
) -> None:
    origin = Origin()
    with PushRelay(issuer, origin) as relay:
        push = Push("inbound-messages-processor", f"{upstream.base_url}/?caller_key=abc",
                    "wa-pubsub-push@demo.iam.gserviceaccount.com", "https://processor.example")
        endpoint = relay.route(push, 10)
        envelope = json.dumps({"message": {"data": "aGk=", "messageId": "1"}, "subscription": "s"}).encode()
        status, body, _ = _post(endpoint, {"Content-Type": "application/json"}, envelope)
        assert (status, body) == (200, b"served")
        (seen,) = upstream.seen
        assert seen.target == "/?caller_key=abc" and seen.body == envelope
        assert seen.headers["user-agent"] == USER_AGENT
        assert seen.headers["x-google-devstack-origin"] == origin.value
        token = seen.headers["authorization"].removeprefix("Bearer ")
        claims = issuer.verify(token, ("https://processor.example",))
        assert claims["email"] == push.service_account
        upstream.stop()
        assert _post(endpoint, {"Content-Type": "application/json"}, envelope)[0] == 502, "a nack: Pub/Sub redelivers"


def test_the_front_end_serves_concurrent_requests(
    front: tuple[CloudRunFrontEnd, Origin], issuer: TokenIssuer, upstream: Upstream
) -> None:
    server, origin = front
    upstream.sleep = 0.5
    headers = {"Authorization": f"Bearer {issuer.mint(INVOKER, server.base_url)}", **origin.headers()}
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(_post(server.base_url, headers)[0])) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [200] * 4 and time.monotonic() - started < 1.8

"""Sign in with Google, checked server-side: real RS256 ID tokens from the local issuer's key, real google-auth.

The certificate endpoint is a callable serving the issuer's certificates (no
network); the same tokens pass or fail as Google's would.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

import jwt
import pytest

from devstack.token_issuer import TokenIssuer
from shared.adapters.google_signin import GoogleSignIn, SignInRejected, SignInUnavailable, check_double_submit

CLIENT = "123456789012-inbox.apps.googleusercontent.com"


@dataclass
class _Answer:
    status: int
    headers: Mapping[str, str]
    data: bytes


class Certs:
    """Serves an issuer's certificates as Google's v1 certs endpoint does."""

    def __init__(self, issuer: TokenIssuer, status: int = 200) -> None:
        self.issuer, self.status, self.calls = issuer, status, 0

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> _Answer:
        self.calls += 1
        return _Answer(self.status, {"content-type": "application/json"}, json.dumps(self.issuer.certificates()).encode())


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


def verifier(issuer: TokenIssuer, **kwargs: Any) -> GoogleSignIn:
    return GoogleSignIn(CLIENT, "https://www.googleapis.com/oauth2/v1/certs", request=Certs(issuer), **kwargs)


def test_a_google_id_token_for_our_client_signs_in(issuer: TokenIssuer) -> None:
    identity = verifier(issuer).verify(issuer.mint_user("Ana@Panaderia.example", CLIENT, name="Ana"))
    assert identity.email == "ana@panaderia.example" and identity.name == "Ana" and identity.subject.isdigit()


def test_an_expired_token_is_refused(issuer: TokenIssuer) -> None:
    token = issuer.mint_user("ana@panaderia.example", CLIENT, lifetime_seconds=60, now=time.time() - 3600)
    with pytest.raises(SignInRejected, match="expired"):
        verifier(issuer).verify(token)


def test_a_token_for_another_client_is_refused(issuer: TokenIssuer) -> None:
    token = issuer.mint_user("ana@panaderia.example", "999-other.apps.googleusercontent.com")
    with pytest.raises(SignInRejected, match="wrong audience"):
        verifier(issuer).verify(token)


def test_a_token_signed_by_another_key_is_refused(issuer: TokenIssuer) -> None:
    forger = TokenIssuer()
    forger.kid = issuer.kid  # same key id, different key
    with pytest.raises(SignInRejected, match="signature"):
        verifier(issuer).verify(forger.mint_user("ana@panaderia.example", CLIENT))


def test_tampered_claims_are_refused(issuer: TokenIssuer) -> None:
    header, payload, signature = issuer.mint_user("ana@panaderia.example", CLIENT).split(".")
    claims = jwt.decode(issuer.mint_user("boss@panaderia.example", CLIENT), options={"verify_signature": False})
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    with pytest.raises(SignInRejected, match="signature"):
        verifier(issuer).verify(f"{header}.{forged}.{signature}")


def test_unverified_email_or_foreign_issuer_is_refused(issuer: TokenIssuer) -> None:
    private = issuer._key  # the issuer's own key, to sign claims Google would never sign for us
    base = jwt.decode(issuer.mint_user("ana@panaderia.example", CLIENT), options={"verify_signature": False})
    for change, reason in (({"email_verified": False}, "not verified"), ({"iss": "https://evil.example"}, "not issued"),
                           ({"email": ""}, "no e-mail")):
        token = jwt.encode({**base, **change}, private, algorithm="RS256", headers={"kid": issuer.kid})
        with pytest.raises(SignInRejected, match=reason):
            verifier(issuer).verify(token)


def test_garbage_and_missing_configuration_are_refused(issuer: TokenIssuer) -> None:
    with pytest.raises(SignInRejected, match="not an ID token"):
        verifier(issuer).verify("not-a-token")
    with pytest.raises(SignInRejected, match="no credential"):
        verifier(issuer).verify("")
    with pytest.raises(SignInRejected, match="not configured"):
        GoogleSignIn("", request=Certs(issuer)).verify(issuer.mint_user("a@b.example", CLIENT))


def test_unreachable_keys_are_our_problem_not_the_persons(issuer: TokenIssuer) -> None:
    def down(url: str, **kwargs: Any) -> Any:
        from google.auth.exceptions import TransportError

        raise TransportError("connection refused")

    with pytest.raises(SignInUnavailable):
        GoogleSignIn(CLIENT, request=down).verify(issuer.mint_user("a@b.example", CLIENT))


def test_the_double_submit_check() -> None:
    check_double_submit("abc123", "abc123")
    for body, cookie in (("abc", None), (None, "abc"), ("abc", "abd"), ("", "")):
        with pytest.raises(SignInRejected, match="CSRF"):
            check_double_submit(body, cookie)

"""The in-code caller check: real RS256 tokens, real google-auth, no network.

Tokens are signed with a key made here; the certificate endpoint is a fake
request callable that serves this key's self-signed x509 certificate, the same
shape as Google's ``{kid: PEM}`` document.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shared.adapters.google_auth import (
    PROOF_CALLER_KEY,
    SIGNATURE_REMOVED,
    CallerKeyCheck,
    CallerRejected,
    CallerVerifier,
    CertsCache,
    SigningKeysUnavailable,
    build_verifier,
)
from shared.config import GOOGLE_CERTS_URL as GOOGLE_CERTS
from shared.config import ConfigError, Settings

AUDIENCE = "https://processor-123456789012.us-central1.run.app"
PUSH_SA = "pubsub-push@demo-project.iam.gserviceaccount.com"
KID = "test-key-1"


@dataclass
class KeyPair:
    private_pem: bytes
    cert_pem: str


def _make_key(common_name: str) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return KeyPair(
        private_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
    )


@pytest.fixture(scope="module")
def google_key() -> KeyPair:
    return _make_key("google-test")


@pytest.fixture(scope="module")
def other_key() -> KeyPair:
    return _make_key("someone-else")


@dataclass
class FakeResponse:
    status: int
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class FakeCertsEndpoint:
    """Stands in for google.auth.transport.requests.Request; records every fetch."""

    certs: Mapping[str, str]
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> FakeResponse:
        self.calls.append(url)
        return FakeResponse(self.status, json.dumps(dict(self.certs)).encode(), dict(self.headers))


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "113774264463038321964",
        "sub": "113774264463038321964",
        "email": PUSH_SA,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _token(key: KeyPair, kid: str = KID, **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), key.private_pem, algorithm="RS256", headers={"kid": kid})


def _verifier(google_key: KeyPair, **kwargs: Any) -> tuple[CallerVerifier, FakeCertsEndpoint]:
    endpoint = FakeCertsEndpoint({KID: google_key.cert_pem})
    verifier = CallerVerifier(
        audience=AUDIENCE,
        allowed_emails=(PUSH_SA,),
        request=CertsCache(endpoint),
        **kwargs,
    )
    return verifier, endpoint


def _reason(verifier: CallerVerifier, header: str | None) -> str:
    with pytest.raises(CallerRejected) as caught:
        verifier.verify(header)
    return caught.value.reason


def test_valid_token_returns_the_caller_email(google_key: KeyPair) -> None:
    verifier, endpoint = _verifier(google_key)
    assert verifier.verify(f"Bearer {_token(google_key)}") == PUSH_SA
    assert endpoint.calls == [GOOGLE_CERTS]


def test_scheme_is_case_insensitive_and_short_issuer_is_accepted(google_key: KeyPair) -> None:
    verifier, _ = _verifier(google_key)
    token = _token(google_key, iss="accounts.google.com")
    assert verifier.verify(f"bearer {token}") == PUSH_SA


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header_is_rejected(google_key: KeyPair, header: str | None) -> None:
    verifier, endpoint = _verifier(google_key)
    assert _reason(verifier, header) == "missing Authorization header"
    assert endpoint.calls == []


def test_non_bearer_scheme_is_rejected(google_key: KeyPair) -> None:
    verifier, _ = _verifier(google_key)
    assert _reason(verifier, f"Basic {_token(google_key)}") == "Authorization header is not a Bearer token"
    assert _reason(verifier, "Bearer ") == "empty Bearer token"


@pytest.mark.parametrize("garbage", ["abc", "a.b.c", "e30.e30", "Zm9v.YmFy.YmF6"])
def test_garbage_token_is_rejected(google_key: KeyPair, garbage: str) -> None:
    verifier, _ = _verifier(google_key)
    assert _reason(verifier, f"Bearer {garbage}") == "malformed token"


def test_expired_token_is_rejected(google_key: KeyPair) -> None:
    verifier, _ = _verifier(google_key)
    past = int(time.time()) - 7200
    assert _reason(verifier, f"Bearer {_token(google_key, iat=past, exp=past + 3600)}") == "token expired"


def test_token_from_the_future_is_rejected(google_key: KeyPair) -> None:
    verifier, _ = _verifier(google_key)
    future = int(time.time()) + 600
    assert _reason(verifier, f"Bearer {_token(google_key, iat=future, exp=future + 3600)}") == "token not valid yet"


def test_wrong_audience_is_rejected(google_key: KeyPair) -> None:
    verifier, _ = _verifier(google_key)
    token = _token(google_key, aud="https://sender-123456789012.us-central1.run.app")
    assert _reason(verifier, f"Bearer {token}") == "token audience does not match this service"


def test_email_not_in_allow_list_is_rejected(google_key: KeyPair) -> None:
    verifier, _ = _verifier(google_key)
    token = _token(google_key, email="intruder@other-project.iam.gserviceaccount.com")
    assert _reason(verifier, f"Bearer {token}") == "caller is not an allowed service account"


def test_missing_email_is_rejected(google_key: KeyPair) -> None:
    verifier, _ = _verifier(google_key)
    token = _token(google_key, email=None)
    assert _reason(verifier, f"Bearer {token}") == "token has no email claim"


@pytest.mark.parametrize("value", [False, "true", None])
def test_unverified_email_is_rejected(google_key: KeyPair, value: Any) -> None:
    verifier, _ = _verifier(google_key)
    token = _token(google_key, email_verified=value)
    assert _reason(verifier, f"Bearer {token}") == "token email is not verified"


def test_non_google_issuer_is_rejected(google_key: KeyPair) -> None:
    verifier, _ = _verifier(google_key)
    token = _token(google_key, iss="https://evil.example.com")
    assert _reason(verifier, f"Bearer {token}") == "token not issued by Google"


def test_token_signed_with_another_key_is_rejected(google_key: KeyPair, other_key: KeyPair) -> None:
    verifier, _ = _verifier(google_key)
    assert _reason(verifier, f"Bearer {_token(other_key)}") == "token signature does not match Google's keys"


def test_token_with_unknown_key_id_is_rejected(google_key: KeyPair) -> None:
    verifier, _ = _verifier(google_key)
    token = _token(google_key, kid="rotated-away")
    assert _reason(verifier, f"Bearer {token}") == "token signature does not match Google's keys"


def test_allow_list_ignores_email_case(google_key: KeyPair) -> None:
    endpoint = FakeCertsEndpoint({KID: google_key.cert_pem})
    verifier = CallerVerifier(AUDIENCE, (PUSH_SA.upper(),), request=CertsCache(endpoint))
    assert verifier.verify(f"Bearer {_token(google_key)}") == PUSH_SA


def test_unreachable_certificates_are_not_blamed_on_the_caller(google_key: KeyPair) -> None:
    endpoint = FakeCertsEndpoint({}, status=503)
    verifier = CallerVerifier(AUDIENCE, (PUSH_SA,), request=CertsCache(endpoint))
    with pytest.raises(SigningKeysUnavailable) as caught:
        verifier.verify(f"Bearer {_token(google_key)}")
    assert caught.value.reason == "could not fetch Google's signing keys"


def test_certificates_are_fetched_once_and_refreshed_after_max_age(google_key: KeyPair) -> None:
    now = [1000.0]
    endpoint = FakeCertsEndpoint({KID: google_key.cert_pem}, headers={"Cache-Control": "public, max-age=600"})
    verifier = CallerVerifier(AUDIENCE, (PUSH_SA,), request=CertsCache(endpoint, clock=lambda: now[0]))
    header = f"Bearer {_token(google_key)}"
    for _ in range(3):
        assert verifier.verify(header) == PUSH_SA
    assert len(endpoint.calls) == 1
    now[0] += 601
    assert verifier.verify(header) == PUSH_SA
    assert len(endpoint.calls) == 2


def test_certificate_cache_is_capped_and_skips_failures() -> None:
    now = [0.0]
    endpoint = FakeCertsEndpoint({"k": "v"}, headers={"cache-control": "max-age=86400"})
    cache = CertsCache(endpoint, clock=lambda: now[0], max_ttl=3600)
    cache("https://certs.example/")
    now[0] = 3599
    cache("https://certs.example/")
    assert len(endpoint.calls) == 1
    now[0] = 3601
    cache("https://certs.example/")
    assert len(endpoint.calls) == 2
    endpoint.status = 500
    now[0] = 10_000
    assert cache("https://certs.example/").status == 500
    assert cache("https://certs.example/").status == 500
    assert len(endpoint.calls) == 4


def _no_secrets() -> Any:
    raise AssertionError("the signed-token proof reads no secret")


def test_build_verifier_is_off_without_audience(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.adapters.google_auth"):
        assert build_verifier(Settings.from_env({}), _no_secrets) is None
    records = [r for r in caplog.records if r.name == "shared.adapters.google_auth"]
    assert [r.getMessage() for r in records] == ["caller verification is off"]
    assert records[0].levelno == logging.WARNING


def test_build_verifier_uses_settings(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env(
        {
            "AUTH_AUDIENCE": AUDIENCE,
            "AUTH_ALLOWED_SERVICE_ACCOUNTS": f" {PUSH_SA.upper()} , other@x.iam.gserviceaccount.com",
            "CALLER_PROOF": "signed-token",
        }
    )
    with caplog.at_level(logging.WARNING, logger="shared.adapters.google_auth"):
        verifier = build_verifier(settings, _no_secrets)
    assert verifier == CallerVerifier(AUDIENCE, (PUSH_SA, "other@x.iam.gserviceaccount.com"))
    assert verifier.certs_url == GOOGLE_CERTS
    assert not [r for r in caplog.records if r.name == "shared.adapters.google_auth"]


def test_build_verifier_refuses_a_caller_key_service_without_callers() -> None:
    settings = Settings.from_env({"AUTH_AUDIENCE": AUDIENCE, "CALLER_PROOF": "caller-key"})
    with pytest.raises(ConfigError, match="AUTH_ALLOWED_SERVICE_ACCOUNTS"):
        build_verifier(settings, lambda: KeySecrets("k"))


def test_an_audience_without_a_proof_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="CALLER_PROOF"):
        Settings.from_env({"AUTH_AUDIENCE": AUDIENCE, "AUTH_ALLOWED_SERVICE_ACCOUNTS": PUSH_SA})
    with pytest.raises(ConfigError, match="CALLER_PROOF"):
        Settings.from_env({"AUTH_AUDIENCE": AUDIENCE, "CALLER_PROOF": "trust-me"})


def test_nobody_allowed_refuses_every_caller_instead_of_failing(
    google_key: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    """The outbound API's default (outbound_allowed_service_accounts = []): a 403 for all, not a 500."""
    settings = Settings.from_env({"AUTH_AUDIENCE": AUDIENCE, "CALLER_PROOF": "signed-token"})
    with caplog.at_level(logging.WARNING, logger="shared.adapters.google_auth"):
        verifier = build_verifier(settings, _no_secrets)
    assert verifier is not None
    assert "no caller is allowed" in caplog.text
    endpoint = FakeCertsEndpoint({KID: google_key.cert_pem})
    verifier = CallerVerifier(AUDIENCE, (), request=CertsCache(endpoint))
    assert _reason(verifier, f"Bearer {_token(google_key)}") == (
        "no caller is allowed (AUTH_ALLOWED_SERVICE_ACCOUNTS is empty)"
    )


# --------------------------------------------- behind Cloud Run: the caller key


@dataclass
class KeySecrets:
    """The caller key as Secret Manager serves it, with a rotation to come."""

    current: str
    after_refresh: str | None = None
    replaced: str | None = None
    refreshes: int = 0

    def caller_key(self) -> str:
        return self.current

    def refresh(self, name: str) -> bool:
        assert name == "CALLER_KEY"
        self.refreshes += 1
        if self.after_refresh is None or self.after_refresh == self.current:
            return False
        self.replaced, self.current = self.current, self.after_refresh
        return True

    def previous(self, name: str) -> str | None:
        return self.replaced


def forwarded(token: str) -> str:
    """The token as Cloud Run hands it to the container: the signature part replaced."""
    header, payload, _ = token.split(".")
    return f"Bearer {header}.{payload}.{SIGNATURE_REMOVED}"


def _key_verifier(google_key: KeyPair, secrets: KeySecrets) -> tuple[CallerVerifier, FakeCertsEndpoint]:
    endpoint = FakeCertsEndpoint({KID: google_key.cert_pem})
    verifier = CallerVerifier(
        AUDIENCE, (PUSH_SA,), proof=PROOF_CALLER_KEY, key=CallerKeyCheck(secrets), request=CertsCache(endpoint)
    )
    return verifier, endpoint


def test_a_push_as_cloud_run_forwards_it_is_accepted_with_the_key(google_key: KeyPair) -> None:
    verifier, endpoint = _key_verifier(google_key, KeySecrets("push-key"))
    assert verifier.verify(forwarded(_token(google_key)), "push-key") == PUSH_SA
    assert endpoint.calls == [], "a forwarded token has no signature to check"


def test_a_forwarded_token_without_the_key_proves_nothing(google_key: KeyPair, other_key: KeyPair) -> None:
    """Anyone can write header.payload.SIGNATURE_REMOVED_BY_GOOGLE with our claims: the key is what counts."""
    secrets = KeySecrets("push-key")
    verifier, _ = _key_verifier(google_key, secrets)
    forged = forwarded(_token(other_key))
    with pytest.raises(CallerRejected) as missing:
        verifier.verify(forged, None)
    assert missing.value.reason == "request carries no caller key"
    with pytest.raises(CallerRejected) as wrong:
        verifier.verify(forged, "push-kez")
    assert wrong.value.reason == "caller key does not match"


def test_the_key_does_not_excuse_wrong_claims(google_key: KeyPair) -> None:
    verifier, _ = _key_verifier(google_key, KeySecrets("k"))
    past = int(time.time()) - 7200
    cases = {
        "token audience does not match this service": _token(google_key, aud="https://elsewhere.run.app"),
        "caller is not an allowed service account": _token(google_key, email="other@p.iam.gserviceaccount.com"),
        "token expired": _token(google_key, iat=past, exp=past + 3600),
        "token not issued by Google": _token(google_key, iss="https://evil.example.com"),
    }
    for reason, token in cases.items():
        with pytest.raises(CallerRejected) as caught:
            verifier.verify(forwarded(token), "k")
        assert caught.value.reason == reason


def test_a_signed_token_is_still_verified_in_caller_key_mode(google_key: KeyPair, other_key: KeyPair) -> None:
    """A token that kept its signature did not pass Cloud Run's check: its signature must hold."""
    verifier, _ = _key_verifier(google_key, KeySecrets("k"))
    assert verifier.verify(f"Bearer {_token(google_key)}", "k") == PUSH_SA
    with pytest.raises(CallerRejected) as caught:
        verifier.verify(f"Bearer {_token(other_key)}", "k")
    assert caught.value.reason == "token signature does not match Google's keys"


def test_a_rotated_key_is_read_again_and_the_old_one_kept_for_the_overlap(google_key: KeyPair) -> None:
    secrets = KeySecrets("old", after_refresh="new")
    verifier, _ = _key_verifier(google_key, secrets)
    token = forwarded(_token(google_key))
    assert verifier.verify(token, "new") == PUSH_SA  # a task made after the rotation
    assert secrets.refreshes == 1
    assert verifier.verify(token, "old") == PUSH_SA  # one queued before it
    assert verifier.verify(token, "new") == PUSH_SA
    assert secrets.refreshes == 1


def test_signed_token_proof_refuses_a_token_cloud_run_has_stripped(google_key: KeyPair) -> None:
    """The outbound API: business systems send the token in X-Serverless-Authorization too."""
    verifier, _ = _verifier(google_key)
    reason = _reason(verifier, forwarded(_token(google_key)))
    assert reason.startswith("token signature was removed by Cloud Run") and "X-Serverless-Authorization" in reason

"""Check in code that a request really reached us through Google, from the identity we expect.

Cloud Run checks a private service's caller itself (a Google-signed ID token
and ``roles/run.invoker``) and then forwards ``Authorization`` to the container
with the token's signature replaced by ``SIGNATURE_REMOVED_BY_GOOGLE``. The
claims are still there, but nothing in them can be proven any more: anyone
who reaches the container directly (a service made public by mistake, ingress
widened) can write the same header. So each service needs a second proof
(``CALLER_PROOF``, docs/decisions/0003-caller-verification.md):

* ``caller-key``: Pub/Sub push (a query parameter of the push endpoint), Cloud
  Tasks (a task header) and Cloud Scheduler (a job header) carry a key from
  Secret Manager, compared in constant time. The processor, sender and
  reconciler use it.
* ``signed-token``: the caller sends its ID token in ``X-Serverless-Authorization``
  too, which Cloud Run checks instead, and then ``Authorization`` arrives
  untouched, so its signature is verified here against Google's keys. The
  outbound API uses it: business systems cannot know our key.

Either way the token's claims (issuer, audience, verified email in the allow
list, not expired) must match, so a wrong push identity, a project-wide
invoker grant or a token for another service is refused with its own reason.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from google.auth import exceptions as auth_exceptions

# CertsCache is imported from here by its users and tests too.
from shared.adapters.google_certs import CERTS_FETCH_TIMEOUT_SECONDS, CertsCache, _default_request  # noqa: F401
from shared.adapters.secret_manager import CALLER_KEY, Secrets
from shared.config import GOOGLE_CERTS_URL, ConfigError, Settings

logger = logging.getLogger("shared.adapters.google_auth")

GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
PROOF_CALLER_KEY = "caller-key"
PROOF_SIGNED_TOKEN = "signed-token"
# Where Cloud Tasks and Cloud Scheduler carry the key, and Pub/Sub push (which
# cannot send headers) in the push endpoint's query string.
CALLER_KEY_HEADER = "X-Caller-Key"
CALLER_KEY_PARAMETER = "caller_key"
# Cloud Run instances and Google's token service are NTP-synced; a few seconds
# of slack avoids rejecting a token minted in the same second it arrives.
CLOCK_SKEW_SECONDS = 10


class CallerRejected(Exception):
    """The request must not be served; ``reason`` is safe to log and to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SigningKeysUnavailable(CallerRejected):
    """Google's public keys could not be fetched: our problem, not the caller's (answered 503)."""


class CallerKeyCheck:
    """The caller key, compared in constant time; a key rotated since it was read is picked up.

    A key that does not match makes the process re-read the secret (at most once
    per SECRET_REFRESH_INTERVAL_SECONDS), and the replaced value stays accepted
    for SECRET_OVERLAP_SECONDS, so tasks created before a rotation still pass.
    """

    def __init__(self, secrets: Secrets) -> None:
        self._secrets = secrets

    def check(self, presented: str | None) -> None:
        if not presented:
            raise CallerRejected("request carries no caller key")
        if self._matches(presented):
            return
        if self._secrets.refresh(CALLER_KEY) and self._matches(presented):
            return
        raise CallerRejected("caller key does not match")

    def _matches(self, presented: str) -> bool:
        given = presented.encode()
        matched = hmac.compare_digest(given, self._secrets.caller_key().encode())
        previous = self._secrets.previous(CALLER_KEY)
        if previous is not None:
            matched |= hmac.compare_digest(given, previous.encode())
        return matched


def _bearer_token(authorization_header: str | None) -> str:
    if not authorization_header or not authorization_header.strip():
        raise CallerRejected("missing Authorization header")
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise CallerRejected("Authorization header is not a Bearer token")
    token = token.strip()
    if not token:
        raise CallerRejected("empty Bearer token")
    return token


def _claims_of(token: str) -> tuple[dict[str, Any], str]:
    """The payload of a JWT, unverified, and its signature part."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise CallerRejected("malformed token")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CallerRejected("malformed token") from None
    if not isinstance(payload, dict):
        raise CallerRejected("malformed token")
    return payload, parts[2]


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    try:
        exp, iat = float(claims["exp"]), float(claims["iat"])
    except KeyError:
        raise CallerRejected("token lacks iat/exp claims") from None
    except (TypeError, ValueError):
        raise CallerRejected("token has unusable iat/exp claims") from None
    if exp + CLOCK_SKEW_SECONDS < now:
        raise CallerRejected("token expired")
    if iat - CLOCK_SKEW_SECONDS > now:
        raise CallerRejected("token not valid yet")


@dataclass(frozen=True)
class CallerVerifier:
    """Accepts a request only from our callers, through Google, for this service."""

    audience: str
    allowed_emails: tuple[str, ...]
    proof: str = PROOF_SIGNED_TOKEN
    key: CallerKeyCheck | None = field(default=None, compare=False, repr=False)
    certs_url: str = GOOGLE_CERTS_URL
    request: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    def verify(self, authorization_header: str | None, caller_key: str | None = None) -> str:
        """Return the caller's service-account email, or raise CallerRejected with the reason."""
        if not self.allowed_emails:
            raise CallerRejected("no caller is allowed (AUTH_ALLOWED_SERVICE_ACCOUNTS is empty)")
        if self.proof == PROOF_CALLER_KEY:
            assert self.key is not None, "caller-key proof without a key"
            self.key.check(caller_key)
        token = _bearer_token(authorization_header)
        claims, signature = _claims_of(token)
        if signature == SIGNATURE_REMOVED:
            if self.proof == PROOF_SIGNED_TOKEN:
                raise CallerRejected(
                    "token signature was removed by Cloud Run: send the ID token in both "
                    "X-Serverless-Authorization and Authorization"
                )
            _check_times(claims, time.time())
        else:
            claims = self._verified(token, claims)
        return self._caller(claims)

    def _verified(self, token: str, unverified: Mapping[str, Any]) -> Mapping[str, Any]:
        # Only the outbound API's signed-token proof checks a signature: the caller-key services never load it.
        from google.oauth2 import id_token

        request = self.request if self.request is not None else _default_request()
        try:
            return id_token.verify_token(
                token, request, audience=None,  # checked in _caller, so a wrong audience gets its own reason
                certs_url=self.certs_url, clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
            )
        except auth_exceptions.TransportError:
            raise SigningKeysUnavailable("could not fetch Google's signing keys") from None
        except (ValueError, TypeError, auth_exceptions.GoogleAuthError):
            _check_times(unverified, time.time())
            raise CallerRejected("token signature does not match Google's keys") from None

    def _caller(self, claims: Mapping[str, Any]) -> str:
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise CallerRejected("token not issued by Google")
        if claims.get("aud") != self.audience:
            raise CallerRejected("token audience does not match this service")
        if claims.get("email_verified") is not True:
            raise CallerRejected("token email is not verified")
        email = str(claims.get("email") or "").lower()
        if not email:
            raise CallerRejected("token has no email claim")
        if email not in {allowed.lower() for allowed in self.allowed_emails}:
            raise CallerRejected("caller is not an allowed service account")
        return email


def build_verifier(settings: Settings, secrets: Callable[[], Secrets]) -> CallerVerifier | None:
    """The verifier for this service, or None when AUTH_AUDIENCE is empty (a function run by hand).

    Call it once at start-up: when verification is off it says so in one
    warning line, so a cloud deployment missing AUTH_AUDIENCE is visible in
    logs. ``secrets`` is only called for the caller-key proof.
    """
    if not settings.auth_audience:
        logger.warning("caller verification is off")
        return None
    if settings.caller_proof == PROOF_CALLER_KEY:
        if not settings.auth_allowed_service_accounts:
            raise ConfigError("AUTH_ALLOWED_SERVICE_ACCOUNTS must name the Google identities that call this service")
        key: CallerKeyCheck | None = CallerKeyCheck(secrets())
    else:
        key = None
        if not settings.auth_allowed_service_accounts:
            # The outbound API's default: nobody may call it, and every request is refused with 403.
            logger.warning("no caller is allowed: AUTH_ALLOWED_SERVICE_ACCOUNTS is empty")
    return CallerVerifier(
        audience=settings.auth_audience,
        allowed_emails=tuple(email.lower() for email in settings.auth_allowed_service_accounts),
        proof=settings.caller_proof,
        key=key,
        certs_url=settings.auth_certs_url,
    )

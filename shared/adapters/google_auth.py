"""Check in code that a request really comes from the Google identity we expect.

Cloud Run already refuses callers without ``roles/run.invoker``; this second
check (defence in depth) keeps processor_fn and sender_fn safe if an IAM
binding is ever widened by mistake, because the token must also carry our
audience and one of the few service-account emails we name.

Pub/Sub push and Cloud Tasks both send a Google-signed OIDC token in
``Authorization: Bearer ...``. google-auth checks the signature, ``iat`` and
``exp``; the claims that matter to us (issuer, audience, email,
email_verified) are checked here so that each rejection has a clear reason.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from google.auth import exceptions as auth_exceptions
from google.auth import jwt as google_jwt
from google.auth import transport
from google.oauth2 import id_token

from shared.config import ConfigError, Settings

logger = logging.getLogger("shared.adapters.google_auth")

GOOGLE_CERTS = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
# Cloud Run instances and Google's token service are NTP-synced; a few seconds
# of slack avoids rejecting a token minted in the same second it arrives.
CLOCK_SKEW_SECONDS = 10
CERTS_FETCH_TIMEOUT_SECONDS = 5.0
_DEFAULT_CERTS_TTL_SECONDS = 300.0
_MAX_CERTS_TTL_SECONDS = 3600.0
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)", re.IGNORECASE)


class CallerRejected(Exception):
    """The request must not be served; ``reason`` is safe to log and to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SigningKeysUnavailable(CallerRejected):
    """Google's public keys could not be fetched: our problem, not the caller's.

    A subclass so a handler may answer 503 instead of 403; either way Pub/Sub
    and Cloud Tasks retry the delivery.
    """


@dataclass(frozen=True)
class _CachedResponse(transport.Response):
    """A certificate response kept in memory; google-auth only reads these three."""

    _status: int
    _headers: Mapping[str, str]
    _data: bytes

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class CertsCache:
    """A ``google.auth.transport.Request`` that remembers GET responses for a while.

    ``id_token.verify_token`` downloads Google's certificates on every call;
    Google serves them with ``Cache-Control: max-age`` of hours and rotates
    keys with overlap, so honouring max-age (capped at an hour) saves one HTTPS
    round trip per request without risking a stale key for long.
    """

    def __init__(
        self,
        inner: Callable[..., Any],
        clock: Callable[[], float] = time.monotonic,
        default_ttl: float = _DEFAULT_CERTS_TTL_SECONDS,
        max_ttl: float = _MAX_CERTS_TTL_SECONDS,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._default_ttl = default_ttl
        self._max_ttl = max_ttl
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, _CachedResponse]] = {}

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> transport.Response:
        if method.upper() != "GET":
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        now = self._clock()
        with self._lock:
            cached = self._entries.get(url)
            if cached is not None and cached[0] > now:
                return cached[1]
        response = self._inner(
            url,
            method="GET",
            headers=headers,
            timeout=timeout if timeout is not None else CERTS_FETCH_TIMEOUT_SECONDS,
            **kwargs,
        )
        if response.status != 200:
            return response
        kept = _CachedResponse(response.status, dict(response.headers or {}), bytes(response.data))
        with self._lock:
            self._entries[url] = (now + self._ttl(kept.headers), kept)
        return kept

    def _ttl(self, headers: Mapping[str, str]) -> float:
        cache_control = next((v for k, v in headers.items() if k.lower() == "cache-control"), "")
        match = _MAX_AGE.search(cache_control)
        if not match:
            return self._default_ttl
        return min(float(match.group(1)), self._max_ttl)


_shared_request: CertsCache | None = None
_shared_lock = threading.Lock()


def _default_request() -> CertsCache:
    """One pooled HTTPS session and one certificate cache per process, made on first use."""
    global _shared_request
    with _shared_lock:
        if _shared_request is None:
            import requests
            from google.auth.transport.requests import Request

            _shared_request = CertsCache(Request(session=requests.Session()))
        return _shared_request


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


@dataclass(frozen=True)
class CallerVerifier:
    """Accepts a request only with a valid Google OIDC token for our audience and callers."""

    audience: str
    allowed_emails: tuple[str, ...]
    certs_url: str = GOOGLE_CERTS
    request: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    def verify(self, authorization_header: str | None) -> str:
        """Return the caller's service-account email, or raise CallerRejected."""
        token = _bearer_token(authorization_header)
        try:
            unverified: Mapping[str, Any] = google_jwt.decode(token, verify=False)
        except (ValueError, TypeError, auth_exceptions.GoogleAuthError):
            raise CallerRejected("malformed token") from None

        request = self.request if self.request is not None else _default_request()
        try:
            claims = id_token.verify_token(
                token,
                request,
                audience=None,  # checked below, so a wrong audience gets its own reason
                certs_url=self.certs_url,
                clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
            )
        except auth_exceptions.TransportError:
            raise SigningKeysUnavailable("could not fetch Google's signing keys") from None
        except (ValueError, TypeError, auth_exceptions.GoogleAuthError):
            raise CallerRejected(_why_invalid(unverified)) from None

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


def _why_invalid(unverified: Mapping[str, Any]) -> str:
    """Name the failure google-auth found, from the claims it refused to trust."""
    now = time.time()
    try:
        exp = float(unverified.get("exp", 0))
        iat = float(unverified.get("iat", 0))
    except (TypeError, ValueError):
        return "token has unusable iat/exp claims"
    if "exp" not in unverified or "iat" not in unverified:
        return "token lacks iat/exp claims"
    if exp + CLOCK_SKEW_SECONDS < now:
        return "token expired"
    if iat - CLOCK_SKEW_SECONDS > now:
        return "token not valid yet"
    return "token signature does not match Google's keys"


def build_verifier(settings: Settings) -> CallerVerifier | None:
    """The verifier for this service, or None when AUTH_AUDIENCE is empty (local dev).

    Call it once at start-up: when verification is off it says so in one
    warning line, so a cloud deployment missing AUTH_AUDIENCE is visible in logs.
    """
    if not settings.auth_audience:
        logger.warning("caller verification is off")
        return None
    if not settings.auth_allowed_service_accounts:
        raise ConfigError(
            "AUTH_ALLOWED_SERVICE_ACCOUNTS must name at least one service account when AUTH_AUDIENCE is set"
        )
    return CallerVerifier(
        audience=settings.auth_audience,
        allowed_emails=tuple(email.lower() for email in settings.auth_allowed_service_accounts),
    )

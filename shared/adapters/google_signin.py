"""Sign in with Google, checked on our side: the ID token Google posts to the inbox's sign-in URL.

Google Identity Services (the button on the inbox's page, ``ux_mode:
"redirect"``) sends the person to Google and Google POSTs to our
``login_uri`` two form fields: ``credential``, an ID token (a JWT signed
with Google's keys, for our OAuth client), and ``g_csrf_token``, which must
equal the ``g_csrf_token`` cookie (the double-submit check Google's
"Verify the Google ID token on your server side" prescribes). The token is
then verified with google-auth against Google's published certificates
(``AUTH_CERTS_URL``; the local stack's token issuer locally): signature,
issuer ``accounts.google.com``, audience our client id, not expired, and a
verified e-mail. Each refusal has its own reason, which is logged and shown.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from google.auth import exceptions as auth_exceptions
from google.oauth2 import id_token

from shared.adapters.google_auth import CLOCK_SKEW_SECONDS, GOOGLE_ISSUERS
from shared.adapters.google_certs import _default_request
from shared.config import GOOGLE_CERTS_URL

CSRF_FIELD = "g_csrf_token"
CREDENTIAL_FIELD = "credential"


class SignInRejected(Exception):
    """The sign-in must not open a session; ``reason`` is safe to log and to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SignInUnavailable(SignInRejected):
    """Google's certificates could not be fetched: our problem, not the person's (answered 503)."""


@dataclass(frozen=True)
class Identity:
    """Who signed in: Google's stable subject id and the verified e-mail (lower case)."""

    subject: str
    email: str
    name: str = ""


def _unverified_claims(token: str) -> Mapping[str, Any]:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise SignInRejected("the credential is not an ID token")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise SignInRejected("the credential is not an ID token") from None
    if not isinstance(claims, dict):
        raise SignInRejected("the credential is not an ID token")
    return claims


def check_double_submit(body_token: str | None, cookie_token: str | None) -> None:
    """Both CSRF values present and equal, compared in constant time."""
    if not body_token or not cookie_token:
        raise SignInRejected("the sign-in carries no CSRF token (g_csrf_token cookie and field)")
    if not hmac.compare_digest(body_token.encode(), cookie_token.encode()):
        raise SignInRejected("the sign-in's CSRF token does not match its cookie")


@dataclass(frozen=True)
class GoogleSignIn:
    """Verifies the ID tokens of one OAuth client (``client_id``: the token's audience)."""

    client_id: str
    certs_url: str = GOOGLE_CERTS_URL
    request: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def verify(self, credential: str) -> Identity:
        if not self.client_id:
            raise SignInRejected("sign-in is not configured (INBOX_OAUTH_CLIENT_ID is empty)")
        if not credential:
            raise SignInRejected("the sign-in carries no credential")
        unverified = _unverified_claims(credential)
        try:
            # The audience is checked below, so a token for another client gets its own reason.
            claims = id_token.verify_token(credential, self._request(), audience=None, certs_url=self.certs_url,
                                           clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
        except auth_exceptions.TransportError:
            raise SignInUnavailable("could not fetch Google's signing keys") from None
        except (ValueError, TypeError, auth_exceptions.GoogleAuthError):
            raise SignInRejected(self._why(unverified)) from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise SignInRejected("the ID token was not issued by Google")
        if claims.get("aud") != self.client_id:
            raise SignInRejected("the ID token is for another application (wrong audience)")
        email = str(claims.get("email") or "").strip().lower()
        if not email:
            raise SignInRejected("the ID token has no e-mail")
        if claims.get("email_verified") is not True:
            raise SignInRejected("the Google account's e-mail is not verified")
        return Identity(subject=str(claims.get("sub", "")), email=email, name=str(claims.get("name", ""))[:200])

    def _why(self, claims: Mapping[str, Any]) -> str:
        now = self.clock()
        try:
            if float(claims["exp"]) + CLOCK_SKEW_SECONDS < now:
                return "the ID token has expired: sign in again"
            if float(claims.get("iat", 0)) - CLOCK_SKEW_SECONDS > now:
                return "the ID token is not valid yet"
        except (KeyError, TypeError, ValueError):
            return "the ID token lacks its times"
        return "the ID token's signature does not match Google's keys"

    def _request(self) -> Callable[..., Any]:
        # The process's one certificate cache, shared with the caller check.
        return self.request if self.request is not None else _default_request()

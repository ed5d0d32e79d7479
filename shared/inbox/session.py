"""The inbox's sessions: Flask's signed cookie, with a key from Secret Manager, that ends.

After a verified sign-in the session cookie holds the person's e-mail, when
they signed in and a CSRF token, signed (HMAC, itsdangerous through Flask)
with ``inbox-session-key``. The server decides everything on each request:

* a session lasts ``INBOX_SESSION_SECONDS`` from sign-in, whatever the
  browser does with the cookie (the signed timestamp and the sign-in time
  are both checked here), and is never extended by use;
* the cookie is ``HttpOnly``, ``SameSite=Strict``, and ``Secure`` with the
  ``__Host-`` prefix whenever the inbox is served over https (the cloud);
* state-changing requests carry the session's CSRF token in a header and,
  when the browser says where they come from, come from the inbox's origin;
* what the person may see is recomputed from the current profiles on every
  request, so removing someone from ``staff:`` takes effect within the
  profile cache time, not at the end of their session.

Key rotation: a cookie that fails its signature makes the process re-read
the key (at most once per SECRET_REFRESH_INTERVAL_SECONDS), and the key it
replaces keeps verifying for SECRET_OVERLAP_SECONDS, so a rotation signs
nobody out. Signing out clears the cookie; a copy of it stays valid until it
expires, which is why sessions are short (docs/decisions/0021-inbox-sign-in.md).
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import timedelta
from typing import Any, Callable, Mapping

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer

CSRF_HEADER = "X-CSRF-Token"
SECURE_COOKIE = "__Host-inbox-session"
LOCAL_COOKIE = "inbox-session"


class RotatingKeySessions(SecureCookieSessionInterface):
    """Flask's cookie sessions, signed with the current key and verified with the previous one too.

    ``keys`` returns the keys oldest first (the last signs); ``refresh`` asks
    for the key to be re-read and says whether it changed.
    """

    def __init__(self, keys: Callable[[], list[str]], refresh: Callable[[], bool],
                 clock: Callable[[], float] = time.time) -> None:
        self._keys = keys
        self._refresh = refresh
        self._clock = clock

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(
            self._keys(),  # type: ignore[arg-type]
            salt=self.salt,
            serializer=self.serializer,
            signer_kwargs={"key_derivation": self.key_derivation, "digest_method": self.digest_method},
        )

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession:
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        lifetime = int(app.permanent_session_lifetime.total_seconds())
        for attempt in range(2):
            try:
                data = self.get_signing_serializer(app).loads(value, max_age=lifetime)
            except BadSignature:
                # Expired, forged, or signed with a key this process has not read yet.
                if attempt == 0 and self._refresh():
                    continue
                return self.session_class()
            if not _current(data, lifetime, self._clock()):
                return self.session_class()
            return self.session_class(data)
        return self.session_class()


def _current(data: Mapping[str, Any], lifetime: int, now: float) -> bool:
    signed_in = data.get("at")
    return isinstance(signed_in, (int, float)) and 0 <= now - signed_in <= lifetime and bool(data.get("email"))


def configure(app: Flask, sessions: RotatingKeySessions, secure: bool, lifetime_seconds: int) -> None:
    """Cookie flags and lifetime; ``secure`` when the inbox is served over https."""
    app.session_interface = sessions
    app.config.update(
        SESSION_COOKIE_NAME=SECURE_COOKIE if secure else LOCAL_COOKIE,
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/",
        SESSION_REFRESH_EACH_REQUEST=False,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=lifetime_seconds),
    )


def start(session: Any, email: str, name: str, now: float) -> None:
    """A new session for a verified person: nothing of an earlier one is kept (no fixation)."""
    session.clear()
    session.update({"email": email, "name": name, "at": int(now), "csrf": secrets.token_urlsafe(32)})
    session.permanent = True


def csrf_ok(session: Mapping[str, Any], presented: str | None) -> bool:
    expected = str(session.get("csrf", ""))
    return bool(expected and presented) and hmac.compare_digest(expected.encode(), str(presented).encode())

"""Signing in and out, and who the request is from.

``POST /auth/google`` is the ``login_uri`` Google posts to (redirect mode of
Sign in with Google): the double-submit CSRF check, the ID token verified
with google-auth, then the person must be staff of some business or an
operator before a session is opened. Every outcome is logged with the
e-mail the token named (or none) and the reason.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from flask import Flask, Response, jsonify, redirect, request, session
from werkzeug.exceptions import HTTPException

from shared.adapters.google_signin import (
    CREDENTIAL_FIELD,
    CSRF_FIELD,
    SignInRejected,
    SignInUnavailable,
    check_double_submit,
)
from shared.domain.staff import Access
from shared.inbox import session as sessions
from shared.inbox.deps import InboxDeps, audit

log = logging.getLogger(__name__)


class NotSignedIn(HTTPException):
    code = 401
    description = "sign in first"


class NotAllowed(HTTPException):
    code = 403
    description = "not allowed"


def _page(status: int, title: str, detail: str) -> Response:
    from html import escape

    body = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title>"
            f"<link rel=stylesheet href=/assets/style.css><main class=notice><h1>{escape(title)}</h1>"
            f"<p data-testid=signin-error>{escape(detail)}</p><p><a href=/>Back to the inbox</a></p></main>")
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def current(deps: InboxDeps) -> Access:
    """The signed-in person's access, recomputed now; 401 without a session, 403 with nothing to see."""
    email = session.get("email")
    if not email:
        raise NotSignedIn()
    access = deps.access(str(email))
    if not access.allowed:
        raise NotAllowed("this account is no longer staff of any business here")
    return access


def check_origin_and_token(deps: InboxDeps) -> None:
    """State-changing requests: from the inbox's own page, with the session's CSRF token."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != deps.origin:
        raise NotAllowed("the request does not come from the inbox's page")
    if not sessions.csrf_ok(session, request.headers.get(sessions.CSRF_HEADER)):
        raise NotAllowed("missing or wrong CSRF token: reload the inbox")


def signin_config(deps: InboxDeps) -> dict[str, Any]:
    return {"client_id": deps.settings.inbox_oauth_client_id, "script_url": deps.settings.inbox_signin_script_url,
            "login_uri": deps.login_uri}


def register(app: Flask, deps: InboxDeps, now: Callable[[], float]) -> None:
    @app.post("/auth/google")
    def google() -> Response:
        claimed = ""
        try:
            check_double_submit(request.form.get(CSRF_FIELD), request.cookies.get(CSRF_FIELD))
            identity = deps.signin.verify(request.form.get(CREDENTIAL_FIELD, ""))
            claimed = identity.email
            access = deps.access(identity.email)
            if not access.allowed:
                # Perhaps added to a profile since the directory was cached: a verified account, one read.
                access = deps.access(identity.email, fresh=True)
            if not access.allowed:
                raise SignInRejected(f"{identity.email} is not staff of any business here: ask the business "
                                     "to add it to staff: in its profile")
        except SignInUnavailable as exc:
            log.error("sign-in failed", extra={"event": "signin_failed", "staff": claimed, "reason": exc.reason})
            return _page(503, "Sign-in is unavailable", exc.reason)
        except SignInRejected as exc:
            log.warning("sign-in refused", extra={"event": "signin_refused", "staff": claimed, "reason": exc.reason})
            return _page(403, "You cannot sign in", exc.reason)
        sessions.start(session, identity.email, identity.name, now())
        audit("signin", identity.email, "signed in", businesses=[b.address for b in access.businesses],
              operator=access.operator)
        return redirect("/", code=303)

    @app.post("/auth/signout")
    def signout() -> tuple[str, int]:
        email = str(session.get("email", ""))
        if email:
            check_origin_and_token(deps)
            audit("signout", email, "signed out")
        session.clear()
        return "", 204

    @app.get("/api/me")
    def me() -> Response | tuple[Response, int]:
        try:
            access = current(deps)
        except NotSignedIn:
            return jsonify({"error": "sign in", "signin": signin_config(deps)}), 401
        except NotAllowed as exc:
            session.clear()
            return jsonify({"error": exc.description, "signin": signin_config(deps)}), 403
        ends = int(session.get("at", 0)) + deps.settings.inbox_session_seconds
        return jsonify({
            "email": access.email, "name": session.get("name", ""), "operator": access.operator,
            "businesses": [{"address": b.address, "name": b.label} for b in access.businesses],
            "csrf": session.get("csrf", ""), "pollSeconds": deps.settings.inbox_poll_seconds, "sessionEndsAt": ends,
        })

"""The inbox's Flask app: one page (plain HTML, CSS and JS in static/), sign-in, a JSON API.

Built once per process by the composition root from ``InboxDeps``;
inbox_fn/main.py hands it each request. Every answer carries headers that
keep the page to itself: a Content-Security-Policy allowing scripts only
from here and Google's sign-in client, no framing, no sniffing, and no
caching of anything personal.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from shared.inbox import actions, conversations, notifications, operations, signin
from shared.inbox import session as sessions
from shared.inbox.deps import InboxDeps

STATIC = Path(__file__).resolve().parent / "static"
# JSON bodies of the API are small; anything larger is refused before it is read.
MAX_BODY_BYTES = 64 * 1024


def content_security_policy(signin_script_url: str) -> str:
    """Google's sign-in client needs its script, its frames, its style sheet and its XHRs (GIS docs, CSP)."""
    parts = urlsplit(signin_script_url)
    gsi = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
    base = parts.path.rsplit("/", 1)[0] + "/" if parts.path else "/"
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' {gsi}{parts.path}".strip(),
        f"frame-src {gsi}{base}" if gsi else "frame-src 'none'",
        f"connect-src 'self' {gsi}{base}".strip(),
        f"style-src 'self' {gsi}{base}style".strip(),
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
    ])


def create_app(deps: InboxDeps, now: Callable[[], float] = time.time) -> Flask:
    app = Flask("inbox", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    keys = sessions.RotatingKeySessions(deps.session_keys, deps.refresh_session_key, now)
    sessions.configure(app, keys, deps.secure, deps.settings.inbox_session_seconds)
    policy = content_security_policy(deps.settings.inbox_signin_script_url)

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        # Sign in with Google's popup and One Tap need this rather than same-origin (GIS docs).
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
        response.headers.setdefault("Cache-Control", "no-store")
        if deps.secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response | tuple[Response, int]:
        if request.path.startswith(("/api/", "/auth/")):
            return jsonify({"error": error.description}), error.code or 500
        return error.get_response()

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html")

    # Not /static/: functions-framework's own Flask app answers that path before the function is called.
    @app.get("/assets/<path:name>")
    def static_file(name: str) -> Response:
        response = send_from_directory(STATIC, name)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/favicon.ico")
    def favicon() -> tuple[str, int]:
        return "", 204

    signin.register(app, deps, now)
    conversations.register(app, deps)
    operations.register(app, deps)
    if deps.store is not None:
        actions.register(app, deps)
    if deps.notifier is not None:
        notifications.register(app, deps, deps.authorize_task)
    return app

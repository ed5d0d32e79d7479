"""Keep the local chat page to its own tab: no cross-site form posts, no DNS rebinding.

The page serves on loopback, but any web page the developer opens can still
make the browser post a form to ``http://127.0.0.1:PORT/api/ops/replay`` (a
"simple" request needs no preflight), or rebind its own host name to
127.0.0.1 and read the chats. So every request must name our host (Host is
``127.0.0.1:PORT`` or ``localhost:PORT``), and a state-changing one must come
from our own origin: browsers send ``Origin`` (and ``Sec-Fetch-Site``) with
every cross-site POST, so those are checked; tools such as curl send neither
and are let through, as they are not a browser a page can drive.
"""

from __future__ import annotations

from typing import Callable

from flask import Flask, Response, jsonify, request

LOOPBACK_NAMES = ("127.0.0.1", "localhost")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def refusal(host: str, port: int, method: str, origin: str | None, fetch_site: str | None) -> str:
    """Why the request must not be served ("" to serve it)."""
    if host not in {f"{name}:{port}" for name in LOOPBACK_NAMES}:
        return f"unexpected Host {host!r}: the page answers only as 127.0.0.1:{port} or localhost:{port}"
    if method in SAFE_METHODS:
        return ""
    if origin is not None and origin != f"http://{host}":
        return f"cross-site request from {origin!r} refused"
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"cross-site request ({fetch_site}) refused"
    return ""


def guard(app: Flask, port: Callable[[], int]) -> None:
    """Refuse (403) every request that ``refusal`` names; ``port`` is where the page listens."""

    @app.before_request
    def _same_origin_only() -> tuple[Response, int] | None:
        why = refusal(request.host, port(), request.method, request.headers.get("Origin"),
                      request.headers.get("Sec-Fetch-Site"))
        return (jsonify({"error": why}), 403) if why else None

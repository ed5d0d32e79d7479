"""Sign in with Google, locally: the button script, the account chooser and the signed ID token.

In the cloud the inbox page loads Google's client (``accounts.google.com/gsi/client``),
the button sends the person to Google (``ux_mode: "redirect"``), and Google
POSTs ``credential`` (an ID token for the OAuth client) and ``g_csrf_token``
to the ``login_uri``, whose value Google's script also put in the
``g_csrf_token`` cookie. This stand-in does the same on loopback, as strictly:

* ``GET /gsi/client``: a script with the part of ``google.accounts.id`` the
  inbox uses (``initialize`` with ``client_id``, ``ux_mode: "redirect"`` and
  ``login_uri``; ``renderButton``); the button sets the cookie and goes to
  the chooser;
* ``GET /gsi/select``: refuses an unknown client (``invalid_client``) and a
  ``login_uri`` that is not one of the client's authorized redirect URIs
  (``redirect_uri_mismatch``), as Google does; otherwise lists the local
  accounts (``INBOX_STAFF``, configurable) and lets one type another;
* ``POST /gsi/issue``: mints the person's ID token with the local token
  issuer's key (devstack/token_issuer.py: RS256, one hour, ``aud`` = the
  client) and posts it to ``login_uri`` with the CSRF token.

The inbox verifies that token exactly as it verifies Google's: against the
issuer's certificates (AUTH_CERTS_URL), audience, expiry, verified e-mail.
Passwords are not asked: the stand-in only ever answers on loopback.
"""

from __future__ import annotations

import json
import threading
from html import escape
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import yaml

from devstack.httpserver import Request, Response, StubHandler, StubServer
from devstack.token_issuer import TokenIssuer

SCRIPT_PATH = "/gsi/client"

_CLIENT_SCRIPT = """\
"use strict";
// Local stand-in of Google's Sign in with Google client (devstack/google_signin.py): redirect mode only.
(function () {
  const origin = %(origin)s;
  let config = null;
  function token() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function go() {
    if (!config || config.ux_mode !== "redirect" || !config.login_uri) {
      throw new Error("the local sign-in supports ux_mode 'redirect' with a login_uri");
    }
    const csrf = token();
    document.cookie = "g_csrf_token=" + csrf + "; path=/; SameSite=Lax";
    const query = new URLSearchParams({ client_id: config.client_id, login_uri: config.login_uri, g_csrf_token: csrf });
    location.assign(origin + "/gsi/select?" + query);
  }
  window.google = window.google || {};
  window.google.accounts = window.google.accounts || {};
  window.google.accounts.id = {
    initialize(c) { config = Object.assign({}, c); },
    renderButton(parent, options) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "gsi-local-button";
      button.setAttribute("data-testid", "google-signin");
      button.textContent = "Sign in with Google (local)";
      button.addEventListener("click", go);
      parent.replaceChildren(button);
    },
    prompt() {},
    disableAutoSelect() {},
  };
})();
"""

_PAGE = """<!doctype html><html lang=en><head><meta charset=utf-8><title>%(title)s</title>
<style>body{font-family:Arial,sans-serif;background:#f0f2f5;margin:0}main{max-width:420px;margin:10vh auto;
background:#fff;border-radius:8px;padding:28px 32px;box-shadow:0 2px 12px rgba(0,0,0,.15)}button{display:block;
width:100%%;margin:8px 0;padding:10px;border:1px solid #d1d7db;border-radius:20px;background:#fff;font-size:14px;
cursor:pointer}input{width:100%%;padding:8px;margin:6px 0;box-sizing:border-box}.hint{color:#667781;font-size:12px}
</style></head><body><main>%(body)s</main></body></html>"""


def _html(status: int, title: str, body: str) -> Response:
    page = _PAGE % {"title": escape(title), "body": body}
    return Response(status, page.encode(), {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})


class GoogleSignInStandIn(StubServer):
    """One OAuth client (``client_id``) with its authorized redirect URIs, and the local Google accounts."""

    def __init__(self, issuer: TokenIssuer, client_id: str, accounts: tuple[str, ...] = (), port: int = 0) -> None:
        super().__init__(port)
        self.issuer = issuer
        self.client_id = client_id
        self.accounts = tuple(accounts)
        self._redirect_uris: set[str] = set()
        self._lock = threading.Lock()
        self.issued: list[str] = []

    @property
    def script_url(self) -> str:
        return self.base_url + SCRIPT_PATH

    def authorize_redirect(self, uri: str) -> None:
        """Register ``uri`` on the client, as the deploy guide does in the Cloud console."""
        with self._lock:
            self._redirect_uris.add(uri)

    def handle(self, request: Request, handler: StubHandler) -> Response:
        if request.path == SCRIPT_PATH and request.method == "GET":
            script = _CLIENT_SCRIPT % {"origin": json.dumps(self.base_url)}
            return Response(200, script.encode(), {"Content-Type": "text/javascript; charset=utf-8"})
        if request.path == "/gsi/select" and request.method == "GET":
            return self._select({k: v[0] for k, v in request.query.items()})
        if request.path == "/gsi/issue" and request.method == "POST":
            return self._issue({k: v[0] for k, v in parse_qs(request.body.decode()).items()})
        return Response.json(404, {"error": f"no {request.method} {request.path} here"})

    def _refusal(self, fields: dict[str, str]) -> Response | None:
        if fields.get("client_id") != self.client_id:
            return _html(401, "Error 401: invalid_client", "<h1>Access blocked</h1><p>Error 401: invalid_client: "
                         "the OAuth client was not found.</p>")
        with self._lock:
            known = fields.get("login_uri", "") in self._redirect_uris
        if not known:
            return _html(400, "Error 400: redirect_uri_mismatch", "<h1>Access blocked</h1><p>Error 400: "
                         f"redirect_uri_mismatch: {escape(fields.get('login_uri', ''))} is not an authorized "
                         "redirect URI of this client.</p>")
        if not fields.get("g_csrf_token"):
            return _html(400, "Error 400: invalid_request", "<h1>Error 400: invalid_request</h1>")
        return None

    def _select(self, fields: dict[str, str]) -> Response:
        refused = self._refusal(fields)
        if refused is not None:
            return refused
        hidden = "".join(f'<input type=hidden name="{k}" value="{escape(fields[k])}">'
                         for k in ("client_id", "login_uri", "g_csrf_token"))
        accounts = "".join(
            f'<form method=post action=/gsi/issue>{hidden}<input type=hidden name=email value="{escape(a)}">'
            f'<button data-testid=account data-email="{escape(a)}">Continue as {escape(a)}</button></form>'
            for a in self.accounts
        )
        other = (f'<form method=post action=/gsi/issue>{hidden}<p class=hint>Use another account</p>'
                 '<input name=email type=email required placeholder="someone@example.com" data-testid=other-email>'
                 '<button data-testid=other-continue>Continue</button></form>')
        return _html(200, "Sign in with Google", "<h1>Choose an account</h1><p class=hint>to continue to the inbox "
                     "(local Google sign-in: no password on loopback)</p>" + accounts + other)

    def _issue(self, fields: dict[str, str]) -> Response:
        refused = self._refusal(fields)
        if refused is not None:
            return refused
        email = fields.get("email", "").strip()
        if "@" not in email:
            return _html(400, "Error 400: invalid_request", "<h1>Choose an account</h1><p>No account was chosen.</p>")
        credential = self.issuer.mint_user(email, self.client_id)
        with self._lock:
            self.issued.append(email)
        post = {"credential": credential, "g_csrf_token": fields["g_csrf_token"]}
        inputs = "".join(f'<input type=hidden name="{k}" value="{escape(v)}">' for k, v in post.items())
        body = (f'<form method=post action="{escape(fields["login_uri"])}" id=back>{inputs}'
                '<noscript><button>Continue</button></noscript></form><script>document.getElementById("back").submit()'
                "</script><p class=hint>Signing you in…</p>")
        return _html(200, "Signing in", body)


def select_url(base_url: str, client_id: str, login_uri: str, csrf: str) -> str:
    """The chooser's URL, as the button builds it (for tests that drive the flow without a browser)."""
    return f"{base_url}/gsi/select?" + urlencode({"client_id": client_id, "login_uri": login_uri, "g_csrf_token": csrf})


def staff_of(profiles_file: Path) -> tuple[str, ...]:
    """Every ``staff:`` e-mail of a profiles file, each once (the stack validated the file before)."""
    try:
        document = yaml.safe_load(profiles_file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ()
    found: list[str] = []
    for profile in (document.get("businesses") or {}).values() if isinstance(document, dict) else ():
        for email in (profile or {}).get("staff", []) if isinstance(profile, dict) else ():
            if isinstance(email, str) and email.strip().lower() not in found:
                found.append(email.strip().lower())
    return tuple(found)

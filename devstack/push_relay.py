"""The part of Pub/Sub push the emulator leaves out: the OIDC token, and Google's network.

Pub/Sub push with an ``oidc_token`` sends each delivery with ``Authorization:
Bearer <ID token>`` for the subscription's service account and audience
(the push endpoint's URL when no audience is set), ``Content-Type:
application/json`` and Google's push ``User-Agent``. The emulator keeps the
``oidc_token`` setting but sends no token. So each push subscription of the
local stack pushes to this relay (``/push/<subscription id>``), which
forwards the body unchanged to the endpoint Terraform gives the
subscription, query string included, with the token the real service would
add and the mark of traffic from inside the project (devstack/cloud_run.py),
and returns the endpoint's status, which is what the emulator acks or nacks
on, exactly as Pub/Sub does. An endpoint that cannot be reached is a 502:
the emulator redelivers, as Pub/Sub would.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from devstack.cloud_run import Origin
from devstack.httpserver import Request, Response, StubHandler, StubServer
from devstack.terraform_env import Push
from devstack.token_issuer import TokenIssuer

USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"


@dataclass(frozen=True)
class Route:
    push: Push
    timeout_seconds: float


class PushRelay(StubServer):
    """Forwards the emulator's pushes with the subscription's OIDC token."""

    def __init__(self, issuer: TokenIssuer, origin: Origin, port: int = 0) -> None:
        super().__init__(port)
        self._issuer = issuer
        self._origin = origin
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self.relayed = 0

    def route(self, push: Push, ack_deadline_seconds: float) -> str:
        """Register a subscription; returns the push endpoint to give the emulator.

        Pub/Sub waits for the endpoint's answer up to the ack deadline.
        """
        with self._lock:
            self._routes[push.subscription] = Route(push, ack_deadline_seconds)
        return f"{self.base_url}/push/{push.subscription}"

    def handle(self, request: Request, handler: StubHandler) -> Response:
        name = request.path.removeprefix("/push/")
        with self._lock:
            route = self._routes.get(name)
        if request.method != "POST" or route is None:
            return Response.json(404, {"error": f"no push subscription {name!r}"})
        push = route.push
        token = self._issuer.mint(push.service_account, push.audience)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Authorization": f"Bearer {token}",
            **self._origin.headers(),
        }
        target = urlsplit(push.endpoint)
        connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port,
                                                timeout=route.timeout_seconds)
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        try:
            connection.request("POST", path, body=request.body, headers=headers)
            answer = connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            return Response.json(502, {"error": f"push endpoint unreachable: {exc!r}"})
        finally:
            connection.close()
        with self._lock:
            self.relayed += 1
        return Response(answer.status, body, {"Content-Type": answer.getheader("Content-Type") or "text/plain"})

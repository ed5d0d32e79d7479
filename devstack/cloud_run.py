"""Cloud Run's front end, locally: what happens to a request before it reaches the container.

One per service, configured from terraform/ (devstack/terraform_env.py), and
the only address the rest of the stack knows for that service:

* ingress: ``INGRESS_TRAFFIC_INTERNAL_ONLY`` lets in only Google's products
  of the same project (here the Pub/Sub relay, the Cloud Tasks stand-in and
  the scheduler, which mark their requests); anyone else gets Cloud Run's 404;
* invokers: with ``allUsers`` anyone is let in and ``Authorization`` passes
  untouched. Otherwise the ID token in ``X-Serverless-Authorization`` (or,
  without it, ``Authorization``) must be signed by the token issuer, unexpired
  and for this service's URL, and its account must hold ``roles/run.invoker``:
  no token is a 403, a bad token a 401, a caller who is not an invoker a 403,
  and none of these reaches the container;
* what the container gets: the checked header with the token's signature
  replaced by ``SIGNATURE_REMOVED_BY_GOOGLE`` (Cloud Run troubleshooting,
  "signature removed"), the other one untouched; ``X-Google-*`` and hop-by-hop
  headers removed; ``X-Forwarded-For``, ``X-Forwarded-Proto``, ``Forwarded``,
  ``X-Cloud-Trace-Context`` and ``traceparent`` added;
* the service's request time-out: past it the caller gets 504 and the
  connection to the container is closed; a container that is down or drops
  the connection is a 503.

Not reproduced: autoscaling and max concurrency (one instance serves all),
HTTP/2, TLS (URLs are http://), custom audiences, and Cloud Run's own request log.
"""

from __future__ import annotations

import hmac
import http.client
import logging
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import jwt

from devstack.httpserver import HOST, Request, Response, StubHandler, StubServer
from devstack.terraform_env import Service
from devstack.token_issuer import TokenIssuer

log = logging.getLogger(__name__)

SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
# Marks requests of Google's own products (internal traffic); an X-Google-*
# header, so like every other one it is removed before the container sees it.
ORIGIN_HEADER = "x-google-devstack-origin"
INTERNAL_ONLY = {"INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"}
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "content-length",
}
# Headers the front end's own HTTP server writes; the container's copies are dropped.
OWN_RESPONSE_HEADERS = HOP_BY_HOP | {"server", "date"}


@dataclass(frozen=True)
class Refusal:
    service: str
    status: int
    reason: str


@dataclass
class Origin:
    """The mark Google's products put on their requests; one per stack."""

    value: str = field(default_factory=lambda: secrets.token_hex(16))

    def headers(self) -> dict[str, str]:
        return {ORIGIN_HEADER: self.value}


def forwarded_token(token: str) -> str:
    """A token as Cloud Run hands it on: header and claims kept, the signature replaced."""
    header, payload, _ = token.split(".")
    return f"{header}.{payload}.{SIGNATURE_REMOVED}"


def _page(status: int, title: str, detail: str) -> Response:
    body = f"<html><head><title>{status} {title}</title></head><body><h1>Error: {title}</h1><h2>{detail}</h2></body></html>"
    return Response(status, body.encode(), {"Content-Type": "text/html; charset=UTF-8"})


class CloudRunFrontEnd(StubServer):
    """Admits, authenticates and forwards requests to one function process, as Cloud Run would."""

    def __init__(self, service: Service, container_port: int, issuer: TokenIssuer, origin: Origin,
                 port: int = 0) -> None:
        super().__init__(port)
        self.service = service
        self.container_port = container_port
        self._issuer = issuer
        self._origin = origin
        self._lock = threading.Lock()
        self.refusals: list[Refusal] = []
        self.forwarded = 0

    def handle(self, request: Request, handler: StubHandler) -> Response:
        internal = hmac.compare_digest(request.headers.get(ORIGIN_HEADER, ""), self._origin.value)
        headers = {k: v for k, v in request.headers.items() if not k.startswith("x-google-") and k not in HOP_BY_HOP}
        if self.service.ingress in INTERNAL_ONLY and not internal:
            return self._refuse(404, "ingress is internal only: the request does not come from the project",
                                _page(404, "Page not found", "The requested URL was not found on this server."))
        if "allUsers" not in self.service.invokers:
            refused = self._authenticate(headers)
            if refused is not None:
                return refused
        client = handler.client_address[0]
        trace, span = self._trace(headers)
        headers["x-forwarded-for"] = f"{headers['x-forwarded-for']}, {client}" if "x-forwarded-for" in headers else client
        headers["x-forwarded-proto"] = "http"
        headers["forwarded"] = f'for="{client}";proto=http'
        headers["x-cloud-trace-context"] = headers.get("x-cloud-trace-context") or f"{trace}/{int(span, 16)};o=0"
        headers["traceparent"] = headers.get("traceparent") or f"00-{trace}-{span}-00"
        return self._forward(request, headers)

    def _authenticate(self, headers: dict[str, str]) -> Response | None:
        which = "x-serverless-authorization" if "x-serverless-authorization" in headers else "authorization"
        scheme, _, token = headers.get(which, "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._refuse(403, "no identity token", _page(
                403, "Forbidden", "Your client does not have permission to get URL / from this server."))
        token = token.strip()
        try:
            claims = self._issuer.verify(token, (self.service.url,))
        except jwt.ExpiredSignatureError:
            return self._unauthorized("token expired")
        except jwt.InvalidAudienceError:
            return self._unauthorized("token audience is not this service's URL")
        except jwt.PyJWTError as exc:
            return self._unauthorized(f"token not signed by Google ({type(exc).__name__})")
        email = str(claims.get("email", ""))
        members = {f"serviceAccount:{email}", f"user:{email}", "allAuthenticatedUsers"}
        if not members & self.service.invokers:
            return self._refuse(403, f"{email} lacks roles/run.invoker on {self.service.name}", _page(
                403, "Forbidden", "Your client does not have permission to get URL / from this server."))
        headers[which] = f"Bearer {forwarded_token(token)}"
        return None

    def _unauthorized(self, reason: str) -> Response:
        return self._refuse(401, reason, _page(
            401, "Unauthorized", "Your client does not have permission to the requested URL."))

    @staticmethod
    def _trace(headers: dict[str, str]) -> tuple[str, str]:
        parent = headers.get("traceparent", "").split("-")
        if len(parent) == 4 and len(parent[1]) == 32:
            return parent[1], secrets.token_hex(8)
        context = headers.get("x-cloud-trace-context", "").split("/")[0]
        return (context if len(context) == 32 else secrets.token_hex(16)), secrets.token_hex(8)

    def _refuse(self, status: int, reason: str, page: Response) -> Response:
        refusal = Refusal(self.service.key, status, reason)
        with self._lock:
            self.refusals.append(refusal)
        log.warning("cloud run refused a request to %s with %s: %s", self.service.key, status, reason,
                    extra={"service": self.service.key, "status": status, "reason": reason})
        return page

    def _forward(self, request: Request, headers: dict[str, str]) -> Response:
        timeout = self.service.timeout_seconds
        connection = http.client.HTTPConnection(HOST, self.container_port, timeout=timeout)
        try:
            connection.request(request.method, request.target or request.path, body=request.body or None,
                               headers=headers)
            answer = connection.getresponse()
            body = answer.read()
        except socket.timeout:
            return _page(504, "Gateway Timeout", "The request has been terminated because it has reached the "
                         "maximum request timeout.")
        except (OSError, http.client.HTTPException):
            return _page(503, "Service Unavailable", "The service you requested is not available at this time.")
        finally:
            connection.close()
        with self._lock:
            self.forwarded += 1
        kept: dict[str, Any] = {k: v for k, v in answer.getheaders() if k.lower() not in OWN_RESPONSE_HEADERS}
        return Response(answer.status, body, kept)

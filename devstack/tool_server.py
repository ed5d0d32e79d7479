"""The example business's own system on loopback: order status (a read tool) and table bookings (a confirmed write).

``profiles.example.yaml`` points the bakery's two tools here, and the local
stack starts it, so ``make dev`` can look up an order and book a table. It
does what the decision note (docs/decisions/0016-business-tools.md) asks of a
business, so it also shows how little that is:

* every request's signature is verified (shared/domain/tool_signature.py):
  a missing, wrong or stale one is refused with 401 and nothing is done;
* a booking is made once per ``Idempotency-Key``: the same key again gets the
  first answer again (``"replayed": true``) and books nothing; the same key
  with a different body is refused with 422, as Stripe does.

Every request is recorded with its key, whether it verified and whether it
did something, so tests count side effects rather than requests.

Served endpoints
----------------
``POST /orders/status``  ``{"order_id": "1234"}`` → ``{"order_id", "status", "ready_at"}``; 404 for an unknown order.
``POST /tables/book``    ``{"people", "day", "time"}`` → ``{"booking_id", "people", "day", "time", "status": "booked"}``.

Admin endpoints (no auth):

``GET /_stub/calls``     every request, oldest first: ``{"path", "key", "verified", "reason", "body", "executed",
                         "status", "received_at"}``.
``DELETE /_stub/calls``  forget them and every booking.
``GET /_stub/bookings``  the bookings made: ``{"booking_id", "key", "people", "day", "time"}``.
``POST /_stub/config``   ``{"delay_seconds": S, "fail_next": N, "fail_status": 503, "garbage_next": N,
                         "drop_after_booking_next": N}``: the next N requests fail with that status (doing nothing),
                         answer a 200 HTML page, or book and then close the connection unanswered.

Run it alone: ``python -m devstack.tool_server [--port N]`` with the secret in
``TOOL_SECRET_PANADERIA_SOL_TOOLS`` (or ``--secret-variable NAME``) prints
``READY http://127.0.0.1:PORT`` and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from devstack.httpserver import DROP, Drop, RecordingStub, Request, Response, StubHandler, call_admin, serve_until_signalled
from shared.domain.tool_signature import KEY_HEADER, verify
from shared.domain.tools import local_secret_variable

EXAMPLE_SECRET_ID = "panaderia-sol-tools"
DEFAULT_PORT = 8095

# The bakery's orders, as its till knows them.
ORDERS = {
    "1234": {"status": "ready for pickup", "ready_at": "today 10:00", "item": "tarta de Santiago"},
    "5678": {"status": "in the oven", "ready_at": "today 17:00", "item": "roscón de Reyes"},
    "2468": {"status": "collected", "ready_at": "yesterday 12:00", "item": "pan de centeno"},
}


@dataclass(frozen=True)
class ToolRequest:
    """One request as the business's server saw it."""

    path: str
    key: str
    verified: bool
    reason: str
    body: Any
    executed: bool
    status: int
    received_at: float

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


class ExampleToolServer(RecordingStub[ToolRequest]):
    """The bakery's order and booking endpoints, verifying every request under ``secret``."""

    records_path = "/_stub/calls"

    def __init__(self, secret: str, port: int = 0, clock: Callable[[], float] = time.time) -> None:
        super().__init__(port)
        if not secret:
            raise ValueError("the example tool server needs the tools' secret")
        self._secret = secret
        self._clock = clock
        self._bookings: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (body, answer)
        self._fail_next = 0
        self._fail_status = 503
        self._garbage_next = 0
        self._drop_after_booking_next = 0

    @property
    def calls(self) -> list[ToolRequest]:
        return self._snapshot()

    def bookings(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"key": key, **answer} for key, (_, answer) in self._bookings.items()]

    def clear(self) -> None:
        with self._lock:
            super().clear()
            self._bookings.clear()

    def configure(self, **spec: Any) -> None:
        """The admin endpoint's settings, from this process (see ``POST /_stub/config``)."""
        self._configure(spec)

    def use_secret(self, secret: str) -> None:
        """The business rotates its secret: requests verify under the new one from now on."""
        with self._lock:
            self._secret = secret

    def handle(self, request: Request, handler: StubHandler) -> Response | Drop:
        if request.path.startswith("/_stub/"):
            if request.path == "/_stub/bookings" and request.method == "GET":
                return Response.json(200, self.bookings())
            return self._admin(request)
        if request.method != "POST" or request.path not in ("/orders/status", "/tables/book"):
            return Response.json(404, {"error": f"no endpoint {request.method} {request.path}"})
        with self._lock:
            secret = self._secret
        reason = verify(secret, request.headers, request.body, self._clock())
        key = request.headers.get(KEY_HEADER.lower(), "")
        try:
            body = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = request.body.decode("utf-8", "replace")[:200]
        with self._lock:
            delay = self._delay_seconds
            fault = ""
            if not reason and self._fail_next > 0:
                self._fail_next -= 1
                fault = "fail"
            elif not reason and self._garbage_next > 0:
                self._garbage_next -= 1
                fault = "garbage"
        if delay and not self.wait_or_stop(delay, handler):
            self._add_record(ToolRequest(request.path, key, not reason, reason or "client left", body, False, 0,
                                         time.time()))
            return DROP
        if reason:
            return self._answer(request, key, False, reason, body, False, Response.json(401, {"error": reason}))
        if fault == "fail":
            return self._answer(request, key, True, "", body, False,
                                Response.json(self._fail_status, {"error": "the till is restarting"}))
        if fault == "garbage":
            page = Response(200, b"<html><body>Maintenance</body></html>", {"Content-Type": "text/html"})
            return self._answer(request, key, True, "", body, False, page)
        if request.path == "/orders/status":
            return self._answer(request, key, True, "", body, False, _order_status(body))
        return self._book(request, key, body)

    def _book(self, request: Request, key: str, body: Any) -> Response | Drop:
        if not key:
            return self._answer(request, key, True, "", body, False,
                                Response.json(400, {"error": "Idempotency-Key is required"}))
        problem = _booking_problem(body)
        if problem:
            return self._answer(request, key, True, "", body, False, Response.json(422, {"error": problem}))
        raw = request.body.decode("utf-8")
        with self._lock:
            earlier = self._bookings.get(key)
            if earlier is None:
                answer = {"booking_id": f"T-{len(self._bookings) + 1:04d}", "status": "booked",
                          "people": body["people"], "day": body["day"], "time": body["time"]}
                self._bookings[key] = (raw, answer)
                drop = self._drop_after_booking_next > 0
                if drop:
                    self._drop_after_booking_next -= 1
            else:
                drop = False
        if earlier is not None:
            if earlier[0] != raw:
                return self._answer(request, key, True, "", body, False, Response.json(
                    422, {"error": "this Idempotency-Key was used with a different request"}))
            return self._answer(request, key, True, "", body, False, Response.json(200, {**earlier[1], "replayed": True}))
        if drop:
            self._add_record(ToolRequest(request.path, key, True, "booked, then the connection dropped", body, True, 0,
                                         time.time()))
            return DROP
        return self._answer(request, key, True, "", body, True, Response.json(201, answer))

    def _answer(self, request: Request, key: str, verified: bool, reason: str, body: Any, executed: bool,
                response: Response) -> Response:
        self._add_record(ToolRequest(request.path, key, verified, reason, body, executed, response.status, time.time()))
        return response

    def _configure(self, spec: Mapping[str, Any]) -> None:
        super()._configure(spec)
        with self._lock:
            if "fail_next" in spec:
                self._fail_next = int(spec["fail_next"])
                self._fail_status = int(spec.get("fail_status", 503))
            if "garbage_next" in spec:
                self._garbage_next = int(spec["garbage_next"])
            if "drop_after_booking_next" in spec:
                self._drop_after_booking_next = int(spec["drop_after_booking_next"])


def _order_status(body: Any) -> Response:
    order_id = str(body.get("order_id", "")) if isinstance(body, dict) else ""
    order = ORDERS.get(order_id)
    if order is None:
        return Response.json(404, {"error": f"no order {order_id!r}"})
    return Response.json(200, {"order_id": order_id, **order})


def _booking_problem(body: Any) -> str:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    people = body.get("people")
    if isinstance(people, bool) or not isinstance(people, int) or not 1 <= people <= 12:
        return "people must be 1 to 12"
    if not isinstance(body.get("day"), str) or not isinstance(body.get("time"), str):
        return "day and time are required"
    return ""


class ExampleToolServerAdmin:
    """Drives an ExampleToolServer in another process (the local stack's) through its admin endpoints."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def calls(self) -> list[dict[str, Any]]:
        return list(call_admin(self.base_url + "/_stub/calls", "GET", timeout=self.timeout))

    def bookings(self) -> list[dict[str, Any]]:
        return list(call_admin(self.base_url + "/_stub/bookings", "GET", timeout=self.timeout))

    def clear(self) -> None:
        call_admin(self.base_url + "/_stub/calls", "DELETE", timeout=self.timeout)

    def configure(self, **spec: Any) -> None:
        call_admin(self.base_url + "/_stub/config", "POST", spec, self.timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The example business's tools (order status, table bookings).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--secret-variable", default=local_secret_variable(EXAMPLE_SECRET_ID),
                        help="the environment variable holding the tools' secret (never pass it on the command line)")
    args = parser.parse_args(argv)
    secret = os.environ.get(args.secret_variable, "")
    if not secret:
        parser.error(f"{args.secret_variable} is not set: the server verifies every request with it")
    server = ExampleToolServer(secret, port=args.port).start()
    serve_until_signalled(server, server.base_url)


if __name__ == "__main__":
    main()

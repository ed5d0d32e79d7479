"""A tiny HTTP endpoint that notes when each probe arrives: the far end of a floor hop.

Built on the stand-ins' own server (TCP_NODELAY, keep-alive, one thread per
connection), so it costs the hop no more than a real handler would.
"""

from __future__ import annotations

import base64
import json
import threading
import time

from devstack.httpserver import Drop, Request, Response, StubHandler, StubServer


class Receiver(StubServer):
    """Records ``time.time()`` of arrival per probe key; answers 200 at once (an ack for Pub/Sub)."""

    def __init__(self) -> None:
        super().__init__(0)
        self._cond = threading.Condition()
        self._arrivals: dict[str, float] = {}

    @property
    def url(self) -> str:
        return f"{self.base_url}/"

    def handle(self, request: Request, handler: StubHandler) -> Response | Drop:
        arrived = time.time()
        key = _probe_key(request.body)
        with self._cond:
            self._arrivals.setdefault(key, arrived)
            self._cond.notify_all()
        return Response(200)

    def wait(self, key: str, timeout: float) -> float | None:
        """The arrival time of ``key``, or None if it did not come within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while key not in self._arrivals:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._arrivals[key]


def _probe_key(body: bytes) -> str:
    """A Pub/Sub push envelope carries the key as an attribute; a task carries it as its body."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
    if isinstance(envelope, dict) and isinstance(envelope.get("message"), dict):
        message = envelope["message"]
        key = (message.get("attributes") or {}).get("probe")
        if key:
            return str(key)
        return base64.b64decode(message.get("data", "")).decode("utf-8", "replace")
    return body.decode("utf-8", "replace")

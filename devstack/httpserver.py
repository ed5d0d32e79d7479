"""A tiny threaded HTTP/1.1 server shared by the local stand-ins.

The stand-ins must behave like real network services (keep-alive, exact
Content-Length, one slow answer never blocking another) while staying in the
standard library. ``TCP_NODELAY`` matters: without it every small response
waits for the peer's delayed ACK and each call costs ~40 ms.

``RecordingStub`` holds what the Twilio and OpenAI stand-ins share on top:
recording with ``wait_for``, an answer delay, and the ``/_stub/`` admin
endpoints a stand-in in another process is driven through.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Callable, ClassVar, Generic, Mapping, Protocol, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
# A hung or slow request never outlives the server, and an idle keep-alive
# connection does not hold a thread forever.
IDLE_CONNECTION_TIMEOUT_SECONDS = 120.0
MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Request:
    """What a stand-in needs from one HTTP request, already read off the socket."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    # The request-target exactly as received (path and query string), for a proxy to pass on unchanged.
    target: str = ""

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)


@dataclass(frozen=True)
class Response:
    """A complete answer; a handler returns ``DROP`` instead to close the connection unanswered."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> "Response":
        merged = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode("utf-8"), merged)


class Drop:
    """Marker: the stand-in read the request and deliberately never answers."""


DROP = Drop()


class StubHandler(BaseHTTPRequestHandler):
    """Reads the request, asks the owning ``StubServer`` for an answer, writes it."""

    protocol_version = "HTTP/1.1"
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.settimeout(IDLE_CONNECTION_TIMEOUT_SECONDS)
        self.server.owner._track(self.connection, add=True)

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionResetError:
            self.close_connection = True  # the client reset an idle keep-alive connection: it left

    def finish(self) -> None:
        try:
            super().finish()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client is gone; its answer has nowhere to go
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: test output stays readable and no request data is printed."""

    def _handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._write(Response.json(413, {"error": "body too large"}))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            target=self.path,
        )
        try:
            answer = self.server.owner.handle(request, self)
        except Exception as exc:  # a stand-in bug must surface as a 500, not a hung client
            answer = Response.json(500, {"error": f"stand-in failure: {exc!r}"})
        if isinstance(answer, Drop):
            self.drop()
            return
        try:
            self._write(answer)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its own time-out): nobody to answer

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle_any

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)
        self.wfile.flush()

    def drop(self) -> None:
        """Close without a status line, so the client sees a dropped connection."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def peer_gone(self) -> bool:
        """True once the client closed its side (e.g. it gave up after its timeout)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except (OSError, ValueError):
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A real front end accepts a burst of connections at once; the default
    # backlog of 5 makes the sixth simultaneous client wait a SYN retry (1 s).
    request_queue_size = 1024
    owner: "StubServer"


class Lifecycle:
    """``with`` support for anything with ``start``/``stop``: a failing test never leaks a server."""

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class StubServer(Lifecycle):
    """Base for a stand-in: owns the listening socket and the serving thread.

    Subclasses implement ``handle``; it runs on one thread per connection, so
    a sleeping answer only holds its own thread.
    """

    def __init__(self, port: int = 0) -> None:
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.stopping = threading.Event()

    def handle(self, request: Request, handler: StubHandler) -> Response | Drop:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        self.stopping.clear()
        server = _Server((HOST, self._requested_port), StubHandler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, release waiting handlers and cut open connections; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.server_close()
        with self._connections_lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def wait_or_stop(self, seconds: float, handler: StubHandler | None = None) -> bool:
        """Sleep up to ``seconds``; False early if the server stops or the client leaves."""
        if handler is None:
            return not self.stopping.wait(seconds)
        remaining = seconds
        while remaining > 0:
            step = min(0.05, remaining)
            if self.stopping.wait(step):
                return False
            if handler.peer_gone():
                return False
            remaining -= step
        return True

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


class JsonRecord(Protocol):
    """What a recording stand-in keeps: anything its admin endpoint can list as JSON."""

    def to_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=JsonRecord)


class RecordingStub(StubServer, Generic[R]):
    """A stand-in that records what it accepted, can answer late, and is driven over ``/_stub/``.

    One condition guards the records, the delay and every setting a subclass
    adds, so a handler can record a request and consume its faults in one
    step, and ``wait_for`` wakes the moment a record lands.
    """

    records_path: ClassVar[str]

    def __init__(self, port: int = 0, delay_seconds: float = 0.0) -> None:
        super().__init__(port)
        self._lock = threading.Condition()
        self._records: list[R] = []
        self._delay_seconds = float(delay_seconds)

    @property
    def delay_seconds(self) -> float:
        with self._lock:
            return self._delay_seconds

    @delay_seconds.setter
    def delay_seconds(self, value: float) -> None:
        if value < 0:
            raise ValueError("delay_seconds must be >= 0")
        with self._lock:
            self._delay_seconds = float(value)

    def _snapshot(self) -> list[R]:
        with self._lock:
            return list(self._records)

    def _add_record(self, record: R) -> None:
        with self._lock:
            self._records.append(record)
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[R]:
        """Wait until at least ``count`` records arrived; returns what arrived (maybe fewer)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._records) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def _configure(self, spec: Mapping[str, Any]) -> None:
        """Apply ``POST /_stub/config``; subclasses extend it with their own keys."""
        if "delay_seconds" in spec:
            self.delay_seconds = float(spec["delay_seconds"])

    def _admin(self, request: Request) -> Response:
        """The admin endpoints every recording stand-in serves; subclasses add theirs before these."""
        if request.path == self.records_path and request.method == "GET":
            return Response.json(200, [r.to_json() for r in self._snapshot()])
        if request.path == self.records_path and request.method == "DELETE":
            self.clear()
            return Response.json(200, {"cleared": True})
        if request.path == "/_stub/config" and request.method == "POST":
            return apply_admin_spec(request, self._apply_config)
        return Response.json(404, {"error": f"no admin endpoint {request.method} {request.path}"})

    def _apply_config(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        self._configure(spec)
        return {"delay_seconds": self.delay_seconds}


def apply_admin_spec(request: Request, apply: Callable[[Any], dict[str, Any]]) -> Response:
    """Run ``apply`` on the JSON body; a malformed spec is the caller's 400, not the stand-in's 500."""
    try:
        answer = apply(request.json() or {})
    except (ValueError, TypeError, AttributeError) as exc:
        return Response.json(400, {"error": str(exc)})
    return Response.json(200, answer)


def call_admin(url: str, method: str, payload: Any = None, timeout: float = 5.0) -> Any:
    """One JSON call to a stand-in's admin endpoint in another process; the decoded answer."""
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


class Stoppable(Protocol):
    """Any stand-in, HTTP or gRPC, that the foreground runner can shut down."""

    def stop(self) -> None: ...


def stop_requested() -> threading.Event:
    """An event that SIGINT or SIGTERM sets, so a foreground stand-in exits through its cleanup."""
    done = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    return done


def serve_until_signalled(server: Stoppable, ready_url: str, done: threading.Event | None = None) -> None:
    """Run a started stand-in in the foreground until SIGINT or SIGTERM (or ``done``), then stop it."""
    if done is None:
        done = stop_requested()
    print(f"READY {ready_url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()

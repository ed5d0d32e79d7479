"""Small shared plumbing for the in-process gRPC stand-ins.

Both stand-ins serve the *real* Google service names with the proto-plus types
the official clients ship, so the clients talk to them unchanged. This module
keeps the boilerplate (binding 127.0.0.1 on a free port, wiring unary
handlers, aborting with a status code, the start/stop lifecycle and running
in the foreground until signalled) in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import grpc

from devstack.httpserver import Lifecycle, serve_until_signalled, stop_requested

_log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class RpcError(Exception):
    """Raised inside a handler to end the call with a gRPC status, like the real API."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fail(code: grpc.StatusCode, message: str) -> NoReturn:
    """Abort the current call with ``code``; reads better than ``raise RpcError(...)``."""
    raise RpcError(code, message)


@dataclass(frozen=True)
class Unary:
    """One unary method: its implementation and the wire types it speaks."""

    handler: Callable[[Any], Any]
    request_type: Any
    response_type: Any | None  # None: google.protobuf.Empty


def _empty_serializer(_: Any) -> bytes:
    return b""


def _wrap(name: str, method: Unary) -> Callable[[Any, grpc.ServicerContext], Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method.handler(request)
        except RpcError as err:
            context.abort(err.code, err.message)
        except Exception:
            _log.exception("stand-in handler failed", extra={"method": name})
            context.abort(grpc.StatusCode.INTERNAL, f"{name} failed inside the stand-in")

    return call


def serve(
    service: str,
    methods: Mapping[str, Unary],
    port: int = 0,
    max_workers: int = 8,
) -> tuple[grpc.Server, int]:
    """Start a gRPC server for ``service`` on 127.0.0.1 and return it with its port.

    Port 0 picks a free port, so parallel test runs never collide.
    """
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _wrap(name, method),
            request_deserializer=method.request_type.deserialize,
            response_serializer=(
                method.response_type.serialize if method.response_type is not None else _empty_serializer
            ),
        )
        for name, method in methods.items()
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{service.rsplit('.', 1)[-1]}-rpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    bound = server.add_insecure_port(f"{LOOPBACK}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {LOOPBACK}:{port} for {service}")
    server.start()
    return server, bound


class GrpcStandIn(Lifecycle):
    """Lifecycle of a stand-in serving one gRPC service: ``start()`` returns the address for the client.

    Subclasses set ``service`` and implement ``_methods``; they extend
    ``start``/``stop`` (calling ``super()``) for their own threads.
    """

    service: ClassVar[str]
    max_workers: ClassVar[int] = 8

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: grpc.Server | None = None
        self._address = ""

    def _methods(self) -> Mapping[str, Unary]:
        raise NotImplementedError

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` once started."""
        if not self._address:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._address

    def start(self) -> str:
        if self._server is not None:
            return self._address
        self._server, port = serve(self.service, self._methods(), port=self._port, max_workers=self.max_workers)
        self._address = f"{LOOPBACK}:{port}"
        return self._address

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None


def run_until_signalled(stand_in: GrpcStandIn, before_ready: Callable[[], None] | None = None) -> int:
    """Serve ``stand_in`` in the foreground: ``READY 127.0.0.1:PORT`` once usable, stop on SIGINT/SIGTERM.

    Signals are caught before starting, so one arriving during ``before_ready``
    still ends in a clean stop.
    """
    done = stop_requested()
    address = stand_in.start()
    try:
        if before_ready is not None:
            before_ready()
    except BaseException:
        stand_in.stop()
        raise
    serve_until_signalled(stand_in, address, done)
    return 0

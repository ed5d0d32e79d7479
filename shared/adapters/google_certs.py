"""Google's public signing keys for ID tokens, fetched over one pooled session and cached as Google says.

The verifier (shared/adapters/google_auth.py) checks an ``Authorization``
token's signature against these keys; they rotate, and Google's response
says for how long a copy may be kept (``Cache-Control: max-age``).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from google.auth import transport

__all__ = ["CERTS_FETCH_TIMEOUT_SECONDS", "CertsCache"]

CERTS_FETCH_TIMEOUT_SECONDS = 5.0
_DEFAULT_CERTS_TTL_SECONDS = 300.0
_MAX_CERTS_TTL_SECONDS = 3600.0
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class _CachedResponse(transport.Response):
    """A certificate response kept in memory; google-auth only reads these three."""

    _status: int
    _headers: Mapping[str, str]
    _data: bytes

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class CertsCache:
    """A ``google.auth.transport.Request`` that remembers GET responses for their max-age (at most an hour).

    ``id_token.verify_token`` downloads the certificates on every call; Google
    serves them with hours of ``max-age`` and rotates keys with overlap.
    """

    def __init__(
        self,
        inner: Callable[..., Any],
        clock: Callable[[], float] = time.monotonic,
        default_ttl: float = _DEFAULT_CERTS_TTL_SECONDS,
        max_ttl: float = _MAX_CERTS_TTL_SECONDS,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._default_ttl = default_ttl
        self._max_ttl = max_ttl
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, _CachedResponse]] = {}

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> transport.Response:
        if method.upper() != "GET":
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        now = self._clock()
        with self._lock:
            cached = self._entries.get(url)
            if cached is not None and cached[0] > now:
                return cached[1]
        response = self._inner(
            url, method="GET", headers=headers,
            timeout=timeout if timeout is not None else CERTS_FETCH_TIMEOUT_SECONDS, **kwargs,
        )
        if response.status != 200:
            return response
        kept = _CachedResponse(response.status, dict(response.headers or {}), bytes(response.data))
        with self._lock:
            self._entries[url] = (now + self._ttl(kept.headers), kept)
        return kept

    def _ttl(self, headers: Mapping[str, str]) -> float:
        cache_control = next((v for k, v in headers.items() if k.lower() == "cache-control"), "")
        match = _MAX_AGE.search(cache_control)
        if not match:
            return self._default_ttl
        return min(float(match.group(1)), self._max_ttl)


_shared_request: CertsCache | None = None
_shared_lock = threading.Lock()


def _default_request() -> CertsCache:
    """One pooled HTTPS session and one certificate cache per process, made on first use."""
    global _shared_request
    with _shared_lock:
        if _shared_request is None:
            import requests
            from google.auth.transport.requests import Request

            _shared_request = CertsCache(Request(session=requests.Session()))
        return _shared_request

"""Inbound media from Twilio: downloaded with the account's credentials, from Twilio only.

A media URL arrives inside a webhook; a forged or mistaken one must never make
us send the account's credentials elsewhere or fetch from an arbitrary host.
So the URL must be on the configured Twilio API base (``TWILIO_API_BASE_URL``,
or ``https://api.twilio.com``), redirects are followed by hand and only to
Twilio's own media storage hosts, and credentials go only to the API base.
Anything else is refused before any request is made. Size is checked on
``Content-Length`` and again while reading, so a large file is never read whole.
"""

from __future__ import annotations

import threading
from typing import Callable
from urllib.parse import urljoin, urlsplit

import requests

DEFAULT_API_BASE = "https://api.twilio.com"
MAX_REDIRECTS = 3
CHUNK = 64 * 1024


class MediaRefused(Exception):
    """The URL (or a redirect) is not Twilio's: nothing was requested from it."""


class MediaFailed(Exception):
    """The download failed or the file is too large; the user gets a friendly reply."""


class TwilioMedia:
    def __init__(
        self,
        api_base_url: str,
        account_sid: str,
        auth_token: Callable[[], str],
        max_bytes: int,
        timeout_seconds: float,
        redirect_hosts: tuple[str, ...],
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        self._base = (api_base_url or DEFAULT_API_BASE).rstrip("/")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._max_bytes = max_bytes
        self._timeout = timeout_seconds
        self._redirect_hosts = frozenset(h.lower() for h in redirect_hosts)
        self._session_factory = session_factory
        self._session: requests.Session | None = None
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    session = self._session_factory()
                    session.trust_env = False
                    self._session = session
        return self._session

    def on_api_base(self, url: str) -> bool:
        """Same scheme, host and port as the API base, and under its path."""
        want, got = urlsplit(self._base), urlsplit(url)
        return (
            got.scheme == want.scheme
            and got.netloc.lower() == want.netloc.lower()
            and (got.path + "/").startswith(want.path.rstrip("/") + "/")
            and not got.username
        )

    def _storage_host(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme == "https" and (parts.hostname or "").lower() in self._redirect_hosts and not parts.username

    def fetch(self, url: str) -> tuple[bytes, str]:
        """The file's bytes and content type; raises MediaRefused or MediaFailed."""
        if not self.on_api_base(url):
            raise MediaRefused(f"media URL is not on the Twilio API base ({urlsplit(url).hostname or 'no host'})")
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            credentials = (self._account_sid, self._auth_token()) if self.on_api_base(current) else None
            self.calls += 1
            try:
                response = self.session.get(
                    current, auth=credentials, stream=True, allow_redirects=False, timeout=(self._timeout, self._timeout)
                )
            except requests.RequestException as exc:
                raise MediaFailed(f"could not download the media: {type(exc).__name__}") from exc
            with response:
                if response.is_redirect:
                    target = urljoin(current, response.headers.get("Location", ""))
                    if not (self.on_api_base(target) or self._storage_host(target)):
                        raise MediaRefused(f"media redirected off Twilio ({urlsplit(target).hostname or 'no host'})")
                    current = target
                    continue
                if response.status_code != 200:
                    raise MediaFailed(f"media download answered HTTP {response.status_code}")
                return self._read(response), response.headers.get("Content-Type", "application/octet-stream")
        raise MediaFailed(f"more than {MAX_REDIRECTS} redirects")

    def _read(self, response: requests.Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise MediaFailed(f"media of {declared} bytes is over the {self._max_bytes}-byte limit")
        data = bytearray()
        try:
            for chunk in response.iter_content(CHUNK):
                data += chunk
                if len(data) > self._max_bytes:
                    raise MediaFailed(f"media is over the {self._max_bytes}-byte limit")
        except requests.RequestException as exc:
            raise MediaFailed(f"media download broke off: {type(exc).__name__}") from exc
        return bytes(data)

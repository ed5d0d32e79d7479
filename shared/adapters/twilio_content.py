"""Twilio's Content API: create the Content resource a message with choices is sent as.

``POST {TWILIO_CONTENT_BASE_URL}/v1/Content`` through twilio-python's own
``content.v1.contents.create`` (JSON body, HTTP Basic auth), which answers a
resource whose ``sid`` (``HX`` and 32 hex digits) a send names as its
``ContentSid``. Creating is not retried here: a failure of any kind is a
:class:`ContentApiError`, and the message goes as numbered text instead, so
the customer is answered now rather than after a retry
(docs/decisions/0023-whatsapp-native.md). Twilio limits Content creation to
100 requests a second per account; a resource is created once per distinct
menu (shared/adapters/content_records.py), far below that.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Callable, Mapping

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.rest.content.v1.content import ContentList

from shared.domain.choices import CONTENT_LANGUAGE
from shared.log import redact_credentials

DEFAULT_CONTENT_BASE = "https://content.twilio.com"
_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")


class ContentApiError(Exception):
    """The Content resource could not be created; the reason is safe to log."""


class TwilioContentApi:
    """Creates Content resources for one Twilio account; the client is built once, on first use."""

    def __init__(
        self,
        account_sid: str,
        auth_token: Callable[[], str],
        base_url: str,
        timeout_seconds: float,
    ) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._base_url = (base_url or DEFAULT_CONTENT_BASE).rstrip("/")
        self._timeout = timeout_seconds
        self._client: Client | None = None
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def client(self) -> Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = Client(self._account_sid, self._auth_token(),
                                    http_client=TwilioHttpClient(timeout=self._timeout))
                    client.content.base_url = self._base_url
                    self._client = client
        return self._client

    def create(self, types: Mapping[str, Any], friendly_name: str, language: str = CONTENT_LANGUAGE) -> str:
        """The SID of a new Content resource holding ``types``; :class:`ContentApiError` if Twilio refused."""
        self.calls += 1
        request = ContentList.ContentCreateRequest(
            {"friendly_name": friendly_name, "language": language, "types": json.loads(json.dumps(types))}
        )
        try:
            created = self.client.content.v1.contents.create(request)
        except TwilioException as exc:
            status = getattr(exc, "status", "")
            raise ContentApiError(f"Twilio refused the Content resource ({status}): "
                                  f"{redact_credentials(str(exc))[:200]}") from None
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise ContentApiError(f"no usable answer from the Content API: {type(exc).__name__}") from None
        sid = str(created.sid or "")
        if not _CONTENT_SID.fullmatch(sid):
            raise ContentApiError(f"the Content API answered without a Content SID ({sid[:40]!r})")
        return sid

    def drop_client(self) -> None:
        """Forget the client (a rotated auth token): the next call builds one with the current token."""
        with self._lock:
            self._client = None

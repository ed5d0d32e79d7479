"""Twilio's typing indicator: "typing…" on the user's phone, and their message marked read.

``POST /v2/Indicators/Typing.json`` on Twilio's messaging API with the
inbound ``messageId`` and ``channel=whatsapp``. Best effort by design: it runs
on a background thread with a sub-second timeout, so the model call never
waits for it, and a failure is only logged: it never fails or retries a message.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import requests

DEFAULT_MESSAGING_BASE = "https://messaging.twilio.com"
TIMEOUT = (0.5, 1.0)

log = logging.getLogger(__name__)


class TypingIndicator:
    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: Callable[[], str],
        post: Callable[..., requests.Response] | None = None,
        background: bool = True,
    ) -> None:
        self._url = f"{(base_url or DEFAULT_MESSAGING_BASE).rstrip('/')}/v2/Indicators/Typing.json"
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._post = post
        self._background = background
        self._lock = threading.Lock()
        self.calls = 0

    def start(self, message_sid: str) -> None:
        """Ask for the indicator without waiting for the answer."""
        with self._lock:
            self.calls += 1
        if self._background:
            threading.Thread(target=self._send, args=(message_sid,), name="typing-indicator", daemon=True).start()
        else:
            self._send(message_sid)

    def _send(self, message_sid: str) -> None:
        try:
            post = self._post or requests.post
            response = post(
                self._url,
                data={"messageId": message_sid, "channel": "whatsapp"},
                auth=(self._account_sid, self._auth_token()),
                timeout=TIMEOUT,
            )
            if response.status_code >= 300:
                log.warning("typing indicator refused", extra={"event": "typing_failed", "sid": message_sid,
                                                               "http_status": response.status_code})
        except Exception as exc:
            log.warning("typing indicator failed", extra={"event": "typing_failed", "sid": message_sid,
                                                          "reason": type(exc).__name__})

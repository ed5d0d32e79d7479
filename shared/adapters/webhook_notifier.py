"""Posting a notice to a business's webhook (``notify_webhook:``), with requests.

JSON, a short time-out, no redirects followed (the URL is the business's own
endpoint; following one could send the notice somewhere else). A 2xx is
done; a 408, 429 or 5xx, or no answer, is worth retrying (:class:`NotifyRetry`,
which the inbox answers with 503 so Cloud Tasks retries); any other 4xx will
not get better and is reported as :class:`NotifyRefused`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import requests
from shared.adapters.lazy import Lazy

TIMEOUT_SECONDS = 5.0
_RETRYABLE = {408, 425, 429}


class NotifyRetry(Exception):
    """The webhook did not take the notice this time; a later attempt may."""


class NotifyRefused(Exception):
    """The webhook refused the notice for good (its URL or format is wrong)."""


class WebhookNotifier:
    def __init__(self, timeout_seconds: float = TIMEOUT_SECONDS,
                 session_factory: Callable[[], requests.Session] = requests.Session) -> None:
        self._timeout = timeout_seconds
        self._session = Lazy(session_factory)
        self.calls = 0

    @property
    def session(self) -> requests.Session:
        return self._session.get()

    def post(self, url: str, payload: Mapping[str, Any]) -> int:
        """POST the notice; the status on success, else one of the two errors (never the URL: it is a credential)."""
        self.calls += 1
        try:
            answer = self.session.post(url, json=dict(payload), timeout=self._timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise NotifyRetry(f"the webhook did not answer ({type(exc).__name__})") from None
        if 200 <= answer.status_code < 300:
            return answer.status_code
        if answer.status_code in _RETRYABLE or answer.status_code >= 500:
            raise NotifyRetry(f"the webhook answered {answer.status_code}")
        raise NotifyRefused(f"the webhook refused the notice with {answer.status_code}")

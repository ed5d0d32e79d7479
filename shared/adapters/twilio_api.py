"""Twilio's Messages API: send a WhatsApp message, and tell what a failure means.

Sending is not retried in-process: a repeated POST could deliver twice. Cloud
Tasks retries the whole send instead, after the sender has recorded what it
knows, and :meth:`TwilioGateway.find_sent` answers "did Twilio take it after
all?" when a previous attempt ended without an answer.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Callable

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from shared.log import redact_credentials, scrub

# Errors that another attempt will not fix. 63018 (WhatsApp rate or tier limit)
# is here because Twilio already queues for throughput; when it still refuses,
# the business-initiated limit holds for hours, far beyond our retry window.
PERMANENT_CODES = frozenset(
    {
        21211,  # invalid 'To' number
        21408,  # permission to send to this region is not enabled
        21610,  # recipient unsubscribed (STOP)
        21614,  # 'To' is not a valid mobile number / not reachable on the channel
        21617,  # body exceeds the concatenated message limit
        63003,  # channel could not find the 'To' address
        63016,  # outside the 24-hour customer service window
        63018,  # rate limit exceeded for the channel (tier limit)
        63024,  # invalid message recipient
        63032,  # user's number is part of a WhatsApp experiment
    }
)
RETRYABLE_STATUS = frozenset({408, 409, 429})
CLOCK_SKEW_SECONDS = 1


class SendRetryable(Exception):
    """Twilio did not take the message; another attempt may succeed."""


class SendPermanent(Exception):
    """Twilio refused the message for good; record it and stop."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"twilio error {code}: {message}")
        self.code = code


class SendUncertain(Exception):
    """The request may have reached Twilio but no answer came back."""


def classify(exc: TwilioRestException | TwilioServiceException, address: str = "") -> Exception:
    """What a Twilio error means for the send; ``address`` is masked in the message.

    Twilio's messages quote the destination ("The 'To' number +34... is not a
    valid phone number"), and these messages end up in logs and failure records.
    The SDK raises TwilioServiceException instead of TwilioRestException when
    the answer is an RFC 9457 problem document; both carry a status and a code.
    """
    code = exc.code if isinstance(exc.code, int) else None
    status = exc.status if isinstance(exc.status, int) else 0
    if isinstance(exc, TwilioServiceException):
        text = f"{exc.title}: {exc.detail}" if exc.detail else str(exc.title)
    else:
        text = str(exc.msg)
    detail = redact_credentials(scrub(text, address))
    if code in PERMANENT_CODES:
        return SendPermanent(code, detail)
    if status in RETRYABLE_STATUS or status >= 500:
        return SendRetryable(f"twilio {status} (code {code}): {detail}")
    if status in (401, 403):
        # A rotated or wrong auth token: fixable by ops, so retried, within SEND_MAX_ATTEMPTS.
        return SendRetryable(f"twilio rejected our credentials ({status}, code {code})")
    return SendPermanent(code, detail)


class TwilioGateway:
    def __init__(
        self,
        account_sid: str,
        from_address: str,
        auth_token: Callable[[], str],
        api_base_url: str,
        timeout_seconds: float,
        refresh_token: Callable[[], bool] = lambda: False,
        status_callback: str = "",
    ) -> None:
        self._account_sid = account_sid
        # Passed with every send, so delivery ticks do not depend on a console setting.
        self._status_callback = status_callback
        self._refresh_token = refresh_token
        self._from = from_address
        self._auth_token = auth_token
        self._base_url = api_base_url
        self._timeout = timeout_seconds
        self._client: Client | None = None
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def client(self) -> Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = Client(
                        self._account_sid,
                        self._auth_token(),
                        http_client=TwilioHttpClient(timeout=self._timeout),
                    )
                    if self._base_url:
                        client.api.base_url = self._base_url
                    self._client = client
        return self._client

    def send(self, to: str, body: str, from_: str = "") -> str:
        """Return Twilio's message SID; raise SendRetryable, SendPermanent or SendUncertain.

        A 401 means the auth token was rotated under us: with a new token
        from Secret Manager the send is tried once more (a 401 sent nothing).
        """
        try:
            return self._send(to, body, from_)
        except _Unauthorized as unauthorized:
            if not self._refresh_token():
                raise unauthorized.error from None
            with self._lock:
                self._client = None
            try:
                return self._send(to, body, from_)
            except _Unauthorized as again:
                raise again.error from None

    def send_template(self, to: str, content_sid: str, content_variables: str = "", from_: str = "") -> str:
        """An approved template (``ContentSid``/``ContentVariables``): allowed outside the 24-hour window."""
        fields: dict[str, str] = {"content_sid": content_sid}
        if content_variables:
            fields["content_variables"] = content_variables
        try:
            return self._send(to, "", from_, fields)
        except _Unauthorized as unauthorized:
            raise unauthorized.error from None

    def _send(self, to: str, body: str, from_: str, template: dict[str, str] | None = None) -> str:
        self.calls += 1
        try:
            extra: dict[str, str] = {"status_callback": self._status_callback} if self._status_callback else {}
            content = template or {"body": body}
            message = self.client.messages.create(from_=from_ or self._from, to=to, **content, **extra)
        except (TwilioRestException, TwilioServiceException) as exc:
            # Not chained: the original's message quotes the destination unmasked.
            error = _after_send(classify(exc, to), exc)
            if exc.status == 401:
                raise _Unauthorized(error) from None
            raise error from None
        except requests.exceptions.ConnectTimeout as exc:
            raise SendRetryable(f"could not connect to Twilio: {exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise SendUncertain(f"no answer from Twilio: {type(exc).__name__}") from exc
        except json.JSONDecodeError as exc:
            # A 2xx that is not JSON (a proxy's page?): Twilio may well have taken it.
            raise SendUncertain("unreadable answer from Twilio") from exc
        return str(message.sid)

    def find_sent(
        self, to: str, body: str, since: datetime, exclude: frozenset[str] = frozenset(), from_: str = "",
        template: str = "",
    ) -> str | None:
        """The SID of a message with this body that Twilio accepted for ``to`` since ``since``.

        Narrows the one window that cannot be closed: Twilio accepted a message
        but the attempt died before recording it. Replies to one user are sent
        one part at a time, so a message from our number to ``to`` created
        after the part was marked, with its body, and not among the SIDs
        already recorded for the conversation (``exclude``: identical bodies,
        such as the fallback text, are common) can only be this part.

        A ``template`` part (its Content SID) has no body of ours to compare:
        the Message resource holds the text Twilio rendered (empty through a
        Messaging Service) and no Content SID. It is matched on what does
        identify it: our number, the recipient, sent through the API
        (``outbound-api``) after the mark, and not recorded yet
        (docs/decisions/0006-sending-and-twilio-errors.md says what remains).
        """
        self.calls += 1
        try:
            recent = self.client.messages.list(to=to, from_=from_ or self._from, limit=20)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise classify(exc, to) from None
        except TwilioException as exc:
            # A list page that is not a 200 comes as a bare TwilioException
            # holding the response, whose body may quote the address.
            response = exc.args[1] if len(exc.args) > 1 else None
            status = getattr(response, "status_code", "unknown")
            raise SendRetryable(f"could not list Twilio messages: HTTP {status}") from None
        except (requests.exceptions.RequestException, json.JSONDecodeError) as exc:
            raise SendRetryable(f"could not list Twilio messages: {type(exc).__name__}") from exc
        # Twilio's date_created has whole seconds; allow one more for clock skew.
        floor = since.replace(microsecond=0) - timedelta(seconds=CLOCK_SKEW_SECONDS)
        for message in recent:
            created = message.date_created
            if str(message.sid) in exclude:
                continue
            if template and message.direction not in (None, "outbound-api"):
                continue
            if not template and message.body != body:
                continue
            if created is not None and created >= floor:
                return str(message.sid)
        return None


class _Unauthorized(Exception):
    """Twilio refused our credentials; carries the error to raise if a new token does not help."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _after_send(error: Exception, exc: TwilioRestException | TwilioServiceException) -> Exception:
    """A 5xx answer to a send is no proof that Twilio did not take the message.

    A gateway or Twilio itself can fail after the message was accepted; the
    next attempt must ask before sending again, as after a lost answer.
    """
    status = exc.status if isinstance(exc.status, int) else 0
    if isinstance(error, SendRetryable) and status >= 500:
        return SendUncertain(str(error))
    return error

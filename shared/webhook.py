"""webhook_fn's work: check that Twilio sent it, publish it, answer at once.

The AI is never awaited here: Twilio allows 15 s for the whole exchange and a
user's next message must not wait behind this one. The answer goes back later,
through Cloud Tasks and the Messages API.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Protocol
from urllib.parse import quote

import flask
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import RequestEntityTooLarge

from shared.config import Settings
from shared.inbound import InboundMessage, InvalidWebhook, StatusCallback, parse_webhook
from shared.log import mask_address, scrub

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM_TYPE = "application/x-www-form-urlencoded"
# What werkzeug leaves unescaped when it rebuilds a request path.
_PATH_SAFE = "!$&'()*+,/:;=@%"


class MessagePublisher(Protocol):
    def publish(self, message: InboundMessage) -> str: ...


@dataclass(frozen=True)
class WebhookDeps:
    settings: Settings
    validator: Callable[[], RequestValidator]
    publisher: MessagePublisher
    clock: Callable[[], float] = time.time


def signed_url(request: flask.Request, settings: Settings) -> str:
    """The URL Twilio signed, which behind Cloud Run's proxy is not ``request.url``.

    PUBLIC_WEBHOOK_URL wins when set (the query string Twilio added is kept);
    else, with TRUST_FORWARDED_HEADERS, the scheme and host the proxy reports;
    else the scheme and host this server saw. The query string is used exactly
    as received: ``request.url`` decodes escapes such as ``%2F``, which Twilio
    signed encoded.
    """
    query = request.query_string.decode()
    if settings.public_webhook_url:
        base = settings.public_webhook_url
        return f"{base}{'&' if '?' in base else '?'}{query}" if query and query not in base else base
    scheme, host = request.scheme, request.host
    if settings.trust_forwarded_headers:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    path = quote(request.root_path + request.path, safe=_PATH_SAFE)
    return f"{scheme}://{host}{path}{'?' + query if query else ''}"


def _reply(status: int, body: str = "", content_type: str = "text/plain") -> flask.Response:
    return flask.Response(body, status=status, content_type=content_type)


def handle_webhook(request: flask.Request, deps: WebhookDeps) -> flask.Response:
    if request.method != "POST":
        return _reply(405, "only POST is accepted\n")
    limit = deps.settings.webhook_max_body_bytes
    if (request.content_length or 0) > limit:
        return _reply(413, f"body larger than {limit} bytes\n")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        log.warning("webhook without signature", extra={"event": "webhook_rejected", "reason": "no signature"})
        return _reply(403, "missing X-Twilio-Signature\n")
    if request.mimetype != FORM_TYPE:
        return _reply(400, f"expected {FORM_TYPE}\n")
    # Without a Content-Length (chunked) werkzeug stops reading at the limit
    # without an error, so read one byte more to tell "too large" from "just fits"
    # rather than checking the signature of a silently truncated body.
    request.max_content_length = limit + 1
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        return _reply(413, f"body larger than {limit} bytes\n")
    if len(body) > limit:
        return _reply(413, f"body larger than {limit} bytes\n")
    form = request.form.to_dict()
    url = signed_url(request, deps.settings)
    if not deps.validator().validate(url, form, signature):
        log.warning(
            "webhook with a bad signature",
            extra={"event": "webhook_rejected", "reason": "bad signature", "url": url},
        )
        return _reply(403, "invalid X-Twilio-Signature\n")
    try:
        parsed = parse_webhook(form, received_at=deps.clock())
    except InvalidWebhook as exc:
        log.warning("unusable webhook", extra={"event": "webhook_rejected", "reason": exc.reason})
        return _reply(400, f"{exc.reason}\n")
    if isinstance(parsed, StatusCallback):
        level = logging.WARNING if parsed.status in {"failed", "undelivered"} else logging.INFO
        log.log(
            level,
            f"delivery status {parsed.status}",
            extra={
                "event": "status_callback",
                "twilio_sid": parsed.sid,
                "status": parsed.status,
                "error_code": parsed.error_code,
                "recipient": mask_address(parsed.recipient),
            },
        )
        return _reply(200)
    try:
        message_id = deps.publisher.publish(parsed)
    except Exception as exc:
        # Twilio retries a 5xx; the message is not lost and a late duplicate
        # publish is harmless downstream. The sender is the ordering key, which
        # client errors may quote: the error is logged with it masked.
        log.error(
            "publish failed",
            extra={
                "event": "publish_failed",
                "sid": parsed.sid,
                "sender": mask_address(parsed.sender),
                "error": scrub(f"{type(exc).__name__}: {exc}", parsed.sender),
                "stack_trace": scrub("".join(traceback.format_exception(exc)), parsed.sender),
            },
        )
        return _reply(503, "could not queue the message, retry\n")
    log.info(
        "message received",
        extra={
            "event": "received",
            "status": "received",
            "sid": parsed.sid,
            "sender": mask_address(parsed.sender),
            "pubsub_message_id": message_id,
        },
    )
    return _reply(200, EMPTY_TWIML, "text/xml")

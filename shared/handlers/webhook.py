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
from urllib.parse import parse_qsl, quote

import flask
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import RequestEntityTooLarge

from shared.config import Settings
from shared.domain.inbound import InboundMessage, InvalidWebhook, StatusCallback, parse_webhook
from shared.log import mask_address, scrub

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM_TYPE = "application/x-www-form-urlencoded"
# What werkzeug leaves unescaped when it rebuilds a request path.
_PATH_SAFE = "!$&'()*+,/:;=@%"


class MessagePublisher(Protocol):
    def publish(self, message: InboundMessage) -> str: ...

    def publish_status(self, callback: StatusCallback) -> str: ...


@dataclass(frozen=True)
class WebhookDeps:
    settings: Settings
    validator: Callable[[], RequestValidator]
    publisher: MessagePublisher
    clock: Callable[[], float] = time.time


def _split_fragment(url: str) -> tuple[str, str]:
    """``url`` without its ``#...`` part, and that part (without the ``#``)."""
    base, _, fragment = url.partition("#")
    return base, fragment


def signed_url(request: flask.Request, settings: Settings) -> str:
    """The URL Twilio signed, which behind Cloud Run's proxy is not ``request.url``.

    PUBLIC_WEBHOOK_URL wins when set (the query string Twilio added is kept,
    and any ``#`` connection overrides are left out: see :func:`signed_urls`);
    else, with TRUST_FORWARDED_HEADERS, the scheme and host the proxy reports;
    else the scheme and host this server saw. The query string is used exactly
    as received: ``request.url`` decodes escapes such as ``%2F``, which Twilio
    signed encoded. Raises UnicodeDecodeError for a query string that is not
    UTF-8, which :func:`handle_webhook` refuses before calling this.
    """
    query = request.query_string.decode()
    if settings.public_webhook_url:
        base = _split_fragment(settings.public_webhook_url)[0]
        return f"{base}{'&' if '?' in base else '?'}{query}" if query and query not in base else base
    scheme, host = request.scheme, request.host
    if settings.trust_forwarded_headers:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    path = quote(request.root_path + request.path, safe=_PATH_SAFE)
    return f"{scheme}://{host}{path}{'?' + query if query else ''}"


def signed_urls(request: flask.Request, settings: Settings) -> tuple[str, ...]:
    """Every form of the URL a genuine signature may cover, the plain one first.

    Twilio's connection overrides (``#rc=...&rp=...``) travel as a URL fragment,
    which HTTP never sends to the server, and Twilio's documentation does not
    say whether the signature covers it (docs/decisions/0007-webhook-retries.md).
    So when PUBLIC_WEBHOOK_URL carries the fragment pasted into Twilio, a
    signature over the URL with it and one over the URL without it are both
    accepted: both are URLs the account owner configured, so neither lets
    anyone else forge a request.
    """
    plain = signed_url(request, settings)
    fragment = _split_fragment(settings.public_webhook_url)[1] if settings.public_webhook_url else ""
    return (plain, f"{plain}#{fragment}") if fragment else (plain,)


def _reply(status: int, body: str = "", content_type: str = "text/plain") -> flask.Response:
    return flask.Response(body, status=status, content_type=content_type)


def _reject(status: int, reason: str, detail: str = "", **fields: object) -> flask.Response:
    """Refuse the request with ``status`` and log why, in one structured line.

    ``fields`` must never carry a raw phone number or a secret; senders go
    through mask_address first.
    """
    log.warning(
        f"webhook rejected: {reason}",
        extra={"event": "webhook_rejected", "reason": reason, "http_status": status, **fields},
    )
    return _reply(status, f"{detail or reason}\n")


def _form_is_utf8(body: bytes) -> bool:
    """Whether the body, and every percent-escape in it, decodes as UTF-8.

    werkzeug silently parses a form with a bad escape as empty; Twilio always
    sends UTF-8, so anything else is a malformed request, not a bad signature.
    """
    try:
        parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return False
    return True


def handle_webhook(request: flask.Request, deps: WebhookDeps) -> flask.Response:
    if request.method != "POST":
        return _reject(405, "method not allowed", "only POST is accepted", method=request.method[:16])
    limit = deps.settings.webhook_max_body_bytes
    too_large = f"body larger than {limit} bytes"
    if (request.content_length or 0) > limit:
        return _reject(413, "body too large", too_large, content_length=request.content_length, limit=limit)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return _reject(403, "no signature", "missing X-Twilio-Signature")
    if request.mimetype != FORM_TYPE:
        return _reject(400, "not form-encoded", f"expected {FORM_TYPE}", content_type=request.mimetype[:100])
    try:
        request.query_string.decode()
    except UnicodeDecodeError:
        return _reject(400, "query string is not UTF-8")
    # Without a Content-Length (chunked) werkzeug stops reading at the limit
    # without an error, so read one byte more to tell "too large" from "just fits"
    # rather than checking the signature of a silently truncated body.
    request.max_content_length = limit + 1
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        return _reject(413, "body too large", too_large, limit=limit)
    if len(body) > limit:
        return _reject(413, "body too large", too_large, limit=limit)
    if not _form_is_utf8(body):
        return _reject(400, "form is not UTF-8")
    urls = signed_urls(request, deps.settings)
    # All values of a repeated field are signed, as Twilio's SDK expects.
    validator = deps.validator()
    if not any(validator.validate(url, request.form, signature) for url in urls):
        return _reject(403, "bad signature", "invalid X-Twilio-Signature", url=urls[0])
    try:
        parsed = parse_webhook(request.form.to_dict(), received_at=deps.clock())
    except InvalidWebhook as exc:
        return _reject(400, exc.reason)
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
        if not deps.settings.delivery_status_callbacks:
            return _reply(200)
        try:
            deps.publisher.publish_status(parsed)
        except Exception as exc:
            # Twilio retries a 5xx (connection overrides); a tick is not worth more.
            log.error("status publish failed", extra={"event": "publish_failed", "twilio_sid": parsed.sid,
                                                      "error": scrub(f"{type(exc).__name__}: {exc}", parsed.recipient)})
            return _reply(503, "could not queue the status, retry\n")
        return _reply(200)
    try:
        message_id = deps.publisher.publish(parsed)
    except Exception as exc:
        # Twilio retries a 5xx only because the webhook URL carries connection
        # overrides (docs/decisions/0007-webhook-retries.md); a late duplicate
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
            "business": parsed.recipient,
            "pubsub_message_id": message_id,
        },
    )
    return _reply(200, EMPTY_TWIML, "text/xml")

"""Business-initiated messages (the outbound API), as pure rules.

A request names the user (``to``), optionally the business address it goes
out from (``from``), either free text (``body``) or an approved template
(``content_sid`` and ``content_variables``), and an ``idempotency_key``. It
becomes an entry of the conversation, answered at once and next in the
user's sending order, so the sender, the queue and the hand-offs deliver it
like any reply, and an assistant turn, so the model sees it when the user
answers (docs/decisions/0013-outbound-api.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from shared.domain.conversation import (
    ANSWERED,
    MAX_TRACKED_MESSAGES,
    REMOVE,
    Conversation,
    Updates,
    expire_at,
    prunable_entries,
    trim_history,
)

# The request body is small JSON; anything larger is refused before parsing.
MAX_REQUEST_BYTES = 64 * 1024
MAX_KEY_CHARS = 200
MAX_ADDRESS_CHARS = 200
MAX_VARIABLES_CHARS = 8000
# Who wrote an assistant turn: the business's own systems, through this API.
BY_BUSINESS = "business"
OPTED_OUT_REASON = "the user opted out of messages from this business"
OUTSIDE_WINDOW_REASON = (
    "outside the 24-hour window: the user has not written in the last 24 hours; send a template (content_sid)"
)

_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
_ADDRESS = re.compile(r"whatsapp:\S+")


class InvalidRequest(ValueError):
    """The request cannot be sent as it is; the message says why (answered with 400)."""


@dataclass(frozen=True)
class OutboundRequest:
    to: str
    from_: str
    idempotency_key: str
    body: str = ""
    content_sid: str = ""
    content_variables: str = ""

    @property
    def is_template(self) -> bool:
        return bool(self.content_sid)

    def history_text(self) -> str:
        """What the model later sees of this message: the text, or which template went out."""
        if not self.is_template:
            return self.body
        variables = f" {self.content_variables}" if self.content_variables else ""
        return f"[template {self.content_sid}]{variables}"


def _text_field(data: Mapping[str, Any], name: str, limit: int, required: bool = False) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    value = value.strip()
    if required and not value:
        raise InvalidRequest(f"{name} is required")
    if len(value) > limit:
        raise InvalidRequest(f"{name} is longer than {limit} characters")
    return value


def _address(data: Mapping[str, Any], name: str, required: bool) -> str:
    value = _text_field(data, name, MAX_ADDRESS_CHARS, required)
    if value and not _ADDRESS.fullmatch(value):
        raise InvalidRequest(f"{name} must be a WhatsApp address such as whatsapp:+14155550123")
    return value


def _variables(value: Any) -> str:
    """``content_variables`` as Twilio takes it: a JSON object of strings, serialised."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidRequest("content_variables must be a JSON object") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidRequest("content_variables must be an object of strings, such as {\"1\": \"Ana\"}")
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_VARIABLES_CHARS:
        raise InvalidRequest(f"content_variables is longer than {MAX_VARIABLES_CHARS} characters")
    return text


def parse_request(raw: bytes, max_body_chars: int) -> OutboundRequest:
    """The request, validated; :class:`InvalidRequest` says what is wrong with it."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise InvalidRequest(f"the request body is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(raw or b"")
    except ValueError:
        raise InvalidRequest("the request body must be JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    unknown = set(data) - {"to", "from", "body", "content_sid", "content_variables", "idempotency_key"}
    if unknown:
        raise InvalidRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    to = _address(data, "to", required=True)
    from_ = _address(data, "from", required=False)
    key = _text_field(data, "idempotency_key", MAX_KEY_CHARS, required=True)
    body = _text_field(data, "body", max_body_chars)
    content_sid = _text_field(data, "content_sid", 34)
    if bool(body) == bool(content_sid):
        raise InvalidRequest("exactly one of body and content_sid is required")
    if content_sid and not _CONTENT_SID.fullmatch(content_sid):
        raise InvalidRequest("content_sid must be a Twilio Content SID (HX and 32 hex digits)")
    variables = _variables(data.get("content_variables"))
    if variables and not content_sid:
        raise InvalidRequest("content_variables needs content_sid")
    return OutboundRequest(to=to, from_=from_, idempotency_key=key, body=body, content_sid=content_sid,
                           content_variables=variables)


def outbound_updates(
    conv: Conversation,
    sid: str,
    request: OutboundRequest,
    parts: list[str],
    business: str,
    now: datetime,
    ttl_seconds: int,
    max_messages: int,
    max_history_chars: int,
    watch_after_seconds: int,
) -> Updates:
    """The message as an answered entry, next in the user's order, and an assistant turn.

    The reconciler's ``watch`` covers a request that dies before its send
    task exists. A template's entry carries ``contentSid``, which the sender
    sends with ``send_template``.
    """
    seq = conv.last_seq + 1
    turn = {"role": "assistant", "content": request.history_text(), "sid": sid, "by": BY_BUSINESS}
    entry: dict[str, Any] = {
        "status": ANSWERED, "seq": seq, "parts": parts, "sentParts": 0, "receivedAt": now, "updatedAt": now,
        "by": BY_BUSINESS,
    }
    if request.is_template:
        entry["contentSid"] = request.content_sid
        if request.content_variables:
            entry["contentVariables"] = request.content_variables
    updates: Updates = {
        f"messages.{sid}": entry,
        "lastSeq": seq,
        "history": trim_history(conv.history(now) + [turn], max_messages, max_history_chars),
        "updatedAt": now,
        "expireAt": expire_at(now, ttl_seconds),
    }
    if not conv.data.get("address"):
        updates["address"] = request.to
    if not conv.data.get("business"):
        updates["business"] = business
    watch = now + timedelta(seconds=watch_after_seconds)
    current_watch = conv.data.get("watch")
    if current_watch is None or current_watch > watch:
        updates["watch"] = watch
    for old in prunable_entries(conv.messages, keep=MAX_TRACKED_MESSAGES - 1, protect=sid, done_seq=conv.done_seq):
        updates[f"messages.{old}"] = REMOVE
    return updates

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
from typing import Any, Mapping

from shared.domain.conversation import Answer

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


def outbound_answer(request: OutboundRequest, parts: list[str]) -> Answer:
    """The message as an unasked answer: next in the user's order, an assistant turn by the business.

    A template's entry carries ``contentSid``, which the sender sends with ``send_template``.
    """
    return Answer(parts=parts, by=BY_BUSINESS, turn=request.history_text(), content_sid=request.content_sid,
                  content_variables=request.content_variables if request.is_template else "", to=request.to)

"""The Twilio stand-in's Content API, and the webhooks a tap or a swipe-reply makes.

Served by :class:`devstack.twilio_stub.TwilioStub` on its own port, as
twilio-python calls it once ``client.content.base_url`` points there:

``POST /v1/Content``
    JSON ``{"friendly_name", "language", "variables", "types"}``, HTTP Basic
    auth. 201 with the Content resource (``sid`` HX + 32 hex digits). As
    strict as Twilio's documentation: ``language`` and ``types`` required, at
    least one known type; ``twilio/quick-reply``: body 1..1024 characters, 1 to
    10 actions, each a title of 1..20 and an id of 1..200; ``twilio/list-picker``:
    body, a button of 1..20, 1 to 10 items, each an item of 1..24, an id of
    1..200 and a description of 1..72 (Twilio lists it as required). Lengths
    count UTF-16 units. twilio-python sends every type it knows, the unused
    ones as ``null``, and actions with ``"type": null``: nulls are absent.
    A refusal is 400 in Twilio's error shape.
``GET /v1/Content/{sid}``
    The resource, or 404.

Programmable failures (``fail_next``) make the next creations answer with a
status, so a test sees the numbered-text fallback.

The webhook fields of a tap are built from the Content resource the tapped
message was sent as, so a test or the chat page can only tap what the message
offered, and the fields are those of tests/samples/twilio/inbound-*-tap and
-selection: a button gives ``ButtonText``/``ButtonPayload``, a list row
``ListId``/``ListTitle``/``ListDescription``, both ``MessageType=interactive``,
``Body`` the title, and ``OriginalRepliedMessageSid``/``Sender`` naming the
message tapped.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Callable, Mapping

QUICK_REPLY = "twilio/quick-reply"
LIST_PICKER = "twilio/list-picker"
TEXT = "twilio/text"
KNOWN_TYPES = (TEXT, "twilio/media", "twilio/location", LIST_PICKER, "twilio/call-to-action", QUICK_REPLY,
               "twilio/card", "twilio/catalog", "twilio/carousel", "twilio/flows", "twilio/schedule",
               "whatsapp/card", "whatsapp/authentication", "whatsapp/flows")
CONTENT_PATH = re.compile(r"^/v1/Content(?:/(?P<sid>HX[0-9a-fA-F]{32}))?$")


def _units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


class Refused(ValueError):
    """What Twilio would answer 400 for; the message is Twilio-like."""


def _text(data: Mapping[str, Any], key: str, where: str, lo: int, hi: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not lo <= _units(value) <= hi or (lo and not value.strip()):
        raise Refused(f"{where}.{key} must be a string of {lo} to {hi} characters")
    return value


def validate_types(types: Any) -> dict[str, Any]:
    """``types`` as Twilio would store it, nulls dropped; :class:`Refused` for what Twilio refuses."""
    if not isinstance(types, Mapping):
        raise Refused("types is required and must be an object")
    given = _drop_nulls(types)
    unknown = [k for k in given if k not in KNOWN_TYPES]
    if unknown:
        raise Refused(f"unknown content type {unknown[0]!r}")
    if not given:
        raise Refused("types must hold at least one content type")
    if QUICK_REPLY in given:
        reply = given[QUICK_REPLY]
        _text(reply, "body", QUICK_REPLY, 1, 1024)
        actions = reply.get("actions")
        if not isinstance(actions, list) or not 1 <= len(actions) <= 10:
            raise Refused(f"{QUICK_REPLY}.actions must hold 1 to 10 actions")
        for n, action in enumerate(actions):
            if not isinstance(action, Mapping) or action.get("type", "QUICK_REPLY") != "QUICK_REPLY":
                raise Refused(f"{QUICK_REPLY}.actions[{n}] must be a QUICK_REPLY action")
            _text(action, "title", f"{QUICK_REPLY}.actions[{n}]", 1, 20)
            _text(action, "id", f"{QUICK_REPLY}.actions[{n}]", 1, 200)
    if LIST_PICKER in given:
        picker = given[LIST_PICKER]
        _text(picker, "body", LIST_PICKER, 1, 1024)
        _text(picker, "button", LIST_PICKER, 1, 20)
        items = picker.get("items")
        if not isinstance(items, list) or not 1 <= len(items) <= 10:
            raise Refused(f"{LIST_PICKER}.items must hold 1 to 10 items")
        for n, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise Refused(f"{LIST_PICKER}.items[{n}] must be an object")
            _text(item, "item", f"{LIST_PICKER}.items[{n}]", 1, 24)
            _text(item, "id", f"{LIST_PICKER}.items[{n}]", 1, 200)
            _text(item, "description", f"{LIST_PICKER}.items[{n}]", 1, 72)
    if TEXT in given:
        _text(given[TEXT], "body", TEXT, 1, 1600)
    return given


@dataclass(frozen=True)
class ContentResource:
    sid: str
    friendly_name: str
    language: str
    types: Mapping[str, Any]
    created_at: float
    variables: Mapping[str, Any] = field(default_factory=dict)

    @property
    def body(self) -> str:
        """The text Twilio shows as the Message resource's body: the richest type's body."""
        for kind in (LIST_PICKER, QUICK_REPLY, TEXT):
            if kind in self.types:
                return str(self.types[kind].get("body", ""))
        return ""

    def to_json(self, account_sid: str) -> dict[str, Any]:
        created = format_datetime(datetime.fromtimestamp(self.created_at, timezone.utc))
        url = f"https://content.twilio.com/v1/Content/{self.sid}"
        return {
            "sid": self.sid, "account_sid": account_sid, "friendly_name": self.friendly_name,
            "language": self.language, "variables": dict(self.variables), "types": dict(self.types),
            "url": url, "date_created": created, "date_updated": created,
            "links": {"approval_create": f"{url}/ApprovalRequests/whatsapp",
                      "approval_fetch": f"{url}/ApprovalRequests"},
        }


class ContentStandIn:
    """The Content resources of one account, with programmable failures; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: dict[str, ContentResource] = {}
        self._faults: list[int] = []
        self.requests = 0

    def fail_next(self, times: int = 1, status: int = 500) -> None:
        with self._lock:
            self._faults = [status] * times

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def resources(self) -> list[ContentResource]:
        with self._lock:
            return sorted(self._resources.values(), key=lambda r: r.created_at)

    def get(self, sid: str) -> ContentResource | None:
        with self._lock:
            return self._resources.get(sid)

    def create(self, payload: Any) -> ContentResource:
        """A new resource from the request body; :class:`Refused`, or ``RuntimeError(status)`` for a fault."""
        with self._lock:
            self.requests += 1
            fault = self._faults.pop(0) if self._faults else 0
        if fault:
            raise RuntimeError(fault)
        if not isinstance(payload, Mapping):
            raise Refused("the request body must be a JSON object")
        language = payload.get("language")
        if not isinstance(language, str) or not language.strip():
            raise Refused("language is required")
        name = payload.get("friendly_name") or ""
        if not isinstance(name, str):
            raise Refused("friendly_name must be a string")
        types = validate_types(payload.get("types"))
        resource = ContentResource("HX" + secrets.token_hex(16), name, language, types, time.time(),
                                   dict(payload.get("variables") or {}))
        with self._lock:
            self._resources[resource.sid] = resource
        return resource


def parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError):
        raise Refused("the request body must be JSON") from None


def tap_fields(types: Mapping[str, Any], choice_id: str, replied_sid: str, business: str,
               inbound: Callable[..., dict[str, str]], user: str, sid: str) -> dict[str, str]:
    """The webhook Twilio posts when ``user`` taps ``choice_id`` of the message ``replied_sid`` sent with ``types``.

    ``inbound`` builds the common fields (devstack.twilio_stub.inbound_message).
    ``ValueError`` when the message offered no such choice: a phone cannot tap it.
    """
    context = {"OriginalRepliedMessageSender": business, "OriginalRepliedMessageSid": replied_sid,
               "Forwarded": "false", "FrequentlyForwarded": "false", "MessageType": "interactive"}
    if LIST_PICKER in types:
        item = next((i for i in types[LIST_PICKER]["items"] if i["id"] == choice_id), None)
        if item is None:
            raise ValueError(f"the list offered no row {choice_id!r}")
        return inbound(user, item["item"], to=business, sid=sid, ListId=item["id"], ListTitle=item["item"],
                       ListDescription=item.get("description", ""), **context)
    if QUICK_REPLY in types:
        action = next((a for a in types[QUICK_REPLY]["actions"] if a["id"] == choice_id), None)
        if action is None:
            raise ValueError(f"the message offered no button {choice_id!r}")
        meta = {"type": "whatsapp", "data": {"context": {"ButtonText": action["title"], "Forwarded": "false",
                                                         "FrequentlyForwarded": "false"}}}
        return inbound(user, action["title"], to=business, sid=sid, ButtonText=action["title"],
                       ButtonPayload=action["id"], ChannelMetadata=json.dumps(meta, separators=(",", ":")),
                       **context)
    raise ValueError("the message has no buttons or list to tap")


def quoted_reply_fields(body: str, replied_sid: str, replied_sender: str, business: str,
                        inbound: Callable[..., dict[str, str]], user: str, sid: str) -> dict[str, str]:
    """The webhook of a text that swipe-replies to ``replied_sid`` (sent by ``replied_sender``)."""
    return inbound(user, body, to=business, sid=sid, OriginalRepliedMessageSender=replied_sender,
                   OriginalRepliedMessageSid=replied_sid, Forwarded="false", FrequentlyForwarded="false")

"""Twilio's inbound WhatsApp webhook, turned into the message the pipeline carries.

Pure functions: no I/O, so every bad input is easy to state in a unit test.
Twilio adds fields without notice, so unknown fields are ignored, never rejected.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Mapping

# The Message resource's SIDs, exactly: ``SM`` (text) or ``MM`` (media) and 32 hex
# digits. Inbound WhatsApp messages and the status callbacks of our own sends
# (MessageSid, SmsSid) carry nothing else. Exactness is a security property:
# Twilio's signature joins keys and values without a separator, so a looser
# pattern would accept ``SM…MessageTypetext``, a new SID under a still-valid
# signature, and a captured webhook could be replayed past dedupe.
_SID = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")
MAX_MEDIA = 10


class InvalidWebhook(ValueError):
    """The request is not a usable Twilio webhook; ``reason`` is safe to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Media:
    url: str
    content_type: str


@dataclass(frozen=True)
class InboundMessage:
    """What the processor needs of one inbound message; published as JSON."""

    sid: str
    sender: str
    recipient: str
    body: str = ""
    profile_name: str = ""
    message_type: str = "text"
    media: tuple[Media, ...] = ()
    latitude: str = ""
    longitude: str = ""
    place: str = ""
    button_payload: str = ""
    received_at: float = 0.0
    # A tap (issue 23): a quick-reply button's text, a list row's id, title and description.
    button_text: str = ""
    list_id: str = ""
    list_title: str = ""
    list_description: str = ""
    # A reply to one earlier message: its SID, and who sent it (our number or the customer).
    replied_sid: str = ""
    replied_sender: str = ""

    @property
    def tap_payload(self) -> str:
        """The id of the tapped button or list row; empty when the message is no tap."""
        return self.button_payload or self.list_id

    @property
    def tap_text(self) -> str:
        """What the tapped button or row showed (WhatsApp also puts it in Body)."""
        return self.button_text or self.list_title or (self.body.strip() if self.tap_payload else "")

    def to_json(self) -> bytes:
        """Fields added since (taps, quotes) are left out when empty, so a message without them reads
        exactly as before to a processor one release older, as during a deploy."""
        data = {k: v for k, v in asdict(self).items() if k not in _OPTIONAL_FIELDS or v}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "InboundMessage":
        """Inverse of :meth:`to_json`; raises InvalidWebhook for a malformed payload.

        Field types are checked too: a payload that parses but carries, say, a
        number for ``sid`` would otherwise fail far away, in the processor.
        """
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("the payload is not a JSON object")
            raw["media"] = tuple(Media(**m) for m in raw.get("media", ()))
            message = cls(**raw)
        except (ValueError, TypeError) as exc:
            raise InvalidWebhook(f"malformed message payload: {exc}") from None
        wrong = [name for name in _TEXT_FIELDS if not isinstance(getattr(message, name), str)]
        if any(not isinstance(m.url, str) or not isinstance(m.content_type, str) for m in message.media):
            wrong.append("media")
        if isinstance(message.received_at, bool) or not isinstance(message.received_at, (int, float)):
            wrong.append("received_at")
        if wrong:
            raise InvalidWebhook(f"malformed message payload: wrong type for {', '.join(wrong)}")
        if not _SID.fullmatch(message.sid) or not message.sender:
            raise InvalidWebhook("message payload lacks a valid sid or sender")
        return message


_TEXT_FIELDS = tuple(f.name for f in fields(InboundMessage) if f.type in ("str", str))
_OPTIONAL_FIELDS = frozenset({"button_text", "list_id", "list_title", "list_description", "replied_sid",
                              "replied_sender"})


@dataclass(frozen=True)
class StatusCallback:
    """A delivery report for a message we sent (delivered, read, failed...)."""

    sid: str
    status: str
    recipient: str
    error_code: str = ""
    error_message: str = ""
    sender: str = ""

    def to_json(self) -> bytes:
        return json.dumps({"kind": STATUS_KIND, **asdict(self)}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "StatusCallback":
        """Inverse of :meth:`to_json`; raises InvalidWebhook for a malformed payload."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or raw.pop("kind", None) != STATUS_KIND:
                raise TypeError("not a status callback")
            callback = cls(**raw)
        except (ValueError, TypeError) as exc:
            raise InvalidWebhook(f"malformed status payload: {exc}") from None
        if not all(isinstance(getattr(callback, f.name), str) for f in fields(cls)) or not _SID.fullmatch(callback.sid):
            raise InvalidWebhook("malformed status payload: wrong types or no valid sid")
        return callback


# The Pub/Sub attribute ``kind`` that tells a status callback from an inbound message.
STATUS_KIND = "status"


def parse_webhook(form: Mapping[str, str], received_at: float) -> InboundMessage | StatusCallback:
    """Read Twilio's form fields; raise InvalidWebhook with a short reason if unusable."""
    sid = form.get("MessageSid", "").strip()
    sender = form.get("From", "").strip()
    if not sid:
        raise InvalidWebhook("missing MessageSid")
    if not sender:
        raise InvalidWebhook("missing From")
    if not _SID.fullmatch(sid):
        raise InvalidWebhook("MessageSid is not a Twilio SID")
    if "MessageStatus" in form and form.get("SmsStatus", form["MessageStatus"]) != "received":
        return StatusCallback(
            sid=sid,
            status=form["MessageStatus"],
            recipient=form.get("To", ""),
            error_code=form.get("ErrorCode", ""),
            error_message=form.get("ErrorMessage", ""),
            sender=form.get("From", ""),
        )
    try:
        num_media = int(form.get("NumMedia", "0") or 0)
    except ValueError:
        raise InvalidWebhook("NumMedia is not a number") from None
    if num_media < 0:
        raise InvalidWebhook("NumMedia is negative")
    num_media = min(num_media, MAX_MEDIA)
    # Not a SID of ours to look up (malformed): the message is kept, the quote is not.
    replied = form.get("OriginalRepliedMessageSid", "").strip()
    media = tuple(
        Media(url=form.get(f"MediaUrl{i}", ""), content_type=form.get(f"MediaContentType{i}", ""))
        for i in range(num_media)
        if form.get(f"MediaUrl{i}")
    )
    return InboundMessage(
        sid=sid,
        sender=sender,
        recipient=form.get("To", ""),
        body=form.get("Body", ""),
        profile_name=form.get("ProfileName", ""),
        message_type=form.get("MessageType", "") or ("media" if media else "text"),
        media=media,
        latitude=form.get("Latitude", ""),
        longitude=form.get("Longitude", ""),
        place=" — ".join(p for p in (form.get("Label", ""), form.get("Address", "")) if p),
        button_payload=form.get("ButtonPayload", ""),
        received_at=received_at,
        button_text=form.get("ButtonText", ""),
        list_id=form.get("ListId", ""),
        list_title=form.get("ListTitle", ""),
        list_description=form.get("ListDescription", ""),
        replied_sid=replied if _SID.fullmatch(replied) else "",
        replied_sender=form.get("OriginalRepliedMessageSender", "") if _SID.fullmatch(replied) else "",
    )


def _kind(content_type: str) -> str:
    major = content_type.split("/", 1)[0]
    return {"image": "an image", "audio": "a voice note", "video": "a video"}.get(major, "a file")


def _describe_tap(message: InboundMessage) -> str:
    """A tap as the model reads it: what was shown, and the payload when it is a template's own."""
    payload = message.tap_payload
    extra = "" if payload.startswith(("menu:", "choice:")) else f" (payload {payload!r})"
    shown = f"“{message.tap_text}”" if message.tap_text else "an option"
    if message.list_id and not message.button_payload:
        return f"[The customer picked {shown} from a list{extra}.]"
    return f"[The customer tapped the button {shown}{extra}.]"


def describe_for_model(message: InboundMessage) -> str:
    """The user's turn as text the model can answer, whatever WhatsApp sent.

    Media is not downloaded: the model is told what arrived so it can answer
    sensibly ("I can't listen to voice notes, could you type it?").
    """
    parts: list[str] = []
    for item in message.media:
        parts.append(f"[The customer sent {_kind(item.content_type)} ({item.content_type}) that you cannot see or hear.]")
    if message.latitude and message.longitude:
        where = f" ({message.place})" if message.place else ""
        parts.append(f"[The customer shared a location: {message.latitude}, {message.longitude}{where}.]")
    if message.tap_payload:
        parts.append(_describe_tap(message))
    if message.body.strip() and message.body.strip() != message.tap_text:
        parts.append(message.body.strip())
    return "\n".join(parts) or "[The customer sent an empty message.]"

"""What the bot does with each kind of WhatsApp media: pure rules, no I/O.

Images (JPEG, PNG, WebP) are shown to a vision-capable model; voice notes and
other audio are transcribed and answered as if typed; anything else (video,
documents, stickers, contacts) gets a friendly answer saying what the bot can
handle, without a model call. Locations and button taps are not media and
keep being described to the model (shared/domain/inbound.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.inbound import InboundMessage, Media

IMAGE = "image"
AUDIO = "audio"
UNSUPPORTED = "unsupported"

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
# The audio types Twilio documents for WhatsApp (voice notes arrive as audio/ogg with opus).
AUDIO_TYPES = frozenset({"audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr", "audio/opus", "audio/webm", "audio/wav"})
# WhatsApp stickers are image/webp, but Twilio names them with MessageType.
UNSUPPORTED_MESSAGE_TYPES = frozenset({"sticker", "contacts", "video", "document"})
# OpenAI's transcription endpoint names the format by the file name's extension.
AUDIO_EXTENSIONS = {
    "audio/ogg": "ogg", "audio/opus": "ogg", "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/aac": "m4a",
    "audio/amr": "amr", "audio/webm": "webm", "audio/wav": "wav",
}

CAN_HANDLE_REPLY = (
    "Thanks! I can read text messages, look at photos (JPEG, PNG or WebP) and listen to voice notes, "
    "but I can't open videos, documents, stickers or contacts. Could you tell me in a message what you need?"
)
MEDIA_FAILED_REPLY = (
    "Sorry, I couldn't open what you sent. Could you send it again, or write your question as a message?"
)


def base_type(content_type: str) -> str:
    """``audio/ogg; codecs=opus`` → ``audio/ogg``."""
    return content_type.split(";", 1)[0].strip().lower()


def kind(item: Media, message_type: str = "") -> str:
    if message_type in UNSUPPORTED_MESSAGE_TYPES:
        return UNSUPPORTED
    ctype = base_type(item.content_type)
    if ctype in IMAGE_TYPES:
        return IMAGE
    if ctype in AUDIO_TYPES:
        return AUDIO
    return UNSUPPORTED


@dataclass(frozen=True)
class MediaPlan:
    """Which media of a message to download, and whether it can be answered at all."""

    images: tuple[Media, ...]
    audio: tuple[Media, ...]
    unsupported: tuple[Media, ...]

    @property
    def answer_without_model(self) -> bool:
        """Nothing we can read arrived, only things we cannot: say what we can handle."""
        return bool(self.unsupported) and not self.images and not self.audio


def plan(message: InboundMessage) -> MediaPlan:
    kinds = [(kind(item, message.message_type), item) for item in message.media]
    return MediaPlan(
        images=tuple(i for k, i in kinds if k == IMAGE),
        audio=tuple(i for k, i in kinds if k == AUDIO),
        unsupported=tuple(i for k, i in kinds if k == UNSUPPORTED),
    )


def user_turn(message: InboundMessage, image_count: int, transcripts: list[str]) -> str:
    """The user's turn as text: what the history stores and the model reads beside the images."""
    lines = [f"[image] {message.body.strip()}".strip() if i == 0 else "[image]" for i in range(image_count)]
    lines += [t.strip() for t in transcripts if t.strip()]
    if image_count == 0 and message.body.strip():
        lines.append(message.body.strip())
    if message.latitude and message.longitude:
        lines.append(f"[The customer shared a location: {message.latitude}, {message.longitude}.]")
    return "\n".join(lines) or "[The customer sent a voice note with no words in it.]"


def data_url(content_type: str, data: bytes) -> str:
    """Images go to the model inline: Twilio's media URLs need credentials the model does not have."""
    import base64

    return f"data:{base_type(content_type)};base64,{base64.b64encode(data).decode('ascii')}"

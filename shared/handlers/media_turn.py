"""The answer path's media step: turn images and voice notes into the user's turn.

Runs only for a message with media, so a text message pays nothing for it.
Images become image content parts of the model call (the history keeps
"[image] caption"); voice notes become their transcript, stored as the user's
turn and answered as if typed. A refused URL, a failed download or
transcription ends in a friendly reply and a failure record (the caller
writes it: :class:`MediaFailure` is returned), never in a redelivery:
retrying would only repeat the failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from shared.adapters.twilio_media import MediaFailed, MediaRefused
from shared.domain.turns import cap_text
from shared.domain.inbound import InboundMessage
from shared.domain.media import (
    AUDIO_EXTENSIONS,
    CAN_HANDLE_REPLY,
    MEDIA_FAILED_REPLY,
    base_type,
    data_url,
    plan,
    user_turn,
)
from shared.handlers.deps import MediaSource
from shared.log import mask_address

log = logging.getLogger(__name__)


class MediaModel(Protocol):
    def reply(self, history: list[dict[str, str]], user_text: str, system_prompt: str | None = None,
              model: str | None = None) -> str: ...

    def reply_with_images(self, history: list[dict[str, str]], user_text: str, images: list[str], model: str,
                          system_prompt: str | None = None) -> str: ...

    def transcribe(self, data: bytes, filename: str, content_type: str, model: str) -> str: ...


@dataclass(frozen=True)
class MediaOptions:
    """The business's models for media, and the bound on the user's turn."""

    system_prompt: str | None
    vision_model: str
    model: str | None
    transcribe_model: str
    max_inbound_chars: int


class MediaFailure(Exception):
    """Media we could not use; ``stage`` says which step failed."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage


def _log(level: int, message: str, msg: InboundMessage, **fields: Any) -> None:
    log.log(level, message, extra={"sid": msg.sid, "sender": mask_address(msg.sender), **fields})


def answer_with_media(
    msg: InboundMessage, media: MediaSource | None, model: MediaModel, history: list[dict[str, str]],
    options: MediaOptions,
) -> tuple[str, str, MediaFailure | None]:
    """The user's turn as text, the reply, and what failed (None); model errors propagate (the caller's fallback).

    ``options.model`` answers a voice note's transcript, as it answers typed
    text, and ``options.transcribe_model`` transcribes it.
    """
    media_plan = plan(msg)
    if media_plan.answer_without_model:
        kinds = ", ".join(sorted({base_type(m.content_type) or "unknown" for m in media_plan.unsupported}))
        _log(logging.INFO, "media we cannot handle", msg, event="media_unsupported", content_types=kinds)
        return f"[{kinds}] {msg.body.strip()}".strip(), CAN_HANDLE_REPLY, None
    try:
        images, transcripts = _read_media(msg, media, model, media_plan.images, media_plan.audio,
                                          options.transcribe_model)
    except MediaFailure as failure:
        return user_turn(msg, len(media_plan.images), []), MEDIA_FAILED_REPLY, failure
    text = cap_text(user_turn(msg, len(images), transcripts), options.max_inbound_chars)
    if images:
        reply = model.reply_with_images(history, text, images, model=options.vision_model,
                                        system_prompt=options.system_prompt)
        return text, reply, None
    return text, model.reply(history, text, system_prompt=options.system_prompt, model=options.model), None


def _read_media(
    msg: InboundMessage, media: MediaSource | None, model: MediaModel, images: tuple, audio: tuple,
    transcribe_model: str,
) -> tuple[list[str], list[str]]:
    if media is None:
        raise MediaFailure("media", "media downloads are not configured")
    urls: list[str] = []
    transcripts: list[str] = []
    for item in (*images, *audio):
        try:
            data, served_type = media.fetch(item.url)
        except MediaRefused as exc:
            _log(logging.WARNING, "media URL refused", msg, event="media_refused", reason=str(exc)[:300])
            raise MediaFailure("media", f"media refused: {exc}") from exc
        except MediaFailed as exc:
            _log(logging.WARNING, "media download failed", msg, event="media_failed", reason=str(exc)[:300])
            raise MediaFailure("media", str(exc)) from exc
        ctype = base_type(item.content_type or served_type)
        if item in images:
            urls.append(data_url(ctype, data))
            continue
        try:
            transcripts.append(
                model.transcribe(data, f"voice.{AUDIO_EXTENSIONS.get(ctype, 'ogg')}", ctype, model=transcribe_model)
            )
        except Exception as exc:
            _log(logging.WARNING, "transcription failed", msg, event="transcription_failed", reason=str(exc)[:300])
            raise MediaFailure("transcription", str(exc)[:300]) from exc
    _log(logging.INFO, "media read", msg, event="media_read", images=len(urls), voice_notes=len(transcripts))
    return urls, transcripts

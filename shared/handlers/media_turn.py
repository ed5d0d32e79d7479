"""The processor's media step: turn images and voice notes into the user's turn.

Runs only for a message with media, so a text message pays nothing for it.
Images become image content parts of the model call (the history keeps
"[image] caption"); voice notes become their transcript, stored as the user's
turn and answered as if typed. A refused URL, a failed download or
transcription ends in a friendly reply and a failure record, never in a
redelivery: retrying would only repeat the failure.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.adapters.firestore_store import failure_record
from shared.adapters.twilio_media import MediaFailed, MediaRefused
from shared.domain.conversation import cap_text
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
from shared.log import mask_address

if TYPE_CHECKING:
    from shared.handlers.processor import ProcessorDeps

log = logging.getLogger(__name__)

FAILURE_RETENTION = timedelta(days=30)


class MediaSource(Protocol):
    def fetch(self, url: str) -> tuple[bytes, str]: ...


class MediaFailure(Exception):
    """Media we could not use; ``stage`` says which step failed."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage


def _log(level: int, message: str, msg: InboundMessage, **fields: Any) -> None:
    log.log(level, message, extra={"sid": msg.sid, "sender": mask_address(msg.sender), **fields})


def answer_with_media(
    msg: InboundMessage,
    deps: "ProcessorDeps",
    history: list[dict[str, str]],
    system_prompt: str | None,
    vision_model: str,
    model: str | None = None,
    transcribe_model: str = "",
) -> tuple[str, str]:
    """The user's turn as text and the reply; model errors propagate (the caller's fallback).

    ``model`` answers a voice note's transcript, as it answers typed text, and
    ``transcribe_model`` transcribes it: the business's, else the settings'.
    """
    media_plan = plan(msg)
    if media_plan.answer_without_model:
        kinds = ", ".join(sorted({base_type(m.content_type) or "unknown" for m in media_plan.unsupported}))
        _log(logging.INFO, "media we cannot handle", msg, event="media_unsupported", content_types=kinds)
        return f"[{kinds}] {msg.body.strip()}".strip(), CAN_HANDLE_REPLY
    try:
        images, transcripts = _read_media(
            msg, deps, media_plan.images, media_plan.audio, transcribe_model or deps.settings.openai_transcribe_model
        )
    except MediaFailure as failure:
        _record(msg, deps, failure)
        return user_turn(msg, len(media_plan.images), []), MEDIA_FAILED_REPLY
    text = cap_text(user_turn(msg, len(images), transcripts), deps.settings.max_inbound_chars)
    if images:
        return text, deps.model.reply_with_images(history, text, images, model=vision_model, system_prompt=system_prompt)
    return text, deps.model.reply(history, text, system_prompt=system_prompt, model=model)


def _read_media(
    msg: InboundMessage, deps: "ProcessorDeps", images: tuple, audio: tuple, transcribe_model: str
) -> tuple[list[str], list[str]]:
    if deps.media is None:
        raise MediaFailure("media", "media downloads are not configured")
    urls: list[str] = []
    transcripts: list[str] = []
    for item in (*images, *audio):
        try:
            data, served_type = deps.media.fetch(item.url)
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
                deps.model.transcribe(data, f"voice.{AUDIO_EXTENSIONS.get(ctype, 'ogg')}", ctype,
                                      model=transcribe_model)
            )
        except Exception as exc:
            _log(logging.WARNING, "transcription failed", msg, event="transcription_failed", reason=str(exc)[:300])
            raise MediaFailure("transcription", str(exc)[:300]) from exc
    _log(logging.INFO, "media read", msg, event="media_read", images=len(urls), voice_notes=len(transcripts))
    return urls, transcripts


def _record(msg: InboundMessage, deps: "ProcessorDeps", failure: MediaFailure) -> None:
    now = deps.clock()
    deps.store.record_failure(
        msg.sid,
        failure_record(
            conversation_id=deps.ids.conversation_id(msg.sender, msg.recipient), masked_sender=mask_address(msg.sender),
            status="media_failed", stage=failure.stage, reason=str(failure), now=now, retention=now + FAILURE_RETENTION,
        ),
    )

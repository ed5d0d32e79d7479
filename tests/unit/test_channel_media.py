"""Images, voice notes, the media host allow-list and the typing indicator, with fakes (no I/O)."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest
import requests

from shared.adapters.profile_store import StaticProfiles, defaults_from_settings
from shared.adapters.twilio_media import MediaFailed, MediaRefused, TwilioMedia
from shared.adapters.twilio_typing import TypingIndicator
from shared.domain.inbound import InboundMessage, Media
from shared.domain.media import AUDIO, CAN_HANDLE_REPLY, IMAGE, MEDIA_FAILED_REPLY, UNSUPPORTED, kind
from shared.handlers.processor import process_message
from tests.fakes import FakeModel, conversation_id
from tests.unit.test_processor import SENDER, make_deps

BASE = "https://api.twilio.com"
ACCOUNT = "AC" + "0" * 32
IMAGE_URL = f"{BASE}/2010-04-01/Accounts/{ACCOUNT}/Messages/MM{'1' * 32}/Media/ME{'2' * 32}"
VOICE_URL = f"{BASE}/2010-04-01/Accounts/{ACCOUNT}/Messages/MM{'1' * 32}/Media/ME{'3' * 32}"
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 10


class ChannelModel(FakeModel):
    """The fake model with the vision and transcription calls the media step makes."""

    def __init__(self) -> None:
        super().__init__("Nice picture!")
        self.image_calls: list[tuple[str, list[str], str]] = []
        self.transcribed: list[tuple[bytes, str, str]] = []
        self.transcribe_error: Exception | None = None

    def reply_with_images(self, history, user_text, images, model, system_prompt=None) -> str:  # noqa: ANN001
        self.image_calls.append((user_text, list(images), model))
        return "Nice picture!"

    def transcribe(self, audio: bytes, filename: str, content_type: str, model: str) -> str:
        if self.transcribe_error is not None:
            raise self.transcribe_error
        self.transcribed.append((audio, filename, model))
        return "what time do you open"


class FakeMedia:
    def __init__(self, files: dict[str, tuple[bytes, str]], error: Exception | None = None) -> None:
        self.files, self.error, self.fetched = files, error, []

    def fetch(self, url: str) -> tuple[bytes, str]:
        self.fetched.append(url)
        if self.error is not None:
            raise self.error
        return self.files[url]


class FakeTyping:
    def __init__(self, error: Exception | None = None) -> None:
        self.started: list[str] = []
        self.error = error

    def start(self, message_sid: str) -> None:
        self.started.append(message_sid)
        if self.error is not None:
            raise self.error


def media_msg(*media: Media, body: str = "", message_type: str = "") -> InboundMessage:
    return InboundMessage(sid="SM" + "9" * 32, sender=SENDER, recipient="whatsapp:+14155238886", body=body,
                          media=tuple(media), message_type=message_type or ("media" if media else "text"))


@pytest.mark.parametrize(
    ("ctype", "message_type", "expected"),
    [
        ("image/jpeg", "image", IMAGE), ("image/png", "", IMAGE), ("image/webp", "image", IMAGE),
        ("image/webp", "sticker", UNSUPPORTED), ("audio/ogg; codecs=opus", "audio", AUDIO), ("audio/mpeg", "", AUDIO),
        ("video/mp4", "video", UNSUPPORTED), ("application/pdf", "document", UNSUPPORTED), ("text/vcard", "", UNSUPPORTED),
        ("image/gif", "", UNSUPPORTED),
    ],
)
def test_each_content_type_has_one_treatment(ctype: str, message_type: str, expected: str) -> None:
    assert kind(Media("u", ctype), message_type) == expected


def test_an_image_reaches_the_model_as_a_data_url_with_its_caption_and_the_history_keeps_text() -> None:
    model, media = ChannelModel(), FakeMedia({IMAGE_URL: (PNG, "image/png")})
    deps = make_deps(model=model, media=media)
    assert process_message(media_msg(Media(IMAGE_URL, "image/png"), body="is this the red one?"), deps) == "answered"
    [(text, images, vision)] = model.image_calls
    assert text == "[image] is this the red one?" and vision == deps.settings.openai_vision_model
    assert images == ["data:image/png;base64," + base64.b64encode(PNG).decode()]
    history = deps.store.conversation(conversation_id(SENDER)).history
    assert history[0]["content"] == "[image] is this the red one?"
    assert "base64" not in str(history)


def test_a_voice_note_is_answered_from_its_transcript_stored_as_the_users_turn() -> None:
    model, media = ChannelModel(), FakeMedia({VOICE_URL: (b"OggS...", "audio/ogg")})
    deps = make_deps(model=model, media=media)
    process_message(media_msg(Media(VOICE_URL, "audio/ogg")), deps)
    assert model.transcribed == [(b"OggS...", "voice.ogg", "gpt-4o-mini-transcribe")]
    assert [text for _, text in model.calls] == ["what time do you open"]
    assert deps.store.conversation(conversation_id(SENDER)).history[0]["content"] == "what time do you open"


def test_unsupported_media_gets_the_friendly_answer_without_a_download_or_a_model_call() -> None:
    model, media = ChannelModel(), FakeMedia({})
    deps = make_deps(model=model, media=media)
    process_message(media_msg(Media(IMAGE_URL, "video/mp4"), message_type="video"), deps)
    entry = deps.store.conversation(conversation_id(SENDER)).entry("SM" + "9" * 32)
    assert entry.parts == [CAN_HANDLE_REPLY]
    assert media.fetched == [] and model.calls == [] and model.image_calls == []


@pytest.mark.parametrize("error", [MediaRefused("not Twilio"), MediaFailed("HTTP 500")])
def test_a_failed_or_refused_download_is_a_friendly_reply_and_a_record_not_a_retry(error: Exception) -> None:
    model = ChannelModel()
    deps = make_deps(model=model, media=FakeMedia({}, error=error))
    assert process_message(media_msg(Media(IMAGE_URL, "image/jpeg")), deps) == "answered"
    entry = deps.store.conversation(conversation_id(SENDER)).entry("SM" + "9" * 32)
    assert entry.parts == [MEDIA_FAILED_REPLY]
    record = deps.store.failures["SM" + "9" * 32]
    assert record["status"] == "media_failed" and record["stage"] == "media"
    assert model.image_calls == []


def test_a_failed_transcription_is_a_friendly_reply_and_a_record() -> None:
    model = ChannelModel()
    model.transcribe_error = RuntimeError("transcription failed: 500")
    deps = make_deps(model=model, media=FakeMedia({VOICE_URL: (b"OggS", "audio/ogg")}))
    process_message(media_msg(Media(VOICE_URL, "audio/ogg")), deps)
    assert deps.store.failures["SM" + "9" * 32]["stage"] == "transcription"
    assert model.calls == []


def test_a_text_message_downloads_nothing_and_starts_typing_once() -> None:
    media, typing = FakeMedia({}), FakeTyping()
    deps = make_deps(media=media, typing=typing)
    process_message(media_msg(body="hi"), deps)
    assert media.fetched == [] and typing.started == ["SM" + "9" * 32]


def test_typing_can_be_turned_off_and_its_failure_never_fails_the_message() -> None:
    off = make_deps(typing=FakeTyping(), settings=replace(make_deps().settings, typing_indicator=False))
    process_message(media_msg(body="hi"), off)
    assert off.typing.started == []
    broken = make_deps(typing=FakeTyping(error=RuntimeError("boom")))
    assert process_message(media_msg(body="hi"), broken) == "answered"


def test_the_claim_records_when_the_user_last_wrote() -> None:
    deps = make_deps()
    process_message(replace(media_msg(body="hi"), received_at=1_795_000_000.0), deps)
    assert deps.store.conversation(conversation_id(SENDER)).last_inbound_at.timestamp() == 1_795_000_000.0


# The media adapter: only Twilio's hosts, credentials only to the API base.


class FakeResponse:
    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.status_code, self._body, self.headers = status, body, {**(headers or {})}
        self.is_redirect = status in (301, 302, 303, 307, 308) and "Location" in self.headers
        self.read = 0

    def iter_content(self, size: int):  # noqa: ANN201
        for i in range(0, len(self._body), size):
            self.read += min(size, len(self._body) - i)
            yield self._body[i : i + size]

    def __enter__(self) -> "FakeResponse":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeSession:
    def __init__(self, *responses: FakeResponse) -> None:
        self.responses = list(responses)
        self.requests: list[tuple[str, Any]] = []
        self.trust_env = True

    def get(self, url: str, auth: Any = None, **kwargs: Any) -> FakeResponse:
        self.requests.append((url, auth))
        return self.responses.pop(0)


def media_adapter(session: FakeSession, base: str = "", max_bytes: int = 1000) -> TwilioMedia:
    return TwilioMedia(base, ACCOUNT, lambda: "token", max_bytes, 1.0, ("media.twiliocdn.com",), lambda: session)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/2010-04-01/Accounts/AC/Messages/MM/Media/ME",
        "http://api.twilio.com/2010-04-01/x",
        "https://api.twilio.com.evil.example/x",
        "https://user:pw@api.twilio.com/x",
        "https://media.twiliocdn.com/x",
    ],
)
def test_a_url_off_the_twilio_api_base_is_refused_without_a_request(url: str) -> None:
    session = FakeSession()
    with pytest.raises(MediaRefused):
        media_adapter(session).fetch(url)
    assert session.requests == []


def test_a_redirect_to_twilio_storage_is_followed_without_credentials() -> None:
    storage = "https://media.twiliocdn.com/AC/abc"
    session = FakeSession(FakeResponse(307, headers={"Location": storage}), FakeResponse(200, PNG, {"Content-Type": "image/png"}))
    assert media_adapter(session).fetch(IMAGE_URL) == (PNG, "image/png")
    assert session.requests == [(IMAGE_URL, (ACCOUNT, "token")), (storage, None)]


def test_a_redirect_anywhere_else_is_refused_before_it_is_followed() -> None:
    session = FakeSession(FakeResponse(302, headers={"Location": "https://evil.example/steal"}))
    with pytest.raises(MediaRefused):
        media_adapter(session).fetch(IMAGE_URL)
    assert len(session.requests) == 1


def test_large_files_are_refused_before_they_are_read_whole() -> None:
    declared = FakeResponse(200, b"x" * 5000, {"Content-Length": "5000"})
    with pytest.raises(MediaFailed):
        media_adapter(FakeSession(declared)).fetch(IMAGE_URL)
    assert declared.read == 0
    undeclared = FakeResponse(200, b"x" * 500_000)
    with pytest.raises(MediaFailed):
        media_adapter(FakeSession(undeclared), max_bytes=1000).fetch(IMAGE_URL)
    assert undeclared.read < 500_000


def test_a_local_api_base_is_the_only_host_locally() -> None:
    local = "http://127.0.0.1:4567"
    session = FakeSession(FakeResponse(200, PNG, {"Content-Type": "image/png"}))
    adapter = media_adapter(session, base=local)
    assert adapter.fetch(f"{local}/2010-04-01/Accounts/{ACCOUNT}/Messages/MM1/Media/ME1")[0] == PNG
    with pytest.raises(MediaRefused):
        adapter.fetch(IMAGE_URL)


def test_typing_posts_the_message_sid_and_swallows_errors() -> None:
    posted: list[tuple[str, dict[str, str], Any]] = []

    def post(url: str, data: dict[str, str], auth: Any, timeout: Any) -> Any:
        posted.append((url, data, timeout))
        raise requests.ConnectionError("down")

    typing = TypingIndicator("http://127.0.0.1:9", ACCOUNT, lambda: "token", post=post, background=False)
    typing.start("SM" + "1" * 32)
    [(url, data, timeout)] = posted
    assert url == "http://127.0.0.1:9/v2/Indicators/Typing.json"
    assert data == {"messageId": "SM" + "1" * 32, "channel": "whatsapp"}
    assert max(timeout) <= 1.0 and typing.calls == 1


def test_a_business_profile_turns_typing_off_for_its_number_only() -> None:
    base = make_deps()
    quiet = replace(defaults_from_settings(base.settings), address=media_msg().recipient, typing_indicator=False)
    deps = make_deps(typing=FakeTyping(), profiles=StaticProfiles(defaults_from_settings(base.settings), {quiet.address: quiet}))
    process_message(media_msg(body="hi"), deps)
    assert deps.typing.started == []
    other = replace(media_msg(body="hi"), sid="SM" + "8" * 32, recipient="whatsapp:+15550001111")
    process_message(other, deps)
    assert deps.typing.started == [other.sid]


def test_a_voice_note_is_transcribed_and_answered_with_the_business_models() -> None:
    from shared.domain.profiles import profile_from_mapping

    model, media = ChannelModel(), FakeMedia({VOICE_URL: (b"OggS...", "audio/ogg")})
    settings = make_deps().settings
    defaults = defaults_from_settings(settings)
    business = "whatsapp:+14155238886"
    profile = profile_from_mapping(
        business, {"model": "gpt-bakery", "system_prompt": "You sell bread.", "transcribe_model": "whisper-bakery"},
        defaults,
    )
    deps = make_deps(model=model, media=media, profiles=StaticProfiles(defaults, {business: profile}))
    process_message(media_msg(Media(VOICE_URL, "audio/ogg")), deps)
    assert [m for _, _, m in model.transcribed] == ["whisper-bakery"]
    assert model.options == [{"system_prompt": "You sell bread.", "model": "gpt-bakery"}]

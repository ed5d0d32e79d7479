"""Twilio's webhook form fields → the pipeline's message: every sample, every bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.domain.inbound import (
    MAX_MEDIA,
    InboundMessage,
    InvalidWebhook,
    Media,
    StatusCallback,
    describe_for_model,
    parse_webhook,
)

SAMPLES = Path(__file__).parents[1] / "samples" / "twilio"
RECEIVED_AT = 1_795_000_000.25


def sample(name: str) -> dict[str, str]:
    return json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def parsed(name: str) -> InboundMessage:
    message = parse_webhook(sample(name), received_at=RECEIVED_AT)
    assert isinstance(message, InboundMessage)
    return message


def minimal(**fields: str) -> dict[str, str]:
    form = {"MessageSid": "SM" + "0" * 32, "From": "whatsapp:+34600111222", "To": "whatsapp:+14155238886"}
    form.update(fields)
    return form


def test_every_sample_is_known_to_these_tests() -> None:
    """A new sample file must get its own expectations here, not pass unnoticed."""
    names = {p.stem for p in SAMPLES.glob("*.json")}
    assert names == {
        "inbound-text",
        "inbound-image",
        "inbound-voice-note",
        "inbound-location",
        "inbound-button-reply",
        "inbound-quick-reply-tap",
        "inbound-list-selection",
        "inbound-quoted-reply",
        "status-delivered",
        "status-read",
        "status-failed-63016",
    }


def test_text_sample() -> None:
    form = sample("inbound-text")
    message = parsed("inbound-text")
    assert message == InboundMessage(
        sid=form["MessageSid"],
        sender="whatsapp:+34600111222",
        recipient="whatsapp:+14155238886",
        body="Hola! What are your opening hours?",
        profile_name="Ana",
        message_type="text",
        received_at=RECEIVED_AT,
    )


def test_image_sample_has_one_media_item_and_its_caption() -> None:
    form = sample("inbound-image")
    message = parsed("inbound-image")
    assert message.sid == form["MessageSid"]
    assert message.message_type == "image"
    assert message.body == "Is this the right part?"
    assert message.media == (Media(url=form["MediaUrl0"], content_type="image/jpeg"),)


def test_voice_note_sample_has_audio_and_no_body() -> None:
    message = parsed("inbound-voice-note")
    assert message.message_type == "audio"
    assert message.body == ""
    assert [m.content_type for m in message.media] == ["audio/ogg"]
    assert message.media[0].url.startswith("https://api.twilio.com/")


def test_location_sample() -> None:
    message = parsed("inbound-location")
    assert (message.latitude, message.longitude) == ("40.4168", "-3.7038")
    assert message.place == "Meet here — Puerta del Sol, Madrid"
    assert message.message_type == "location"
    assert message.media == ()


def test_button_reply_sample() -> None:
    message = parsed("inbound-button-reply")
    assert message.message_type == "button"
    assert message.button_payload == "confirm_booking"
    assert message.body == "Yes, confirm"


@pytest.mark.parametrize(
    ("name", "status", "error_code"),
    [("status-delivered", "delivered", ""), ("status-read", "read", ""), ("status-failed-63016", "failed", "63016")],
)
def test_status_samples_are_status_callbacks(name: str, status: str, error_code: str) -> None:
    form = sample(name)
    callback = parse_webhook(form, received_at=RECEIVED_AT)
    assert isinstance(callback, StatusCallback)
    assert callback.sid == form["MessageSid"]
    assert callback.status == status
    assert callback.recipient == "whatsapp:+34600111222"
    assert callback.error_code == error_code
    assert bool(callback.error_message) == bool(error_code)


def test_describe_image_with_caption() -> None:
    text = describe_for_model(parsed("inbound-image"))
    lines = text.split("\n")
    assert lines == [
        "[The customer sent an image (image/jpeg) that you cannot see or hear.]",
        "Is this the right part?",
    ]


def test_describe_voice_note_with_empty_body() -> None:
    text = describe_for_model(parsed("inbound-voice-note"))
    assert text == "[The customer sent a voice note (audio/ogg) that you cannot see or hear.]"


def test_describe_location() -> None:
    text = describe_for_model(parsed("inbound-location"))
    assert text == "[The customer shared a location: 40.4168, -3.7038 (Meet here — Puerta del Sol, Madrid).]"


def test_describe_button() -> None:
    text = describe_for_model(parsed("inbound-button-reply"))
    assert text == "[The customer tapped the button “Yes, confirm” (payload 'confirm_booking').]"


def test_quick_reply_tap_sample() -> None:
    message = parsed("inbound-quick-reply-tap")
    assert message.message_type == "interactive"
    assert (message.tap_payload, message.tap_text) == ("menu:main:hours", "Opening hours")
    assert message.replied_sid == "SM2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a"
    assert message.replied_sender == "whatsapp:+14155238886"
    # Our own payloads are routing ids, not something for the model to read.
    assert describe_for_model(message) == "[The customer tapped the button “Opening hours”.]"


def test_list_selection_sample() -> None:
    message = parsed("inbound-list-selection")
    assert (message.list_id, message.list_title, message.list_description) == (
        "menu:main:prices", "Prices", "What things cost")
    assert message.button_payload == ""
    assert (message.tap_payload, message.tap_text) == ("menu:main:prices", "Prices")
    assert describe_for_model(message) == "[The customer picked “Prices” from a list.]"


def test_quoted_reply_sample() -> None:
    message = parsed("inbound-quoted-reply")
    assert message.replied_sid == "SM6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e"
    assert message.tap_payload == "" and message.tap_text == ""
    assert describe_for_model(message) == "Is that also on Sundays?"


@pytest.mark.parametrize("replied", ["", "not-a-sid", "SM123", "SM" + "g" * 32, "XX" + "0" * 32])
def test_a_malformed_quoted_sid_keeps_the_message_and_drops_the_quote(replied: str) -> None:
    message = parse_webhook(minimal(Body="hi", OriginalRepliedMessageSid=replied,
                                    OriginalRepliedMessageSender="whatsapp:+1"), 0.0)
    assert isinstance(message, InboundMessage)
    assert (message.body, message.replied_sid, message.replied_sender) == ("hi", "", "")


def test_describe_plain_text_is_the_body_alone() -> None:
    assert describe_for_model(parsed("inbound-text")) == "Hola! What are your opening hours?"


def test_describe_empty_message_still_gives_the_model_a_turn() -> None:
    message = InboundMessage(sid="SM" + "1" * 32, sender="whatsapp:+1", recipient="", body="   ")
    assert describe_for_model(message) == "[The customer sent an empty message.]"


def test_unknown_fields_are_ignored() -> None:
    base = parse_webhook(minimal(Body="hi"), received_at=1.0)
    extra = parse_webhook(minimal(Body="hi", BrandNewField="x", ExternalUserId="u-1", MediaUrl5="https://x"), 1.0)
    assert extra == base


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"From": "whatsapp:+34600111222"}, "missing MessageSid"),
        ({"MessageSid": "  ", "From": "whatsapp:+34600111222"}, "missing MessageSid"),
        ({"MessageSid": "SM" + "0" * 32}, "missing From"),
        ({"MessageSid": "SM" + "0" * 32, "From": ""}, "missing From"),
        ({"MessageSid": "SM123", "From": "whatsapp:+1"}, "MessageSid is not a Twilio SID"),
        ({"MessageSid": "S" + "0" * 33, "From": "whatsapp:+1"}, "MessageSid is not a Twilio SID"),
        ({"MessageSid": "SM" + "0" * 30 + "-x", "From": "whatsapp:+1"}, "MessageSid is not a Twilio SID"),
        ({"MessageSid": "SM" + "0" * 32 + "\n", "From": "whatsapp:+1"}, None),
        ({"MessageSid": "SM" + "0" * 31 + "\nX", "From": "whatsapp:+1"}, "MessageSid is not a Twilio SID"),
        ({"MessageSid": "SM" + "0" * 32 + ".status", "From": "whatsapp:+1"}, "MessageSid is not a Twilio SID"),
        ({"MessageSid": "SM" + "0" * 70, "From": "whatsapp:+1"}, "MessageSid is not a Twilio SID"),
        (minimal(NumMedia="two"), "NumMedia is not a number"),
        (minimal(NumMedia="1.5"), "NumMedia is not a number"),
        (minimal(NumMedia="-1"), "NumMedia is negative"),
    ],
)
def test_bad_forms_are_rejected_with_a_reason(form: dict[str, str], reason: str | None) -> None:
    if reason is None:
        # Surrounding whitespace is trimmed, not a reason to reject.
        assert parse_webhook(form, received_at=0.0).sid == "SM" + "0" * 32
        return
    with pytest.raises(InvalidWebhook) as caught:
        parse_webhook(form, received_at=0.0)
    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_empty_num_media_means_none() -> None:
    assert parse_webhook(minimal(NumMedia=""), 0.0).media == ()


def test_media_count_is_capped_and_missing_urls_are_skipped() -> None:
    form = minimal(NumMedia="50", MediaUrl0="https://m/0", MediaContentType0="image/png")
    for i in range(2, 50):
        form[f"MediaUrl{i}"] = f"https://m/{i}"
    message = parse_webhook(form, 0.0)
    assert isinstance(message, InboundMessage)
    assert [m.url for m in message.media] == ["https://m/0"] + [f"https://m/{i}" for i in range(2, MAX_MEDIA)]
    assert message.message_type == "media"


def test_message_type_defaults_to_text_without_media() -> None:
    message = parse_webhook(minimal(Body="hi"), 0.0)
    assert isinstance(message, InboundMessage) and message.message_type == "text"


@pytest.mark.parametrize("sender", ["whatsapp:bsuid.AB12cd34", "whatsapp:BS.a-b_c", "+34600111222"])
def test_sender_that_is_not_a_phone_number_is_kept_as_given(sender: str) -> None:
    message = parse_webhook(minimal(From=sender, ExternalUserId="AB12cd34"), 0.0)
    assert isinstance(message, InboundMessage)
    assert message.sender == sender
    assert InboundMessage.from_json(message.to_json()).sender == sender


def test_json_round_trip_keeps_every_field() -> None:
    message = InboundMessage(
        sid="MM" + "a" * 32,
        sender="whatsapp:+34600111222",
        recipient="whatsapp:+14155238886",
        body="Hola ¿qué tal? 👩‍💻",
        profile_name="Ána",
        message_type="image",
        media=(Media("https://m/1", "image/jpeg"), Media("https://m/2", "audio/ogg")),
        latitude="40.1",
        longitude="-3.2",
        place="Sol — Madrid",
        button_payload="yes",
        received_at=RECEIVED_AT,
        button_text="Yes",
        list_id="row-1",
        list_title="Row one",
        list_description="The first row",
        replied_sid="SM" + "b" * 32,
        replied_sender="whatsapp:+14155238886",
    )
    data = message.to_json()
    assert isinstance(data, bytes)
    assert InboundMessage.from_json(data) == message


def test_samples_round_trip() -> None:
    for name in ("inbound-text", "inbound-image", "inbound-voice-note", "inbound-location", "inbound-button-reply",
                 "inbound-quick-reply-tap", "inbound-list-selection", "inbound-quoted-reply"):
        message = parsed(name)
        assert InboundMessage.from_json(message.to_json()) == message


def test_a_message_without_taps_or_quotes_publishes_the_fields_it_always_had() -> None:
    """A processor one release older reads it unchanged while a deploy rolls out."""
    plain = json.loads(parsed("inbound-text").to_json())
    assert set(plain) == {"sid", "sender", "recipient", "body", "profile_name", "message_type", "media", "latitude",
                          "longitude", "place", "button_payload", "received_at"}
    tap = json.loads(parsed("inbound-quick-reply-tap").to_json())
    assert tap["button_text"] == "Opening hours" and "list_id" not in tap


def good_payload(**changes: Any) -> bytes:
    raw: dict[str, Any] = json.loads(InboundMessage(sid="SM" + "0" * 32, sender="whatsapp:+1", recipient="r").to_json())
    raw.update(changes)
    return json.dumps(raw).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"text"',
        b"42",
        b"null",
        b'{"sid": "SM00000000000000000000000000000000"}',
        good_payload(unknown_field=1),
        good_payload(media=[{"url": "u"}]),
        good_payload(media=["u"]),
        good_payload(media={"url": "u", "content_type": "c"}),
        good_payload(media=None),
        good_payload(media=[{"url": 1, "content_type": "c"}]),
        good_payload(sid=123),
        good_payload(sid=None),
        good_payload(sid="bad"),
        good_payload(sid="SM" + "0" * 32 + "\n"),
        good_payload(sender=""),
        good_payload(sender=["whatsapp:+1"]),
        good_payload(body=5),
        good_payload(received_at="yesterday"),
        good_payload(received_at=True),
    ],
)
def test_from_json_rejects_malformed_payloads(data: bytes) -> None:
    with pytest.raises(InvalidWebhook) as caught:
        InboundMessage.from_json(data)
    assert caught.value.reason


def test_from_json_accepts_an_integer_timestamp() -> None:
    message = InboundMessage.from_json(good_payload(received_at=12))
    assert message.received_at == 12


def test_from_json_result_is_usable_by_the_describer() -> None:
    message = InboundMessage.from_json(good_payload(body="  hi  "))
    assert describe_for_model(message) == "hi"

"""The WhatsApp channel end to end: media, typing, ticks, the 24-hour window, outbound sends."""

from __future__ import annotations

import base64
import http.server
import threading
from typing import Any, Iterator

import pytest

from devstack.openai_stub import transcript_of
from devstack.twilio_stub import new_sid, sign_and_post
from shared.domain.delivery import OUTSIDE_WINDOW
from shared.domain.media import MEDIA_FAILED_REPLY
from tests.plugin import unique_user, wait_until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
VOICE = b"OggS\x00\x02" + bytes(range(200))


@pytest.fixture
def restart(stack) -> Iterator:
    changed: set[str] = set()

    def _restart(name: str, **env: str) -> None:
        changed.add(name)
        stack.start_function(name, extra_env=env)

    yield _restart
    for name in changed:
        stack.start_function(name)


def post_media(pipeline, user: str, data: bytes, content_type: str, body: str = "") -> str:
    stored = pipeline.twilio.add_media(data, content_type)
    kind = content_type.split("/")[0]
    status, sid, _ = pipeline.post(user, body, sid=stored.message_sid, NumMedia="1", MediaUrl0=stored.url,
                                   MediaContentType0=content_type, MessageType=kind)
    assert status == 200
    return sid


def last_user_content(request: list[dict[str, Any]]) -> Any:
    return [m for m in request if m.get("role") == "user"][-1]["content"]


def test_an_image_reaches_the_model_with_its_bytes_and_caption(pipeline) -> None:
    user = unique_user()
    sid = post_media(pipeline, user, PNG, "image/png", body="what colour is this?")
    pipeline.wait_replies(user, 1)
    [request] = [r.messages for r in pipeline.model.requests if isinstance(last_user_content(r.messages), list)
                 and last_user_content(r.messages)[0]["text"] == "[image] what colour is this?"]
    image = last_user_content(request)[1]["image_url"]["url"]
    assert image.startswith("data:image/png;base64,")
    assert base64.b64decode(image.split(",", 1)[1]) == PNG
    assert pipeline.conversation(user).history[0]["content"] == "[image] what colour is this?"
    wait_until(lambda: pipeline.entry(user, sid).status == "sent", timeout=30)


def test_a_voice_note_is_answered_from_its_transcript(pipeline) -> None:
    user = unique_user()
    post_media(pipeline, user, VOICE, "audio/ogg")
    [reply] = pipeline.wait_replies(user, 1)
    transcript = transcript_of(VOICE)
    assert transcript in reply
    assert pipeline.model_requests_for(transcript)
    assert pipeline.conversation(user).history[0]["content"] == transcript
    assert [t["size"] for t in pipeline.model.transcriptions if t["size"] == len(VOICE)]


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        _Counting.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, *args: object) -> None:
        pass


def test_a_foreign_media_url_is_refused_without_a_request(pipeline) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        user = unique_user()
        foreign = f"http://127.0.0.1:{server.server_address[1]}/2010-04-01/Accounts/AC/Messages/MM1/Media/ME1"
        status, sid, _ = pipeline.post(user, "look", NumMedia="1", MediaUrl0=foreign, MediaContentType0="image/jpeg",
                                       MessageType="image")
        assert status == 200
        assert pipeline.wait_replies(user, 1) == [MEDIA_FAILED_REPLY]
        assert _Counting.hits == []
        assert pipeline.failure(sid)["stage"] == "media" and "refused" in pipeline.failure(sid)["reason"]
    finally:
        server.shutdown()
        server.server_close()


def test_the_typing_indicator_goes_before_the_reply(pipeline) -> None:
    user = unique_user()
    _, sid, _ = pipeline.post(user, "are you there?")
    pipeline.wait_replies(user, 1)
    [typing] = [t for t in pipeline.twilio.typing if t["message_id"] == sid]
    assert typing["channel"] == "whatsapp"
    [sent] = pipeline.twilio_messages_to(user)
    assert typing["at"] <= sent.received_at


def test_a_failing_typing_indicator_does_not_hold_the_reply(pipeline) -> None:
    pipeline.twilio.fail_typing(times=1, status=500)
    user = unique_user()
    pipeline.post(user, "still answered?")
    assert len(pipeline.wait_replies(user, 1)) == 1


def post_status(pipeline, user: str, twilio_sid: str, status: str, code: str = "") -> None:
    o = pipeline.stack.options
    form = {"MessageSid": twilio_sid, "SmsSid": twilio_sid, "MessageStatus": status, "SmsStatus": status, "To": user,
            "From": o.twilio_whatsapp_from, "AccountSid": o.twilio_account_sid, "ApiVersion": "2010-04-01"}
    if code:
        form["ErrorCode"] = code
    assert sign_and_post(pipeline.stack.webhook_url, form, o.twilio_auth_token)[0] == 200


def test_status_callbacks_out_of_order_end_in_the_right_state(pipeline) -> None:
    pipeline.twilio.send_callbacks = False
    try:
        user = unique_user()
        _, first, _ = pipeline.post(user, "one")
        [part] = pipeline.wait_replies(user, 1) and pipeline.twilio_messages_to(user)
        for status in ("read", "sent", "delivered"):
            post_status(pipeline, user, part.sid, status)
        post_status(pipeline, user, new_sid("SM"), "delivered")
        # One user's callbacks and messages share an ordering key: once the next
        # message is answered, every callback posted before it was applied.
        pipeline.post(user, "two")
        pipeline.wait_replies(user, 2)
        wait_until(lambda: pipeline.entry(user, first).deliveries, 30)
        assert pipeline.conversation(user).entry(first).deliveries == {part.sid: "read"}
        post_status(pipeline, user, part.sid, "undelivered", code="30008")
        wait_until(lambda: pipeline.failure(part.sid), 30)
        entry = pipeline.conversation(user).entry(first)
        assert entry.deliveries == {part.sid: "undelivered"} and entry.delivery_errors == {part.sid: "30008"}
        assert pipeline.failure(part.sid)["stage"] == "delivery"
    finally:
        pipeline.twilio.send_callbacks = True


def test_the_stand_ins_own_callbacks_tick_a_reply_to_read(pipeline) -> None:
    user = unique_user()
    _, sid, _ = pipeline.post(user, "tick me")
    [part] = pipeline.wait_replies(user, 1) and pipeline.twilio_messages_to(user)
    assert part.status_callback == pipeline.stack.webhook_url
    wait_until(lambda: pipeline.entry(user, sid).deliveries.get(part.sid) == "read", 30)


def test_a_reply_past_the_24_hour_window_is_recorded_without_calling_twilio(pipeline, restart) -> None:
    restart("sender", TEST_CLOCK_OFFSET_SECONDS=str(25 * 3600))
    user = unique_user()
    _, sid, _ = pipeline.post(user, "answer me tomorrow")
    wait_until(lambda: pipeline.failure(sid), 60)
    assert pipeline.failure(sid)["reason"].startswith(OUTSIDE_WINDOW)
    assert pipeline.conversation(user).entry(sid).status == "failed"
    assert pipeline.twilio_messages_to(user) == []
    assert [a for a in pipeline.twilio.attempts if a[0] == user] == []

"""The whole message path, as real processes against the emulators and stand-ins."""

from __future__ import annotations

import time
import urllib.request
from datetime import datetime, timedelta, timezone

from devstack.twilio_stub import inbound_message, sign_and_post
from tests.plugin import unique_user, wait_until


def test_a_signed_webhook_gets_its_reply_through_twilio(pipeline) -> None:
    user = unique_user()
    status, sid, _ = pipeline.post(user, "Hola! What are your opening hours?")
    assert status == 200
    replies = pipeline.wait_replies(user, 1)
    assert len(replies) == 1
    assert replies[0].startswith("[offline model]") and "opening hours" in replies[0]
    sent = [m for m in pipeline.twilio.messages if m.to == user][0]
    assert sent.from_ == pipeline.stack.options.twilio_whatsapp_from
    request = pipeline.model_requests_for("Hola! What are your opening hours?")[0]
    assert request[0]["role"] == "system"
    # Twilio has the reply before the sender records it as sent.
    wait_until(lambda: pipeline.entry(user, sid).status == "sent", timeout=30)
    conv = pipeline.conversation(user)
    assert isinstance(conv.expire_at, datetime)
    assert conv.expire_at > datetime.now(timezone.utc) + timedelta(minutes=50)


def test_the_webhook_answers_empty_twiml_without_waiting_for_the_model(pipeline) -> None:
    pipeline.model.delay_seconds = 5
    user = unique_user()
    started = time.monotonic()
    status, _, _ = pipeline.post(user, "slow model please")
    acked_after = time.monotonic() - started
    assert status == 200
    # The reply cannot exist yet: the model is still thinking.
    assert pipeline.replies(user) == []
    assert acked_after < 5
    assert len(pipeline.wait_replies(user, 1, timeout=30)) == 1


def test_second_turn_carries_the_first(pipeline) -> None:
    user = unique_user()
    pipeline.post(user, "My name is Ana")
    pipeline.wait_replies(user, 1)
    pipeline.post(user, "What is my name?")
    replies = pipeline.wait_replies(user, 2)
    request = pipeline.model_requests_for("What is my name?")[0]
    contents = [m["content"] for m in request]
    assert "My name is Ana" in contents
    assert replies[0] in contents
    assert [m["role"] for m in request] == ["system", "user", "assistant", "user"]


def test_an_expired_conversation_starts_fresh(pipeline) -> None:
    user = unique_user()
    pipeline.post(user, "Remember the blue bike")
    pipeline.wait_replies(user, 1)
    # As if the TTL had passed: the emulator never deletes, and neither may
    # Firestore for up to a day, so expiry is decided on read.
    doc = pipeline.db.collection("conversations").document(pipeline.conversation_id(user))
    doc.update({"expireAt": datetime.now(timezone.utc) - timedelta(seconds=1)})
    pipeline.post(user, "What did I ask you to remember?")
    pipeline.wait_replies(user, 2)
    request = pipeline.model_requests_for("What did I ask you to remember?")[0]
    assert [m["role"] for m in request] == ["system", "user"]
    history = pipeline.conversation(user).history
    assert [t["content"] for t in history if t["role"] == "user"] == ["What did I ask you to remember?"]


def test_a_username_sender_is_answered_on_the_same_address(pipeline) -> None:
    user = f"whatsapp:bsuid.{int(time.time() * 1000)}"
    status, _, _ = pipeline.post(user, "hello from a hidden number")
    assert status == 200
    assert len(pipeline.wait_replies(user, 1)) == 1


def _post_raw(url: str, data: bytes, headers: dict[str, str], method: str = "POST") -> int:
    request = urllib.request.Request(url, data=data if method == "POST" else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_bad_webhooks_are_refused_and_nothing_reaches_the_pipeline(pipeline) -> None:
    o = pipeline.stack.options
    url = pipeline.stack.webhook_url
    victims = {}
    # Unsigned: 403.
    user = unique_user()
    params = inbound_message(user, "unsigned", to=o.twilio_whatsapp_from)
    body = urllib.parse.urlencode(params).encode()
    assert _post_raw(url, body, {"Content-Type": "application/x-www-form-urlencoded"}) == 403
    victims["unsigned"] = user
    # Signed with the wrong token: 403.
    user = unique_user()
    status, _, _ = sign_and_post(url, inbound_message(user, "forged", to=o.twilio_whatsapp_from), "wrong-token")
    assert status == 403
    victims["forged"] = user
    # Not POST: 405.
    assert _post_raw(url, b"", {}, method="GET") == 405
    # Signed but without MessageSid: 400.
    user = unique_user()
    params = inbound_message(user, "no sid", to=o.twilio_whatsapp_from)
    params.pop("MessageSid")
    status, _, reply = sign_and_post(url, params, o.twilio_auth_token)
    assert status == 400 and b"MessageSid" in reply
    victims["no sid"] = user
    # Too large: 413.
    user = unique_user()
    status, _, _ = sign_and_post(url, inbound_message(user, "x" * 70_000, to=o.twilio_whatsapp_from), o.twilio_auth_token)
    assert status == 413
    victims["too large"] = user
    # A good message afterwards still goes through, and none of the bad ones did.
    good = unique_user()
    assert pipeline.post(good, "and this one is fine")[0] == 200
    pipeline.wait_replies(good, 1)
    time.sleep(1)
    for reason, victim in victims.items():
        assert pipeline.replies(victim) == [], reason
        assert not pipeline.conversation(victim).exists, reason


def test_a_status_callback_is_acknowledged_and_not_answered(pipeline) -> None:
    o = pipeline.stack.options
    user = unique_user()
    callback = {
        "MessageStatus": "failed", "SmsStatus": "failed", "ErrorCode": "63016",
        "MessageSid": "SM93a4b5c6d7e8f90a1b2c3d4e5f607182", "SmsSid": "SM93a4b5c6d7e8f90a1b2c3d4e5f607182",
        "AccountSid": o.twilio_account_sid, "From": o.twilio_whatsapp_from, "To": user, "ApiVersion": "2010-04-01",
    }
    status, _, _ = sign_and_post(pipeline.stack.webhook_url, callback, o.twilio_auth_token)
    assert status == 200
    time.sleep(0.5)
    assert not pipeline.conversation(o.twilio_whatsapp_from).exists
    assert pipeline.replies(o.twilio_whatsapp_from) == []


def test_no_log_line_or_firestore_id_carries_the_number(pipeline) -> None:
    user = unique_user()
    _, sid, _ = pipeline.post(user, "keep my number private")
    pipeline.wait_replies(user, 1)
    wait_until(lambda: pipeline.entry(user, sid).status == "sent", timeout=30)
    digits = user.split("+")[1]
    logs = "".join(p.read_text(errors="replace") for p in pipeline.stack.options.log_dir.glob("*_fn.log"))
    assert sid in logs, "the functions logged this message"
    assert digits not in logs and digits[-7:] not in logs
    ids = [snap.id for snap in pipeline.db.collection("conversations").stream()]
    assert pipeline.conversation_id(user) in ids
    assert not any(digits in i for i in ids)

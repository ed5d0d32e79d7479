"""The outbound API through the running stack: business-initiated messages reach Twilio once, in order."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

from tests.plugin import unique_user, wait_until

TEMPLATE = "HX" + "0123456789abcdef" * 2


def post_outbound(pipeline, **fields: Any) -> tuple[int, dict[str, Any]]:
    """POST the JSON body to the OUTBOUND url, as the business's systems do: their ID token in both headers."""
    request = urllib.request.Request(
        pipeline.stack.outbound_url, data=json.dumps(fields).encode(),
        headers={"Content-Type": "application/json", **pipeline.stack.outbound_headers()},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_template_reaches_twilio_once_and_the_model_sees_it(pipeline) -> None:
    user, key = unique_user(), f"order-{uuid.uuid4()}"
    pipeline.twilio.add_content(TEMPLATE, "Hi {{1}}, can we confirm your appointment?")
    status, answer = post_outbound(
        pipeline, to=user, content_sid=TEMPLATE, content_variables={"1": "Ana"}, idempotency_key=key,
    )
    assert status == 202 and answer["id"].startswith("OB")
    sent = wait_until(lambda: pipeline.twilio_messages_to(user), timeout=30)
    assert sent[0].params["ContentSid"] == TEMPLATE
    assert json.loads(sent[0].params["ContentVariables"]) == {"1": "Ana"}
    assert sent[0].from_ == pipeline.stack.options.twilio_whatsapp_from
    assert sent[0].body == "Hi Ana, can we confirm your appointment?"

    again_status, again = post_outbound(pipeline, to=user, content_sid=TEMPLATE, idempotency_key=key)
    assert again_status == 202 and again == answer
    assert pipeline.conversation(user).last_seq == 1

    # The user answers; sends are in order per user, so a second template would come before this reply.
    pipeline.post(user, "Yes, tomorrow at ten works")
    replies = wait_until(lambda: [m for m in pipeline.twilio_messages_to(user) if not m.params.get("ContentSid")],
                         timeout=30)
    assert len(replies) == 1
    assert [m.params.get("ContentSid") for m in pipeline.twilio_messages_to(user)] == [TEMPLATE, None]
    request = pipeline.model_requests_for("Yes, tomorrow at ten works")[0]
    assert [m["role"] for m in request] == ["system", "assistant", "user"]
    assert request[1]["content"].startswith(f"[template {TEMPLATE}]")


def test_free_text_inside_the_window_is_sent_after_the_reply_and_seen_by_the_model(pipeline) -> None:
    user = unique_user()
    status, refused = post_outbound(pipeline, to=user, body="Your order shipped", idempotency_key=str(uuid.uuid4()))
    assert status == 409 and "24-hour window" in refused["error"]

    pipeline.post(user, "Where is my order?")
    pipeline.wait_replies(user, 1)
    status, answer = post_outbound(pipeline, to=user, body="Your order shipped today.", idempotency_key="ship-1")
    assert status == 202
    replies = pipeline.wait_replies(user, 2)
    assert replies[1] == "Your order shipped today."
    assert pipeline.conversation(user).entry(answer["id"]).status in ("sent", "sending", "answered")

    pipeline.post(user, "Thanks, when will it arrive?")
    replies = pipeline.wait_replies(user, 3)
    assert len(replies) == 3
    request = pipeline.model_requests_for("Thanks, when will it arrive?")[0]
    assert "Your order shipped today." in [m["content"] for m in request]


def test_an_invalid_request_is_refused_with_the_reason(pipeline) -> None:
    status, answer = post_outbound(pipeline, to=unique_user(), idempotency_key="x")
    assert status == 400 and answer["error"] == "exactly one of body and content_sid is required"

"""Buttons, lists, taps and quoted replies end to end through the three functions on the emulators.

Each test writes its own business's profile (a number no other test uses) with menus; the Twilio
stand-in creates Content resources as strictly as Twilio documents and posts taps as Twilio does.
"""

from __future__ import annotations

import uuid
from typing import Any

from devstack.twilio_content import LIST_PICKER, QUICK_REPLY, tap_fields
from devstack.twilio_stub import inbound_message, new_sid, sign_and_post
from shared.domain.delivery import OUTSIDE_WINDOW
from tests.e2e.test_channel import restart  # noqa: F401 - the fixture that restarts a function with settings
from tests.e2e.test_controls import new_business, put_profile, replies_from, settle
from tests.plugin import unique_user, wait_until


def menus(tag: str) -> list[dict[str, Any]]:
    """A main menu of three buttons and a list of four behind its third; ``tag`` makes the content new."""
    return [
        {"id": "main", "keywords": ["menu"], "text": f"How can we help? {tag}", "items": [
            {"id": "hours", "title": "Opening hours", "reply": f"9 to 18, Monday to Saturday. {tag}"},
            {"id": "person", "title": "Talk to a person", "handoff": True},
            {"id": "more", "title": "More", "menu": "more"},
        ]},
        {"id": "more", "text": f"And also: {tag}", "button": "See all", "items": [
            {"id": f"i{n}", "title": f"Thing {n}", "description": f"About thing {n}", "reply": f"Thing {n} {tag}"}
            for n in range(1, 5)
        ]},
    ]


def sent_to(pipeline, user: str, business: str) -> list:  # noqa: ANN001
    return [m for m in pipeline.twilio_messages_to(user) if m.from_ == business]


def wait_sent(pipeline, user: str, business: str, count: int) -> list:  # noqa: ANN001
    wait_until(lambda: len(sent_to(pipeline, user, business)) >= count, timeout=30)
    return sent_to(pipeline, user, business)


def tap(pipeline, user: str, business: str, message, choice_id: str, sid: str = "") -> dict[str, str]:  # noqa: ANN001
    o = pipeline.stack.options
    fields = tap_fields(message.types, choice_id, message.sid, business,
                        lambda *a, **k: inbound_message(*a, account_sid=o.twilio_account_sid, **k),
                        user, sid or new_sid("SM"))
    assert sign_and_post(pipeline.stack.webhook_url, fields, o.twilio_auth_token)[0] == 200
    return fields


def model_saw(pipeline, fragment: str) -> list[str]:  # noqa: ANN001
    return [str(m.get("content")) for r in pipeline.model.requests for m in r.messages[-1:]
            if fragment in str(m.get("content"))]


def test_a_menu_is_created_once_reused_across_conversations_and_its_taps_need_no_model(pipeline, ledger) -> None:
    business, tag = new_business(), uuid.uuid4().hex[:6]
    put_profile(pipeline, business, name="Cafe", menus=menus(tag))
    first, second = unique_user(), unique_user()
    calls_before = len(pipeline.model.requests)
    pipeline.post(first, "menu", to=business)
    pipeline.post(second, "MENU", to=business)
    [one], [two] = wait_sent(pipeline, first, business, 1), wait_sent(pipeline, second, business, 1)
    assert one.content_sid and one.content_sid == two.content_sid
    assert one.body == f"How can we help? {tag}" and QUICK_REPLY in one.types
    made = [r for r in pipeline.twilio.content_api.resources if tag in r.body]
    assert len(made) == 1

    # A tap on a menu item: its canned reply, no model; the same tap twice (Twilio retried) answers once.
    fields = tap(pipeline, first, business, one, "menu:main:hours")
    o = pipeline.stack.options
    assert sign_and_post(pipeline.stack.webhook_url, fields, o.twilio_auth_token)[0] == 200
    ledger.duplicates_injected += 1
    assert wait_sent(pipeline, first, business, 2)[1].body == f"9 to 18, Monday to Saturday. {tag}"

    # The list behind "More", then a typed "2" picks its second row, as a tap would.
    tap(pipeline, first, business, one, "menu:main:more")
    listed = wait_sent(pipeline, first, business, 3)[2]
    assert LIST_PICKER in listed.types and listed.body == f"And also: {tag}"
    assert [i["item"] for i in listed.types[LIST_PICKER]["items"]] == ["Thing 1", "Thing 2", "Thing 3", "Thing 4"]
    pipeline.post(first, "2", to=business)
    assert wait_sent(pipeline, first, business, 4)[3].body == f"Thing 2 {tag}"
    settle()
    assert len(sent_to(pipeline, first, business)) == 4
    assert len(pipeline.model.requests) == calls_before
    history = [t["content"] for t in pipeline.conversation(first, business).history]
    assert "[The customer tapped the button “Opening hours”.]" in history
    assert history[-1] == f"Thing 2 {tag}"


def test_a_tap_on_talk_to_a_person_hands_the_conversation_over(pipeline) -> None:
    business, user, tag = new_business(), unique_user(), uuid.uuid4().hex[:6]
    put_profile(pipeline, business, name="Clinic", menus=menus(tag), handoff_reply="A person will write to you.")
    pipeline.post(user, "menu", to=business)
    [offered] = wait_sent(pipeline, user, business, 1)
    tap(pipeline, user, business, offered, "menu:main:person")
    assert wait_sent(pipeline, user, business, 2)[1].body == "A person will write to you."
    assert pipeline.conversation(user, business).paused_until is not None


def test_a_content_api_failure_sends_the_same_choices_as_numbered_text(pipeline) -> None:
    business, user, tag = new_business(), unique_user(), uuid.uuid4().hex[:6]
    put_profile(pipeline, business, name="Shop", menus=menus(tag))
    pipeline.twilio.content_api.fail_next(3, status=503)
    pipeline.post(user, "menu", to=business)
    [reply] = wait_sent(pipeline, user, business, 1)
    assert reply.content_sid == "" and reply.types == {}
    assert reply.body == f"How can we help? {tag}\n\n1. Opening hours\n2. Talk to a person\n3. More"
    # The numbers are understood like taps.
    pipeline.post(user, "1", to=business)
    assert wait_sent(pipeline, user, business, 2)[1].body == f"9 to 18, Monday to Saturday. {tag}"


def test_past_the_24_hour_window_no_buttons_go_and_the_window_rule_holds(pipeline, restart) -> None:
    restart("sender", TEST_CLOCK_OFFSET_SECONDS=str(25 * 3600))
    business, user, tag = new_business(), unique_user(), uuid.uuid4().hex[:6]
    put_profile(pipeline, business, name="Late", menus=menus(tag))
    _, sid, _ = pipeline.post(user, "menu", to=business)
    wait_until(lambda: pipeline.failure(sid), 60)
    assert pipeline.failure(sid)["reason"].startswith(OUTSIDE_WINDOW)
    assert [r for r in pipeline.twilio.content_api.resources if tag in r.body] == []
    assert [a for a in pipeline.twilio.attempts if a[0] == user] == []


def test_a_quoted_reply_reaches_the_model_with_the_quoted_text_from_the_record(pipeline) -> None:
    user = unique_user()
    pipeline.post(user, "When do you open?")
    [answer] = pipeline.wait_replies(user, 1)
    quoted = pipeline.twilio_messages_to(user)[0].sid
    pipeline.post(user, "And on Sundays?", OriginalRepliedMessageSid=quoted,
                  OriginalRepliedMessageSender=pipeline.stack.options.twilio_whatsapp_from)
    pipeline.wait_replies(user, 2)
    [told] = model_saw(pipeline, "And on Sundays?")
    assert told == f"[The customer is replying to your earlier message: “{answer}”]\nAnd on Sundays?"
    pipeline.post(user, "What did you mean?", OriginalRepliedMessageSid=new_sid("SM"),
                  OriginalRepliedMessageSender=pipeline.stack.options.twilio_whatsapp_from)
    pipeline.wait_replies(user, 3)
    [unknown] = model_saw(pipeline, "What did you mean?")
    assert "no longer in this conversation's record" in unknown


def test_a_tap_on_a_choice_with_no_menu_action_reaches_the_model_as_chosen(pipeline) -> None:
    user = unique_user()
    pipeline.post(user, "", ButtonPayload="choice:2:Large family pizza", ButtonText="Large family pizza",
                  MessageType="interactive", Body="Large family pizza")
    pipeline.wait_replies(user, 1)
    assert model_saw(pipeline, "[The customer chose “Large family pizza” from the options offered.]")
    assert replies_from(pipeline, user, pipeline.stack.options.twilio_whatsapp_from)


def test_the_model_answers_with_choices_as_buttons_and_their_tap_reaches_it(pipeline) -> None:
    business, user, tag = new_business(), unique_user(), uuid.uuid4().hex[:6]
    put_profile(pipeline, business, name="Bakery", model_choices=True)
    pipeline.model.set_reply_call("reply_with_choices", {
        "text": f"Which size? {tag}", "choices": [{"title": "Small"}, {"title": "A very large family-size cake"}]})
    try:
        pipeline.post(user, "A cake please", to=business)
        [offer] = wait_sent(pipeline, user, business, 1)
    finally:
        pipeline.model.set_reply_text(None)
    assert offer.content_sid and offer.body == f"Which size? {tag}"
    titles = [a["title"] for a in offer.types[QUICK_REPLY]["actions"]]
    assert titles[0] == "Small" and len(titles[1]) <= 20 and titles[1].endswith("…")
    asked = [r for r in pipeline.model.requests if "A cake please" in str(r.messages[-1].get("content"))]
    assert [t["function"]["name"] for t in asked[-1].body["tools"]] == ["reply_with_choices"]

    # The shortened button's tap tells the model the whole title.
    tap(pipeline, user, business, offer, offer.types[QUICK_REPLY]["actions"][1]["id"])
    wait_sent(pipeline, user, business, 2)
    assert model_saw(pipeline, "“A very large family-size cake”")

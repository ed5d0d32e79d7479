"""The inbox's pure rules: the staff key and who may see what, and what a conversation shows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.adapters.conversation_document import from_document
from shared.domain import inbox as view
from shared.domain.profiles import BusinessProfile, ProfileError, profile_from_mapping
from shared.domain.staff import Business, access_for

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
BAKERY = "whatsapp:+14155238886"
CLINIC = "whatsapp:+15550001111"


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


# ------------------------------------------------------------- the staff key


def test_staff_and_notify_webhook_are_profile_keys() -> None:
    profile = profile_from_mapping(BAKERY, {"staff": ["Ana@Panaderia.example", "luis@gmail.com", "ana@panaderia.example"],
                                            "notify_webhook": "https://chat.googleapis.com/v1/spaces/x/messages"},
                                   BusinessProfile())
    assert profile.staff == ("ana@panaderia.example", "luis@gmail.com")
    assert profile.notify_webhook == "https://chat.googleapis.com/v1/spaces/x/messages"
    assert profile_from_mapping(BAKERY, {}, BusinessProfile()).staff == ()


@pytest.mark.parametrize("raw, message", [
    ({"staff": "ana@x.example"}, "key 'staff': must be a list of e-mail addresses"),
    ({"staff": ["not-an-email"]}, "key 'staff': 'not-an-email' is not an e-mail address"),
    ({"staff": ["a@b.example", 3]}, "key 'staff': must be a list"),
    ({"staff": [f"p{n}@x.example" for n in range(101)]}, "at most 100"),
    ({"notify_webhook": "http://hooks.example/x"}, "key 'notify_webhook': must be an https URL"),
    ({"notify_webhook": "https://user:pw@hooks.example/x"}, "must be a URL such as"),
    ({"notify_webhook": 5}, "must be a URL, got int"),
])
def test_bad_inbox_keys_are_refused_naming_the_business_and_key(raw: dict, message: str) -> None:
    with pytest.raises(ProfileError) as refused:
        profile_from_mapping(BAKERY, raw, BusinessProfile())
    assert f"business {BAKERY!r}" in str(refused.value) and message in str(refused.value)


def test_a_loopback_webhook_may_be_http_for_the_local_stack() -> None:
    assert profile_from_mapping(BAKERY, {"notify_webhook": "http://127.0.0.1:9999/hook"},
                                BusinessProfile()).notify_webhook == "http://127.0.0.1:9999/hook"


DIRECTORY = (
    Business(BAKERY, "Panadería Sol", ("ana@panaderia.example",)),
    Business(CLINIC, "Clínica Norte", ("desk@clinica.example", "ana@panaderia.example")),
    Business("whatsapp:+15550002222", "Nobody's", ()),
)


def test_staff_see_exactly_the_businesses_that_list_them() -> None:
    desk = access_for("Desk@Clinica.example", DIRECTORY, ())
    assert [b.address for b in desk.businesses] == [CLINIC] and desk.allowed and not desk.operator
    assert desk.may_see(CLINIC) and not desk.may_see(BAKERY)
    both = access_for("ana@panaderia.example", DIRECTORY, ())
    assert {b.address for b in both.businesses} == {BAKERY, CLINIC}
    stranger = access_for("someone@gmail.com", DIRECTORY, ())
    assert not stranger.allowed and stranger.businesses == () and not stranger.may_see(BAKERY)


def test_operators_see_every_business() -> None:
    operator = access_for("ops@agency.example", DIRECTORY, ("OPS@agency.example",))
    assert operator.operator and len(operator.businesses) == 3


# -------------------------------------------------------- what is shown


def test_numbers_are_masked() -> None:
    assert view.mask_number("whatsapp:+34600111222") == "+34 •••••• 222"
    assert "600111" not in view.mask_number("whatsapp:+34600111222")
    assert view.mask_number("whatsapp:someone") == "s••••••"
    assert view.mask_number("") == ""


def _doc(**extra: object) -> dict:
    base = {"business": BAKERY, "address": "whatsapp:+34600111222", "updatedAt": ago(1), "lastInboundAt": ago(30),
            "history": [], "messages": {}}
    return {**base, **extra}


def test_a_handoff_needs_a_person_from_the_customers_message_until_a_person_answers() -> None:
    messages = {
        "SM1": {"status": "sent", "receivedAt": ago(20), "twilioSids": ["TW1"], "deliveries": {"TW1": "read"}},
        "SM2": {"status": "sent", "receivedAt": ago(10), "decided": {"kind": "reply", "reason": "handoff"},
                "twilioSids": ["TW2"], "deliveries": {"TW2": "delivered"}},
        "SM3": {"status": "ignored", "reason": "paused", "receivedAt": ago(5)},
    }
    doc = _doc(messages=messages, pausedUntil=NOW + timedelta(minutes=50))
    found = view.summary("c1", from_document(doc), NOW)
    assert found.attention.reasons == ("handoff",) and found.attention.waiting_since == ago(10)
    assert found.attention.needs_person
    messages["OP1"] = {"status": "sent", "by": "person", "receivedAt": ago(2)}
    answered = view.summary("c1", from_document(doc), NOW)
    assert answered.attention.reasons == ("paused",) and not answered.attention.needs_person
    messages["SM4"] = {"status": "ignored", "reason": "paused", "receivedAt": ago(1)}
    again = view.summary("c1", from_document(doc), NOW)
    assert again.attention.needs_person and again.attention.waiting_since == ago(1)


def test_failures_and_unknown_replies_need_a_person_until_answered_properly() -> None:
    messages = {"SM1": {"status": "sent", "fallback": True, "receivedAt": ago(9)}}
    doc = _doc(messages=messages)
    assert view.summary("c", from_document(doc), NOW).attention.reasons == ("failed",)
    messages["SM2"] = {"status": "sent", "receivedAt": ago(3)}
    assert view.summary("c", from_document(doc), NOW).attention.reasons == ()
    messages["SM3"] = {"status": "sent", "receivedAt": ago(2), "knowledgeUnknown": True}
    assert view.summary("c", from_document(doc), NOW).attention == view.Attention(("unknown",), ago(2))
    messages["SM4"] = {"status": "dead_lettered", "receivedAt": ago(1)}
    assert set(view.summary("c", from_document(doc), NOW).attention.reasons) == {"failed", "unknown"}


def test_an_expired_pause_is_no_reason() -> None:
    doc = _doc(pausedUntil=ago(1), messages={"SM1": {"status": "ignored", "receivedAt": ago(5)}})
    assert view.summary("c", from_document(doc), NOW).attention.reasons == ()


def test_history_says_who_said_what_with_states_and_ticks() -> None:
    doc = _doc(
        history=[
            {"role": "user", "content": "agent", "sid": "SM1"},
            {"role": "assistant", "content": "Someone will answer", "sid": "SM1"},
            {"role": "assistant", "content": "Hi, Ana here", "sid": "OP1", "by": "person"},
            {"role": "assistant", "content": "Your order is ready", "sid": "OB1", "by": "business"},
            {"role": "user", "content": "thanks", "sid": "SM2"},
        ],
        messages={
            "SM1": {"status": "sent", "receivedAt": ago(10), "updatedAt": ago(9), "twilioSids": ["T1", "T2"],
                    "deliveries": {"T1": "read", "T2": "delivered"}},
            "OP1": {"status": "sent", "by": "person", "receivedAt": ago(5), "twilioSids": ["T3"],
                    "deliveries": {"T3": "read"}},
            "OB1": {"status": "answered", "by": "business", "receivedAt": ago(4)},
            "SM2": {"status": "ignored", "reason": "paused", "receivedAt": ago(1)},
        },
    )
    items = view.history(from_document(doc), NOW)
    assert [(i.who, i.text) for i in items] == [
        ("customer", "agent"), ("bot", "Someone will answer"), ("person", "Hi, Ana here"),
        ("business", "Your order is ready"), ("customer", "thanks"),
    ]
    assert items[1].ticks == "delivered"  # the least advanced part
    assert items[2].ticks == "read" and items[2].at == ago(5)
    assert items[3].state == "sending" and items[3].ticks == ""
    assert items[4].state == "not answered" and items[4].detail == "paused"
    assert items[0].state == "answered" and items[0].at == ago(10)


def test_the_window_and_opt_out_are_shown() -> None:
    open_now = view.summary("c", from_document(_doc(lastInboundAt=ago(60))), NOW)
    assert open_now.window_open and open_now.window_closes == ago(60) + timedelta(hours=24)
    closed = view.summary("c", from_document(_doc(lastInboundAt=NOW - timedelta(hours=25), optedOut=True)), NOW)
    assert not closed.window_open and closed.opted_out
    never = view.summary("c", from_document(_doc(lastInboundAt=None)), NOW)
    assert not never.window_open and never.window_closes is None


def test_those_that_need_a_person_come_first_longest_wait_first() -> None:
    def doc(updated: float, waiting: float | None) -> dict:
        messages = {"SM": {"status": "sent", "receivedAt": ago(30)}}
        if waiting is not None:
            messages["F"] = {"status": "failed", "receivedAt": ago(waiting)}
        return _doc(updatedAt=ago(updated), messages=messages)

    summaries = [view.summary(cid, from_document(d), NOW) for cid, d in (
        ("recent", doc(1, None)), ("old", doc(50, None)), ("short-wait", doc(2, 3)), ("long-wait", doc(40, 20)))]
    assert [s.id for s in view.ordered(summaries)] == ["long-wait", "short-wait", "recent", "old"]
    assert view.summary("x", from_document(doc(1, 2)), NOW).to_json()["needsPerson"] is True


def test_search_matches_name_words_and_known_digits_only() -> None:
    doc = _doc(profileName="María", history=[{"role": "user", "content": "¿Tenéis pan de centeno?", "sid": "SM1"}])
    found = view.summary("c", from_document(doc), NOW)
    assert view.matches(found, from_document(doc), "maría") and view.matches(found, from_document(doc), "CENTENO")
    assert view.matches(found, from_document(doc), "+34 600111222") and view.matches(found, from_document(doc), "1222")
    assert not view.matches(found, from_document(doc), "croissant") and not view.matches(found, from_document(doc), "999999")
    assert view.matches(found, from_document(doc), "")

"""Choices through the real twilio client: Content resources created once in the stand-in (as strict as
Twilio documents), remembered in the Firestore emulator, sent by ContentSid, and tapped as Twilio posts taps."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Iterator

import pytest
import requests
from google.cloud import firestore

from devstack.twilio_content import QUICK_REPLY, tap_fields
from devstack.twilio_stub import TwilioStub, inbound_message, new_sid
from shared.adapters.content_records import ContentTemplates, FirestoreContentRecords, MemoryContentRecords
from shared.adapters.twilio_api import TwilioGateway
from shared.adapters.twilio_content import ContentApiError, TwilioContentApi
from shared.domain.choice_routing import ACTION, route_payload
from shared.domain.choices import LIST_PICKER, Choice, Offer, content_hash, content_types
from shared.domain.inbound import InboundMessage, parse_webhook
from shared.domain.profiles import BusinessProfile, profile_from_mapping

ACCOUNT_SID = "AC" + "7" * 32
AUTH_TOKEN = "content-test-token"
BUSINESS = "whatsapp:+14155238886"
USER = "whatsapp:+34600111222"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
PROFILE = profile_from_mapping(BUSINESS, {"menus": [{
    "id": "main", "keywords": ["menu"], "text": "How can we help?",
    "items": [{"id": "hours", "title": "Opening hours", "reply": "9 to 18."},
              {"id": "person", "title": "Talk to a person", "handoff": True}],
}]}, BusinessProfile())


@pytest.fixture
def stub() -> Iterator[TwilioStub]:
    running = TwilioStub(ACCOUNT_SID, AUTH_TOKEN).start()
    try:
        yield running
    finally:
        running.stop()


def api_for(stub: TwilioStub, token: str = AUTH_TOKEN) -> TwilioContentApi:
    return TwilioContentApi(ACCOUNT_SID, lambda: token, stub.base_url, timeout_seconds=5)


def test_a_menu_is_created_once_sent_by_content_sid_and_its_tap_routes_to_the_item(stub: TwilioStub) -> None:
    records = MemoryContentRecords()
    api = api_for(stub)
    templates = ContentTemplates(api, records, lambda: NOW)
    types = content_types(PROFILE.menus[0].offer())
    sid = templates.sid_for(types)
    assert sid.startswith("HX") and len(sid) == 34
    # Again in this process, and in another one that shares the records: no second creation.
    assert templates.sid_for(types) == sid
    assert ContentTemplates(api, records, lambda: NOW).sid_for(types) == sid
    assert api.calls == 1 and len(stub.content_api.resources) == 1
    assert stub.content_api.resources[0].types == types

    gateway = TwilioGateway(ACCOUNT_SID, BUSINESS, lambda: AUTH_TOKEN, stub.base_url, 5)
    message_sid = gateway.send_template(USER, sid)
    sent = stub.messages[-1]
    assert (sent.sid, sent.content_sid, sent.body) == (message_sid, sid, "How can we help?")
    assert sent.types == types

    form = tap_fields(stub.content_api.get(sid).types, "menu:main:person", message_sid, BUSINESS,  # type: ignore[union-attr]
                      inbound_message, USER, new_sid("SM"))
    tapped = parse_webhook(form, 0.0)
    assert isinstance(tapped, InboundMessage)
    assert (tapped.button_text, tapped.replied_sid, tapped.message_type) == ("Talk to a person", message_sid,
                                                                             "interactive")
    route = route_payload(tapped.tap_payload, tapped.tap_text, PROFILE.menus)
    assert route.kind == ACTION and route.item is not None and route.item.action == "handoff"
    with pytest.raises(ValueError, match="no button"):
        tap_fields(stub.content_api.get(sid).types, "menu:main:nope", message_sid, BUSINESS,  # type: ignore[union-attr]
                   inbound_message, USER, new_sid("SM"))


def test_a_list_picker_and_its_row_selection(stub: TwilioStub) -> None:
    offer = Offer("Which day?", tuple(Choice(f"choice:{n}:Day {n}", f"Day {n}", "") for n in range(1, 6)), "Days")
    types = content_types(offer)
    sid = api_for(stub).create(types, "wa-choices-test")
    resource = stub.content_api.get(sid)
    assert resource is not None and LIST_PICKER in resource.types
    form = tap_fields(resource.types, "choice:3:Day 3", new_sid("SM"), BUSINESS, inbound_message, USER, new_sid("SM"))
    tapped = parse_webhook(form, 0.0)
    assert isinstance(tapped, InboundMessage)
    assert (tapped.list_id, tapped.list_title, tapped.body) == ("choice:3:Day 3", "Day 3", "Day 3")
    assert route_payload(tapped.tap_payload, tapped.tap_text, ()).chosen == "Day 3"


@pytest.mark.parametrize(("types", "problem"), [
    ({QUICK_REPLY: {"body": "b", "actions": [{"title": "t" * 21, "id": "a"}]}}, "title"),
    ({QUICK_REPLY: {"body": "b", "actions": [{"title": f"t{n}", "id": f"{n}"} for n in range(11)]}}, "actions"),
    ({LIST_PICKER: {"body": "b", "button": "B", "items": [{"item": "i", "id": "1"}]}}, "description"),
    ({LIST_PICKER: {"body": "b", "button": "b" * 21, "items": [{"item": "i", "id": "1", "description": "d"}]}},
     "button"),
    ({}, "at least one"),
])
def test_the_stand_in_refuses_what_twilio_refuses(stub: TwilioStub, types: dict, problem: str) -> None:
    with pytest.raises(ContentApiError, match=problem):
        api_for(stub).create(types, "bad")
    assert stub.content_api.resources == []


def test_failures_and_bad_credentials_are_content_api_errors(stub: TwilioStub) -> None:
    types = content_types(Offer("b", (Choice("a", "A"),)))
    stub.content_api.fail_next(1, status=503)
    with pytest.raises(ContentApiError, match="503"):
        api_for(stub).create(types, "x")
    with pytest.raises(ContentApiError, match="401"):
        api_for(stub, token="wrong").create(types, "x")
    stopped = api_for(stub)
    stub.stop()
    with pytest.raises(ContentApiError, match="no usable answer"):
        stopped.create(types, "x")


def test_the_raw_request_is_json_with_basic_auth_as_twilio_takes_it(stub: TwilioStub) -> None:
    """A client that is not twilio-python gets the same answers (the shape is Twilio's, not the library's)."""
    body = {"friendly_name": "raw", "language": "en",
            "types": {QUICK_REPLY: {"body": "Pick", "actions": [{"title": "A", "id": "a"}]}}}
    created = requests.post(f"{stub.base_url}/v1/Content", json=body, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert created.status_code == 201 and created.json()["types"] == body["types"]
    fetched = requests.get(f"{stub.base_url}/v1/Content/{created.json()['sid']}", auth=(ACCOUNT_SID, AUTH_TOKEN),
                           timeout=5)
    assert fetched.json()["sid"] == created.json()["sid"]
    assert requests.post(f"{stub.base_url}/v1/Content", json=body, timeout=5).status_code == 401
    no_language = requests.post(f"{stub.base_url}/v1/Content", json={**body, "language": ""},
                                auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert no_language.status_code == 400 and no_language.json()["code"] == 20001
    unknown = requests.post(f"{stub.base_url}/v1/Content", json={**body, "types": {"twilio/unknown": {"body": "b"}}},
                            auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert unknown.status_code == 400 and "unknown content type" in unknown.json()["message"]


def test_the_records_in_firestore_make_every_process_reuse_the_first_resource(
    emulators, stub: TwilioStub,  # noqa: ANN001
) -> None:
    collection = f"content-{uuid.uuid4().hex[:8]}"
    client = firestore.Client(project=emulators.project)
    try:
        records = FirestoreContentRecords(lambda: client, collection)
        types = content_types(PROFILE.menus[0].offer())
        first = ContentTemplates(api_for(stub), records, lambda: NOW).sid_for(types)
        other = FirestoreContentRecords(lambda: client, collection)
        assert ContentTemplates(api_for(stub), other, lambda: NOW).sid_for(types) == first
        assert (other.ops.reads, other.ops.writes) == (1, 0)
        assert len(stub.content_api.resources) == 1
        stored = client.collection(collection).document(content_hash(types)).get().to_dict()
        assert stored == {"contentSid": first, "kind": QUICK_REPLY, "createdAt": NOW}
        # A process that created its own resource in a race keeps using the one recorded first.
        assert records.put(content_hash(types), "HX" + "0" * 32, QUICK_REPLY, NOW) == first
    finally:
        client.close()

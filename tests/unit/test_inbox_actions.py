"""The inbox's actions through Flask's test client, on the processor and sender fakes: a person replies,
takes over and hands back; a double-submitted reply is sent once; another business's staff can do none of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from shared.adapters.google_signin import GoogleSignIn
from shared.adapters.inbox_store import StoredConversation
from shared.config import Settings
from shared.domain.staff import Business
from shared.inbox.app import create_app
from shared.inbox.deps import InboxDeps
from tests.fakes import IDS, FakeStore, conversation_id
from tests.unit.test_inbox_signin import CLIENT, Certs
from tests.unit.test_processor_controls import SHOP, USER, make_world

from devstack.token_issuer import TokenIssuer

ANA, DESK = "ana@shop.example", "desk@clinic.example"
CLINIC = "whatsapp:+15550001111"
CID = conversation_id(USER, SHOP)


class StoreReader:
    """The inbox's reads, straight from the fake store's documents."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def get(self, cid: str) -> StoredConversation | None:
        found = self.store.docs.get(cid)
        return StoredConversation(cid, self.store.document(cid), str(found[1])) if found else None

    def recent(self, business: str, limit: int) -> list[StoredConversation]:
        return [s for cid in self.store.docs if (s := self.get(cid)) and s.conversation.business == business]

    changed = paused = lambda self, business, *args: self.recent(business, 50)  # noqa: E731

    def directory(self, fresh: bool = False) -> tuple[Business, ...]:
        return (Business(SHOP, "Shop", (ANA,)), Business(CLINIC, "Clinic", (DESK,)))


def make(world: Any, template: str = "") -> tuple[Any, TokenIssuer]:
    issuer = TokenIssuer()
    settings = replace(Settings(), inbox_url="http://127.0.0.1:9", inbox_oauth_client_id=CLIENT,
                       reengagement_content_sid=template)
    deps = InboxDeps(settings=settings, reader=StoreReader(world.deps.store), signin=GoogleSignIn(CLIENT, request=Certs(issuer)),
                     session_keys=lambda: ["unit-session-key-0123456789abcdef"], clock=world.clock,
                     store=world.deps.store, queue=lambda: world.deps.queue, ids=IDS, profile=world.deps.profile)
    return create_app(deps, now=lambda: datetime.now(timezone.utc).timestamp()).test_client(), issuer


def signed_in(client: Any, issuer: TokenIssuer, email: str) -> str:
    client.set_cookie("g_csrf_token", "c")
    assert client.post("/auth/google", data={"credential": issuer.mint_user(email, CLIENT),
                                             "g_csrf_token": "c"}).status_code == 303
    return client.get("/api/me").get_json()["csrf"]


def post(client: Any, path: str, csrf: str, **body: Any) -> Any:
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf})


def test_a_person_takes_over_replies_once_and_hands_back() -> None:
    w = make_world()
    w.say("agent")
    client, issuer = make(w)
    csrf = signed_in(client, issuer, ANA)
    assert post(client, f"/api/conversations/{CID}/take-over", csrf, minutes=30).status_code == 200
    assert w.say("hello?") == ("ignored", [])
    first = post(client, f"/api/conversations/{CID}/reply", csrf, key="k-0001-abcd", text="Hi, Ana here.")
    again = post(client, f"/api/conversations/{CID}/reply", csrf, key="k-0001-abcd", text="Hi, Ana here.")
    assert first.status_code == again.status_code == 202 and first.get_json()["id"] == again.get_json()["id"]
    w.flush()
    assert [b for _, b, _ in w.twilio.sent].count("Hi, Ana here.") == 1
    assert post(client, f"/api/conversations/{CID}/reply", csrf, key="k-0001-abcd", text="x").status_code == 409
    detail = client.get(f"/api/conversations/{CID}").get_json()
    assert [(m["who"], m["text"]) for m in detail["history"]][-2:] == [("customer", "hello?"), ("person", "Hi, Ana here.")]
    assert detail["history"][-1]["ticks"] == "sent"
    assert post(client, f"/api/conversations/{CID}/hand-back", csrf).status_code == 200
    assert w.say("thanks")[0] == "answered"
    history, _ = w.model.calls[-1]
    assert {"role": "assistant", "content": "Hi, Ana here.", "sid": first.get_json()["id"], "by": "person"} in history


def test_the_window_rule_and_the_template() -> None:
    w = make_world()
    w.say("hello")
    w.clock.advance(25 * 3600)
    client, issuer = make(w, template="HX" + "cd" * 16)
    csrf = signed_in(client, issuer, ANA)
    assert client.get(f"/api/conversations/{CID}").get_json()["window"]["open"] is False
    closed = post(client, f"/api/conversations/{CID}/reply", csrf, key="k-0002-abcd", text="Are you there?")
    assert closed.status_code == 409 and "24-hour" in closed.get_json()["error"]
    sent = post(client, f"/api/conversations/{CID}/reply", csrf, key="k-0003-abcd", template=True)
    assert sent.status_code == 202
    w.flush()
    assert w.twilio.templates[-1][1] == "HX" + "cd" * 16
    no_template, issuer2 = make(w)
    csrf2 = signed_in(no_template, issuer2, ANA)
    assert post(no_template, f"/api/conversations/{CID}/reply", csrf2, key="k-0004-abcd", template=True).status_code == 409


def test_another_business_s_staff_cannot_act_and_every_action_needs_the_csrf_token() -> None:
    w = make_world()
    w.say("agent")
    client, issuer = make(w)
    csrf = signed_in(client, issuer, DESK)
    for action, body in (("reply", {"key": "k-0005-abcd", "text": "hi"}), ("take-over", {}), ("hand-back", {})):
        assert post(client, f"/api/conversations/{CID}/{action}", csrf, **body).status_code == 404
    assert w.conv().paused_until is not None, "the handoff's pause is untouched"
    client.post("/auth/signout", headers={"X-CSRF-Token": csrf})
    csrf = signed_in(client, issuer, ANA)
    assert client.post(f"/api/conversations/{CID}/reply", json={"key": "k-0006-abcd", "text": "hi"}).status_code == 403
    assert post(client, f"/api/conversations/{CID}/reply", csrf, key="short", text="hi").status_code == 400
    assert post(client, f"/api/conversations/{CID}/take-over", csrf, minutes=0).status_code == 400
    assert len([b for _, b, _ in w.twilio.sent]) == 1  # the handoff reply only

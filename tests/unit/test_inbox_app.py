"""The inbox app through Flask's test client: sign-in, sessions, CSRF, and who sees what.

The reader is in memory; sign-in tokens are real RS256 tokens from the local
issuer's key checked by the real google-auth (tests/unit/test_inbox_signin.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from devstack.token_issuer import TokenIssuer
from shared.adapters.google_signin import GoogleSignIn
from shared.adapters.inbox_store import CHANGE_OVERLAP, StoredConversation
from shared.config import Settings
from shared.domain.staff import Business
from shared.inbox.app import create_app
from shared.inbox.deps import InboxDeps
from tests.unit.test_inbox_signin import CLIENT, Certs

BAKERY = "whatsapp:+14155238886"
CLINIC = "whatsapp:+15550001111"
ANA = "ana@panaderia.example"
DESK = "desk@clinica.example"
OPS = "ops@agency.example"
BAKERY_CUSTOMER = "whatsapp:+34600111222"
# As the page's URLSearchParams sends them ("+" would read as a space).
B, C = quote(BAKERY), quote(CLINIC)
# Real time: google-auth checks the tokens against the real clock.
START = datetime.now(timezone.utc).replace(microsecond=0)


def cid(n: int) -> str:
    return f"{n:064x}"


@dataclass
class Reader:
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    businesses: tuple[Business, ...] = ()
    queries: list[tuple[str, str]] = field(default_factory=list)
    # What a cached directory still says (None: always current); a fresh read sees ``businesses``.
    stale: tuple[Business, ...] | None = None

    def _of(self, business: str) -> list[StoredConversation]:
        return [StoredConversation(k, v, v["updatedAt"].isoformat()) for k, v in self.docs.items()
                if v.get("business") == business]

    def recent(self, business: str, limit: int) -> list[StoredConversation]:
        self.queries.append(("recent", business))
        return sorted(self._of(business), key=lambda c: c.data["updatedAt"], reverse=True)[:limit]

    def changed(self, business: str, since: datetime, limit: int) -> list[StoredConversation]:
        self.queries.append(("changed", business))
        return [c for c in self._of(business) if c.data["updatedAt"] > since - CHANGE_OVERLAP][:limit]

    def paused(self, business: str, now: datetime, limit: int) -> list[StoredConversation]:
        self.queries.append(("paused", business))
        return [c for c in self._of(business) if c.data.get("pausedUntil") and c.data["pausedUntil"] > now][:limit]

    def get(self, conversation_id: str) -> StoredConversation | None:
        data = self.docs.get(conversation_id)
        return StoredConversation(conversation_id, data, data["updatedAt"].isoformat()) if data else None

    def directory(self, fresh: bool = False) -> tuple[Business, ...]:
        if fresh:
            self.stale = None  # a fresh read is the cache from then on, as InboxReader's
        return self.businesses if self.stale is None else self.stale


@dataclass
class World:
    client: FlaskClient
    reader: Reader
    issuer: TokenIssuer
    clock: list[float]
    keys: list[str]
    replayed: list[list[str]]
    refreshes: list[int]
    deps: InboxDeps

    def sign_in(self, email: str, csrf: str = "csrf-1", cookie: str | None = None, token: str | None = None) -> Any:
        self.client.set_cookie("g_csrf_token", cookie if cookie is not None else csrf)
        credential = token or self.issuer.mint_user(email, CLIENT, now=self.clock[0])
        return self.client.post("/auth/google", data={"credential": credential, "g_csrf_token": csrf})

    def me(self) -> dict[str, Any]:
        answer = self.client.get("/api/me")
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()


def _doc(business: str, address: str, minutes_ago: float, **extra: Any) -> dict[str, Any]:
    at = START - timedelta(minutes=minutes_ago)
    return {"business": business, "address": address, "updatedAt": at, "lastInboundAt": at,
            "expireAt": START + timedelta(hours=20), "messages": {"SM1": {"status": "sent", "receivedAt": at}},
            "history": [{"role": "user", "content": f"hello from {address[-3:]}", "sid": "SM1"}], **extra}


def make_world(url: str = "http://127.0.0.1:9000") -> World:
    issuer = TokenIssuer()
    clock = [START.timestamp()]
    keys = ["session-key-one-0123456789abcdef"]
    replayed: list[list[str]] = []
    refreshes: list[int] = []
    reader = Reader(
        docs={
            cid(1): _doc(BAKERY, BAKERY_CUSTOMER, 5, pausedUntil=START + timedelta(minutes=40)),
            cid(2): _doc(BAKERY, "whatsapp:+34600333444", 30),
            cid(3): _doc(CLINIC, "whatsapp:+15557778888", 1),
        },
        businesses=(Business(BAKERY, "Panadería Sol", (ANA,)), Business(CLINIC, "Clínica Norte", (DESK,))),
    )
    settings = replace(Settings(), inbox_url=url, inbox_oauth_client_id=CLIENT, inbox_operators=(OPS,),
                       inbox_session_seconds=3600)

    def refresh() -> bool:
        refreshes.append(1)
        return False

    deps = InboxDeps(
        settings=settings, reader=reader, signin=GoogleSignIn(CLIENT, request=Certs(issuer), clock=lambda: clock[0]),
        session_keys=lambda: list(keys), refresh_session_key=refresh,
        clock=lambda: datetime.fromtimestamp(clock[0], timezone.utc),
        failures=lambda limit: [{"sid": "SMdead", "status": "dead_lettered", "stage": "processor",
                                 "sender": "whatsapp:#0123456789", "reason": "push failed", "at": START,
                                 "conversation": cid(1)}],
        replay=lambda sids: replayed.append(sids) or [f"{s}  whatsapp:#0123456789  replayed" for s in sids],
    )
    app = create_app(deps, now=lambda: clock[0])
    return World(app.test_client(), reader, issuer, clock, keys, replayed, refreshes, deps)


@pytest.fixture
def world() -> Iterator[World]:
    yield make_world()


def test_signed_out_requests_get_the_sign_in_configuration(world: World) -> None:
    answer = world.client.get("/api/me")
    assert answer.status_code == 401
    assert answer.get_json()["signin"] == {"client_id": CLIENT, "script_url": "https://accounts.google.com/gsi/client",
                                           "login_uri": "http://127.0.0.1:9000/auth/google"}
    assert world.client.get(f"/api/conversations?business={B}").status_code == 401
    page = world.client.get("/")
    assert page.status_code == 200 and b"data-testid=\"signin\"" in page.data
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' https://accounts.google.com/gsi/client" in policy and "frame-ancestors 'none'" in policy


def test_staff_sign_in_and_see_only_their_business(world: World) -> None:
    answer = world.sign_in(ANA)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("inbox-session=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # http: the local stack
    me = world.me()
    assert me["email"] == ANA and [b["address"] for b in me["businesses"]] == [BAKERY] and not me["operator"]
    listed = world.client.get(f"/api/conversations?business={B}").get_json()
    assert [c["id"] for c in listed["conversations"]] == [cid(1), cid(2)]  # paused with a wait first
    assert listed["conversations"][0]["number"] == "+34 •••••• 222"
    assert "600111222" not in json.dumps(listed)
    assert world.client.get(f"/api/conversations/{cid(1)}").status_code == 200


def test_another_business_is_neither_listed_nor_opened_nor_searched(world: World) -> None:
    world.sign_in(DESK)
    assert world.client.get(f"/api/conversations?business={B}").status_code == 403
    assert world.client.get(f"/api/conversations?business={B}&q=hello").status_code == 403
    assert world.client.get(f"/api/conversations?business={B}&since={quote(START.isoformat())}").status_code == 403
    assert world.client.get("/api/conversations").status_code == 403
    # The bakery's conversation answers as a missing one would.
    assert world.client.get(f"/api/conversations/{cid(1)}").status_code == 404
    assert world.client.get(f"/api/conversations/{cid(99)}").status_code == 404
    assert all(business == CLINIC for _, business in world.reader.queries)
    mine = world.client.get(f"/api/conversations?business={C}&q=hello").get_json()["conversations"]
    assert [c["id"] for c in mine] == [cid(3)]


def test_staff_added_since_the_directory_was_cached_sign_in(world: World) -> None:
    world.reader.stale = (Business(BAKERY, "Panadería Sol", ()), Business(CLINIC, "Clínica Norte", (DESK,)))
    assert world.sign_in(ANA).status_code == 303
    assert [b["address"] for b in world.me()["businesses"]] == [BAKERY]


def test_people_who_are_not_staff_cannot_sign_in(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    answer = world.sign_in("stranger@gmail.com")
    assert answer.status_code == 403 and b"not staff of any business" in answer.data
    assert "Set-Cookie" not in answer.headers or "inbox-session=;" in answer.headers.get("Set-Cookie", "")
    assert world.client.get("/api/me").status_code == 401
    refused = [r for r in caplog.records if getattr(r, "event", "") == "signin_refused"]
    assert refused and refused[0].staff == "stranger@gmail.com"


@pytest.mark.parametrize("kind", ["csrf-mismatch", "no-cookie", "expired", "wrong-audience"])
def test_bad_sign_ins_open_no_session(world: World, kind: str) -> None:
    if kind == "csrf-mismatch":
        answer = world.sign_in(ANA, csrf="one", cookie="two")
    elif kind == "no-cookie":
        answer = world.sign_in(ANA, cookie="")
    elif kind == "expired":
        answer = world.sign_in(ANA, token=world.issuer.mint_user(ANA, CLIENT, lifetime_seconds=60,
                                                                 now=world.clock[0] - 600))
    else:
        answer = world.sign_in(ANA, token=world.issuer.mint_user(ANA, "other.apps.googleusercontent.com"))
    assert answer.status_code == 403
    assert world.client.get("/api/me").status_code == 401


def test_sessions_end_after_their_lifetime(world: World) -> None:
    world.sign_in(ANA)
    assert world.me()["sessionEndsAt"] == int(START.timestamp()) + 3600
    world.clock[0] += 3599
    assert world.client.get("/api/me").status_code == 200
    world.clock[0] += 2
    assert world.client.get("/api/me").status_code == 401


def test_removing_someone_from_staff_ends_their_access_at_once(world: World) -> None:
    world.sign_in(ANA)
    world.reader.businesses = (Business(BAKERY, "Panadería Sol", ("someone-else@x.example",)),)
    assert world.client.get(f"/api/conversations?business={B}").status_code == 403
    assert world.client.get("/api/me").status_code == 403


def test_a_rotated_key_keeps_sessions_and_a_forged_cookie_is_nobody(world: World) -> None:
    world.sign_in(ANA)
    world.keys[:] = ["session-key-one-0123456789abcdef", "session-key-two-0123456789abcdef"]
    assert world.client.get("/api/me").status_code == 200  # signed with the previous key, still verified
    world.keys[:] = ["session-key-three-0123456789abcdef"]
    assert world.client.get("/api/me").status_code == 401
    assert world.refreshes, "a cookie that failed its signature did not make the key be re-read"


def test_state_changes_need_the_csrf_token_and_the_inbox_origin(world: World) -> None:
    world.sign_in(ANA)
    token = world.me()["csrf"]
    assert world.client.post("/auth/signout").status_code == 403
    assert world.client.post("/auth/signout", headers={"X-CSRF-Token": token,
                                                       "Origin": "https://evil.example"}).status_code == 403
    assert world.client.get("/api/me").status_code == 200
    assert world.client.post("/auth/signout", headers={"X-CSRF-Token": token,
                                                       "Origin": "http://127.0.0.1:9000"}).status_code == 204
    assert world.client.get("/api/me").status_code == 401


def test_https_cookies_are_secure_and_host_only() -> None:
    world = make_world("https://inbox.example.com")
    cookie = world.sign_in(ANA).headers["Set-Cookie"]
    assert cookie.startswith("__Host-inbox-session=") and "Secure" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie


def test_polling_returns_what_changed_and_the_open_conversation(world: World) -> None:
    world.sign_in(ANA)
    first = world.client.get(f"/api/conversations?business={B}").get_json()
    world.clock[0] += 120
    later = world.client.get(f"/api/conversations?business={B}&since={quote(first['cursor'])}&open={cid(2)}")
    assert later.get_json()["conversations"] == [] and "open" not in later.get_json()
    world.reader.docs[cid(2)]["updatedAt"] = START + timedelta(minutes=1)
    world.reader.docs[cid(2)]["history"].append({"role": "assistant", "content": "hi", "sid": "SM1"})
    changed = world.client.get(f"/api/conversations?business={B}&since={quote(first['cursor'])}&open={cid(2)}").get_json()
    assert [c["id"] for c in changed["conversations"]] == [cid(2)]
    assert [m["who"] for m in changed["open"]["history"]] == ["customer", "bot"]


def test_operators_have_the_operations_view_and_staff_do_not(world: World) -> None:
    world.sign_in(ANA)
    assert world.client.get("/api/ops/failures").status_code == 403
    world.client.post("/auth/signout", headers={"X-CSRF-Token": world.me()["csrf"]})
    world.sign_in(OPS)
    me = world.me()
    assert me["operator"] and {b["address"] for b in me["businesses"]} == {BAKERY, CLINIC}
    failures = world.client.get("/api/ops/failures").get_json()["failures"]
    assert failures[0]["sid"] == "SMdead" and failures[0]["conversation"] == cid(1)[:12]
    assert world.client.post("/api/ops/replay", json={"sids": ["SMdead"]}).status_code == 403  # no CSRF token
    replayed = world.client.post("/api/ops/replay", json={"sids": ["SMdead"]}, headers={"X-CSRF-Token": me["csrf"]})
    assert replayed.get_json()["lines"] == ["SMdead  whatsapp:#0123456789  replayed"] and world.replayed == [["SMdead"]]
    assert world.client.post("/api/ops/replay", json={"sids": ["../x"]},
                             headers={"X-CSRF-Token": me["csrf"]}).status_code == 400


def test_every_action_is_logged_with_the_staff_email_never_the_number(world: World,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    world.sign_in(ANA)
    world.client.get(f"/api/conversations?business={B}&q=hello")
    world.client.get(f"/api/conversations/{cid(1)}")
    world.client.get(f"/api/conversations?business={C}")
    events = {getattr(r, "event", ""): r for r in caplog.records if getattr(r, "staff", None)}
    assert {"signin", "search", "conversation_viewed", "forbidden"} <= set(events)
    assert all(r.staff == ANA for r in events.values())
    logged = " ".join(json.dumps(vars(r), default=str) for r in caplog.records)
    assert "600111222" not in logged and "+34600" not in logged

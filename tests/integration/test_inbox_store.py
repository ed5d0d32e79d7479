"""The inbox's reads on the Firestore emulator, and the app on top of them: one business per query,
changes since a cursor for one read, the staff directory from stored profiles, and a bakery's
staff member who never gets the clinic's conversations, whatever they ask."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from google.cloud import firestore

from devstack.token_issuer import TokenIssuer
from shared.adapters.google_signin import GoogleSignIn
from shared.adapters.inbox_store import InboxReader
from shared.adapters.profile_store import FirestoreProfiles
from shared.config import Settings
from shared.domain.profiles import BusinessProfile
from shared.domain.pseudonyms import Pseudonyms
from shared.inbox.app import create_app
from shared.inbox.deps import InboxDeps
from tests.unit.test_inbox_signin import CLIENT, Certs

IDS = Pseudonyms("integration-test-address-key")
BAKERY, CLINIC = "whatsapp:+14155238886", "whatsapp:+15550001111"
ANA, DESK = "ana@panaderia.example", "desk@clinica.example"


@pytest.fixture
def names(emulators) -> dict[str, str]:  # noqa: ANN001
    suffix = uuid.uuid4().hex[:8]
    return {"conversations": f"conversations-{suffix}", "profiles": f"profiles-{suffix}"}


@pytest.fixture
def db(emulators):  # noqa: ANN001, ANN201
    client = firestore.Client(project=emulators.project)
    yield client
    client.close()


def _write(db: firestore.Client, names: dict[str, str], user: str, business: str, at: datetime, text: str,
           **extra: object) -> str:
    cid = IDS.conversation_id(user, business)
    db.collection(names["conversations"]).document(cid).set({
        "address": user, "business": business, "userId": IDS.user_id(user), "updatedAt": at, "lastInboundAt": at,
        "expireAt": at + timedelta(hours=24), "history": [{"role": "user", "content": text, "sid": "SM" + cid[:8]}],
        "messages": {"SM" + cid[:8]: {"status": "sent", "receivedAt": at}}, **extra,
    })
    return cid


def _reader(db: firestore.Client, names: dict[str, str]) -> InboxReader:
    return InboxReader(lambda: db, names["conversations"], names["profiles"], BAKERY, 0.0)


def test_queries_stay_in_one_business_and_a_quiet_poll_costs_one_read(db, names) -> None:  # noqa: ANN001
    now = datetime.now(timezone.utc)
    bakery = [_write(db, names, f"whatsapp:+3460000{n:04d}", BAKERY, now - timedelta(minutes=n), f"pan {n}")
              for n in range(1, 4)]
    clinic = _write(db, names, "whatsapp:+3460000999", CLINIC, now, "dolor de muelas")
    paused = _write(db, names, "whatsapp:+3460000777", BAKERY, now - timedelta(days=3), "agent",
                    pausedUntil=now + timedelta(minutes=30))
    reader = _reader(db, names)
    assert [c.id for c in reader.recent(BAKERY, 2)] == bakery[:2]
    assert {c.id for c in reader.recent(BAKERY, 50)} == {*bakery, paused} and clinic not in {
        c.id for c in reader.recent(BAKERY, 50)}
    assert [c.id for c in reader.paused(BAKERY, now, 10)] == [paused]
    assert reader.paused(CLINIC, now, 10) == []
    reads = reader.ops.reads
    assert reader.changed(BAKERY, now + timedelta(minutes=5), 50) == []
    assert reader.ops.reads - reads == 1, "a poll with nothing new is one read"
    later = _write(db, names, "whatsapp:+3460000555", BAKERY, now + timedelta(minutes=6), "¿abrís mañana?")
    found = reader.changed(BAKERY, now + timedelta(minutes=5), 50)
    assert [c.id for c in found] == [later] and found[0].version
    assert reader.get(clinic) is not None and reader.get("0" * 64) is None


def test_the_directory_comes_from_the_stored_profiles(db, names) -> None:  # noqa: ANN001
    profiles = FirestoreProfiles(lambda: db, names["profiles"], BusinessProfile(), 0)
    now = datetime.now(timezone.utc)
    profiles.put(BAKERY, {"name": "Panadería Sol", "staff": [ANA]}, now)
    profiles.put(CLINIC, {"name": "Clínica Norte", "staff": [DESK], "notify_webhook": "https://hooks.example/x"}, now)
    profiles.put("whatsapp:+15550003333", {"name": "Hand-edited", "staff": "not a list"}, now)
    found = {b.address: b for b in _reader(db, names).directory()}
    assert found[BAKERY].staff == (ANA,) and found[BAKERY].name == "Panadería Sol"
    assert found[CLINIC].notify_webhook == "https://hooks.example/x"
    assert found["whatsapp:+15550003333"].staff == (), "an invalid staff list lets nobody in"


def test_the_bakery_staff_never_gets_the_clinic_s_conversations(db, names) -> None:  # noqa: ANN001
    now = datetime.now(timezone.utc)
    profiles = FirestoreProfiles(lambda: db, names["profiles"], BusinessProfile(), 0)
    profiles.put(BAKERY, {"name": "Panadería Sol", "staff": [ANA]}, now)
    profiles.put(CLINIC, {"name": "Clínica Norte", "staff": [DESK]}, now)
    ours = _write(db, names, "whatsapp:+34600111222", BAKERY, now, "una barra de pan")
    theirs = _write(db, names, "whatsapp:+34600333444", CLINIC, now, "una cita, pan")
    issuer = TokenIssuer()
    settings = replace(Settings(), inbox_url="http://127.0.0.1:9", inbox_oauth_client_id=CLIENT)
    deps = InboxDeps(settings=settings, reader=_reader(db, names), signin=GoogleSignIn(CLIENT, request=Certs(issuer)),
                     session_keys=lambda: ["integration-session-key-0123456789"])
    client = create_app(deps).test_client()
    client.set_cookie("g_csrf_token", "c")
    assert client.post("/auth/google", data={"credential": issuer.mint_user(ANA, CLIENT),
                                             "g_csrf_token": "c"}).status_code == 303
    listed = client.get(f"/api/conversations?business={quote(BAKERY)}&q=pan").get_json()["conversations"]
    assert [c["id"] for c in listed] == [ours]
    for path in (f"/api/conversations?business={quote(CLINIC)}", f"/api/conversations?business={quote(CLINIC)}&q=pan",
                 f"/api/conversations?business={quote(CLINIC)}&since={quote(now.isoformat())}"):
        assert client.get(path).status_code == 403, path
    assert client.get(f"/api/conversations/{theirs}").status_code == 404
    assert client.get(f"/api/conversations/{ours}").get_json()["history"][0]["text"] == "una barra de pan"

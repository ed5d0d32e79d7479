"""The store against the Firestore emulator: the compare-and-set helper (field paths, deletes, markers,
conflicts), finding a user's conversations and failure records, and reducing a document to its opt-out
in one compare-and-set write."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from google.cloud import firestore

from shared.adapters.firestore_store import Conflict, FirestoreStore, Write, failure_record
from shared.domain import claims
from shared.domain.conversation import Conversation, Limits
from shared.domain.lifecycle import SENT
from shared.domain.pseudonyms import Pseudonyms
from shared.ops.user_data import keep_only_opt_out

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
IDS = Pseudonyms("integration-test-address-key")


@pytest.fixture
def store(emulators) -> FirestoreStore:  # noqa: ANN001
    suffix = uuid.uuid4().hex[:8]
    return FirestoreStore(lambda: firestore.Client(project=emulators.project), f"conversations-{suffix}",
                          f"failures-{suffix}", f"seen-{suffix}")


def raw(store: FirestoreStore, cid: str, fields: dict, version: object = None) -> object:
    """A document written as another writer (or an older version) would write it."""
    return store._commit(cid, Write(create=fields) if version is None else Write(updates=fields), version)


def stored(store: FirestoreStore, cid: str) -> dict:
    return store.client.collection(store._conversations).document(cid).get().to_dict() or {}


LIMITS = Limits(ttl_seconds=3600, max_messages=20, lease_seconds=120)


def test_the_helper_writes_only_what_changed_with_dotted_paths_and_deletes(store: FirestoreStore) -> None:
    cid = "c-paths"
    saved = store.update(cid, lambda conv: claims.claim(conv, "SM1", NOW, LIMITS, address="whatsapp:+34600"))
    assert saved.written and stored(store, cid)["messages"]["SM1"]["status"] == "processing"
    raw(store, cid, {"foreign": {"kept": 1}}, saved.snapshot.version)  # another writer, between our read and write
    writes = store.ops.writes

    def answer_and_finish(conv: Conversation) -> None:
        from shared.domain.conversation import Answer

        conv.answer("SM1", Answer(parts=["hello"], asked="hi"), NOW, LIMITS)
        conv.finish("SM1", SENT, NOW)

    again = store.update(cid, answer_and_finish, start=saved.snapshot)  # a stale snapshot: conflict, re-read, retry
    assert store.ops.writes - writes == 2, "one conflicting write, one that went through"
    data = stored(store, cid)
    entry = data["messages"]["SM1"]
    assert entry["status"] == "sent" and "leaseUntil" not in entry and "parts" not in entry and entry["partCount"] == 1
    assert data["foreign"] == {"kept": 1} and data["doneSeq"] == 1
    assert again.snapshot.document == data, "the snapshot after a write is the document as Firestore holds it"
    assert not store.update(cid, lambda conv: None, start=again.snapshot).written, "no change, no write"


def test_a_marker_is_created_in_the_same_commit_and_only_once(store: FirestoreStore) -> None:
    runs: list[bool] = []

    def claim(conv: Conversation) -> None:
        runs.append(conv.exists)
        if conv.entry("SM2") is None:
            claims.claim(conv, "SM2", NOW, LIMITS, address="whatsapp:+34600")
            conv.new_markers["SM2"] = NOW

    store.update("c-marker", claim)
    assert store.seen("SM2") and runs == [False]
    # The same marker again, for a conversation that is gone: the commit fails whole, nothing is written.
    with pytest.raises(Conflict):
        store.update("c-marker-2", claim, tries=1)
    assert not store.client.collection(store._conversations).document("c-marker-2").get().exists


def test_every_conversation_of_a_user_is_found_by_its_user_id_and_nobody_else_s(store: FirestoreStore) -> None:
    user, other = "whatsapp:+34600111222", "whatsapp:+34600999888"
    numbers = ["whatsapp:+15550001111", "whatsapp:+15550002222"]
    for address in (user, other):
        for number in numbers:
            raw(store, IDS.conversation_id(address, number),
                {"address": address, "business": number, "userId": IDS.user_id(address)})
    reads = store.ops.reads
    found = store.conversations_of(IDS.user_id(user))
    assert found == {IDS.conversation_id(user, n): n for n in numbers}
    assert store.ops.reads - reads == 2
    assert store.conversations_of(IDS.user_id("whatsapp:+1000")) == {}


def test_failure_records_are_found_by_sender_and_read_one_by_one(store: FirestoreStore) -> None:
    user = "whatsapp:+34600111222"
    for n, sender in enumerate((IDS.mask(user), IDS.mask(user), IDS.mask("whatsapp:+1999"))):
        store.record_failure(f"SM{n:032x}", failure_record(conversation_id="gone", masked_sender=sender,
                                                         status="dead_lettered", stage="processor", reason="r",
                                                         now=NOW, retention=NOW))
    assert sorted(store.failures_of_sender(IDS.mask(user))) == [f"SM{0:032x}", f"SM{1:032x}"]
    assert store.failures_of_sender("") == []
    assert store.failure(f"SM{0:032x}")["status"] == "dead_lettered"
    assert store.failure("SM" + "f" * 32) is None


def test_an_opted_out_document_is_reduced_to_its_opt_out_in_one_write(store: FirestoreStore) -> None:
    cid = "c1"
    raw(store, cid, {"optedOut": True, "optedOutAt": NOW, "business": "whatsapp:+1555", "address": "whatsapp:+34600",
                     "history": [{"role": "user", "content": "hi"}], "messages": {"SMa": {"status": "sent"}},
                     "rate": {"count": 1}})
    snap = store.load(cid)
    writes = store.ops.writes
    store.update(cid, lambda conv: keep_only_opt_out(conv, "whatsapp:+1555", IDS.user_id("whatsapp:+34600"), NOW),
                 start=snap)
    assert store.ops.writes - writes == 1
    data = stored(store, cid)
    assert set(data) == {"optedOut", "optedOutAt", "business", "userId"} and data["optedOut"] is True
    # The write is a compare-and-set: against a changed document it writes nothing.
    with pytest.raises(Conflict):
        raw(store, cid, {"address": "whatsapp:+34600"}, snap.version)
    assert "address" not in stored(store, cid)

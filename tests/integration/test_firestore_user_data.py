"""The store's user-data calls against the Firestore emulator: finding a user's conversations and
failure records, and reducing a document to its opt-out in one compare-and-set write."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from google.cloud import firestore

from shared.adapters.firestore_store import Conflict, FirestoreStore, failure_record
from shared.domain.conversation import Conversation
from shared.domain.pseudonyms import Pseudonyms
from shared.ops.user_data import opt_out_only

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
IDS = Pseudonyms("integration-test-address-key")


@pytest.fixture
def store(emulators) -> FirestoreStore:  # noqa: ANN001
    suffix = uuid.uuid4().hex[:8]
    return FirestoreStore(lambda: firestore.Client(project=emulators.project), f"conversations-{suffix}",
                          f"failures-{suffix}", f"seen-{suffix}")


def test_every_conversation_of_a_user_is_found_by_its_user_id_and_nobody_else_s(store: FirestoreStore) -> None:
    user, other = "whatsapp:+34600111222", "whatsapp:+34600999888"
    numbers = ["whatsapp:+15550001111", "whatsapp:+15550002222"]
    for address in (user, other):
        for number in numbers:
            store.apply(IDS.conversation_id(address, number),
                        {"address": address, "business": number, "userId": IDS.user_id(address)}, None)
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
    store.apply(cid, {"optedOut": True, "optedOutAt": NOW, "business": "whatsapp:+1555", "address": "whatsapp:+34600",
                      "history": [{"role": "user", "content": "hi"}], "messages": {"SMa": {"status": "sent"}},
                      "rate": {"count": 1}}, None)
    snap = store.load(cid)
    updates = opt_out_only(snap.conversation, "whatsapp:+1555", IDS.user_id("whatsapp:+34600"), NOW)
    writes = store.ops.writes
    store.apply(cid, updates, snap.version)
    assert store.ops.writes - writes == 1
    data = store.load(cid).conversation.data
    assert set(data) == {"optedOut", "optedOutAt", "business", "userId"} and data["optedOut"] is True
    # The write is a compare-and-set: against a changed document it writes nothing.
    with pytest.raises(Conflict):
        store.apply(cid, opt_out_only(Conversation(data), "", "", NOW), snap.version)

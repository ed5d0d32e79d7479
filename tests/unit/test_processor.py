"""The processor's core with in-memory fakes: every path, no I/O."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from shared.config import Settings
from shared.domain.lifecycle import ANSWERED, DEAD_LETTERED, PROCESSING
from shared.domain.inbound import InboundMessage
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.processor import MessageBusy, ProcessorDeps, handle_push, process_message
from tests.fakes import IDS, Clock, FakeModel, FakeQueue, FakeStore, conversation_id

SENDER = "whatsapp:+34600111222"


def make_deps(**overrides) -> ProcessorDeps:
    # Many messages at one instant: the rate limit is tested on its own below.
    settings = overrides.pop("settings", Settings(max_context_messages=4, conversation_ttl_seconds=3600, rate_limit_messages=1000))
    values = dict(
        settings=settings, store=FakeStore(), model=FakeModel(), queue=FakeQueue(), faults=FaultPoints(), clock=Clock(),
        ids=IDS,
    )
    values.update(overrides)
    return ProcessorDeps(**values)


def msg(n: int, body: str = "hi", sender: str = SENDER) -> InboundMessage:
    return InboundMessage(sid=f"SM{n:032x}", sender=sender, recipient="whatsapp:+14155238886", body=body)


def test_answers_once_and_enqueues_one_task() -> None:
    deps = make_deps()
    assert process_message(msg(1), deps) == "answered"
    conv = deps.store.conversation(conversation_id(SENDER))
    entry = conv.entry(msg(1).sid)
    assert entry.status == ANSWERED and entry.seq == 1 and entry.parts == ["Hello!"]
    assert conv.address == SENDER
    assert [t["role"] for t in conv.history] == ["user", "assistant"]
    assert list(deps.queue.tasks.values())[0].seq == 1


def test_duplicates_do_not_call_the_model_again() -> None:
    deps = make_deps()
    process_message(msg(1), deps)
    assert process_message(msg(1), deps) == "requeued"
    assert process_message(msg(1), deps) == "requeued"
    assert len(deps.model.calls) == 1
    assert len(deps.queue.tasks) == 1
    assert len(deps.store.conversation(conversation_id(SENDER)).history) == 2


def test_second_turn_sees_the_first() -> None:
    deps = make_deps()
    process_message(msg(1, "my name is Ana"), deps)
    process_message(msg(2, "what is my name?"), deps)
    history, text = deps.model.calls[1]
    assert text == "what is my name?"
    assert history[0]["content"] == "my name is Ana"
    assert deps.store.conversation(conversation_id(SENDER)).last_seq == 2


def test_history_is_trimmed_to_the_window() -> None:
    deps = make_deps()
    for n in range(1, 6):
        process_message(msg(n, f"q{n}"), deps)
    history = deps.store.conversation(conversation_id(SENDER)).history
    assert len(history) == 4
    assert history[0]["content"] == "q4"


def test_expired_conversation_starts_fresh() -> None:
    clock = Clock()
    deps = make_deps(clock=clock)
    process_message(msg(1, "old topic"), deps)
    clock.advance(3601)
    process_message(msg(2, "new topic"), deps)
    history, _ = deps.model.calls[1]
    assert history == []
    stored = deps.store.conversation(conversation_id(SENDER)).history
    assert [t["content"] for t in stored if t["role"] == "user"] == ["new topic"]


def test_model_failure_sends_fallback_and_records_it() -> None:
    deps = make_deps()
    deps.model.error = RuntimeError("boom")
    assert process_message(msg(1), deps) == "answered"
    entry = deps.store.conversation(conversation_id(SENDER)).entry(msg(1).sid)
    assert entry.parts == [deps.settings.fallback_reply]
    assert entry.fallback is True and "boom" in entry.reason
    assert deps.store.failures[msg(1).sid]["status"] == "fallback"
    assert SENDER not in str(deps.store.failures)


@pytest.mark.parametrize("point", ["after_claim", "after_ai", "after_save", "after_enqueue"])
def test_crash_at_each_step_completes_once_on_redelivery(point: str) -> None:
    clock = Clock()
    deps = make_deps(faults=FaultPoints((point,)), clock=clock)
    with pytest.raises(InjectedFault):
        process_message(msg(1), deps)
    clock.advance(deps.settings.processing_lease_seconds + 1)
    process_message(msg(1), deps)
    process_message(msg(1), deps)
    conv = deps.store.conversation(conversation_id(SENDER))
    assert conv.entry(msg(1).sid).status == ANSWERED
    assert len(conv.history) == 2
    assert len(deps.queue.tasks) == 1
    expected_model_calls = 2 if point == "after_ai" else 1  # a crash after the call repeats it
    assert len(deps.model.calls) == expected_model_calls


def test_live_lease_makes_a_concurrent_duplicate_retry() -> None:
    deps = make_deps(faults=FaultPoints(("after_claim",)))
    with pytest.raises(InjectedFault):
        process_message(msg(1), deps)
    with pytest.raises(MessageBusy):
        process_message(msg(1), deps)
    assert deps.store.conversation(conversation_id(SENDER)).entry(msg(1).sid).status == PROCESSING


def test_concurrent_writer_does_not_lose_a_turn() -> None:
    deps = make_deps()
    process_message(msg(1, "first"), deps)
    store = deps.store
    cid = conversation_id(SENDER)
    # Another writer touches the document between our claim and our save.
    bumped = {"done": False}

    def bump(_: str) -> None:
        if len(deps.model.calls) == 2 and not bumped["done"]:
            bumped["done"] = True
            snap = store.load(cid)
            store.apply(cid, {"updatedAt": deps.clock()}, snap.version)

    store.before_apply = bump
    process_message(msg(2, "second"), deps)
    history = store.conversation(cid).history
    assert bumped["done"]
    assert [t["content"] for t in history if t["role"] == "user"] == ["first", "second"]


def push(message: InboundMessage) -> dict:
    return {"data": base64.b64encode(message.to_json()).decode(), "messageId": "1"}


def test_malformed_payload_is_acknowledged_and_recorded() -> None:
    deps = make_deps()
    assert handle_push({"data": base64.b64encode(b"not json").decode(), "messageId": "42"}, "s", deps) == "malformed"
    assert deps.store.failures["pubsub-42"]["status"] == "failed"
    assert "malformed" in deps.store.failures["pubsub-42"]["reason"]


def dead_letter_sub(deps: ProcessorDeps) -> str:
    return f"projects/p/subscriptions/{deps.settings.dead_letter_subscription}"


def test_dead_letter_delivery_records_the_reason() -> None:
    deps = make_deps(faults=FaultPoints(("after_claim",)))
    with pytest.raises(InjectedFault):
        process_message(msg(1), deps)
    assert handle_push(push(msg(1)), dead_letter_sub(deps), deps) == "dead-lettered"
    conv = deps.store.conversation(conversation_id(SENDER))
    assert conv.entry(msg(1).sid).status == DEAD_LETTERED
    assert conv.watch is None
    assert deps.store.failures[msg(1).sid]["status"] == DEAD_LETTERED
    # The user's next message is answered as usual.
    assert process_message(msg(2), deps) == "answered"


def test_dead_letter_of_an_answered_message_leaves_it_to_the_sender() -> None:
    deps = make_deps()
    process_message(msg(1, "first"), deps)
    process_message(msg(2, "second"), deps)
    deps.queue.tasks.clear()
    assert handle_push(push(msg(1)), dead_letter_sub(deps), deps) == "left to the sender"
    conv = deps.store.conversation(conversation_id(SENDER))
    assert conv.entry(msg(1).sid).status == ANSWERED and conv.entry(msg(1).sid).parts == ["Hello!"]
    assert [t.sid for t in deps.queue.tasks.values()] == [msg(1).sid]
    assert msg(1).sid not in deps.store.failures


def test_dead_letter_for_a_conversation_that_is_gone_creates_no_document() -> None:
    deps = make_deps()
    assert handle_push(push(msg(1)), dead_letter_sub(deps), deps) == "dead-lettered"
    assert deps.store.docs == {}
    record = deps.store.failures[msg(1).sid]
    assert record["status"] == DEAD_LETTERED and SENDER.split("+")[1] not in str(record)


def test_lost_commit_answer_still_creates_the_send_task() -> None:
    deps = make_deps()
    original = deps.store._commit
    calls = {"n": 0}

    def commit(cid, write, version):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:  # the answer: written, but the client saw FAILED_PRECONDITION
            deps.store.lose_answers = 1
        return original(cid, write, version)

    deps.store._commit = commit
    assert process_message(msg(1), deps) == "requeued"
    conv = deps.store.conversation(conversation_id(SENDER))
    assert conv.entry(msg(1).sid).status == ANSWERED
    assert [t.sid for t in deps.queue.tasks.values()] == [msg(1).sid]
    assert len(deps.model.calls) == 1


def test_a_delivery_whose_lease_expired_meets_the_answer_of_the_next_and_sends_it() -> None:
    clock = Clock()
    deps = make_deps(clock=clock)
    cid = conversation_id(SENDER)
    slow = {"first": True}

    def model_reply(history, text):  # noqa: ANN001, ANN202
        if slow["first"]:
            slow["first"] = False
            # While this (first) delivery waits on the model, its lease runs out
            # and a redelivery answers the message, but loses its enqueue.
            clock.advance(deps.settings.processing_lease_seconds + 1)
            second = make_deps(clock=clock, store=deps.store, model=deps.model, queue=FakeQueueDown())
            with pytest.raises(ConnectionError):
                process_message(msg(1), second)
        return "Hello!"

    deps.model._reply = model_reply
    assert process_message(msg(1), deps) == "requeued"
    assert deps.store.conversation(cid).entry(msg(1).sid).status == ANSWERED
    assert [t.sid for t in deps.queue.tasks.values()] == [msg(1).sid]
    assert len(deps.store.conversation(cid).history) == 2


class FakeQueueDown:
    def enqueue(self, task):  # noqa: ANN001, ANN202
        raise ConnectionError("tasks down")


def test_late_redelivery_after_the_conversation_was_deleted_is_not_answered_again() -> None:
    clock = Clock()
    deps = make_deps(clock=clock)
    process_message(msg(1), deps)
    clock.advance(deps.settings.conversation_ttl_seconds + 86400)
    deps.store.delete(conversation_id(SENDER))  # Firestore's TTL policy
    assert process_message(msg(1), deps) == "duplicate"
    assert len(deps.model.calls) == 1
    assert conversation_id(SENDER) not in deps.store.docs


def test_late_redelivery_after_its_entry_was_pruned_is_not_answered_again() -> None:
    deps = make_deps()
    cid = conversation_id(SENDER)
    process_message(msg(1), deps)
    for n in range(2, 60):
        process_message(msg(n), deps)
        for sid in deps.store.load(cid).conversation.open_entries():
            deps.store.update(cid, lambda conv: conv.finish(sid, "sent", deps.clock()))
    assert msg(1).sid not in deps.store.conversation(cid).messages
    calls = len(deps.model.calls)
    assert process_message(msg(1), deps) == "duplicate"
    assert len(deps.model.calls) == calls


def test_the_marker_is_written_with_the_first_claim_only() -> None:
    deps = make_deps(faults=FaultPoints(("after_claim",)))
    with pytest.raises(InjectedFault):
        process_message(msg(1), deps)
    assert msg(1).sid in deps.store.markers
    writes = deps.store.ops.writes
    deps.clock.advance(deps.settings.processing_lease_seconds + 1)
    assert process_message(msg(1), deps) == "answered"
    assert deps.store.ops.writes - writes == 2  # re-claim and answer: no second marker
    assert deps.store.markers[msg(1).sid].expire_at > deps.clock() + timedelta(days=7)


def test_too_many_unfinished_messages_make_pubsub_wait() -> None:
    deps = make_deps(settings=Settings(max_open_messages=3))
    for n in range(1, 4):
        process_message(msg(n), deps)
    with pytest.raises(MessageBusy):
        process_message(msg(4), deps)
    assert msg(4).sid not in deps.store.conversation(conversation_id(SENDER)).messages


def test_inbound_text_and_reply_are_capped_before_they_are_stored() -> None:
    deps = make_deps(settings=Settings(max_inbound_chars=100, max_reply_chars=200, max_context_messages=4))
    deps.model._reply = "r" * 5000
    process_message(msg(1, "q" * 5000), deps)
    _, text = deps.model.calls[0]
    assert len(text) == 100 and text.endswith("…")
    conv = deps.store.conversation(conversation_id(SENDER))
    assert sum(len(p) for p in conv.entry(msg(1).sid).parts) <= 200
    assert all(len(turn["content"]) <= 200 for turn in conv.history)


def test_retryable_failure_is_raised_and_noted() -> None:
    deps = make_deps()

    class Down:
        def enqueue(self, task):  # noqa: ANN001, ANN202
            raise ConnectionError("tasks down")

    deps = make_deps(queue=Down())
    with pytest.raises(ConnectionError):
        handle_push(push(msg(1)), "projects/p/subscriptions/main", deps)
    entry = deps.store.conversation(conversation_id(SENDER)).entry(msg(1).sid)
    assert "tasks down" in entry.last_error


def test_a_user_writing_to_two_businesses_has_two_conversations() -> None:
    deps = make_deps()
    process_message(msg(1, "to the shop"), deps)
    other = InboundMessage(sid=msg(2).sid, sender=SENDER, recipient="whatsapp:+15550001111", body="to the clinic")
    process_message(other, deps)
    shop, clinic = conversation_id(SENDER), conversation_id(SENDER, "whatsapp:+15550001111")
    assert shop != clinic
    assert [t["content"] for t in deps.store.conversation(shop).history if t["role"] == "user"] == ["to the shop"]
    assert [t["content"] for t in deps.store.conversation(clinic).history if t["role"] == "user"] == ["to the clinic"]
    history, _ = deps.model.calls[1]
    assert history == [], "the clinic's model call sees nothing of the shop's conversation"

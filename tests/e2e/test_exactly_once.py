"""Every message answered exactly once, in order, or dead-lettered with a reason.

Faults are injected at each stage of the real pipeline (processes, emulators,
stand-ins); each test states what must come out, and books what it injected
and what it saw in the session ledger, printed as one summary line at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from google.cloud import pubsub_v1

from devstack.stack import ROOT
from devstack.twilio_stub import body_starts_with, new_sid, sign_and_post
from shared.adapters.cloud_tasks import SendTask, emulator_client
from shared.adapters.conversation_document import from_document
from shared.domain.inbound import InboundMessage
from tests.plugin import Ledger, unique_user, wait_until


def offline(text: str) -> str:
    """What the offline model's reply to ``text`` contains (it also quotes earlier turns, differently)."""
    return f"You said: «{text}»"


def settle(seconds: float = 1.5) -> None:
    """Give a duplicate the time it would need to (wrongly) produce a second send."""
    time.sleep(seconds)


@pytest.fixture
def restart(stack) -> Iterator:
    """Restart a function with extra variables; every function is restored afterwards."""
    changed: set[str] = set()

    def _restart(name: str, **env: str) -> None:
        changed.add(name)
        stack.start_function(name, extra_env=env)

    yield _restart
    for name in changed:
        stack.start_function(name)


def assert_exactly(pipeline, ledger: Ledger, user: str, markers: list[str]) -> list[str]:
    """The user's replies are one per marker, in order: each reply is known by the marker it contains."""
    replies = pipeline.wait_replies(user, len(markers), timeout=60)
    settle()
    replies = pipeline.replies(user)
    delivered = [next((m for m in markers if m in reply), reply) for reply in replies]
    lost, duplicated, reordered = ledger.check(markers, delivered)
    assert (lost, duplicated, reordered) == (0, 0, 0), replies
    return replies


def test_same_inbound_three_times_at_the_webhook(pipeline, ledger) -> None:
    user = unique_user()
    status, sid, params = pipeline.post(user, "Twilio retried me")
    o = pipeline.stack.options
    for _ in range(2):
        assert sign_and_post(pipeline.stack.webhook_url, params, o.twilio_auth_token)[0] == 200
    ledger.duplicates_injected += 2
    assert_exactly(pipeline, ledger, user, [offline("Twilio retried me")])
    assert len(pipeline.model_requests_for("Twilio retried me")) == 1
    history = pipeline.conversation(user).history
    assert [t["sid"] for t in history] == [sid, sid]


def _publish(stack, message: InboundMessage) -> None:
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    topic = f"projects/{stack.options.project}/topics/{stack.options.topic}"
    publisher.publish(topic, message.to_json(), ordering_key=message.sender).result(timeout=10)


def test_pubsub_redelivery_and_an_ordered_replay(pipeline, ledger) -> None:
    user = unique_user()
    first, second = (
        InboundMessage(sid=new_sid("SM"), sender=user, recipient="whatsapp:+14155238886", body=f"replayed {n}")
        for n in (1, 2)
    )
    # The original deliveries, then an ordered replay of both, then one more copy of the first.
    for message in (first, second, first, second, first):
        _publish(pipeline.stack, message)
    ledger.duplicates_injected += 3
    assert_exactly(pipeline, ledger, user, [offline("replayed 1"), offline("replayed 2")])
    assert len(pipeline.model_requests_for("replayed 1")) == 1
    assert len(pipeline.model_requests_for("replayed 2")) == 1


def test_cloud_tasks_redelivery_sends_once(pipeline, ledger) -> None:
    stack = pipeline.stack
    user = unique_user()
    _, sid, _ = pipeline.post(user, "send me once")
    pipeline.wait_replies(user, 1)
    queue = stack.task_queue()
    # Cloud Tasks may run a task more than once: more tasks for the same reply, under other names,
    # each with the processor's OIDC token and caller key so they really reach the sender.
    for n in range(3):
        assert queue.enqueue(SendTask(pipeline.conversation_id(user), sid, 1, kind=f"again{n}"))
    ledger.duplicates_injected += 3
    assert stack.tasks.wait_until_idle(timeout=20)
    assert_exactly(pipeline, ledger, user, [offline("send me once")])


@pytest.mark.parametrize("point", ["after_claim", "after_ai", "after_save", "after_enqueue"])
def test_processor_crash_at_each_step_completes_once(pipeline, ledger, restart, point) -> None:
    restart("processor", TEST_FAULT_POINTS=point)
    ledger.faults_injected += 1
    user = unique_user()
    text = f"crash {point}"
    _, sid, _ = pipeline.post(user, text)
    assert_exactly(pipeline, ledger, user, [offline(text)])
    conv = pipeline.conversation(user)
    assert [t["sid"] for t in conv.history] == [sid, sid]
    assert conv.entry(sid).attempts >= (2 if point == "after_claim" else 1)
    # A crash after the model call repeats the call; no other step does.
    assert len(pipeline.model_requests_for(text)) == (2 if point == "after_ai" else 1)


def test_a_crash_between_the_claim_and_the_answer_searches_the_documents_once_per_attempt(
        pipeline, ledger, restart, tmp_path) -> None:  # noqa: ANN001
    """A business with knowledge: the search is part of answering, after the claim and before the answer write.

    What is guaranteed: at most one embedding call and one vector query per
    answer attempt (claim); a crash after them makes the redelivery's new
    attempt search again, and the answer is still sent exactly once.
    """
    from tests.e2e.knowledge_world import apply_knowledge, embedded, new_business

    business = new_business()
    apply_knowledge(pipeline, tmp_path, {business: {"name": "Grounded", "knowledge": ["prices.md"]}},
                    {"prices.md": "# Prices\n\nSourdough loaf: 4.50 €.\n"})
    restart("processor", TEST_FAULT_POINTS="after_ai")
    ledger.faults_injected += 1
    user = unique_user()
    text = "crash while grounded: how much is the sourdough?"
    _, sid, _ = pipeline.post(user, text, to=business)
    assert_exactly(pipeline, ledger, user, ["4.50 €. — from Prices"])
    entry = pipeline.entry(user, sid, business)
    assert entry.attempts == 2 and entry.knowledge_chunks == ["prices.md#1"]
    assert embedded(pipeline, text) == entry.attempts == len(pipeline.model_requests_for(text))


@pytest.mark.parametrize("point", ["after_claim", "after_ai", "after_save"])
def test_a_budgeted_business_crashing_at_each_step_answers_and_counts_once(pipeline, ledger, restart, point) -> None:
    """The usage counter's increment rides in the answer's commit: a crash before it counts nothing, one after
    it counts once, and the message still ends exactly once; past the budget the budget reply does too."""
    from tests.e2e.test_controls import admin, new_business, put_profile

    business = new_business()
    put_profile(pipeline, business, name="Budgeted", daily_token_budget=10**6, budget_reply="Budget spent.")
    restart("processor", TEST_FAULT_POINTS=point)
    ledger.faults_injected += 1
    user = unique_user()
    text = f"budgeted crash {point}"
    pipeline.post(user, text, to=business)
    assert_exactly(pipeline, ledger, user, [offline(text)])
    report = admin(pipeline, "usage", "--business", business, "--days", "1").stdout
    row = next(line.split() for line in report.splitlines() if line.startswith(business) and "total" not in line)
    assert row[2] == "1", report


@pytest.mark.parametrize("point", ["before_send", "after_send"])
def test_sender_crash_around_the_twilio_call_sends_once(pipeline, ledger, restart, point) -> None:
    restart("sender", TEST_FAULT_POINTS=point)
    ledger.faults_injected += 1
    user = unique_user()
    text = f"sender crash {point}"
    pipeline.post(user, text)
    assert_exactly(pipeline, ledger, user, [offline(text)])
    attempts = [body for to, body in pipeline.twilio.attempts if to == user]
    assert len(attempts) == 1


@pytest.mark.parametrize("point", ["before_send", "after_send"])
def test_a_business_on_its_own_send_lane_through_sender_crashes_sends_once(pipeline, ledger, restart, point) -> None:
    """A business with its own lane (decision 0022): the lane's task is retried by the lane, still sent once."""
    from tests.e2e.test_send_rate import apply, business, lanes

    number, pool = business(), lanes(1)
    assert apply(pipeline, {number: {"name": "Laned", "send_rate_per_second": 5}}, pool)[number] == pool[0]
    restart("sender", TEST_FAULT_POINTS=point)
    ledger.faults_injected += 1
    user = unique_user()
    text = f"laned sender crash {point}"
    pipeline.post(user, text, to=number)
    assert_exactly(pipeline, ledger, user, [offline(text)])
    assert len([body for to, body in pipeline.twilio.attempts if to == user]) == 1
    assert pipeline.stack.tasks.stats().queue(pool[0]).dispatched >= 1, "the reply went through the business's lane"


def test_twilio_accepted_but_the_answer_was_lost(pipeline, ledger) -> None:
    user = unique_user()
    pipeline.twilio.accept_then_disconnect(1, predicate=lambda params: params.get("To") == user)
    ledger.faults_injected += 1
    _, sid, _ = pipeline.post(user, "did you get it?")
    # The sender never heard back: after the in-flight grace it asks Twilio, finds the message, records it.
    wait_until(lambda: pipeline.entry(user, sid).status == "sent", timeout=60, interval=0.2)
    assert_exactly(pipeline, ledger, user, [offline("did you get it?")])
    entry = pipeline.conversation(user).entry(sid)
    assert entry.twilio_sids == [pipeline.twilio_messages_to(user)[0].sid]
    assert len([1 for to, _ in pipeline.twilio.attempts if to == user]) == 1


@pytest.mark.parametrize("fault", ["500", "timeout"])
def test_model_down_sends_the_fallback_once_and_records_it(pipeline, ledger, fault) -> None:
    retries = int(pipeline.stack.options.env["OPENAI_MAX_RETRIES"])
    if fault == "500":
        pipeline.model.fail_next(times=retries + 1, status=500)
    else:
        pipeline.model.hang_next(times=retries + 1)
    ledger.faults_injected += 1
    user = unique_user()
    _, sid, _ = pipeline.post(user, f"model {fault}")
    replies = pipeline.wait_replies(user, 1, timeout=60)
    settle()
    assert pipeline.replies(user) == replies
    assert replies == ["Sorry, I can't answer right now. Please try again in a few minutes."]
    record = pipeline.failure(sid)
    assert record["status"] == "fallback" and record["stage"] == "model"
    assert ("InternalServerError" if fault == "500" else "Timeout") in record["reason"]
    assert user.split(":")[1] not in str(record)
    assert pipeline.conversation(user).entry(sid).status == "sent"


def test_twilio_429_then_success_delivers_once(pipeline, ledger) -> None:
    user = unique_user()
    pipeline.twilio.add_rule(lambda params: params.get("To") == user, status=429, code=20429, times=1)
    ledger.faults_injected += 1
    pipeline.post(user, "rate limited")
    assert_exactly(pipeline, ledger, user, [offline("rate limited")])
    assert len([1 for to, _ in pipeline.twilio.attempts if to == user]) == 2


def test_twilio_500_on_part_two_of_three(pipeline, ledger) -> None:
    user = unique_user()
    paragraphs = [f"Part {name}. " + ("lorem ipsum " * 110).strip() for name in ("one", "two", "three")]
    pipeline.model.set_reply_text("\n\n".join(paragraphs))
    pipeline.twilio.add_rule(body_starts_with("Part two."), status=500, code=20500, times=1)
    ledger.faults_injected += 1
    pipeline.post(user, "tell me a long story")
    replies = assert_exactly(pipeline, ledger, user, ["Part one.", "Part two.", "Part three."])
    assert replies == paragraphs
    assert len([1 for to, _ in pipeline.twilio.attempts if to == user]) == 4


def test_twilio_permanent_error_is_recorded_without_retries(pipeline, ledger) -> None:
    user = unique_user()
    pipeline.twilio.add_rule(lambda params: params.get("To") == user, status=400, code=63016,
                             times=1, message="Failed to send freeform message because you are outside the allowed window.")
    ledger.faults_injected += 1
    _, sid, _ = pipeline.post(user, "too late")
    record = wait_until(lambda: pipeline.failure(sid), timeout=30)
    assert record["status"] == "failed" and record["stage"] == "sender" and "63016" in record["reason"]
    settle(2)
    assert len([1 for to, _ in pipeline.twilio.attempts if to == user]) == 1
    assert pipeline.replies(user) == []
    assert pipeline.conversation(user).entry(sid).status == "failed"
    # The failure closes that message only: the next one is answered.
    pipeline.post(user, "and now?")
    assert len(pipeline.wait_replies(user, 1)) == 1


def test_a_dead_lettered_message_is_recorded_with_its_reason(pipeline, ledger) -> None:
    # The Pub/Sub emulator drops, instead of dead-lettering, a message of an
    # ordered push subscription that ran out of attempts (see
    # docs/decisions/0005-emulator-dead-letter-gap.md). So the test does Pub/Sub's
    # part: the message goes to the dead-letter topic with the attributes Pub/Sub
    # adds; everything after that is the real dead-letter subscription and processor.
    stack = pipeline.stack
    user = unique_user()
    message = InboundMessage(sid=new_sid("SM"), sender=user, recipient="whatsapp:+14155238886", body="never answered")
    publisher = pubsub_v1.PublisherClient()
    topic = f"projects/{stack.options.project}/topics/{stack.options.dead_letter_topic}"
    publisher.publish(
        topic, message.to_json(),
        CloudPubSubDeadLetterSourceDeliveryCount=str(stack.options.max_delivery_attempts),
        CloudPubSubDeadLetterSourceSubscription=stack.options.subscription,
    ).result(timeout=10)
    ledger.faults_injected += 1
    record = wait_until(lambda: pipeline.failure(message.sid), timeout=30, interval=0.2)
    assert record["status"] == "dead_lettered" and record["stage"] == "processor"
    assert f"after {stack.options.max_delivery_attempts} delivery attempts" in record["reason"]
    # Never taken on: no conversation document is made for it (it would hold the address with nothing to expire it).
    assert not pipeline.db.collection("conversations").document(pipeline.conversation_id(user)).get().exists
    assert pipeline.replies(user) == []
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": stack.firestore.host, "PUBSUB_EMULATOR_HOST": stack.pubsub.host,
           "GOOGLE_CLOUD_PROJECT": stack.options.project, "PYTHONPATH": str(ROOT),
           "ADDRESS_HASH_KEY": stack.options.address_hash_key}
    listing = subprocess.run([sys.executable, "-m", "shared.ops.failures"], env=env, capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert message.sid in listing and "dead_lettered" in listing
    assert user.split("+")[1] not in listing
    # make replay: answered once after all, and the tool says so.
    replayed = subprocess.run([sys.executable, "-m", "shared.ops.replay", message.sid], env=env, capture_output=True,
                              text=True, timeout=120, check=True).stdout
    assert f"{message.sid}" in replayed and "replayed" in replayed, replayed
    assert_exactly(pipeline, ledger, user, [offline("never answered")])
    # The same user's next message is answered as usual.
    pipeline.post(user, "are you there?")
    assert_exactly(pipeline, ledger, user, [offline("never answered"), offline("are you there?")])
    # Replaying again finds nothing left to replay.
    again = subprocess.run([sys.executable, "-m", "shared.ops.replay", message.sid], env=env, capture_output=True,
                           text=True, timeout=120, check=True).stdout
    assert "not in the dead-letter hold subscription" in again


def _dead_letter(pipeline, message: InboundMessage) -> None:
    """Pub/Sub's part of a dead letter (docs/decisions/0005-emulator-dead-letter-gap.md): the message goes to
    the dead-letter topic with the attributes Pub/Sub adds, so the dead-letter subscription and the hold get it."""
    o = pipeline.stack.options
    pubsub_v1.PublisherClient().publish(
        f"projects/{o.project}/topics/{o.dead_letter_topic}", message.to_json(),
        CloudPubSubDeadLetterSourceDeliveryCount=str(o.max_delivery_attempts),
        CloudPubSubDeadLetterSourceSubscription=o.subscription,
    ).result(timeout=10)


def _replay(pipeline, sid: str) -> str:
    from tests.e2e.test_controls import admin

    return admin(pipeline, "replay", sid).stdout


def _left_alone(out: str) -> bool:
    """Replay reported the message left alone, and replayed no copy of it."""
    return "left alone" in out and "replayed" not in out


def test_a_replayed_first_message_is_answered_from_the_number_it_was_written_to(pipeline, ledger) -> None:
    """A dead-lettered first message of a business that is not the default number, replayed: its reply,
    and every later one, goes out from that business's number, never the default."""
    from tests.e2e.test_controls import new_business, put_profile

    business, user = new_business(), unique_user()
    put_profile(pipeline, business, name="Replayed business")
    message = InboundMessage(sid=new_sid("SM"), sender=user, recipient=business, body="first and dead-lettered")
    _dead_letter(pipeline, message)
    ledger.faults_injected += 1
    assert wait_until(lambda: pipeline.failure(message.sid), timeout=30, interval=0.2)["status"] == "dead_lettered"
    assert "replayed" in _replay(pipeline, message.sid)
    assert_exactly(pipeline, ledger, user, [offline("first and dead-lettered")])
    assert pipeline.conversation(user, business).business == business
    pipeline.post(user, "and the next one?", to=business)
    assert_exactly(pipeline, ledger, user, [offline("first and dead-lettered"), offline("and the next one?")])
    assert {m.from_ for m in pipeline.twilio_messages_to(user)} == {business}


def test_a_replay_answers_nothing_twice_and_brings_no_erased_user_back(pipeline, ledger) -> None:
    """Held copies of an answered message (its conversation expired since), of a message replayed and
    answered already, and of an erased user's message: replay answers none of them, writes no number back."""
    from tests.e2e.test_controls import admin

    default = pipeline.stack.options.twilio_whatsapp_from
    # Answered; a copy of it is dead-lettered too (it waits in the hold); the conversation expires.
    user = unique_user()
    _, sid, _ = pipeline.post(user, "answered before any replay")
    assert_exactly(pipeline, ledger, user, [offline("answered before any replay")])
    _dead_letter(pipeline, InboundMessage(sid=sid, sender=user, recipient=default, body="answered before any replay"))
    ledger.duplicates_injected += 1
    pipeline.db.collection("conversations").document(pipeline.conversation_id(user)).delete()
    assert _left_alone(_replay(pipeline, sid))
    # Dead-lettered, replayed and answered; another copy is dead-lettered; the conversation expires.
    again = unique_user()
    message = InboundMessage(sid=new_sid("SM"), sender=again, recipient=default, body="replayed exactly once")
    _dead_letter(pipeline, message)
    wait_until(lambda: pipeline.failure(message.sid), timeout=30, interval=0.2)
    assert "replayed" in _replay(pipeline, message.sid)
    assert_exactly(pipeline, ledger, again, [offline("replayed exactly once")])
    _dead_letter(pipeline, message)
    ledger.duplicates_injected += 1
    settle()
    pipeline.db.collection("conversations").document(pipeline.conversation_id(again)).delete()
    assert _left_alone(_replay(pipeline, message.sid))
    # Dead-lettered, then the user is erased: erase removes the held copy too, and nothing comes back.
    erased = unique_user()
    gone = InboundMessage(sid=new_sid("SM"), sender=erased, recipient=default, body="erased before any replay")
    _dead_letter(pipeline, gone)
    wait_until(lambda: pipeline.failure(gone.sid), timeout=30, interval=0.2)
    out = admin(pipeline, "erase", erased).stdout
    assert "1 failure record" in out and "removed 1 held copy" in out, out
    assert "not in the dead-letter hold subscription" in _replay(pipeline, gone.sid)
    settle(3)
    assert len(pipeline.replies(user)) == 1 and len(pipeline.replies(again)) == 1 and pipeline.replies(erased) == []
    ledger.check([], [*pipeline.replies(erased)])
    assert len(pipeline.model_requests_for("answered before any replay")) == 1
    assert len(pipeline.model_requests_for("replayed exactly once")) == 1
    for address in (user, again, erased):
        assert not pipeline.db.collection("conversations").document(pipeline.conversation_id(address)).get().exists
    assert not pipeline.failure(gone.sid)


def test_twenty_users_ten_messages_each_concurrently(pipeline, ledger) -> None:
    users = [unique_user() for _ in range(20)]
    errors: list[str] = []

    def converse(user: str) -> None:
        for n in range(10):
            status, _, _ = pipeline.post(user, f"{user[-4:]} message {n}")
            if status != 200:
                errors.append(f"{user} {n}: {status}")

    threads = [threading.Thread(target=converse, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    wait_until(lambda: sum(len(pipeline.replies(u)) for u in users) >= 200, timeout=240, interval=0.5)
    settle()
    total = 0
    for user in users:
        texts = [f"{user[-4:]} message {n}" for n in range(10)]
        replies = pipeline.replies(user)
        total += len(replies)
        markers = [offline(t) for t in texts]
        delivered = [next((m for m in markers if m in reply), reply) for reply in replies]
        assert ledger.check(markers, delivered) == (0, 0, 0), (user, replies)
        history = pipeline.conversation(user).history
        assert [t["content"] for t in history if t["role"] == "user"] == texts
        assert len(history) == 20
    assert total == 200


def test_answer_commit_whose_response_was_lost_is_still_sent(pipeline, ledger, restart) -> None:
    # Firestore took the answer, but the client saw FAILED_PRECONDITION on its retried commit.
    restart("processor", TEST_FAULT_POINTS="answer_commit_lost")
    ledger.faults_injected += 1
    user = unique_user()
    pipeline.post(user, "lost commit answer")
    assert_exactly(pipeline, ledger, user, [offline("lost commit answer")])
    assert len(pipeline.model_requests_for("lost commit answer")) == 1


def test_a_delivery_frozen_past_its_lease_and_a_redelivery_answer_once(pipeline, ledger, restart) -> None:
    # The first delivery stalls after the model call for longer than the lease
    # (5 s here); a concurrent redelivery takes the message over and answers it.
    restart("processor", TEST_FAULT_POINTS="after_ai@7")
    ledger.faults_injected += 1
    user = unique_user()
    message = InboundMessage(sid=new_sid("SM"), sender=user, recipient="whatsapp:+14155238886", body="frozen lease")
    _publish(pipeline.stack, message)
    time.sleep(1.0)
    # Redeliveries of an unacknowledged message can overlap the first one.
    publisher = pubsub_v1.PublisherClient()
    topic = f"projects/{pipeline.stack.options.project}/topics/{pipeline.stack.options.topic}"
    publisher.publish(topic, message.to_json()).result(timeout=10)
    ledger.duplicates_injected += 1
    assert_exactly(pipeline, ledger, user, [offline("frozen lease")])
    settle(7)
    assert len(pipeline.replies(user)) == 1
    assert pipeline.conversation(user).entry(message.sid).attempts >= 2


def test_a_send_task_that_ran_out_is_recreated_by_the_reconciler(pipeline, ledger) -> None:
    stack = pipeline.stack
    user = unique_user()
    pipeline.twilio.add_rule(lambda params: params.get("To") == user, status=429, code=20429, times=1)
    ledger.faults_injected += 1
    _, sid, _ = pipeline.post(user, "my task ran out")
    wait_until(lambda: any(to == user for to, _ in pipeline.twilio.attempts), timeout=30)
    # The task is gone, as after Cloud Tasks' max attempts or retry duration.
    client = emulator_client(stack.tasks.address)
    name = f"{stack.queue_path}/tasks/{SendTask(pipeline.conversation_id(user), sid, 1).task_id}"
    try:
        client.delete_task(name=name)
    except Exception:  # noqa: BLE001 - it may have run again already; then nothing was lost
        pass
    replies = assert_exactly(pipeline, ledger, user, [offline("my task ran out")])
    assert len(replies) == 1
    assert pipeline.conversation(user).entry(sid).status == "sent"


def test_a_slow_model_asking_to_retry_after_two_minutes_ends_in_the_fallback_within_budget(pipeline, ledger) -> None:
    pipeline.model.fail_next(times=5, status=429, retry_after=120)
    ledger.faults_injected += 1
    user = unique_user()
    _, sid, _ = pipeline.post(user, "model says wait two minutes")
    # Within the budget: the SDK alone would sleep the two minutes first.
    replies = pipeline.wait_replies(user, 1, timeout=60)
    settle()
    assert pipeline.replies(user) == replies == ["Sorry, I can't answer right now. Please try again in a few minutes."]
    # One model call: the SDK would have slept the two minutes and retried, past the lease.
    assert len(pipeline.model_requests_for("model says wait two minutes")) == 1
    assert pipeline.failure(sid)["stage"] == "model"


def test_a_dead_letter_arriving_during_the_send_does_not_cut_the_reply(pipeline, ledger) -> None:
    stack = pipeline.stack
    user = unique_user()
    paragraphs = [f"Chunk {name}. " + ("dolor sit " * 120).strip() for name in ("one", "two")]
    pipeline.model.set_reply_text("\n\n".join(paragraphs))
    pipeline.twilio.delay_seconds = 1.5
    ledger.faults_injected += 1
    _, sid, params = pipeline.post(user, "dead letter mid-send")
    wait_until(lambda: any(to == user for to, _ in pipeline.twilio.attempts), timeout=30)
    message = InboundMessage(sid=sid, sender=user, recipient="whatsapp:+14155238886", body="dead letter mid-send")
    publisher = pubsub_v1.PublisherClient()
    topic = f"projects/{stack.options.project}/topics/{stack.options.dead_letter_topic}"
    publisher.publish(topic, message.to_json(), CloudPubSubDeadLetterSourceDeliveryCount="12").result(timeout=10)
    replies = assert_exactly(pipeline, ledger, user, ["Chunk one.", "Chunk two."])
    assert replies == paragraphs
    entry = pipeline.conversation(user).entry(sid)
    assert entry.status == "sent" and entry.sent_parts == 2


def test_a_late_redelivery_after_the_conversation_expired_is_not_answered(pipeline, ledger) -> None:
    user = unique_user()
    _, sid, _ = pipeline.post(user, "answered long ago")
    assert_exactly(pipeline, ledger, user, [offline("answered long ago")])
    # Firestore's TTL policy deleted the conversation; Pub/Sub then redelivers the message.
    pipeline.db.collection("conversations").document(pipeline.conversation_id(user)).delete()
    _publish(pipeline.stack, InboundMessage(sid=sid, sender=user, recipient="whatsapp:+14155238886", body="answered long ago"))
    ledger.duplicates_injected += 1
    settle(3)
    assert len(pipeline.replies(user)) == 1
    assert len(pipeline.model_requests_for("answered long ago")) == 1
    assert not pipeline.db.collection("conversations").document(pipeline.conversation_id(user)).get().exists


def test_a_burst_from_one_user_is_answered_in_order_without_deferrals(pipeline, ledger) -> None:
    stack = pipeline.stack
    before = stack.tasks.stats().queue(stack.queue_path)
    user = unique_user()
    texts = [f"burst {n}" for n in range(8)]
    for text in texts:
        pipeline.post(user, text)
    assert_exactly(pipeline, ledger, user, [offline(t) for t in texts])
    # Waiting for the reply before is not an error answer: the queue saw no 429 or 5xx.
    after = stack.tasks.stats().queue(stack.queue_path)
    assert after.throttle_events == before.throttle_events
    assert after.failed == before.failed


def test_commands_opt_out_and_handoff_end_once_with_duplicates_and_crashes(pipeline, ledger, restart) -> None:
    """Every control is one more way a message ends on the same path: each reply once, in order,
    through Twilio retries, processor crashes after the claim and a sender crash after the Twilio call."""
    from shared.adapters.profile_store import FirestoreProfiles
    from shared.domain import profiles as p
    from tests.e2e.test_controls import admin, new_business

    business, user = new_business(), unique_user()
    FirestoreProfiles(lambda: pipeline.db, "business_profiles", p.BusinessProfile(), 0).put(
        business, {"name": "Fault suite", "handoff_keyword": "agent", "handoff_reply": "A person will answer."},
        datetime.now(timezone.utc),
    )
    restart("processor", TEST_FAULT_POINTS="after_claim:2")
    restart("sender", TEST_FAULT_POINTS="after_send")
    ledger.faults_injected += 3
    texts = ["/help", "fault suite hello", "/reset", "STOP", "while opted out", "START", "agent", "while paused"]
    o = pipeline.stack.options
    for text in texts:
        _, _, params = pipeline.post(user, text, to=business)
        assert sign_and_post(pipeline.stack.webhook_url, params, o.twilio_auth_token)[0] == 200
        ledger.duplicates_injected += 1
    wait_until(lambda: sum(e.status in ("sent", "ignored") for e in pipeline.conversation(user, business).messages.values())
               >= len(texts), timeout=90, interval=0.2)
    out = admin(pipeline, "reply", user, "--business", business, "A person says hi.").stdout
    assert "queued" in out
    markers = [p.DEFAULT_HELP, offline("fault suite hello"), p.DEFAULT_RESET_REPLY, p.DEFAULT_OPT_OUT_REPLY,
               p.DEFAULT_OPT_IN_REPLY, "A person will answer.", "A person says hi."]
    assert_exactly(pipeline, ledger, user, markers)
    assert len(pipeline.model_requests_for("fault suite hello")) == 1
    for text in ("/help", "/reset", "STOP", "while opted out", "START", "agent", "while paused"):
        assert pipeline.model_requests_for(text) == []
    reasons = sorted(e.reason for e in pipeline.conversation(user, business).messages.values()
                     if e.status == "ignored")
    assert reasons == ["opted out", "paused"]


def test_a_burst_through_a_processor_crash_and_a_member_redelivery_is_answered_once(pipeline, ledger, restart) -> None:
    """Bursts on (docs/decisions/0014-bursts.md): the processor dies right after the head's claim,
    and Pub/Sub delivers a member again; still one model call and one reply for the whole burst."""
    restart("processor", BURST_WINDOW_SECONDS="3", TEST_FAULT_POINTS="after_claim:1")
    ledger.faults_injected += 1
    user = unique_user()
    texts = ["crash burst one", "crash burst two", "crash burst three"]
    sids = [pipeline.post(user, text)[1] for text in texts]
    _publish(pipeline.stack, InboundMessage(sid=sids[1], sender=user, recipient="whatsapp:+14155238886", body=texts[1]))
    ledger.duplicates_injected += 1
    assert_exactly(pipeline, ledger, user, [texts[0]])
    calls = [r.messages for r in pipeline.model.requests
             if r.messages and texts[0] in str(r.messages[-1].get("content"))]
    assert len(calls) == 1 and all(t in str(calls[0][-1]["content"]) for t in texts)
    conv = pipeline.conversation(user)
    assert conv.entry(sids[0]).attempts >= 1
    assert [conv.entry(s).status for s in sids[1:]] == ["merged", "merged"]


def test_stops_confirmation_survives_a_reply_finishing_between_its_claim_and_its_answer(
    pipeline, ledger, restart,
) -> None:
    """Reply n is sent while STOP is claimed but not yet answered (the processor stalls 3 s after each claim):
    the address stays until nothing is left to send, so the confirmation goes once, without 500s."""
    from shared.domain.profiles import DEFAULT_OPT_OUT_REPLY

    stack = pipeline.stack
    before = stack.tasks.stats().queue(stack.queue_path)
    restart("processor", TEST_FAULT_POINTS="after_claim:2@3")
    ledger.faults_injected += 1
    user = unique_user()
    pipeline.post(user, "one last question")
    _, stop_sid, _ = pipeline.post(user, "STOP")
    assert_exactly(pipeline, ledger, user, [offline("one last question"), DEFAULT_OPT_OUT_REPLY])
    conv = pipeline.conversation(user)
    assert conv.entry(stop_sid).status == "sent" and conv.opted_out is True
    wait_until(lambda: "address" not in pipeline.document(user), timeout=10)
    after = stack.tasks.stats().queue(stack.queue_path)
    assert after.failed == before.failed


def test_business_and_person_messages_queued_before_stop_are_not_sent_after_it(pipeline, ledger) -> None:
    """Two templates and a person's reply wait for the sender (stopped) while the user opts out: once the
    sender is back, they end ignored ("opted out") and only the confirmation goes."""
    from shared.domain.profiles import DEFAULT_OPT_OUT_REPLY
    from tests.e2e.test_controls import admin
    from tests.e2e.test_outbound import TEMPLATE, post_outbound

    stack, user = pipeline.stack, unique_user()
    business = stack.options.twilio_whatsapp_from
    pipeline.twilio.add_content(TEMPLATE, "Hi {{1}}, 20% off this week!")
    pipeline.post(user, "hello before the promotions")
    pipeline.wait_replies(user, 1)
    stack.stop_function("sender")
    ledger.faults_injected += 1
    try:
        for key in ("promo-a", "promo-b"):
            status, _ = post_outbound(pipeline, to=user, content_sid=TEMPLATE, content_variables={"1": "Ana"},
                                      idempotency_key=f"{key}-{user}")
            assert status == 202
        assert "queued" in admin(pipeline, "reply", user, "--business", business, "A person says hi.").stdout
        _, stop_sid, _ = pipeline.post(user, "STOP")
        wait_until(lambda: pipeline.entry(user, stop_sid).status == "answered", timeout=30)
    finally:
        stack.start_function("sender")
    assert_exactly(pipeline, ledger, user, [offline("hello before the promotions"), DEFAULT_OPT_OUT_REPLY])
    conv = pipeline.conversation(user)
    unasked = [e for e in conv.messages.values() if e.by in ("business", "person")]
    assert [(e.status, e.reason) for e in unasked] == [("ignored", "opted out")] * 3
    assert not [m for m in pipeline.twilio_messages_to(user) if m.params.get("ContentSid")]


def test_a_captured_webhook_replayed_under_a_new_message_sid_is_refused(pipeline, ledger) -> None:
    """Twilio's signature joins keys and values without a separator: ``MessageType=text`` folded into
    the MessageSid keeps it valid. The webhook accepts only Twilio's SID shapes, so the copy is a 400."""
    from twilio.request_validator import RequestValidator

    o, user = pipeline.stack.options, unique_user()
    _, sid, params = pipeline.post(user, "pay the invoice")
    forged = {k: v for k, v in params.items() if k != "MessageType"}
    forged["MessageSid"] = sid + "MessageTypetext"
    validator = RequestValidator(o.twilio_auth_token)
    url = pipeline.stack.webhook_url
    assert validator.compute_signature(url, forged) == validator.compute_signature(url, params)
    status, _, body = sign_and_post(url, forged, o.twilio_auth_token)
    ledger.duplicates_injected += 1
    assert status == 400 and b"not a Twilio SID" in body
    assert_exactly(pipeline, ledger, user, [offline("pay the invoice")])
    assert len(pipeline.model_requests_for("pay the invoice")) == 1


@pytest.mark.parametrize("point", ["before_send", "after_send"])
def test_a_menu_and_its_tap_through_sender_crashes_are_sent_once(pipeline, ledger, restart, point) -> None:
    """Buttons go once through a crash around the Twilio call; a tap sent twice is answered once."""
    from devstack.twilio_content import tap_fields
    from devstack.twilio_stub import inbound_message
    from tests.e2e.test_controls import new_business, put_profile

    restart("sender", TEST_FAULT_POINTS=point)
    ledger.faults_injected += 1
    business, user, tag = new_business(), unique_user(), new_sid("SM")[-6:]
    put_profile(pipeline, business, menus=[{"id": "main", "keywords": ["menu"], "text": f"Pick one {tag}", "items": [
        {"id": "a", "title": "First", "reply": f"First it is {tag}"}, {"id": "b", "title": "Second", "reply": "b"}]}])
    pipeline.post(user, "menu", to=business)
    wait_until(lambda: pipeline.twilio_messages_to(user), 60)
    [menu] = pipeline.twilio_messages_to(user)
    assert menu.content_sid and menu.body == f"Pick one {tag}"
    o = pipeline.stack.options
    fields = tap_fields(menu.types, "menu:main:a", menu.sid, business,
                        lambda *a, **k: inbound_message(*a, account_sid=o.twilio_account_sid, **k), user, new_sid("SM"))
    for _ in range(2):
        assert sign_and_post(pipeline.stack.webhook_url, fields, o.twilio_auth_token)[0] == 200
    ledger.duplicates_injected += 1
    assert_exactly(pipeline, ledger, user, [f"Pick one {tag}", f"First it is {tag}"])
    assert len([a for a in pipeline.twilio.attempts if a[0] == user]) == 2


def test_no_message_stalled(pipeline, ledger) -> None:
    """Every message of the run is terminal within the liveness bound (reconciler included)."""
    liveness = float(pipeline.stack.options.env["LIVENESS_SECONDS"])
    bound = timedelta(seconds=liveness + 2 * pipeline.stack.options.reconcile_interval_seconds + 15)
    deadline = time.monotonic() + liveness + 30
    while True:
        now = datetime.now(timezone.utc)
        late, waiting = 0, 0
        for snap in pipeline.db.collection("conversations").stream():
            for entry in from_document(snap.to_dict() or {}).open_entries().values():
                if now - entry.received_at > bound:
                    late += 1
                else:
                    waiting += 1
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(1)
    ledger.stalled = late + waiting
    assert ledger.stalled == 0, ledger.summary()


def test_the_run_lost_duplicated_and_reordered_nothing(ledger) -> None:
    assert (ledger.lost, ledger.duplicated, ledger.reordered, ledger.stalled) == (0, 0, 0, 0), ledger.summary()


@pytest.mark.parametrize("faults, retried", [("answer_commit_lost,after_save", True), ("after_save", False)],
                         ids=["lost-answer-then-crash-retried", "crash-not-retried"])
def test_an_inbox_reply_through_a_crash_is_sent_once_in_order(pipeline, ledger, restart, faults, retried) -> None:
    """A person's reply from the inbox: its commit's answer lost and the inbox crashing before the hand-off.
    Retried with the same key it is sent once; not retried, the reconciler sends it, once."""
    from tests.e2e.test_controls import new_business, put_profile
    from tests.e2e.test_inbox_page import api_session

    business, user, staff = new_business(), unique_user(), "fault-staff@shop.example"
    put_profile(pipeline, business, staff=[staff], handoff_keyword="agent", handoff_reply="A person will answer.")
    pipeline.post(user, "agent", to=business)
    wait_until(lambda: [m for m in pipeline.twilio_messages_to(user) if m.body == "A person will answer."], 30)
    restart("inbox", TEST_FAULT_POINTS=faults)
    ledger.faults_injected += len(faults.split(","))
    session, csrf = api_session(pipeline.stack, staff)
    cid = pipeline.conversation_id(user, business)
    url = f"{pipeline.stack.inbox_url}/api/conversations/{cid}/reply"
    body = {"key": "fault-reply-0001", "text": "Hi, a person here."}
    first = session.post(url, json=body, headers={"X-CSRF-Token": csrf}, timeout=30)
    assert first.status_code == 500, first.text
    if retried:
        again = [session.post(url, json=body, headers={"X-CSRF-Token": csrf}, timeout=30) for _ in range(2)]
        ledger.duplicates_injected += 2
        assert [a.status_code for a in again] == [202, 202] and len({a.json()["id"] for a in again}) == 1
    replies = pipeline.wait_replies(user, 2, timeout=60)
    settle()
    lost, duplicated, reordered = ledger.check(["A person will answer.", "Hi, a person here."], pipeline.replies(user))
    assert (lost, duplicated, reordered) == (0, 0, 0), replies

"""Send rate per business number through the running stack (docs/decisions/0022-send-queue-per-number.md):
one business's campaign above its rate waits in its own lane while another's replies go at once, and a
change of rate (or of queue) while replies are queued sends each reply once and in order."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from shared.adapters.cloud_tasks import emulator_client
from shared.adapters.profile_store import SEND_QUEUE, FirestoreProfiles
from shared.adapters.send_queues import SendQueues
from shared.config import Settings
from shared.domain.profiles import BusinessProfile
from shared.ops.send_queues import with_send_queues
from tests.e2e.test_outbound import post_outbound
from tests.plugin import unique_user, wait_until

TEMPLATE = "HX" + "fedcba9876543210" * 2


def business() -> str:
    return f"whatsapp:+1444{uuid.uuid4().int % 10**7:07d}"


def apply(pipeline, raw: Mapping[str, Mapping[str, Any]], lanes: tuple[str, ...]) -> dict[str, str]:  # noqa: ANN001
    """profiles-apply's queue step and profile writes against the stack's Firestore and Cloud Tasks stand-in."""
    o = pipeline.stack.options
    settings = Settings(project_id=o.project, tasks_location=o.tasks_location, tasks_queue=o.tasks_queue,
                        send_lanes=lanes)
    store = FirestoreProfiles(lambda: pipeline.db, "business_profiles", BusinessProfile(), 0)
    address = pipeline.stack.tasks.address
    queues = SendQueues(o.project, o.tasks_location, o.tasks_queue, lambda: emulator_client(address))
    stored = {a: d for a, d in store.stored().items() if a in raw}
    put = with_send_queues(store.put, raw, stored, lambda: queues, settings, [])
    now = datetime.now(timezone.utc)
    for number, profile in raw.items():
        put(number, profile, now)
    return {number: str((store.stored().get(number) or {}).get(SEND_QUEUE, "")) for number in raw}


def lanes(n: int) -> tuple[str, ...]:
    prefix = f"e{uuid.uuid4().hex[:6]}"
    return tuple(f"{prefix}-{i:02d}" for i in range(n))


def test_a_campaign_above_its_rate_does_not_delay_another_business(pipeline) -> None:  # noqa: ANN001
    a, b = business(), business()
    pool = lanes(2)
    routes = apply(pipeline, {a: {"name": "Campaign", "send_rate_per_second": 1}, b: {"name": "Clinic"}}, pool)
    assert routes[a] and routes[b] and routes[a] != routes[b]
    pipeline.twilio.add_content(TEMPLATE, "Hi {{1}}, our sale starts today.")
    campaign = [unique_user() for _ in range(8)]
    for user in campaign:  # eight templates from A at 1 a second: eight seconds of backlog in A's lane
        status, _ = post_outbound(pipeline, to=user, **{"from": a}, content_sid=TEMPLATE,
                                  content_variables={"1": "Ana"}, idempotency_key=str(uuid.uuid4()))
        assert status == 202
    patient = unique_user()
    pipeline.post(patient, "What are your opening hours?", to=b)
    wait_until(lambda: pipeline.twilio_messages_to(patient), timeout=30)
    sent_of_a = [m for m in pipeline.twilio.messages if m.to in campaign]
    assert len(sent_of_a) < len(campaign) - 2, (
        f"B's reply went out only after {len(sent_of_a)} of A's {len(campaign)} campaign messages"
    )
    wait_until(lambda: len([m for m in pipeline.twilio.messages if m.to in campaign]) == len(campaign), timeout=60)
    assert all(len(pipeline.twilio_messages_to(user)) == 1 for user in campaign), "a campaign message went twice"
    stats = pipeline.stack.tasks.stats()
    lane = f"projects/{pipeline.stack.options.project}/locations/{pipeline.stack.options.tasks_location}/queues/"
    assert stats.queue(lane + routes[a]).max_dispatches_per_second == 1


def test_a_change_of_rate_and_of_queue_while_replies_wait_keeps_them_once_and_in_order(pipeline) -> None:  # noqa: ANN001
    c = business()
    pool = lanes(1)
    first = apply(pipeline, {c: {"name": "Bakery", "send_rate_per_second": 0.5}}, pool)
    assert first[c] == pool[0]
    user = unique_user()
    texts = [f"question {n} about bread" for n in range(1, 7)]
    for text in texts[:3]:
        pipeline.post(user, text, to=c)
    wait_until(lambda: pipeline.twilio_messages_to(user), timeout=30)
    assert apply(pipeline, {c: {"name": "Bakery", "send_rate_per_second": 40}}, pool)[c] == pool[0]  # UpdateQueue
    pipeline.post(user, texts[3], to=c)
    wait_until(lambda: len(pipeline.twilio_messages_to(user)) >= 2, timeout=30)
    assert apply(pipeline, {c: {"name": "Bakery"}}, ())[c] == ""  # moved to the shared queue mid-conversation
    for text in texts[4:]:
        pipeline.post(user, text, to=c)
    replies = pipeline.wait_replies(user, len(texts), timeout=60)
    wait_until(lambda: pipeline.conversation(user, c).done_seq == len(texts), timeout=30)
    conv = pipeline.conversation(user, c)
    assert len(replies) == len(texts), f"{len(replies)} replies to {len(texts)} messages"
    by_seq = sorted(conv.messages.values(), key=lambda e: e.seq or 0)
    assert [e.status for e in by_seq] == ["sent"] * len(texts)
    sids = [m.sid for m in pipeline.twilio_messages_to(user)]
    assert sids == [sid for e in by_seq for sid in e.twilio_sids], "replies reached Twilio out of seq order"

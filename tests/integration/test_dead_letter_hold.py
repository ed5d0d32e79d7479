"""The dead-letter hold subscription through PubSubDeadLetters, against the Pub/Sub emulator."""

from __future__ import annotations

import uuid

from google.cloud import pubsub_v1

from shared.domain.inbound import InboundMessage
from shared.ops.replay import PubSubDeadLetters


def test_each_held_copy_is_pulled_once_released_at_once_and_gone_once_acked(emulators) -> None:  # noqa: ANN001
    project, suffix = emulators.project, uuid.uuid4().hex[:8]
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=publisher.topic_path(project, f"dead-letter-{suffix}")).name
    hold = f"hold-{suffix}"
    subscriber.create_subscription(name=subscriber.subscription_path(project, hold), topic=topic)
    messages = [InboundMessage(sid=f"SM{n:032x}", sender="whatsapp:+34600111222", recipient="whatsapp:+1555", body=f"m{n}")
                for n in range(3)]
    for message in messages:
        publisher.publish(topic, message.to_json()).result(timeout=10)
    publisher.publish(topic, b"not a message").result(timeout=10)
    dead_letters = PubSubDeadLetters(project, hold, f"inbound-{suffix}")
    held = dead_letters.pull(100)
    # Every readable copy once, however many pulls it took (a later pull never waits for a lease to run out).
    assert sorted(h.message.sid for h in held) == [m.sid for m in messages]
    dead_letters.release([h.ack_id for h in held])
    again = dead_letters.pull(100)
    assert sorted(h.message.sid for h in again) == [m.sid for m in messages]
    dead_letters.ack([h.ack_id for h in again])
    # Only the unreadable copy is left, held for inspection and never returned as a message.
    assert dead_letters.pull(100, wait=False) == []

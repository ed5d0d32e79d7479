"""``make replay``: answer dead-lettered messages after all, exactly once and in order.

Dead-lettered messages wait in the dead-letter hold subscription (7 days).
For each one chosen (by MessageSid, or all), in the order the user wrote them:

1. its entry in the conversation is reopened (compare-and-set): a message that
   is dead-lettered, or unknown to the conversation, becomes ``received``
   again with a fresh receipt time, so the liveness bound starts anew; a
   message in any other state is left alone (it was answered meanwhile);
2. it is published again to the inbound topic with its ordering key, so the
   processor answers it like any message: claim, model, send task;
3. it is acknowledged on the hold subscription.

A crash between the steps is safe to repeat: reopening an entry that is
already ``received`` changes nothing, and the processor answers a message
once whatever the number of copies. Works against the emulators
(FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST) and the cloud alike.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Protocol

from shared import bootstrap
from shared.adapters.firestore_store import Conflict, ConversationStore
from shared.domain.conversation import DEAD_LETTERED, RECEIVED, Conversation, expire_at, utcnow
from shared.domain.inbound import InboundMessage, InvalidWebhook
from shared.domain.pseudonyms import Pseudonyms
from shared.handlers.processor import MAX_CONFLICT_RETRIES


@dataclass(frozen=True)
class HeldMessage:
    ack_id: str
    message: InboundMessage
    published: datetime


class DeadLetters(Protocol):
    def pull(self, max_messages: int) -> list[HeldMessage]: ...

    def republish(self, message: InboundMessage) -> None: ...

    def ack(self, ack_ids: list[str]) -> None: ...


def reopen(store: ConversationStore, ids: Pseudonyms, msg: InboundMessage, now: datetime, ttl_seconds: int) -> str:
    """Make a dead-lettered message answerable again; returns what was found."""
    cid = ids.conversation_id(msg.sender, msg.recipient)
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = store.load(cid)
        conv: Conversation = snap.conversation
        status = conv.entry(msg.sid).get("status")
        if status not in (None, DEAD_LETTERED, RECEIVED):
            return f"left alone ({status})"
        entry: dict[str, Any] = {
            "status": RECEIVED,
            "receivedAt": now,
            "updatedAt": now,
            "replays": int(conv.entry(msg.sid).get("replays", 0)) + 1,
        }
        updates: dict[str, Any] = {f"messages.{msg.sid}": entry, "updatedAt": now, "expireAt": expire_at(now, ttl_seconds)}
        if not conv.exists:
            updates["address"] = msg.sender
        try:
            store.apply(cid, updates, snap.version)
        except Conflict:
            continue
        return "reopened"
    raise Conflict(f"conversation kept changing while reopening {msg.sid}")


def replay(
    store: ConversationStore,
    ids: Pseudonyms,
    dead_letters: DeadLetters,
    clock: Callable[[], datetime],
    ttl_seconds: int,
    sids: Iterable[str] = (),
    limit: int = 100,
) -> list[str]:
    """Replay the chosen held messages (all when ``sids`` is empty); one report line each."""
    wanted = set(sids)
    held = dead_letters.pull(limit)
    chosen = [h for h in held if not wanted or h.message.sid in wanted]
    lines: list[str] = []
    for item in sorted(chosen, key=lambda h: (h.message.received_at or 0, h.published)):
        msg = item.message
        outcome = reopen(store, ids, msg, clock(), ttl_seconds)
        if outcome == "reopened":
            dead_letters.republish(msg)
        dead_letters.ack([item.ack_id])
        lines.append(f"{msg.sid}  {ids.mask(msg.sender):22}  {'replayed' if outcome == 'reopened' else outcome}")
    missing = wanted - {h.message.sid for h in held}
    lines += [f"{sid}  not in the dead-letter hold subscription" for sid in sorted(missing)]
    return lines


class PubSubDeadLetters:
    """The hold subscription and the inbound topic, through the real Pub/Sub clients."""

    def __init__(self, project: str, hold_subscription: str, topic: str) -> None:
        from google.cloud import pubsub_v1

        self._subscriber = pubsub_v1.SubscriberClient()
        self._publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self._subscription = self._subscriber.subscription_path(project, hold_subscription)
        self._topic = self._publisher.topic_path(project, topic)

    def pull(self, max_messages: int) -> list[HeldMessage]:
        """Up to ``max_messages`` held messages; one pull may return only some of those waiting."""
        received_messages: list[Any] = []
        for _ in range(5):
            response = self._subscriber.pull(
                request={"subscription": self._subscription, "max_messages": max_messages - len(received_messages)},
                timeout=30,
            )
            if not response.received_messages:
                break
            received_messages += response.received_messages
            if len(received_messages) >= max_messages:
                break
        held: list[HeldMessage] = []
        bad: list[str] = []
        for received in received_messages:
            try:
                message = InboundMessage.from_json(received.message.data)
            except (InvalidWebhook, ValueError):
                bad.append(received.ack_id)
                continue
            held.append(HeldMessage(received.ack_id, message, received.message.publish_time))
        if bad:
            # Unreadable copies stay held for inspection, visible again at once.
            self._subscriber.modify_ack_deadline(
                request={"subscription": self._subscription, "ack_ids": bad, "ack_deadline_seconds": 0}
            )
        return held

    def republish(self, message: InboundMessage) -> None:
        self._publisher.publish(self._topic, message.to_json(), ordering_key=message.sender).result(timeout=30)

    def ack(self, ack_ids: list[str]) -> None:
        self._subscriber.acknowledge(request={"subscription": self._subscription, "ack_ids": ack_ids})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sids", nargs="*", help="MessageSids to replay (default: every held message)")
    parser.add_argument("--hold-subscription", default="inbound-messages-dead-letter-hold")
    parser.add_argument("--limit", type=int, default=100, help="messages pulled from the hold subscription at most")
    args = parser.parse_args(argv)
    settings = bootstrap.settings()
    dead_letters = PubSubDeadLetters(settings.project_id, args.hold_subscription, settings.inbound_topic)
    lines = replay(bootstrap.store(), bootstrap.pseudonyms(), dead_letters, utcnow, settings.conversation_ttl_seconds, args.sids, args.limit)
    print("\n".join(lines) if lines else "no dead-lettered messages waiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())

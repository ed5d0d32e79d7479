"""``make replay``: answer dead-lettered messages after all, exactly once and in order.

Dead-lettered messages wait in the dead-letter hold subscription (7 days).
For each one chosen (by MessageSid, or all), in the order the user wrote them:

1. it must be known to have been dead-lettered and not answered: its entry
   in the conversation says ``dead_lettered`` (or ``received``, a replay
   that was cut short), or, when the entry is gone (never taken on, or the
   conversation expired), its failure record says ``dead_lettered``. Any
   other copy is left alone: a message answered meanwhile, one whose
   dead letter was "left to the sender", and anything of a user erased since
   (erase deletes the failure records), so a replay never answers twice and
   never writes an erased number back;
2. its entry is reopened (compare-and-set): ``received`` again with a fresh
   receipt time and the reconciler's ``watch``, so the liveness bound starts
   anew; a re-created conversation knows its number (``business``) and its
   user (``userId``) like any other;
3. its failure record becomes ``replayed``, so once the replay is answered
   and the conversation is gone, another copy is not replayed again;
4. it is published again to the inbound topic with its ordering key, so the
   processor answers it like any message: claim, model, send task;
5. it is acknowledged on the hold subscription.

A crash between the steps is safe to repeat: reopening an entry that is
already ``received`` changes nothing, and the processor answers a message
once whatever the number of copies. Held messages that were pulled but not
chosen are released at once, so the next run sees them.
Works against the emulators (FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST)
and the cloud alike (docs/decisions/0012-business-controls.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Protocol

from shared import bootstrap
from shared.adapters.compare_and_set import ConversationStore
from shared.domain import claims
from shared.domain.conversation import Conversation, Limits, utcnow
from shared.domain.inbound import InboundMessage, InvalidWebhook
from shared.domain.lifecycle import DEAD_LETTERED, RECEIVED
from shared.domain.pseudonyms import Pseudonyms


@dataclass(frozen=True)
class HeldMessage:
    ack_id: str
    message: InboundMessage
    published: datetime


class DeadLetters(Protocol):
    def pull(self, max_messages: int, wait: bool = True) -> list[HeldMessage]: ...

    def republish(self, message: InboundMessage) -> None: ...

    def ack(self, ack_ids: list[str]) -> None: ...

    def release(self, ack_ids: list[str]) -> None: ...


# The failure record's status once its message was replayed.
REPLAYED = "replayed"
NOT_KNOWN = "left alone (not known to be dead-lettered: answered, or erased since)"


def reopen(store: ConversationStore, ids: Pseudonyms, msg: InboundMessage, now: datetime, ttl_seconds: int,
           watch_after_seconds: int = 180) -> str:
    """Make a message known to be dead-lettered and unanswered answerable again; returns what was found.

    The entry becomes ``received`` again (``reopened``, shared/domain/claims.py);
    a conversation that is gone is re-created knowing whose it is.
    """
    cid = ids.conversation_id(msg.sender, msg.recipient)
    record = store.failure(msg.sid)
    recorded = bool(record) and record.get("status") == DEAD_LETTERED and record.get("conversation") == cid
    limits = Limits(ttl_seconds=ttl_seconds, max_messages=0, watch_after_seconds=watch_after_seconds)

    def change(conv: Conversation) -> str:
        entry = conv.entry(msg.sid)
        status = entry.status if entry is not None else ""
        if status not in ("", DEAD_LETTERED, RECEIVED):
            return f"left alone ({status})"
        if not status and not recorded:
            return NOT_KNOWN
        claims.reopen(conv, msg.sid, now, limits, address=msg.sender, business=msg.recipient,
                      user_id=ids.user_id(msg.sender))
        return "reopened"

    outcome = store.update(cid, change, what=f"reopening {msg.sid}").result
    if outcome == "reopened" and recorded:
        assert record is not None
        store.record_failure(msg.sid, {**record, "status": REPLAYED, "replayedAt": now})
    return outcome


def replay(
    store: ConversationStore,
    ids: Pseudonyms,
    dead_letters: DeadLetters,
    clock: Callable[[], datetime],
    ttl_seconds: int,
    sids: Iterable[str] = (),
    limit: int = 100,
    watch_after_seconds: int = 180,
) -> list[str]:
    """Replay the chosen held messages (all when ``sids`` is empty); one report line each."""
    wanted = set(sids)
    held = dead_letters.pull(limit)
    chosen = [h for h in held if not wanted or h.message.sid in wanted]
    chosen_ids = {h.ack_id for h in chosen}
    others = [h.ack_id for h in held if h.ack_id not in chosen_ids]
    if others:
        dead_letters.release(others)
    lines: list[str] = []
    for item in sorted(chosen, key=lambda h: (h.message.received_at or 0, h.published)):
        msg = item.message
        outcome = reopen(store, ids, msg, clock(), ttl_seconds, watch_after_seconds)
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

    def pull(self, max_messages: int, wait: bool = True) -> list[HeldMessage]:
        """Up to ``max_messages`` held messages, each once; one pull may return only some of those waiting.

        Only the first pull may wait for a message (``wait``): a later one
        would block until the lease of those already pulled ran out and then
        return them again. A copy pulled twice keeps its latest ack id.
        """
        by_id: dict[str, Any] = {}
        for attempt in range(5):
            response = self._subscriber.pull(
                request={"subscription": self._subscription, "max_messages": max_messages - len(by_id),
                         "return_immediately": attempt > 0 or not wait},
                timeout=30,
            )
            fresh = [r for r in response.received_messages if r.message.message_id not in by_id]
            for received in response.received_messages:
                by_id[received.message.message_id] = received
            if not fresh or len(by_id) >= max_messages:
                break
        received_messages = list(by_id.values())
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
            self.release(bad)
        return held

    def release(self, ack_ids: list[str]) -> None:
        """Pulled but not handled: visible again at once instead of after the ack deadline."""
        self._subscriber.modify_ack_deadline(
            request={"subscription": self._subscription, "ack_ids": ack_ids, "ack_deadline_seconds": 0}
        )

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
    lines = replay(bootstrap.store(), bootstrap.pseudonyms(), dead_letters, utcnow, settings.conversation_ttl_seconds,
                   args.sids, args.limit, settings.reconcile_after_seconds)
    print("\n".join(lines) if lines else "no dead-lettered messages waiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())

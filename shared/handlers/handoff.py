"""Per-user order without error answers: each finished reply hands off to the next.

A reply is sent only once every reply before it is finished (``doneSeq``). A
reply that is not yet its turn is not retried with an error answer, which Cloud
Tasks would take as overload and slow the whole queue for (system throttling);
instead whoever finishes reply n creates the task for reply n + 1, and the
writer of an answer creates its task only when it is already its turn. Both
decide on the state their compare-and-set write left, so exactly one of them
sees the other's write and the hand-off is never lost (docs/decisions/0008-liveness.md).
"""

from __future__ import annotations

import logging
from typing import Protocol

from shared.adapters.cloud_tasks import BurstTask, SendTask
from shared.domain.conversation import Conversation

log = logging.getLogger(__name__)


class Queue(Protocol):
    def enqueue(self, task: SendTask | BurstTask) -> bool: ...


def its_turn(conv: Conversation, seq: int) -> bool:
    return conv.done_seq >= seq - 1


def send_when_its_turn(queue: Queue, conversation_id: str, conv: Conversation, sid: str, seq: int) -> bool:
    """Create the reply's first task if its predecessors are done; else the last of them will."""
    if not its_turn(conv, seq):
        return False
    queue.enqueue(SendTask(conversation_id, sid, seq))
    return True


def hand_off_next(queue: Queue, conversation_id: str, conv: Conversation) -> str | None:
    """After a reply finished: create the task of the reply now in line, if one waits.

    The name is fixed per reply ("next"), so a repeated hand-off (a retried
    task of the finished reply) is a harmless duplicate.
    """
    head = conv.next_in_line()
    if head is None:
        return None
    sid, entry = head
    created = queue.enqueue(SendTask(conversation_id, sid, int(entry["seq"]), kind="next"))
    log.info(
        "handed off to the next reply",
        extra={"event": "handoff", "sid": sid, "conversation": conversation_id[:12], "seq": entry["seq"], "task_created": created},
    )
    return sid

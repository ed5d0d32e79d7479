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

from shared.adapters.cloud_tasks import SendTask
from shared.domain.conversation import Conversation
from shared.domain.lifecycle import HANDED_OFF, IllegalMove, next_status
from shared.handlers.deps import Queue

log = logging.getLogger(__name__)


def send_when_its_turn(queue: Queue, conversation_id: str, conv: Conversation, sid: str) -> bool:
    """Create the reply's first task if its predecessors are done; else the last of them will.

    Only an answered reply is handed to the sender (``handed_off``).
    """
    entry = conv.entry(sid)
    if entry is None or entry.seq is None:
        raise IllegalMove(HANDED_OFF, entry.status if entry is not None else "", sid)
    next_status(entry.status, HANDED_OFF, sid)
    if not conv.its_turn(entry.seq):
        return False
    queue.enqueue(SendTask(conversation_id, sid, entry.seq, business=conv.business))
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
    created = queue.enqueue(SendTask(conversation_id, sid, int(entry.seq or 0), kind="next", business=conv.business))
    log.info(
        "handed off to the next reply",
        extra={"event": "handoff", "sid": sid, "conversation": conversation_id[:12], "seq": entry.seq, "task_created": created},
    )
    return sid

"""The one answer path's last two steps: record the answer, then hand it to the sender.

A model reply, a canned reply (commands, keyword rules, opt-out), a burst's
reply, a person's reply (``make admin ARGS="reply ..."``) and a business's
outbound message all end here the same way: :func:`record_answer` makes the
entry "answered with these parts, with this seq" through
``Conversation.answer`` in one compare-and-set write, and :func:`hand_off`
creates its send task when it is its turn (otherwise the reply before it
hands off when it finishes). What differs between them is only what comes
before (who wrote the parts) and what may refuse them (``refuse``).

Safe to repeat: an entry found answered already (our own commit whose answer
was lost, another delivery that took over, the same request again) is not
answered twice; its send task is made sure of instead (named, so never twice).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from shared.adapters.compare_and_set import Conflict, ConversationStore, Snapshot
from shared.adapters.firestore_store import failure_record
from shared.domain.conversation import Answer, Conversation, Limits
from shared.domain.entry import MessageEntry
from shared.domain.lifecycle import PROCESSING
from shared.faults import FaultPoints
from shared.handlers.deps import Queue
from shared.handlers.handoff import send_when_its_turn

log = logging.getLogger(__name__)

ANSWERED = "answered"  # written now
ALREADY = "already answered"  # answered before and not sent yet: only the hand-off is made sure of
GONE = "gone"  # nothing to answer: finished already, or (a user's message) not claimed by us any more
FOREIGN = "foreign"  # an unasked answer's sid is taken by another entry (``mine`` said so)
REFUSED = "refused"  # ``refuse`` said why


@dataclass(frozen=True)
class Recorded:
    outcome: str
    conversation: Conversation
    entry: MessageEntry | None = None
    refusal: Any = None

    @property
    def seq(self) -> int | None:
        return self.entry.seq if self.entry is not None else None

    @property
    def status(self) -> str:
        return self.entry.status if self.entry is not None else ""


def record_answer(
    store: ConversationStore,
    conversation_id: str,
    sid: str,
    answer: Answer,
    limits: Limits,
    clock: Callable[[], datetime],
    *,
    start: Snapshot | None = None,
    after: Callable[[Conversation, datetime], None] | None = None,
    refuse: Callable[[Conversation, datetime], Any] | None = None,
    mine: Callable[[Conversation, MessageEntry, bool], bool] | None = None,
    faults: FaultPoints | None = None,
) -> Recorded:
    """Answer ``sid`` with ``answer`` in one compare-and-set write; see the module's docstring.

    An answer to the user (``answer.asked``) needs the entry claimed
    (``processing``); an unasked one (a person's, the business's) needs no
    entry yet. ``after`` changes the conversation further in the same write
    (a burst's members merged, whose conversation it is, a dedupe marker).
    ``refuse`` may return a reason not to answer (nothing is written);
    ``mine`` tells whether an existing entry is this very answer (an earlier
    request, or our own commit whose answer was lost: the bool says this call
    tried to write it).
    """
    tried = False

    def change(conv: Conversation) -> tuple[str, Any]:
        nonlocal tried
        entry = conv.entry(sid)
        if entry is not None and answer.asked is None and mine is not None and not mine(conv, entry, tried):
            return FOREIGN, None
        if entry is not None and entry.to_send:
            return ALREADY, None
        if entry is not None and (answer.asked is None or entry.status != PROCESSING):
            return GONE, None
        if entry is None and answer.asked is not None:
            return GONE, None
        now = clock()
        refusal = refuse(conv, now) if refuse is not None else None
        if refusal is not None:
            return REFUSED, refusal
        conv.answer(sid, answer, now, limits)
        if after is not None:
            after(conv, now)
        tried = True
        return ANSWERED, None

    def lost_answer() -> None:
        if faults is not None and faults.fires("answer_commit_lost"):
            raise Conflict("the commit went through but its answer was lost (injected)")

    saved = store.update(conversation_id, change, start=start, what=f"answering {sid}", after_commit=lost_answer)
    outcome, refusal = saved.result
    conv = saved.conversation
    return Recorded(outcome, conv, conv.entry(sid), refusal)


def hand_off(queue: Queue, conversation_id: str, recorded: Recorded, sid: str) -> bool:
    """Create the answered reply's send task if it is its turn; True when this call created it."""
    if recorded.entry is None or not recorded.entry.to_send:
        return False
    return send_when_its_turn(queue, conversation_id, recorded.conversation, sid)


def record_fallback(store: ConversationStore, sid: str, conversation_id: str, masked_sender: str, reason: str,
                    now: datetime) -> None:
    """A fallback reply went instead of the model's: ``make failures`` lists it with the model's error."""
    store.record_failure(sid, failure_record(conversation_id=conversation_id, masked_sender=masked_sender,
                                             status="fallback", stage="model", reason=reason, now=now))

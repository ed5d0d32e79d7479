"""A person in the conversation: their reply, taking over from the bot, and handing back to it.

The same for the inbox and for ``make admin``. A person's reply is one more
kind of answer on the one answer path (docs/architecture.md): an unasked
``Answer`` by ``person``, written by :func:`record_answer` (next ``seq``,
the assistant turn the model sees once the bot answers again, the
reconciler's watch) and handed to the sender by :func:`hand_off`, so it goes
through the same queue, in the same order, exactly once. What may refuse it
is checked inside that same write: an opted-out user, a conversation with
too many unfinished messages, free text outside the 24-hour window (when the
caller asks for that rule: the inbox does, and offers the template), a
conversation that does not exist (when it must).

Exactly once for a request repeated with the same id (a double click, a
retried request): the entry with that id is this reply, so the repeat
writes nothing and only makes sure of its send task; with ``mark``, a
dedupe marker created in the same commit keeps a repeat that comes after the
entry is gone (pruned, expired) from sending it again.

Taking over and handing back set and clear ``paused_until``
(shared/domain/controls.py), each one compare-and-set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable

from shared.adapters.compare_and_set import ConversationStore
from shared.config import Settings
from shared.domain.controls import hand_back, take_over
from shared.domain.conversation import Answer, Conversation
from shared.domain.entry import MessageEntry
from shared.domain.splitting import split_reply
from shared.domain.window import window_open
from shared.faults import FaultPoints
from shared.handlers.answer import ALREADY, ANSWERED, GONE, REFUSED, hand_off, record_answer
from shared.handlers.deps import Queue, limits

BY_PERSON = "person"
# Why a reply was not written (the refusal of a Replied).
NO_CONVERSATION = "no conversation"
OPTED_OUT = "opted out"
TOO_MANY_OPEN = "too many open"
OUTSIDE_WINDOW = "outside the 24-hour window"
SEEN = "accepted before"  # the marker says so; its entry is gone
NOT_THEIRS = "not this business's conversation"


@dataclass(frozen=True)
class PersonReply:
    """What a person sends: ``text``, or an approved template (``template``, a Content SID)."""

    sid: str
    text: str = ""
    template: str = ""
    business: str = ""
    to: str = ""  # the user's address, for a conversation that may not know it yet (make admin)
    user_id: str = ""
    window_rule: bool = False  # refuse free text outside the 24-hour window
    must_exist: bool = False
    mark: bool = False

    @property
    def parts(self) -> list[str]:
        return [f"[template {self.template}]"] if self.template else split_reply(self.text.strip())


@dataclass(frozen=True)
class Replied:
    outcome: str  # ANSWERED, ALREADY (written before, not sent yet), GONE (written and finished), REFUSED, FOREIGN
    refusal: str = ""
    seq: int | None = None
    status: str = ""
    queued: bool = False  # it is the reply's turn: its send task exists (named, so created once)
    parts: int = 0


def reply_as_person(store: ConversationStore, queue: Queue, settings: Settings, clock: Callable[[], datetime],
                    conversation_id: str, reply: PersonReply, faults: FaultPoints | None = None) -> Replied:
    """Record and hand off a person's reply; see the module's docstring.

    A crash between the two (``after_save``) leaves an answered reply without
    its task: the request repeated with the same id creates it, and so does
    the reconciler, whose watch the answer set.
    """
    text = reply.text.strip()[: settings.max_reply_chars]
    reply = replace(reply, text=text)
    parts = reply.parts
    if not parts:
        return Replied(REFUSED, "the reply is empty")
    whole = "\n\n".join(parts)
    tries = 0

    def mine(conv: Conversation, entry: MessageEntry, tried: bool) -> bool:
        said = entry.parts or [t.get("content", "") for t in conv.history or [] if t.get("sid") == reply.sid]
        return tried or (entry.by == BY_PERSON and "\n\n".join(str(p) for p in said) == whole)

    def refuse(conv: Conversation, now: datetime) -> str | None:
        nonlocal tries
        tries += 1
        if reply.mark and tries > 1 and store.seen(reply.sid):
            return SEEN  # an earlier request with this id won the race for the marker
        if reply.must_exist and not conv.exists:
            return NO_CONVERSATION
        if reply.business and conv.business and conv.business != reply.business:
            return NOT_THEIRS
        if conv.opted_out:
            return OPTED_OUT
        if len(conv.open_entries()) >= settings.max_open_messages:
            return TOO_MANY_OPEN
        if reply.window_rule and not reply.template and not window_open(conv, now):
            return OUTSIDE_WINDOW
        return None

    def after(conv: Conversation, now: datetime) -> None:
        conv.belongs_to(reply.business, reply.user_id)
        if reply.mark:
            conv.new_markers[reply.sid] = now + timedelta(seconds=settings.dedupe_horizon_seconds)

    answer = Answer(parts=parts, by=BY_PERSON, to=reply.to, content_sid=reply.template)
    recorded = record_answer(store, conversation_id, reply.sid, answer, limits(settings), clock,
                             refuse=refuse, mine=mine, after=after, faults=faults)
    if recorded.outcome == REFUSED:
        if recorded.refusal == SEEN:
            return Replied(GONE, status="sent or finished", parts=len(parts))
        return Replied(REFUSED, str(recorded.refusal))
    if faults is not None:
        faults.hit("after_save")
    queued = hand_off(queue, conversation_id, recorded, reply.sid) if recorded.outcome in (ANSWERED, ALREADY) else False
    return Replied(recorded.outcome, seq=recorded.seq, status=recorded.status, queued=queued, parts=len(parts))


def set_paused(store: ConversationStore, conversation_id: str, until: datetime | None, clock: Callable[[], datetime],
               business: str = "") -> bool:
    """Take over until ``until`` (None: hand back); False when there is no such conversation (of ``business``)."""
    def change(conv: Conversation) -> bool:
        if not conv.exists or (business and conv.business != business):
            return False
        if until is None:
            hand_back(conv, clock())
        else:
            take_over(conv, until, clock())
        return True

    return store.update(conversation_id, change, what="taking over" if until else "handing back").result


def pause_until(clock: Callable[[], datetime], seconds: int) -> datetime:
    return clock() + timedelta(seconds=seconds)

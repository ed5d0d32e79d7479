"""The life of one message entry, as data: which event may move it, from which statuses, to which.

Read this first. Every entry of the conversation document (an inbound
message, a business's outbound message, a person's reply) has one status,
and every change to an entry is one of the events below. ``MessageEntry.move``
(shared/domain/entry.py) consults :data:`TABLE` and is the only code that
writes a status; an event from a status it does not list raises
:class:`IllegalMove`, so a handler can never silently overwrite a state it did
not expect (docs/architecture.md draws the same table).

The common path of a text message::

    (new) --claimed--> processing --answered--> answered --part_sending--> sending --sent--> sent
                          |  ^                                   ^   |
                 reclaimed|__| (its lease ran out)    part_sending|___|part_sent (one per part)

and the other ways a message ends:

* ``ignored``: decided at the claim (opted out, rate limited, paused), or an
  unasked message (business, person) queued before an opt-out;
* ``failed``: the sender gave up, or the reconciler closed it after the
  liveness bound (any open status);
* ``dead_lettered``: Pub/Sub gave up before it was answered; ``reopened``
  (``make replay``) makes it ``received`` again, the one way out of a terminal status;
* bursts: the first message waits (``burst_started``), later ones join it
  (``joined_burst``), the head is claimed when the window has passed
  (``burst_claimed``), answered like any message, and then every member
  ends ``merged``.

Events whose target is ``None`` change fields of the entry, never its status
(a nudge, a delivery tick, a failed attempt); they are listed so that what
each may touch is stated in one place too.
"""

from __future__ import annotations

from dataclasses import dataclass

# Statuses, as stored in ``messages.{sid}.status``.
NEW = ""  # no entry yet: the status an event that creates the entry starts from
RECEIVED = "received"
PROCESSING = "processing"
WAITING_BURST = "waiting_burst"
JOINED = "joined"
ANSWERED = "answered"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
DEAD_LETTERED = "dead_lettered"
IGNORED = "ignored"
MERGED = "merged"

FINISHED = frozenset({SENT, FAILED, DEAD_LETTERED, IGNORED, MERGED})
OPEN = frozenset({RECEIVED, PROCESSING, WAITING_BURST, JOINED, ANSWERED, SENDING})
# Answered and not finished: the sender's to deliver.
TO_SEND = frozenset({ANSWERED, SENDING})
STATUSES = FINISHED | OPEN

# Events.
CLAIMED = "claimed"
RECLAIMED = "reclaimed"
DECIDED = "decided"
BURST_STARTED = "burst_started"
JOINED_BURST = "joined_burst"
BURST_EXTENDED = "burst_extended"
BURST_CLAIMED = "burst_claimed"
ANSWERED_WITH = "answered"
MERGED_INTO = "merged"
HANDED_OFF = "handed_off"
PART_SENDING = "part_sending"
PART_SENT = "part_sent"
ATTEMPT_FAILED = "attempt_failed"
NUDGED = "nudged"
ERROR_NOTED = "error_noted"
DELIVERY_REPORTED = "delivery_reported"
LATE_PART = "late_part"
FINISHED_SENT = "sent"
FINISHED_FAILED = "failed"
FINISHED_IGNORED = "ignored"
FINISHED_DEAD_LETTERED = "dead_lettered"
REOPENED = "reopened"


@dataclass(frozen=True)
class Move:
    sources: frozenset[str]
    target: str | None  # None: the status stays


TABLE: dict[str, Move] = {
    # Taking a message on (shared/domain/claims.py, bursts.py).
    CLAIMED: Move(frozenset({NEW, RECEIVED}), PROCESSING),
    RECLAIMED: Move(frozenset({PROCESSING}), PROCESSING),
    DECIDED: Move(frozenset({PROCESSING}), None),
    BURST_STARTED: Move(frozenset({PROCESSING}), WAITING_BURST),
    JOINED_BURST: Move(frozenset({PROCESSING}), JOINED),
    BURST_EXTENDED: Move(frozenset({WAITING_BURST}), None),
    BURST_CLAIMED: Move(frozenset({WAITING_BURST}), PROCESSING),
    # The one answer (shared/domain/conversation.py): a claimed message, or an unasked one.
    ANSWERED_WITH: Move(frozenset({NEW, PROCESSING}), ANSWERED),
    MERGED_INTO: Move(frozenset({JOINED}), MERGED),
    HANDED_OFF: Move(TO_SEND, None),
    # Sending, part by part (shared/domain/sending.py).
    PART_SENDING: Move(TO_SEND, SENDING),
    PART_SENT: Move(frozenset({SENDING}), None),
    ATTEMPT_FAILED: Move(OPEN, None),
    # Keeping it alive (shared/domain/liveness.py, claims.py, delivery.py).
    NUDGED: Move(frozenset({ANSWERED, SENDING, WAITING_BURST, PROCESSING}), None),
    ERROR_NOTED: Move(OPEN, None),
    DELIVERY_REPORTED: Move(STATUSES, None),
    LATE_PART: Move(FINISHED, None),
    # The ends.
    FINISHED_SENT: Move(TO_SEND, SENT),
    FINISHED_FAILED: Move(OPEN | {NEW}, FAILED),
    FINISHED_IGNORED: Move(frozenset({PROCESSING}) | TO_SEND, IGNORED),
    FINISHED_DEAD_LETTERED: Move(frozenset({NEW, RECEIVED, PROCESSING, WAITING_BURST, JOINED}), DEAD_LETTERED),
    # Replay (shared/ops/replay.py): the one way out of a terminal status.
    REOPENED: Move(frozenset({NEW, RECEIVED, DEAD_LETTERED}), RECEIVED),
}

# The event that ends an entry with each terminal status, for ``Conversation.finish``.
FINISHING = {SENT: FINISHED_SENT, FAILED: FINISHED_FAILED, IGNORED: FINISHED_IGNORED,
             DEAD_LETTERED: FINISHED_DEAD_LETTERED}


class IllegalMove(Exception):
    """An event the entry's status does not allow: a defect in the caller, never retried into success."""

    def __init__(self, event: str, status: str, sid: str = "") -> None:
        allowed = ", ".join(sorted(s or "(new)" for s in TABLE[event].sources)) if event in TABLE else "-"
        super().__init__(f"{event!r} is not allowed from {status or '(new)'!r}"
                         f"{f' for {sid}' if sid else ''} (allowed from: {allowed})")
        self.event, self.status, self.sid = event, status, sid


def allowed(status: str, event: str) -> bool:
    return event in TABLE and status in TABLE[event].sources


def next_status(status: str, event: str, sid: str = "") -> str:
    """The status after ``event``; raises :class:`IllegalMove` when ``status`` does not allow it."""
    if not allowed(status, event):
        raise IllegalMove(event, status, sid)
    target = TABLE[event].target
    return status if target is None else target


def is_finished(status: str) -> bool:
    return status in FINISHED

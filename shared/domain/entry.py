"""One message entry of the conversation document, as a typed record.

An entry is the dedupe and progress record of one message (an inbound one,
a business's outbound message, a person's reply): ``messages.{sid}`` in the
document. The fields are the ones entries really have; how each is named
and stored is the store's business (shared/adapters/conversation_document.py).
Empty values (``None``, ``""``, ``0``, an empty list) mean "not there".

Its status changes only through :meth:`MessageEntry.move`, which asks the
state machine (shared/domain/lifecycle.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.lifecycle import FINISHED, NEW, TO_SEND, next_status
from shared.domain.tool_ledger import Ledger


@dataclass
class SendingMark:
    """Written before Twilio is called for part ``part``, by the task ``task``; see decision 0004."""

    part: int
    since: datetime
    task: str = ""


@dataclass
class Decided:
    """What the first claim decided (shared/domain/controls.py), kept so a re-claim decides the same."""

    kind: str
    reason: str = ""
    reply: str = ""
    history: bool = False
    welcome: str = ""


@dataclass
class MessageEntry:
    status: str = NEW
    received_at: datetime | None = None
    updated_at: datetime | None = None
    # Taken on: the processor's claim, and what it decided.
    lease_until: datetime | None = None
    attempts: int = 0
    decided: Decided | None = None
    last_error: str = ""
    reason: str = ""
    # Answered: the reply's place in the user's order and its WhatsApp-sized parts.
    seq: int | None = None
    parts: list[str] = field(default_factory=list)
    sent_parts: int = 0
    part_count: int = 0  # how many parts a finished reply had (its parts are dropped)
    fallback: bool = False
    by: str = ""  # who wrote an unasked message: "business" (outbound API) or "person" (admin reply)
    content_sid: str = ""  # a template part: Twilio's Content SID and its variables
    content_variables: str = ""
    choices: dict[str, Any] = field(default_factory=dict)  # the last part's choices (shared/domain/choices.py)
    # Sending.
    sending: SendingMark | None = None
    send_attempts: int = 0
    twilio_sids: list[str] = field(default_factory=list)
    late_twilio_sids: list[str] = field(default_factory=list)  # parts delivered after the entry was closed
    deliveries: dict[str, str] = field(default_factory=dict)  # Twilio SID -> furthest delivery status
    delivery_errors: dict[str, str] = field(default_factory=dict)  # Twilio SID -> Twilio's ErrorCode
    nudges: int = 0
    # Bursts (docs/decisions/0014-bursts.md): a head's members and window, a member's head.
    text: str = ""
    burst_due: datetime | None = None
    burst_version: int = 0
    burst_members: list[str] = field(default_factory=list)
    business: str = ""
    burst: str = ""
    answered_by: str = ""
    replays: int = 0
    # Business tools (shared/domain/tool_ledger.py): this message's rounds and calls, compacted once answered.
    tool_ledger: Ledger | None = None
    # The knowledge base (shared/domain/knowledge.py): which version of the business's chunks the
    # answer was grounded in, the chunk ids the model was given, and whether the unknown reply went instead.
    knowledge_version: str = ""
    knowledge_chunks: list[str] = field(default_factory=list)
    knowledge_unknown: bool = False
    # What the answer's model calls reported and cost (shared/domain/usage.py's Usage, as stored).
    usage: dict[str, Any] = field(default_factory=dict)
    # Fields this version does not know (a newer writer's), kept as they were.
    extra: dict[str, Any] = field(default_factory=dict)

    def move(self, event: str, sid: str = "") -> None:
        """Apply ``event`` to the status, or raise IllegalMove: the one place a status is written."""
        self.status = next_status(self.status, event, sid)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def to_send(self) -> bool:
        return self.status in TO_SEND

    @property
    def is_burst_head(self) -> bool:
        return bool(self.burst_members)

    def lease_live(self, now: datetime) -> bool:
        return self.lease_until is not None and self.lease_until > now

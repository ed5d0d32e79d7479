"""A write that needs the user's yes: the proposal, and what the user's next message does to it.

A ``confirm: true`` tool is never called on the model's word. The answer is
a proposal built from the arguments the call would send; it waits as the
conversation's ``pending_tool`` (shared/domain/tool_events.py records it
and settles it), and only a confirming reply within the time limit makes
the call, once, with the proposal's own Idempotency-Key. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from shared.domain.tool_ledger import CallRecord, Ledger, Round
from shared.domain.tools import WRITE

CONFIRM = "confirm"
CANCEL = "cancel"
EXPIRED = "expired"
NO_PROPOSAL = "none"


@dataclass(frozen=True)
class PendingConfirmation:
    """A write shown to the user and not executed: the conversation's ``pendingTool``, until the next message."""

    sid: str
    round_no: int
    index: int
    call_id: str
    name: str
    arguments: str
    key: str
    text: str
    expires_at: datetime = field(compare=False)

    def to_data(self) -> dict[str, Any]:
        return {"sid": self.sid, "round": self.round_no, "index": self.index, "callId": self.call_id,
                "name": self.name, "arguments": self.arguments, "key": self.key, "text": self.text,
                "expiresAt": self.expires_at}

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | None) -> "PendingConfirmation | None":
        if not data or not data.get("key"):
            return None
        return cls(str(data["sid"]), int(data["round"]), int(data["index"]), str(data["callId"]), str(data["name"]),
                   str(data["arguments"]), str(data["key"]), str(data.get("text", "")), data["expiresAt"])


def proposal(sid: str, round_no: int, index: int, record: CallRecord, text: str, now: datetime,
             confirm_seconds: int) -> PendingConfirmation:
    return PendingConfirmation(sid, round_no, index, record.id, record.name, record.arguments, record.key, text,
                               now + timedelta(seconds=confirm_seconds))


def _normalized(text: str) -> str:
    return text.strip().strip(".!?¡¿ \t\n").casefold()


def answer_to_proposal(pending: PendingConfirmation | None, text: str, now: datetime,
                       keywords: tuple[str, ...]) -> str:
    """What the user's next message does to the proposal waiting for it.

    Only the whole message being a confirming word (any case, punctuation
    around it ignored) within the time limit executes it; anything else,
    including silence until the limit, cancels it. The proposal is consumed
    either way, so a second "yes" finds nothing to confirm.
    """
    if pending is None:
        return NO_PROPOSAL
    if now >= pending.expires_at:
        return EXPIRED
    if _normalized(text) in {_normalized(k) for k in keywords}:
        return CONFIRM
    return CANCEL


def confirmed_ledger(pending: PendingConfirmation, confirming_sid: str) -> Ledger:
    """The confirming message's ledger: the proposed call, its key unchanged, ready to be executed once."""
    call = CallRecord(id=pending.call_id, name=pending.name, effect=WRITE, arguments=pending.arguments,
                      key=pending.key, confirmed_by=confirming_sid)
    return Ledger((Round("", (call,)),))


def cancelled_note(pending: PendingConfirmation, outcome: str) -> str:
    """What the model is told about a proposal the user did not confirm, so it does not claim it was done."""
    why = "the time to confirm ran out" if outcome == EXPIRED else "the user did not confirm it"
    return f"The proposed action {pending.name} was NOT done: {why}. Call it again only if the user asks for it again."

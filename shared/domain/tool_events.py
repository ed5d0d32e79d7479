"""What business tools change in the conversation, as events of the message's state machine.

* ``tools_recorded`` (:func:`record_ledger`): a claimed message's ledger
  (shared/domain/tool_ledger.py) stored on its entry: a write's intent before
  the request leaves, its result when it returns. Only the delivery holding
  the claim may write it: one whose lease passed to another delivery gets
  False and stops.
* ``confirmed`` / ``proposal_dropped`` (:func:`settle_proposal`), in the
  claim's write of the user's next message after a proposal: a confirming
  reply takes the proposed call, key and all, as its own first round, to be
  executed once on the answer path; anything else drops it, and the model is
  told it was not done. Either way the proposal is gone, so a second yes finds
  nothing to confirm.
* the proposal itself rides on the answer (``Answer.proposal``,
  :meth:`Conversation.answer`), and the answer keeps the ledger compacted.

Pure: each changes the :class:`Conversation` it is given; the store writes it.
"""

from __future__ import annotations

from datetime import datetime

from shared.domain.conversation import Conversation
from shared.domain.lifecycle import PROCESSING, PROPOSAL_CONFIRMED, PROPOSAL_DROPPED, TOOLS_RECORDED
from shared.domain.proposals import CONFIRM, NO_PROPOSAL, answer_to_proposal, cancelled_note, confirmed_ledger
from shared.domain.tool_ledger import Ledger

DROPPED = "dropped"  # a confirming word in a message that is not answered (ignored): nobody executes it


def record_ledger(conv: Conversation, sid: str, attempt: int, ledger: Ledger, now: datetime) -> bool:
    """Store ``ledger`` on ``sid``'s entry if it is still this attempt's claim; False (nothing changed) if not."""
    entry = conv.entry(sid)
    if entry is None or entry.status != PROCESSING or entry.attempts != attempt:
        return False
    entry.move(TOOLS_RECORDED, sid)
    entry.tool_ledger = ledger
    entry.updated_at = now
    return True


def settle_proposal(conv: Conversation, sid: str, text: str, now: datetime, keywords: tuple[str, ...]) -> str:
    """The user's next message after a proposal (its claim's write): confirm the proposed write, or drop it.

    Returns :data:`shared.domain.proposals.CONFIRM`, ``CANCEL``, ``EXPIRED``,
    :data:`DROPPED` (a message recorded and not answered) or ``NO_PROPOSAL``.
    """
    pending = conv.pending_tool
    outcome = answer_to_proposal(pending, text, now, keywords)
    if pending is None:
        return NO_PROPOSAL
    conv.pending_tool = None
    entry = conv.entry(sid)
    if entry is None or entry.status != PROCESSING:
        return DROPPED
    if outcome == CONFIRM:
        entry.move(PROPOSAL_CONFIRMED, sid)
        entry.tool_ledger = confirmed_ledger(pending, sid)
    else:
        entry.move(PROPOSAL_DROPPED, sid)
        entry.tool_ledger = Ledger(note=cancelled_note(pending, outcome))
    return outcome

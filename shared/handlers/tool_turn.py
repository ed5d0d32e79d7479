"""The answer path's tools step: the model's function-calling rounds with the business's own tools.

``ask_model`` (shared/handlers/compose.py) runs this instead of one plain
completion when the business's profile has tools, or when the claim brought
a confirmed call or a dropped proposal; every other message pays nothing for
it. The rounds are shared/domain/tool_rounds.py over three ports wired here:

* the model: :meth:`ChatModel.tool_round`, one deadline for all of it
  (``MODEL_BUDGET_SECONDS``, below the processing lease);
* the business's endpoints: the tool caller (shared/adapters/tool_caller.py),
  which logs each call;
* the ledger: a ``tools_recorded`` event on the claimed entry, through the
  store's compare-and-set helper, starting from the claim's snapshot so it
  costs no read; only the delivery that holds the claim may write it (one
  whose lease passed to another stops with :class:`MessageBusy`).

What the rounds did goes into the answer (``Answer.tool_ledger``, kept
compacted; ``Answer.proposal`` for a write waiting for the user's yes), in
the same answer write as ever. Fault points ``tool_after_intent``,
``tool_after_call`` and ``tool_after_result`` let the tests crash the
processor before a write is sent, while it is out (its answer not stored)
and after its result is stored (docs/decisions/0016-business-tools.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from shared.adapters.compare_and_set import Snapshot
from shared.adapters.firestore_store import failure_record
from shared.domain import tool_events
from shared.domain.entry import MessageEntry
from shared.domain.profiles import BusinessProfile
from shared.domain.proposals import PendingConfirmation
from shared.domain.tool_calls import ModelTurn
from shared.domain.tool_ledger import CALLING, UNKNOWN, Ledger
from shared.domain.tool_rounds import RoundsFailed, ToolLoop
from shared.domain.tools import WRITE, ToolSpec
from shared.domain.turns import Turn
from shared.handlers.claim import MessageBusy
from shared.handlers.deps import ProcessorDeps
from shared.log import mask_address

log = logging.getLogger(__name__)


class ToolModel(Protocol):
    def conversation(self, history: list[Turn], user_content: str, system_prompt: str | None = None
                     ) -> list[dict[str, Any]]: ...

    def tool_round(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], final: bool, deadline: float,
                   model: str | None = None) -> ModelTurn: ...


@dataclass
class ToolTurn:
    """One claimed message's rounds: where they are recorded, and what they did so far (filled in as they go)."""

    conversation_id: str
    sid: str
    attempt: int  # the claim's attempt: only it may write the ledger
    business: str
    address: str
    ledger: Ledger
    snapshot: Snapshot  # the document as last written: the next write starts from it, no read added
    written: bool = False
    proposal: PendingConfirmation | None = None
    model_calls: int = 0


def tool_turn(profile: BusinessProfile, conversation_id: str, sid: str, entry: MessageEntry, snapshot: Snapshot,
              business: str, address: str) -> ToolTurn | None:
    """The tools step for a claimed message, or None: no tools for this business and nothing recorded to finish."""
    ledger = entry.tool_ledger or Ledger()
    if not profile.tools and not ledger.rounds:
        return None
    return ToolTurn(conversation_id, sid, entry.attempts, business, address, ledger, snapshot)


def use_tools(deps: ProcessorDeps, turn: ToolTurn, profile: BusinessProfile, history: list[Turn], user_text: str,
              system_prompt: str | None = None, budget_seconds: float | None = None) -> str:
    """The reply after the rounds (or a proposal's text); raises when the model fails, ``turn`` telling what was done.

    ``system_prompt`` and ``budget_seconds``: the grounded prompt and what the knowledge search left of the budget."""
    settings = deps.settings
    model: ToolModel = deps.model  # type: ignore[assignment]
    assert deps.tools is not None, "a business with tools needs the tool caller (shared/bootstrap.py)"
    call = deps.tools.for_message(turn.business, turn.sid)
    unknown_before = {c.key for c in turn.ledger.calls if c.status == UNKNOWN}

    def record(ledger: Ledger) -> None:
        intent = any(c.status == CALLING for c in ledger.calls)
        saved = deps.store.update(
            turn.conversation_id,
            lambda conv: tool_events.record_ledger(conv, turn.sid, turn.attempt, ledger, deps.clock()),
            start=turn.snapshot, what=f"recording the tools of {turn.sid}")
        if not saved.result:
            raise MessageBusy(f"{turn.sid} is no longer this delivery's to answer; its tools stop here")
        turn.snapshot, turn.ledger, turn.written = saved.snapshot, ledger, True
        deps.faults.hit("tool_after_intent" if intent else "tool_after_result")

    def call_tool(tool: ToolSpec, arguments: str, key: str, timeout: float) -> Any:
        answer = call(tool, arguments, key, timeout)
        deps.faults.hit("tool_after_call")
        return answer

    budget = settings.model_budget_seconds if budget_seconds is None else min(budget_seconds, settings.model_budget_seconds)
    loop = ToolLoop(
        ask=lambda messages, tools, final, deadline: model.tool_round(messages, tools, final, deadline,
                                                                      model=profile.model or None),
        call=call_tool, record=record, clock=time.monotonic,
        answer_reserve_seconds=min(settings.openai_timeout_seconds, budget / 4),
    )
    messages = model.conversation(history, user_text, system_prompt or profile.system_prompt or None)
    if turn.ledger.note:
        messages.insert(len(messages) - 1, {"role": "system", "content": turn.ledger.note})
    try:
        outcome = loop.run(
            sid=turn.sid, messages=messages, tools=profile.tools, ledger=turn.ledger,
            max_rounds=profile.max_tool_rounds or settings.max_tool_rounds, deadline=time.monotonic() + budget,
            now=deps.clock(), confirm_keyword=profile.confirm_keywords[0],
        )
    except RoundsFailed as failed:
        turn.ledger, turn.model_calls = failed.ledger, failed.model_calls
        _report_unknown(deps, turn, unknown_before)
        raise
    turn.ledger, turn.proposal, turn.model_calls = outcome.ledger, outcome.proposal, outcome.model_calls
    _report_unknown(deps, turn, unknown_before)
    return outcome.reply


def _report_unknown(deps: ProcessorDeps, turn: ToolTurn, known: set[str]) -> None:
    """A write whose outcome nobody knows (timed out, or sent twice unanswered): a log line and a failure record."""
    for call in turn.ledger.calls:
        if call.effect != WRITE or call.status != UNKNOWN or call.key in known:
            continue
        log.error("tool call outcome unknown", extra={
            "event": "tool_failed", "business": turn.business, "sid": turn.sid, "tool": call.name,
            "effect": call.effect, "status": UNKNOWN, "key": call.key, "sends": call.attempts,
            "reason": "outcome_unknown"})
        deps.store.record_failure(f"{turn.sid}-{call.key}", failure_record(
            conversation_id=turn.conversation_id, masked_sender=mask_address(turn.address), status="tool_unknown",
            stage="tool", reason=f"{call.name}: sent {call.attempts} time(s) with key {call.key}, outcome unknown; "
                                 "check with the business", now=deps.clock()))

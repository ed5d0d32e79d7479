"""The function-calling rounds of one answer: ask the model, run what it asks for, until it answers.

One round is one chat completion that asks for calls (``tool_calls``) and the
``role: tool`` answers given back to it. The loop is bounded three ways: at
most ``max_rounds`` rounds (then one last completion with ``tool_choice:
none``, so the model must answer in words), one deadline for everything
(model attempts and tool calls inside the model budget, itself below the
processing lease), and a ledger of bounded size. A tool that fails, times
out, answers garbage or is asked for with arguments that do not fit its
schema is reported to the model as an error, and the model explains it; the
user always gets an answer, or the caller's fallback with every write that
was done named (:func:`fallback_with_outcomes`).

The model, the tools and the store are ports, so this is pure logic; the
ledger rules it follows are in shared/domain/tool_ledger.py. Besides the
business's HTTP tools the loop offers built-in functions (a
:class:`BuiltInFunction`: no side effect outside the answer, run in
process; one may end the answer with a payload of its own, such as a reply
with choices).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol, Sequence

from shared.domain.tool_calls import (  # the round's types, importable from here too
    MAX_CALLS_PER_ROUND as MAX_CALLS_PER_ROUND,
    BuiltInFunction,
    BuiltInResult as BuiltInResult,
    ModelTurn,
    RequestedCall as RequestedCall,
    ToolAnswer,
    proposal_again,
    propose,
    requested,
    run_built_ins,
)
from shared.domain.proposals import PendingConfirmation
from shared.domain.tool_ledger import (
    CALL,
    DONE,
    FAILED,
    GIVE_UP,
    INTEND_AND_CALL,
    MAX_CONTENT_CHARS,
    MAX_LEDGER_CHARS,
    UNKNOWN,
    CallRecord,
    Ledger,
    Round,
    error_result,
    given_up,
    intended,
    plan,
)
from shared.domain.tools import ToolSpec

# A tool call needs at least this long, or it is not started.
MIN_CALL_SECONDS = 0.5
# Below this much time left, no model round is started.
MIN_MODEL_SECONDS = 1.0


class AskModel(Protocol):
    def __call__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], final: bool,
                 deadline: float) -> ModelTurn:
        """One completion offering ``tools``; ``final``: with ``tool_choice: none``. Raises when the model fails."""
        ...


class CallTool(Protocol):
    def __call__(self, tool: ToolSpec, arguments: str, key: str, timeout: float) -> ToolAnswer:
        """One signed request; every failure of the tool is an answer, never an exception."""
        ...


@dataclass(frozen=True)
class LoopOutcome:
    """The answer: text, a proposal waiting for the user's yes, or a built-in function's final payload."""

    reply: str
    ledger: Ledger
    model_calls: int
    proposal: PendingConfirmation | None = None
    final: Any = None


class RoundsFailed(Exception):
    """The model failed or ran out of time; ``ledger`` says which calls were made before it did."""

    def __init__(self, reason: str, ledger: Ledger, model_calls: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ledger = ledger
        self.model_calls = model_calls


def fallback_with_outcomes(fallback: str, ledger: Ledger) -> str:
    """The fallback reply, naming each write that was done (or may have been): the user must not be left guessing."""
    outcomes = ledger.outcomes_for_user()
    if not outcomes:
        return fallback
    said = "; ".join(f"{name}: {'done' if status == DONE else 'not confirmed yet, we are checking'}"
                     for name, status in outcomes)
    return f"{fallback}\n({said})"


@dataclass
class ToolLoop:
    """Runs the rounds of one message through the ports; ``record`` is the compare-and-set write of the ledger.

    ``record`` raising (the entry changed under us, the lease was lost) ends
    the run at once with that exception: nothing is sent without its intent stored.
    """

    ask: AskModel
    call: CallTool
    record: Callable[[Ledger], None]
    clock: Callable[[], float]
    # Time kept for the answer after the last tool call.
    answer_reserve_seconds: float = 5.0

    def run(
        self, *, sid: str, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec],
        built_ins: Sequence[BuiltInFunction] = (), ledger: Ledger = Ledger(), max_rounds: int, deadline: float,
        now: datetime, confirm_keyword: str = "YES",
    ) -> LoopOutcome:
        """Answer ``messages`` (system, history, the user's turn), resuming from ``ledger`` if it has rounds."""
        specs = {t.name: t for t in tools}
        functions = {b.name: b for b in built_ins if b.name not in specs}
        definitions = [t.definition() for t in tools] + [b.definition() for b in functions.values()]
        for r in range(len(ledger.rounds)):
            ledger = self._settle(ledger, r, specs, deadline)
        again = proposal_again(ledger, sid, specs, now, confirm_keyword)
        if again is not None:
            # A run that proposed, recorded a write of the same round and crashed: the same proposal again.
            return LoopOutcome(again.text, ledger, 0, proposal=again)
        model_calls = 0
        while True:
            final = len(ledger.rounds) >= max_rounds or ledger.size() > MAX_LEDGER_CHARS
            if deadline - self.clock() < MIN_MODEL_SECONDS:
                raise RoundsFailed("no time left for the model within the budget", ledger, model_calls)
            try:
                turn = self.ask([*messages, *ledger.transcript()], definitions, final, deadline)
            except Exception as exc:
                raise RoundsFailed(f"model unavailable: {exc}"[:300], ledger, model_calls) from exc
            model_calls += 1
            if not turn.calls or final:
                if not turn.content.strip():
                    raise RoundsFailed("the model returned an empty answer", ledger, model_calls)
                return LoopOutcome(turn.content.strip(), ledger, model_calls)
            round_no = len(ledger.rounds)
            records = requested(sid, round_no, turn.calls, specs, functions)
            ledger = ledger.with_round(Round(turn.content[:MAX_CONTENT_CHARS], tuple(records)))
            ledger, pending = propose(ledger, sid, round_no, specs, now, confirm_keyword)
            ledger, payload = run_built_ins(ledger, round_no, functions)
            ledger = self._settle(ledger, round_no, specs, deadline)
            if pending is not None:
                return LoopOutcome(pending.text, ledger, model_calls, proposal=pending)
            if payload is not None:
                return LoopOutcome("", ledger, model_calls, final=payload)

    def _settle(self, ledger: Ledger, r: int, specs: Mapping[str, ToolSpec], deadline: float) -> Ledger:
        """Make every call of round ``r`` that is not settled: intents first (one write), the calls, then results (one write)."""
        actions = [plan(c) for c in ledger.rounds[r].calls]
        changed = False
        for i, action in enumerate(actions):
            if action == GIVE_UP:
                ledger = ledger.with_call(r, i, given_up(ledger.rounds[r].calls[i]))
                changed = True
        writes = [i for i, action in enumerate(actions) if action == INTEND_AND_CALL]
        for i in writes:
            ledger = ledger.with_call(r, i, intended(ledger.rounds[r].calls[i]))
        if writes:
            self.record(ledger)
        for i, action in enumerate(actions):
            if action in (CALL, INTEND_AND_CALL):
                ledger = ledger.with_call(r, i, self._call_one(ledger.rounds[r].calls[i], specs, deadline))
        if writes or changed:
            self.record(ledger)
        return ledger

    def _call_one(self, record: CallRecord, specs: Mapping[str, ToolSpec], deadline: float) -> CallRecord:
        spec = specs.get(record.name)
        if spec is None:
            return record.settled_as(FAILED, error_result(f"the tool {record.name} is no longer offered; nothing was done"))
        if spec.confirm and not record.confirmed_by:
            # Never on the model's word alone, whatever the ledger was made to say.
            return record.settled_as(FAILED, error_result("not called: this action needs the user's confirmation"))
        timeout = min(spec.timeout_seconds, deadline - self.clock() - self.answer_reserve_seconds)
        if timeout < MIN_CALL_SECONDS:
            return record.settled_as(FAILED, error_result("not called: no time left to call it; nothing was done"))
        answer = self.call(spec, record.arguments, record.key, timeout)
        sent = record if spec.writes else replace(record, attempts=record.attempts + 1)
        status = answer.status if answer.status in (DONE, FAILED, UNKNOWN) else FAILED
        if status == UNKNOWN and not spec.writes:
            status = FAILED  # a read that timed out changed nothing
        return sent.settled_as(status, answer.content, answer.ms, answer.http_status)



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

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol, Sequence

from shared.domain.tool_ledger import (
    BUILT_IN,
    CALL,
    DONE,
    FAILED,
    GIVE_UP,
    INTEND_AND_CALL,
    MAX_ARGUMENT_CHARS,
    MAX_CONTENT_CHARS,
    MAX_LEDGER_CHARS,
    PENDING,
    PROPOSED,
    UNKNOWN,
    CallRecord,
    Ledger,
    PendingConfirmation,
    Round,
    error_result,
    given_up,
    idempotency_key,
    intended,
    plan,
    proposal,
)
from shared.domain.tools import READ, ToolSpec, render_confirmation

MAX_CALLS_PER_ROUND = 5
# A tool call needs at least this long, or it is not started.
MIN_CALL_SECONDS = 0.5
# Below this much time left, no model round is started.
MIN_MODEL_SECONDS = 1.0


@dataclass(frozen=True)
class RequestedCall:
    """One entry of the completion's ``tool_calls``."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ModelTurn:
    """A completion: its text, and the calls it asks for (none: it answered)."""

    content: str
    calls: tuple[RequestedCall, ...] = ()


@dataclass(frozen=True)
class ToolAnswer:
    """What one HTTP call came to: ``DONE``, ``FAILED`` (nothing happened, as far as is known) or ``UNKNOWN``."""

    status: str
    content: str
    http_status: int = 0
    ms: float = 0.0
    # A short fixed code for logs and the dashboard when it did not work: timeout, unreachable, http_error, ...
    reason: str = ""


@dataclass(frozen=True)
class BuiltInResult:
    """``content`` is what the model is told; a ``final`` payload ends the answer with it instead."""

    content: str
    final: Any = None


class BuiltInFunction(Protocol):
    name: str

    def definition(self) -> dict[str, Any]:
        """The entry of the ``tools`` parameter."""
        ...

    def run(self, arguments: Mapping[str, Any]) -> BuiltInResult: ...


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
        again = _proposal_again(ledger, sid, specs, now, confirm_keyword)
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
            records = _requested(sid, round_no, turn.calls, specs, functions)
            ledger = ledger.with_round(Round(turn.content[:MAX_CONTENT_CHARS], tuple(records)))
            ledger, pending = _propose(ledger, sid, round_no, specs, now, confirm_keyword)
            ledger, payload = _run_built_ins(ledger, round_no, functions)
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


def _requested(sid: str, round_no: int, calls: Sequence[RequestedCall], specs: Mapping[str, ToolSpec],
               functions: Mapping[str, BuiltInFunction]) -> list[CallRecord]:
    """The round's calls as records: ``pending`` when they can be made, ``failed`` with the reason when not."""
    records: list[CallRecord] = []
    seen_ids: set[str] = set()
    for i, call in enumerate(calls):
        call_id = call.id if call.id and call.id not in seen_ids else f"call_{round_no}_{i}"
        seen_ids.add(call_id)
        spec = specs.get(call.name)
        effect = BUILT_IN if call.name in functions else spec.effect if spec else READ
        record = CallRecord(id=call_id, name=call.name[:64], effect=effect, arguments=call.arguments[:MAX_ARGUMENT_CHARS],
                            key=idempotency_key(sid, round_no, i))
        problem, canonical = _check(call, i, spec, call.name in functions)
        records.append(record.settled_as(FAILED, error_result(problem)) if problem else replace(record, arguments=canonical))
    return records


def _check(call: RequestedCall, i: int, spec: ToolSpec | None, built_in: bool) -> tuple[str, str]:
    """(why the call cannot be made, "") or ("", its arguments as the canonical JSON body)."""
    if i >= MAX_CALLS_PER_ROUND:
        return f"not called: at most {MAX_CALLS_PER_ROUND} calls per answer", ""
    if spec is None and not built_in:
        return f"there is no tool named {call.name[:64]!r}; nothing was done", ""
    if len(call.arguments) > MAX_ARGUMENT_CHARS:
        return f"not called: the arguments are over {MAX_ARGUMENT_CHARS} characters", ""
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        return "not called: the arguments are not valid JSON", ""
    if not isinstance(arguments, dict):
        return "not called: the arguments must be a JSON object", ""
    if spec is not None:
        errors = spec.argument_errors(arguments)
        if errors:
            return "not called: the arguments do not fit the tool's parameters: " + "; ".join(errors), ""
    return "", json.dumps(arguments, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _propose(ledger: Ledger, sid: str, round_no: int, specs: Mapping[str, ToolSpec], now: datetime,
             keyword: str) -> tuple[Ledger, PendingConfirmation | None]:
    """The round's confirmed write, if any, becomes a proposal to the user instead of a call; one per answer."""
    pending: PendingConfirmation | None = None
    for i, record in enumerate(ledger.rounds[round_no].calls):
        spec = specs.get(record.name)
        if record.status != PENDING or spec is None or not spec.confirm:
            continue
        if pending is not None:
            ledger = ledger.with_call(round_no, i, record.settled_as(
                FAILED, error_result("not called: one action to confirm at a time; propose it after this one")))
            continue
        text = render_confirmation(spec, json.loads(record.arguments), keyword)
        pending = proposal(sid, round_no, i, record, text, now, spec.confirm_seconds)
        ledger = ledger.with_call(round_no, i, record.settled_as(
            PROPOSED, error_result("not done yet: the user was asked to confirm it", outcome="awaiting confirmation")))
    return ledger, pending


def _proposal_again(ledger: Ledger, sid: str, specs: Mapping[str, ToolSpec], now: datetime,
                    keyword: str) -> PendingConfirmation | None:
    if not ledger.rounds:
        return None
    round_no = len(ledger.rounds) - 1
    for i, record in enumerate(ledger.rounds[round_no].calls):
        spec = specs.get(record.name)
        if record.status == PROPOSED and spec is not None:
            text = render_confirmation(spec, json.loads(record.arguments), keyword)
            return proposal(sid, round_no, i, record, text, now, spec.confirm_seconds)
    return None


def _run_built_ins(ledger: Ledger, round_no: int, functions: Mapping[str, BuiltInFunction]) -> tuple[Ledger, Any]:
    payload: Any = None
    for i, record in enumerate(ledger.rounds[round_no].calls):
        if record.status != PENDING or record.effect != BUILT_IN:
            continue
        try:
            result = functions[record.name].run(json.loads(record.arguments))
        except (ValueError, TypeError, KeyError) as exc:
            ledger = ledger.with_call(round_no, i, record.settled_as(FAILED, error_result(f"{type(exc).__name__}: {exc}")))
            continue
        ledger = ledger.with_call(round_no, i, record.settled_as(DONE, result.content))
        if result.final is not None and payload is None:
            payload = result.final
    return ledger, payload


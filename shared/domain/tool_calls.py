"""One round's calls, as the model asked for them: checked, proposed, or run in process.

What the loop (shared/domain/tool_rounds.py) does with a completion's
``tool_calls`` before anything is sent: each becomes a ledger record
(shared/domain/tool_ledger.py), ``pending`` when it can be made and
``failed`` with the reason when not (unknown tool, arguments that are not a
JSON object or do not fit the schema, too many calls); a confirmed write
becomes the answer's proposal; a built-in function runs here. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Mapping, Protocol, Sequence

from shared.domain.proposals import PendingConfirmation, proposal
from shared.domain.tool_ledger import (
    BUILT_IN,
    DONE,
    FAILED,
    MAX_ARGUMENT_CHARS,
    PENDING,
    PROPOSED,
    CallRecord,
    Ledger,
    error_result,
    idempotency_key,
)
from shared.domain.tools import READ, ToolSpec, render_confirmation

MAX_CALLS_PER_ROUND = 5


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


def requested(sid: str, round_no: int, calls: Sequence[RequestedCall], specs: Mapping[str, ToolSpec],
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


def propose(ledger: Ledger, sid: str, round_no: int, specs: Mapping[str, ToolSpec], now: datetime,
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


def proposal_again(ledger: Ledger, sid: str, specs: Mapping[str, ToolSpec], now: datetime,
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


def run_built_ins(ledger: Ledger, round_no: int, functions: Mapping[str, BuiltInFunction]) -> tuple[Ledger, Any]:
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


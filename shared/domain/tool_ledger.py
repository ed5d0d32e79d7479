"""The tool ledger: what a message's tool calls did, kept on its entry so no write happens twice.

Every round the model asks for is recorded as it asked (its text and its
calls, each with the arguments it gave), and each call moves through

    pending ─▶ calling (a write's intent, attempt n) ─▶ done | failed | unknown
    pending ─▶ done | failed                            (a read: called again freely)
    pending ─▶ proposed                                 (a write that needs the user's yes:
                                                         shared/domain/proposals.py)

A write's intent is recorded (compare-and-set on the entry) before the
request leaves, and its result when it returns. What a later run of the same
message finds decides what it does (:func:`plan`): a recorded result is
reused as it is, never called for again; an intent without a result means a
crash during the call, which is retried with the same ``Idempotency-Key``,
at most :data:`MAX_WRITE_ATTEMPTS` sends in all; after that the outcome is
``unknown`` and nobody calls it again. Because the rounds themselves are
recorded, a resumed run replays them instead of asking the model anew, so a
model that would answer differently the second time cannot turn one booking
into two (docs/decisions/0016-business-tools.md). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Mapping

from shared.domain.tools import READ, WRITE

BUILT_IN = "builtin"

PENDING = "pending"
CALLING = "calling"
DONE = "done"
FAILED = "failed"
UNKNOWN = "unknown"
PROPOSED = "proposed"
CONFIRMED = "confirmed"
CANCELLED = "cancelled"
# A call in one of these states is never sent again.
SETTLED = frozenset({DONE, FAILED, UNKNOWN, PROPOSED, CONFIRMED, CANCELLED})

# Sends of one Idempotency-Key: the first, and one after a crash during it.
MAX_WRITE_ATTEMPTS = 2
MAX_ARGUMENT_CHARS = 2000
MAX_RESULT_CHARS = 2000
MAX_CONTENT_CHARS = 1000
# The whole ledger of one message, as JSON: far below Firestore's 1 MiB
# document, and only the message being answered carries it whole
# (:meth:`Ledger.compacted` once it is answered).
MAX_LEDGER_CHARS = 40_000

# What a run does with one recorded call (:func:`plan`).
REUSE = "reuse"
CALL = "call"
INTEND_AND_CALL = "intend_and_call"
GIVE_UP = "give_up"


def idempotency_key(sid: str, round_no: int, index: int) -> str:
    """The call's ``Idempotency-Key``: the same for (message, round, call) on every run, different for anything else.

    Derived, not random, so even a run that lost its ledger sends the same
    key; hashed, so the business learns nothing from it about our ids.
    """
    digest = hashlib.sha256(f"{sid}\x1f{round_no}\x1f{index}".encode()).hexdigest()
    return f"wa_{digest[:40]}"


def error_result(message: str, **more: Any) -> str:
    """A tool message reporting an error, as JSON the model can explain to the user."""
    return json.dumps({"error": message[:500], **more}, ensure_ascii=False)


@dataclass(frozen=True)
class CallRecord:
    """One call the model asked for, and what became of it."""

    id: str
    name: str
    effect: str
    arguments: str
    key: str
    status: str = PENDING
    attempts: int = 0
    result: str = ""
    ms: float = 0.0
    http_status: int = 0
    # The message whose confirming reply executes this call (a confirmed write).
    confirmed_by: str = ""

    def to_data(self) -> dict[str, Any]:
        data = {"id": self.id, "name": self.name, "effect": self.effect, "arguments": self.arguments,
                "key": self.key, "status": self.status, "attempts": self.attempts, "result": self.result,
                "ms": self.ms, "httpStatus": self.http_status}
        if self.confirmed_by:
            data["confirmedBy"] = self.confirmed_by
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "CallRecord":
        return cls(
            id=str(data.get("id", "")), name=str(data.get("name", "")), effect=str(data.get("effect", READ)),
            arguments=str(data.get("arguments", "")), key=str(data.get("key", "")),
            status=str(data.get("status", PENDING)), attempts=int(data.get("attempts", 0)),
            result=str(data.get("result", "")), ms=float(data.get("ms", 0.0)),
            http_status=int(data.get("httpStatus", 0)), confirmed_by=str(data.get("confirmedBy", "")),
        )

    def settled_as(self, status: str, result: str, ms: float = 0.0, http_status: int = 0) -> "CallRecord":
        return replace(self, status=status, result=result[:MAX_RESULT_CHARS], ms=round(ms, 1),
                       http_status=http_status)


@dataclass(frozen=True)
class Round:
    """One answer of the model that asked for tools: its text and its calls, in its order."""

    content: str
    calls: tuple[CallRecord, ...]

    def to_data(self) -> dict[str, Any]:
        return {"content": self.content, "calls": [c.to_data() for c in self.calls]}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "Round":
        return cls(str(data.get("content", "")), tuple(CallRecord.from_data(c) for c in data.get("calls", [])))


@dataclass(frozen=True)
class Ledger:
    """Every round of one message, oldest first (the entry's ``toolLedger``).

    ``note`` is what the model is told before the user's turn: that the write
    proposed to the user was not done (shared/domain/tool_events.py).
    """

    rounds: tuple[Round, ...] = ()
    note: str = ""

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"rounds": [r.to_data() for r in self.rounds]}
        if self.note:
            data["note"] = self.note
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | None) -> "Ledger":
        if not data:
            return cls()
        return cls(tuple(Round.from_data(r) for r in data.get("rounds", [])), str(data.get("note", "")))

    @property
    def calls(self) -> list[CallRecord]:
        return [c for r in self.rounds for c in r.calls]

    def with_round(self, new: Round) -> "Ledger":
        return Ledger((*self.rounds, new), self.note)

    def with_call(self, round_no: int, index: int, record: CallRecord) -> "Ledger":
        calls = list(self.rounds[round_no].calls)
        calls[index] = record
        rounds = list(self.rounds)
        rounds[round_no] = replace(rounds[round_no], calls=tuple(calls))
        return Ledger(tuple(rounds), self.note)

    def size(self) -> int:
        return len(json.dumps(self.to_data(), ensure_ascii=False))

    def transcript(self) -> list[dict[str, Any]]:
        """The rounds as chat messages: each assistant turn with its ``tool_calls``, then one ``role: tool`` per call."""
        messages: list[dict[str, Any]] = []
        for r in self.rounds:
            messages.append({
                "role": "assistant",
                "content": r.content or None,
                "tool_calls": [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                               for c in r.calls],
            })
            messages += [{"role": "tool", "tool_call_id": c.id, "content": c.result or error_result("no result")}
                         for c in r.calls]
        return messages

    def compacted(self) -> "Ledger":
        """What an answered message keeps: name, effect, status, key, attempts, time; no arguments, results or text."""
        return Ledger(tuple(
            Round("", tuple(replace(c, arguments="", result="") for c in r.calls)) for r in self.rounds
        ), self.note)

    def lines(self) -> list[str]:
        """One line per call, for ``make admin show`` and the logs: name, effect, status, time, sends, key; never
        the arguments or the answer."""
        return [f"{c.name} ({c.effect}) {c.status}, {c.ms:g} ms, {c.attempts} send(s), key {c.key}"
                + (f", confirmed by {c.confirmed_by}" if c.confirmed_by else "") for c in self.calls]

    def counts(self) -> dict[str, int]:
        """Requests sent, by effect, and side effects done: for the logs, the bench and the fault suite."""
        return {
            "reads": sum(c.attempts for c in self.calls if c.effect == READ),
            "writes": sum(c.attempts for c in self.calls if c.effect == WRITE),
            "writes_done": sum(1 for c in self.calls if c.effect == WRITE and c.status == DONE),
            "failed": sum(1 for c in self.calls if c.status in (FAILED, UNKNOWN)),
        }

    def outcomes_for_user(self) -> list[tuple[str, str]]:
        """(tool, status) of every write that was or may have been done: the user must hear of it whatever else fails."""
        return [(c.name, c.status) for c in self.calls if c.effect == WRITE and c.status in (DONE, UNKNOWN)]


def plan(record: CallRecord) -> str:
    """What a run does with ``record``: reuse its result, call it, record intent and call it, or give up on it."""
    if record.status in SETTLED:
        return REUSE
    if record.effect != WRITE:
        return CALL
    if record.status == CALLING and record.attempts >= MAX_WRITE_ATTEMPTS:
        return GIVE_UP
    return INTEND_AND_CALL


def intended(record: CallRecord) -> CallRecord:
    """The record that goes to the store before the request is sent: one more (possible) send of the same key."""
    return replace(record, status=CALLING, attempts=record.attempts + 1)


def given_up(record: CallRecord) -> CallRecord:
    """A write sent :data:`MAX_WRITE_ATTEMPTS` times, each time without a recorded answer: nobody knows, nobody calls again."""
    return record.settled_as(UNKNOWN, error_result(
        "the business's system did not confirm this action; it may or may not have happened. Do not repeat it: "
        "tell the user it is being checked.", outcome="unknown"))

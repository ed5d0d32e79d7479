"""The function-calling rounds and the ledger rules: each write sent once, whatever is resumed, and every failure explained."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.domain.profiles import BusinessProfile, profile_from_mapping
from shared.domain.proposals import CANCEL, CONFIRM, EXPIRED, NO_PROPOSAL, PendingConfirmation, answer_to_proposal, confirmed_ledger
from shared.domain.tool_ledger import (
    CALLING,
    DONE,
    FAILED,
    MAX_WRITE_ATTEMPTS,
    PENDING,
    PROPOSED,
    UNKNOWN,
    CallRecord,
    Ledger,
    Round,
    idempotency_key,
)
from shared.domain.tool_rounds import (
    MAX_CALLS_PER_ROUND,
    BuiltInResult,
    ModelTurn,
    RequestedCall,
    RoundsFailed,
    ToolAnswer,
    ToolLoop,
    fallback_with_outcomes,
)
from shared.domain.tools import ToolSpec
from tests.unit.test_tool_profiles import BOOK_TABLE, ORDER_STATUS, with_

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
SID = "SM" + "a" * 32
BASE = [{"role": "system", "content": "You are a bakery."}, {"role": "user", "content": "hi"}]
PLAIN_WRITE = with_(BOOK_TABLE, name="cancel_order", confirm=None, confirm_text=None, confirm_seconds=None)


def specs(*raw: dict[str, Any]) -> tuple[ToolSpec, ...]:
    return profile_from_mapping("whatsapp:+1", {"tools": list(raw)}, BusinessProfile()).tools


READ_TOOL, WRITE_TOOL, CONFIRM_TOOL = specs(ORDER_STATUS, PLAIN_WRITE, BOOK_TABLE)


def call(name: str, arguments: dict[str, Any] | str, call_id: str = "") -> RequestedCall:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return RequestedCall(call_id or f"call_{name}", name, text)


@dataclass
class Script:
    """A model that answers each round from a list, and remembers what it was given."""

    turns: list[ModelTurn]
    seen: list[tuple[list[dict[str, Any]], bool]] = field(default_factory=list)
    fail_at: int = -1

    def __call__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], final: bool,
                 deadline: float) -> ModelTurn:
        self.seen.append((messages, final))
        if len(self.seen) - 1 == self.fail_at:
            raise RuntimeError("model down")
        return self.turns[min(len(self.seen) - 1, len(self.turns) - 1)]


@dataclass
class Tools:
    """The business's endpoints: every request, in order, and what each answers."""

    answers: dict[str, ToolAnswer] = field(default_factory=dict)
    sent: list[tuple[str, str, str, float]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def __call__(self, tool: ToolSpec, arguments: str, key: str, timeout: float) -> ToolAnswer:
        self.sent.append((tool.name, arguments, key, timeout))
        self.events.append(f"call {tool.name}")
        return self.answers.get(tool.name, ToolAnswer(DONE, json.dumps({"ok": tool.name}), 200, 12.0))


@dataclass
class Store:
    """The entry's ledger as stored; ``crash_on`` makes the n-th write raise, as a crash or a lost lease would."""

    events: list[str]
    stored: list[Ledger] = field(default_factory=list)
    crash_on: int = -1

    def __call__(self, ledger: Ledger) -> None:
        if len(self.stored) == self.crash_on:
            raise RuntimeError("lease lost")
        self.stored.append(ledger)
        self.events.append("record " + ",".join(c.status for c in ledger.calls))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def loop(script: Script, tools: Tools | None = None, store: Store | None = None,
         clock: Clock | None = None) -> tuple[ToolLoop, Tools, Store]:
    tools = tools or Tools()
    store = store or Store(tools.events)
    return ToolLoop(ask=script, call=tools, record=store, clock=clock or Clock(), answer_reserve_seconds=2.0), tools, store


def run(the_loop: ToolLoop, ledger: Ledger = Ledger(), max_rounds: int = 3, deadline: float = 160.0,
        all_tools: tuple[ToolSpec, ...] = (READ_TOOL, WRITE_TOOL, CONFIRM_TOOL), sid: str = SID, **more: Any) -> Any:
    return the_loop.run(sid=sid, messages=BASE, tools=all_tools, ledger=ledger, max_rounds=max_rounds,
                        deadline=deadline, now=NOW, **more)


def test_a_read_is_called_and_its_answer_goes_back_to_the_model() -> None:
    script = Script([ModelTurn("", (call("order_status", {"order_id": "1234"}),)), ModelTurn("It is ready.")])
    the_loop, tools, store = loop(script)
    outcome = run(the_loop)
    assert outcome.reply == "It is ready." and outcome.model_calls == 2
    assert [s[:3] for s in tools.sent] == [("order_status", '{"order_id":"1234"}', idempotency_key(SID, 0, 0))]
    assert store.stored == [], "a read needs no intent: it may be called again"
    second = script.seen[1][0]
    assert second[-2]["tool_calls"][0]["function"] == {"name": "order_status", "arguments": '{"order_id":"1234"}'}
    assert second[-1] == {"role": "tool", "tool_call_id": "call_order_status", "content": '{"ok": "order_status"}'}
    assert outcome.ledger.counts() == {"reads": 1, "writes": 0, "writes_done": 0, "failed": 0}


def test_a_writes_intent_is_stored_before_it_is_sent_and_its_result_after() -> None:
    script = Script([ModelTurn("Cancelling.", (call("cancel_order", {"people": 2, "time": "20:00"}),)), ModelTurn("Done.")])
    the_loop, tools, store = loop(script)
    outcome = run(the_loop)
    assert tools.events == ["record calling", "call cancel_order", "record done"]
    intent, result = store.stored
    assert intent.calls[0].attempts == 1 and intent.calls[0].key == tools.sent[0][2]
    assert result.calls[0].status == DONE and result.calls[0].ms == 12.0 and result.calls[0].http_status == 200
    assert intent.rounds[0].content == "Cancelling."
    assert outcome.ledger.counts()["writes_done"] == 1


def test_a_crash_after_the_result_is_recorded_reuses_it_and_never_calls_again() -> None:
    first = Script([ModelTurn("", (call("cancel_order", {"people": 2, "time": "20:00"}),)), ModelTurn("Done.")],
                   fail_at=1)
    the_loop, tools, store = loop(first)
    with pytest.raises(RoundsFailed):
        run(the_loop)
    recorded = store.stored[-1]
    # The next delivery's model would now ask for something else entirely: the ledger, not the model, decides.
    again = Script([ModelTurn("", (call("cancel_order", {"people": 9, "time": "09:00"}),)), ModelTurn("Done.")])
    again.turns = [ModelTurn("Your order is cancelled.")]
    second_loop, second_tools, _ = loop(again)
    outcome = run(second_loop, ledger=recorded)
    assert second_tools.sent == [] and outcome.reply == "Your order is cancelled."
    assert again.seen[0][0][-1]["role"] == "tool", "the resumed run shows the model the recorded result"
    assert len(tools.sent) == 1


def test_a_crash_during_the_call_sends_the_same_key_once_more_then_gives_up() -> None:
    intent = Ledger((Round("", (CallRecord("call_1", "cancel_order", "write", '{"people":2,"time":"20:00"}',
                                           idempotency_key(SID, 0, 0), CALLING, attempts=1),)),))
    the_loop, tools, store = loop(Script([ModelTurn("Done.")]))
    outcome = run(the_loop, ledger=intent)
    assert [s[2] for s in tools.sent] == [idempotency_key(SID, 0, 0)]
    assert tools.events[:2] == ["record calling", "call cancel_order"] and store.stored[0].calls[0].attempts == 2
    assert outcome.ledger.calls[0].status == DONE

    twice = Ledger((replace(intent.rounds[0], calls=(replace(intent.calls[0], attempts=MAX_WRITE_ATTEMPTS),)),))
    the_loop, tools, store = loop(Script([ModelTurn("I'm checking on it.")]))
    outcome = run(the_loop, ledger=twice)
    assert tools.sent == [], "the key was sent twice already: never a third time"
    assert outcome.ledger.calls[0].status == UNKNOWN and store.stored[-1].calls[0].status == UNKNOWN
    assert "may or may not have happened" in outcome.ledger.calls[0].result


def test_a_failed_intent_write_sends_nothing() -> None:
    script = Script([ModelTurn("", (call("cancel_order", {"people": 2, "time": "20:00"}),)), ModelTurn("x")])
    the_loop, tools, store = loop(script)
    store.crash_on = 0
    with pytest.raises(RuntimeError, match="lease lost"):
        run(the_loop)
    assert tools.sent == []


@pytest.mark.parametrize(
    ("requested", "said"),
    [
        (call("order_status", {"order_id": "12ab"}), "do not fit the tool's parameters"),
        (call("order_status", "{not json"), "not valid JSON"),
        (call("order_status", "[1, 2]"), "must be a JSON object"),
        (call("delete_everything", {}), "there is no tool named 'delete_everything'"),
        (call("order_status", json.dumps({"order_id": "1" * 3000})), "over 2000 characters"),
    ],
)
def test_a_call_that_cannot_be_made_is_explained_to_the_model_and_never_sent(requested: RequestedCall, said: str) -> None:
    script = Script([ModelTurn("", (requested,)), ModelTurn("Sorry, that did not work.")])
    the_loop, tools, _ = loop(script)
    outcome = run(the_loop)
    assert tools.sent == [] and outcome.reply == "Sorry, that did not work."
    told = json.loads(script.seen[1][0][-1]["content"])
    assert said in told["error"] and outcome.ledger.calls[0].status == FAILED


def test_a_failing_tool_is_reported_as_its_answer() -> None:
    failing = Tools(answers={"order_status": ToolAnswer(FAILED, json.dumps({"error": "timed out after 5s"}), 0, 5000)})
    script = Script([ModelTurn("", (call("order_status", {"order_id": "1234"}),)), ModelTurn("The system is slow.")])
    the_loop, _, _ = loop(script, failing)
    outcome = run(the_loop)
    assert outcome.reply == "The system is slow." and "timed out" in script.seen[1][0][-1]["content"]


def test_a_timed_out_read_is_a_failure_and_a_timed_out_write_unknown() -> None:
    slow = Tools(answers={name: ToolAnswer(UNKNOWN, '{"error": "no answer in time"}') for name in ("order_status", "cancel_order")})
    script = Script([ModelTurn("", (call("order_status", {"order_id": "1234"}),
                                    call("cancel_order", {"people": 2, "time": "20:00"}))), ModelTurn("Checking.")])
    the_loop, _, _ = loop(script, slow)
    outcome = run(the_loop)
    assert [c.status for c in outcome.ledger.calls] == [FAILED, UNKNOWN]
    assert fallback_with_outcomes("Sorry.", outcome.ledger) == "Sorry.\n(cancel_order: not confirmed yet, we are checking)"


def test_rounds_are_bounded_then_the_model_must_answer_in_words() -> None:
    always = Script([ModelTurn("Let me look again.", (call("order_status", {"order_id": "1234"}),))])
    the_loop, tools, _ = loop(always)
    outcome = run(the_loop, max_rounds=2)
    assert [final for _, final in always.seen] == [False, False, True]
    assert len(tools.sent) == 2 and outcome.model_calls == 3 and outcome.reply == "Let me look again."


def test_the_last_round_without_words_fails_with_what_was_done() -> None:
    silent = Script([ModelTurn("", (call("cancel_order", {"people": 2, "time": "20:00"}),))])
    the_loop, _, _ = loop(silent)
    with pytest.raises(RoundsFailed) as failed:
        run(the_loop, max_rounds=1)
    assert failed.value.ledger.outcomes_for_user() == [("cancel_order", DONE)]
    assert fallback_with_outcomes("Sorry.", failed.value.ledger) == "Sorry.\n(cancel_order: done)"


def test_the_model_failing_after_a_write_keeps_the_ledger() -> None:
    script = Script([ModelTurn("", (call("cancel_order", {"people": 2, "time": "20:00"}),))], fail_at=1)
    the_loop, _, store = loop(script)
    with pytest.raises(RoundsFailed, match="model unavailable: model down") as failed:
        run(the_loop)
    assert failed.value.ledger == store.stored[-1] and failed.value.model_calls == 1


def test_tool_time_comes_out_of_the_one_budget() -> None:
    clock = Clock()
    script = Script([ModelTurn("", (call("order_status", {"order_id": "1234"}),)), ModelTurn("ok")])
    the_loop, tools, _ = loop(script, clock=clock)
    run(the_loop, deadline=clock.now + 4.0)
    assert tools.sent[0][3] == pytest.approx(2.0), "5 s of the tool's own cut to what the budget leaves, less the reserve"

    script = Script([ModelTurn("", (call("order_status", {"order_id": "1234"}),)), ModelTurn("ok")])
    the_loop, tools, _ = loop(script, clock=clock)
    outcome = run(the_loop, deadline=clock.now + 2.2)
    assert tools.sent == [] and "no time left" in outcome.ledger.calls[0].result

    with pytest.raises(RoundsFailed, match="no time left"):
        run(loop(Script([ModelTurn("ok")]), clock=clock)[0], deadline=clock.now + 0.5)


def test_too_many_calls_in_one_round_are_not_made() -> None:
    many = tuple(call("order_status", {"order_id": str(1000 + i)}, f"c{i}") for i in range(MAX_CALLS_PER_ROUND + 2))
    the_loop, tools, _ = loop(Script([ModelTurn("", many), ModelTurn("ok")]))
    outcome = run(the_loop)
    assert len(tools.sent) == MAX_CALLS_PER_ROUND
    assert [c.status for c in outcome.ledger.calls][-2:] == [FAILED, FAILED]


def test_keys_are_stable_per_message_and_call_and_differ_otherwise() -> None:
    assert idempotency_key(SID, 0, 0) == idempotency_key(SID, 0, 0)
    assert len({idempotency_key(SID, 0, 0), idempotency_key(SID, 0, 1), idempotency_key(SID, 1, 0),
                idempotency_key("SM" + "b" * 32, 0, 0)}) == 4
    assert SID not in idempotency_key(SID, 0, 0)


# ---------------------------------------------------------------- confirmation


def test_a_confirmed_write_is_proposed_from_its_arguments_and_not_called() -> None:
    script = Script([ModelTurn("Booking it now!", (call("book_table", {"people": 2, "time": "20:00"}),))])
    the_loop, tools, store = loop(script)
    outcome = run(the_loop, confirm_keyword="YES")
    assert tools.sent == [] and store.stored == []
    assert outcome.reply == "Book a table for 2 at 20:00? Reply YES to confirm." and outcome.model_calls == 1
    pending = outcome.proposal
    assert pending is not None and pending.key == idempotency_key(SID, 0, 0) and pending.name == "book_table"
    assert pending.expires_at == NOW + timedelta(seconds=300) and outcome.ledger.calls[0].status == PROPOSED


def test_only_one_proposal_per_answer() -> None:
    two = (call("book_table", {"people": 2, "time": "20:00"}, "a"), call("book_table", {"people": 4, "time": "21:00"}, "b"))
    outcome = run(loop(Script([ModelTurn("", two)]))[0])
    assert [c.status for c in outcome.ledger.calls] == [PROPOSED, FAILED] and "2" in outcome.reply


def pending_booking(expires_in: float = 300) -> PendingConfirmation:
    outcome = run(loop(Script([ModelTurn("", (call("book_table", {"people": 2, "time": "20:00"}),))]))[0])
    assert outcome.proposal is not None
    return replace(outcome.proposal, expires_at=NOW + timedelta(seconds=expires_in))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("YES", CONFIRM), (" yes. ", CONFIRM), ("Yes!", CONFIRM), ("sí", CONFIRM), ("no", CANCEL), ("YES please", CANCEL),
     ("book it for 10 people instead", CANCEL), ("", CANCEL)],
)
def test_only_a_confirming_word_confirms(text: str, expected: str) -> None:
    assert answer_to_proposal(pending_booking(), text, NOW, ("YES", "SÍ")) == expected


def test_silence_past_the_limit_expires_and_no_proposal_is_none() -> None:
    assert answer_to_proposal(pending_booking(expires_in=60), "YES", NOW + timedelta(seconds=61), ("YES",)) == EXPIRED
    assert answer_to_proposal(None, "YES", NOW, ("YES",)) == NO_PROPOSAL


def test_the_confirming_reply_executes_the_proposed_call_once_with_its_key() -> None:
    pending = pending_booking()
    ledger = confirmed_ledger(pending, "SM" + "c" * 32)
    script = Script([ModelTurn("Booked: table for 2 at 20:00.")])
    the_loop, tools, store = loop(script)
    outcome = run(the_loop, ledger=ledger, sid="SM" + "c" * 32)
    assert [(s[0], s[1], s[2]) for s in tools.sent] == [("book_table", pending.arguments, pending.key)]
    assert tools.events == ["record calling", "call book_table", "record done"]
    assert outcome.reply == "Booked: table for 2 at 20:00." and outcome.proposal is None
    assert script.seen[0][0][-2]["tool_calls"][0]["id"] == pending.call_id
    # The same confirmation, redelivered after its result was recorded: nothing is sent again.
    again_loop, again_tools, _ = loop(Script([ModelTurn("Booked.")]))
    run(again_loop, ledger=store.stored[-1], sid="SM" + "c" * 32)
    assert again_tools.sent == []


def test_a_confirm_write_in_a_ledger_without_a_confirmation_is_never_called() -> None:
    forged = Ledger((Round("", (CallRecord("x", "book_table", "write", '{"people":2,"time":"20:00"}', "k", PENDING),)),))
    the_loop, tools, _ = loop(Script([ModelTurn("ok")]))
    outcome = run(the_loop, ledger=forged)
    assert tools.sent == [] and "needs the user's confirmation" in outcome.ledger.calls[0].result


def test_a_resumed_proposal_is_proposed_again_without_the_model() -> None:
    mixed = (call("cancel_order", {"people": 1, "time": "10:00"}, "w"), call("book_table", {"people": 2, "time": "20:00"}, "p"))
    the_loop, _, store = loop(Script([ModelTurn("", mixed)]))
    first = run(the_loop)
    script = Script([ModelTurn("should not be asked")])
    again_loop, again_tools, _ = loop(script)
    second = run(again_loop, ledger=store.stored[-1])
    assert script.seen == [] and again_tools.sent == [] and second.reply == first.reply
    assert second.proposal is not None and second.proposal.key == first.proposal.key


# ---------------------------------------------------------------- built-ins and the stored form


@dataclass
class Choices:
    name: str = "reply_with_choices"

    def definition(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "parameters": {"type": "object"}}}

    def run(self, arguments: dict[str, Any]) -> BuiltInResult:
        return BuiltInResult("shown", final={"choices": arguments.get("choices", [])})


def test_a_built_in_function_can_end_the_answer_with_its_payload() -> None:
    script = Script([ModelTurn("", (call("reply_with_choices", {"choices": ["2", "4"]}),))])
    outcome = run(loop(script)[0], built_ins=(Choices(),))
    assert outcome.final == {"choices": ["2", "4"]} and outcome.ledger.calls[0].effect == "builtin"


def test_the_ledger_round_trips_and_compacts_for_an_answered_message() -> None:
    script = Script([ModelTurn("Booking.", (call("cancel_order", {"people": 2, "time": "20:00"}),)), ModelTurn("ok")])
    the_loop, _, store = loop(script)
    ledger = run(the_loop).ledger
    assert Ledger.from_data(ledger.to_data()) == ledger
    compact = ledger.compacted().to_data()
    record = compact["rounds"][0]["calls"][0]
    assert record["arguments"] == "" and record["result"] == "" and compact["rounds"][0]["content"] == ""
    assert record["key"] == idempotency_key(SID, 0, 0) and record["status"] == DONE and record["attempts"] == 1
    assert Ledger.from_data(None) == Ledger()
    assert PendingConfirmation.from_data(pending_booking().to_data()) == pending_booking()


def test_a_call_is_shown_by_name_effect_status_time_and_key_never_its_arguments() -> None:
    pending = pending_booking()
    ledger = run(loop(Script([ModelTurn("ok")]))[0], ledger=confirmed_ledger(pending, "SMyes"), sid="SMyes").ledger
    (line,) = ledger.lines()
    assert line == f"book_table (write) done, 12 ms, 1 send(s), key {pending.key}, confirmed by SMyes"
    assert "20:00" not in line and "20:00" not in " ".join(ledger.compacted().lines())

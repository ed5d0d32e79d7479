"""Business tools on the one answer path, with the in-memory store: each write sent once, whatever is
redelivered, crashes or is replayed; a confirmed write only after the user's yes; always an answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.adapters.profile_store import StaticProfiles
from shared.domain.profiles import BusinessProfile
from shared.config import Settings
from shared.domain.lifecycle import ANSWERED, FAILED
from shared.domain.inbound import InboundMessage
from shared.domain.proposals import PendingConfirmation
from shared.domain.tool_calls import ModelTurn
from shared.domain.tool_ledger import DONE, UNKNOWN, idempotency_key
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.claim import MessageBusy
from shared.handlers.deps import ProcessorDeps
from shared.handlers.processor import process_message
from shared.handlers.reconciler import ReconcilerDeps, reconcile
from tests.fakes import BUSINESS, IDS, Clock, FakeQueue, FakeStore, conversation_id
from tests.tool_fakes import Business, ToolModel, reply_to, tools_profile

USER = "whatsapp:+34600111222"
OTHER_BUSINESS = "whatsapp:+15550001111"
SETTINGS = Settings(rate_limit_messages=1000, model_budget_seconds=30.0)
count = iter(range(1, 10_000))


def make(faults: tuple[str, ...] = (), **profile: Any) -> tuple[ProcessorDeps, ToolModel, Business]:
    model, business = ToolModel(), Business()
    profiles = StaticProfiles(BusinessProfile(fallback_reply="Sorry."), {BUSINESS: tools_profile(**profile)})
    deps = ProcessorDeps(settings=SETTINGS, store=FakeStore(), model=model, queue=FakeQueue(), faults=FaultPoints(faults),
                         clock=Clock(), ids=IDS, profiles=profiles, tools=business)
    return deps, model, business


def message(text: str, to: str = BUSINESS) -> InboundMessage:
    return InboundMessage(sid=f"SM{next(count):032x}", sender=USER, recipient=to, body=text)


def with_faults(deps: ProcessorDeps, *points: str) -> ProcessorDeps:
    return ProcessorDeps(**{**deps.__dict__, "faults": FaultPoints(points)})


def entry(deps: ProcessorDeps, sid: str, to: str = BUSINESS) -> Any:
    return deps.store.conversation(conversation_id(USER, to)).entry(sid)


def reply(deps: ProcessorDeps, sid: str) -> str:
    return "\n\n".join(entry(deps, sid).parts)


def test_a_business_without_tools_is_answered_as_before_and_pays_nothing_more() -> None:
    deps, model, business = make()
    plain = message("status of order 1234", to=OTHER_BUSINESS)
    assert process_message(plain, deps) == "answered"
    assert model.replies == ["status of order 1234"] and model.rounds == [] and business.requests == []
    assert entry(deps, plain.sid, OTHER_BUSINESS).tool_ledger is None
    # The same message to a deployment with no tool caller at all costs the same reads and writes.
    bare = ProcessorDeps(**{**deps.__dict__, "store": FakeStore(), "tools": None})
    process_message(InboundMessage(plain.sid, USER, OTHER_BUSINESS, plain.body), bare)
    assert (deps.store.ops.reads, deps.store.ops.writes) == (bare.store.ops.reads, bare.store.ops.writes)


def test_a_read_tools_answer_reaches_the_reply_without_an_extra_write() -> None:
    deps, model, business = make()
    text = message("What's the status of my order 1234?")
    process_message(text, deps)
    assert business.requests == [("order_status", idempotency_key(text.sid, 0, 0), '{"order_id":"1234"}')]
    assert "order_status answered" in reply(deps, text.sid) and '"1234"' in reply(deps, text.sid)
    ledger = entry(deps, text.sid).tool_ledger
    assert [(c.name, c.status, c.arguments) for c in ledger.calls] == [("order_status", DONE, "")], "kept compacted"
    plain_deps, _, _ = make()
    process_message(message("hello there"), plain_deps)
    assert deps.store.ops.writes == plain_deps.store.ops.writes, "a read needs no ledger write"


def test_a_write_is_recorded_before_and_after_and_sent_once_under_three_duplicate_deliveries() -> None:
    deps, model, business = make()
    cancel = message("please cancel order 5678")
    for _ in range(3):
        process_message(cancel, deps)
    assert business.writes() == [idempotency_key(cancel.sid, 0, 0)] and len(business.done) == 1
    assert entry(deps, cancel.sid).status == ANSWERED and "cancel_order answered" in reply(deps, cancel.sid)
    plain_deps, _, _ = make()
    process_message(message("hello there"), plain_deps)
    assert deps.store.ops.writes == plain_deps.store.ops.writes + 2, "intent and result: two more writes"


@pytest.mark.parametrize(("point", "sends"), [
    ("tool_after_intent", 1),   # died before the request left: the redelivery sends it, once
    ("tool_after_call", 2),     # died while it was out (answer not stored): the same key once more
    ("tool_after_result", 1),   # died after its result was stored: reused, never sent again
    ("after_ai", 1),            # died after the whole rounds: the model is asked again, the tool is not
])
def test_a_crash_anywhere_sends_a_write_at_most_twice_with_one_key_and_does_it_once(point: str, sends: int) -> None:
    deps, model, business = make()
    cancel = message("cancel order 5678")
    with pytest.raises(InjectedFault):
        process_message(cancel, with_faults(deps, point))
    deps.clock.advance(SETTINGS.processing_lease_seconds + 1)  # the dead delivery's lease runs out
    assert process_message(cancel, deps) == "answered"
    assert business.writes() == [idempotency_key(cancel.sid, 0, 0)] * sends and len(business.done) == 1
    record = entry(deps, cancel.sid).tool_ledger.calls[0]
    assert (record.status, record.attempts) == (DONE, 2 if point in ("tool_after_intent", "tool_after_call") else 1)


def test_a_write_sent_twice_without_an_answer_is_never_sent_a_third_time() -> None:
    deps, model, business = make()
    cancel = message("cancel order 5678")
    for _ in range(2):
        with pytest.raises(InjectedFault):
            process_message(cancel, with_faults(deps, "tool_after_call"))
        deps.clock.advance(SETTINGS.processing_lease_seconds + 1)
    process_message(cancel, deps)
    assert len(business.writes()) == 2
    assert entry(deps, cancel.sid).tool_ledger.calls[0].status == UNKNOWN
    assert "cancel_order failed: the business's system did not confirm" in reply(deps, cancel.sid)
    failure = deps.store.failures[f"{cancel.sid}-{idempotency_key(cancel.sid, 0, 0)}"]
    assert failure["status"] == "tool_unknown" and "outcome unknown" in failure["reason"]


def test_a_delivery_that_lost_its_claim_stops_before_sending() -> None:
    deps, model, business = make()
    cancel = message("cancel order 5678")
    with pytest.raises(InjectedFault):
        process_message(cancel, with_faults(deps, "after_claim"))
    # A second delivery, after the lease ran out, took the message over; the first one wakes up late.
    deps.clock.advance(SETTINGS.processing_lease_seconds + 1)
    late = ProcessorDeps(**{**deps.__dict__})

    def take_over(messages: list[dict[str, Any]]) -> ModelTurn | None:
        model.script = None
        # This delivery stalls past its lease while the model thinks; another one claims the message meanwhile.
        deps.clock.advance(SETTINGS.processing_lease_seconds + 1)
        with pytest.raises(InjectedFault):
            process_message(cancel, with_faults(deps, "after_claim"))
        return None

    model.script = take_over
    with pytest.raises(MessageBusy, match="no longer this delivery's"):
        process_message(cancel, late)
    assert business.requests == []


def test_a_failing_tool_still_ends_in_an_answer() -> None:
    deps, model, business = make()
    business.trouble = ["fail"]
    status = message("order status 2468 please")
    process_message(status, deps)
    assert "order_status failed: the tool answered HTTP 503" in reply(deps, status.sid)
    assert entry(deps, status.sid).status == ANSWERED


def test_the_model_failing_after_a_write_sends_the_fallback_naming_it() -> None:
    deps, model, business = make()
    def fail_after_the_call(messages: list[dict[str, Any]]) -> ModelTurn | None:
        if messages[-1]["role"] == "tool":
            raise RuntimeError("model down")
        return None

    model.script = fail_after_the_call
    cancel = message("cancel order 5678")
    process_message(cancel, deps)
    assert reply(deps, cancel.sid) == tools_profile().fallback_reply + "\n(cancel_order: done)"
    assert entry(deps, cancel.sid).fallback and len(business.done) == 1
    assert deps.store.failures[cancel.sid]["status"] == "fallback"


# ------------------------------------------------------------------ confirmation


def propose(deps: ProcessorDeps) -> tuple[InboundMessage, PendingConfirmation]:
    book = message("Book a table for 2 at 20:00 on Friday")
    process_message(book, deps)
    pending = deps.store.conversation(conversation_id(USER)).pending_tool
    assert pending is not None
    return book, pending


def test_a_confirmed_write_is_proposed_from_its_arguments_and_not_called() -> None:
    deps, model, business = make()
    book, pending = propose(deps)
    assert reply(deps, book.sid) == "Book a table for 2 at 20:00 on friday? Reply YES to confirm."
    assert business.requests == [] and pending.key == idempotency_key(book.sid, 0, 0)
    assert entry(deps, book.sid).tool_ledger.calls[0].status == "proposed"


def test_only_a_yes_executes_it_once_and_a_second_yes_finds_nothing() -> None:
    deps, model, business = make()
    book, pending = propose(deps)
    yes = message(" yes! ")
    for _ in range(3):  # the yes, delivered three times
        process_message(yes, deps)
    assert business.writes("book_table") == [pending.key] and len(business.done) == 1
    assert "book_table answered" in reply(deps, yes.sid)
    assert entry(deps, yes.sid).tool_ledger.calls[0].confirmed_by == yes.sid
    assert deps.store.conversation(conversation_id(USER)).pending_tool is None
    again = message("YES")
    process_message(again, deps)
    assert len(business.requests) == 1 and reply(deps, again.sid) == reply_to("YES")


@pytest.mark.parametrize("answer", ["no", "YES for 4 people", "what time do you close?"])
def test_anything_else_cancels_it_and_the_model_is_told(answer: str) -> None:
    deps, model, business = make()
    propose(deps)
    other = message(answer)
    process_message(other, deps)
    process_message(message("YES"), deps)
    assert business.writes("book_table") == []
    told = [m["content"] for m in model.rounds[-2][0] if m["role"] == "system"]
    assert any("book_table was NOT done: the user did not confirm it" in t for t in told)


def test_silence_past_the_limit_cancels_it() -> None:
    deps, model, business = make()
    propose(deps)
    deps.clock.advance(601)
    late = message("YES")
    process_message(late, deps)
    assert business.requests == []
    told = [m["content"] for m in model.rounds[-1][0] if m["role"] == "system"]
    assert any("the time to confirm ran out" in t for t in told)


def test_a_yes_that_is_not_answered_drops_the_proposal() -> None:
    deps, model, business = make(rate_limit_messages=1, rate_limit_window_seconds=3600)
    propose(deps)
    process_message(message("YES"), deps)  # the rate limit's notice
    process_message(message("YES"), deps)  # ignored
    deps.clock.advance(3601)
    process_message(message("YES"), deps)
    assert business.requests == [] and deps.store.conversation(conversation_id(USER)).pending_tool is None


def test_a_yes_beats_a_keyword_rule_while_a_proposal_waits() -> None:
    deps, model, business = make(keywords=[{"match": "yes|no", "reply": "Please ask me something."}])
    propose(deps)
    yes = message("YES")
    process_message(yes, deps)
    assert len(business.done) == 1 and "book_table answered" in reply(deps, yes.sid)


def test_a_proposal_crashed_before_its_answer_is_proposed_again_without_a_call() -> None:
    deps, model, business = make()
    book = message("book a table for 3 at 13:30 tomorrow")
    with pytest.raises(InjectedFault):
        process_message(book, with_faults(deps, "after_ai"))
    deps.clock.advance(SETTINGS.processing_lease_seconds + 1)
    process_message(book, deps)
    assert business.requests == [] and "Reply YES" in reply(deps, book.sid)
    assert deps.store.conversation(conversation_id(USER)).pending_tool.key == idempotency_key(book.sid, 0, 0)


# ------------------------------------------------------------------ reconciler and replay


def test_the_reconciler_never_calls_a_tool_and_names_a_write_in_its_close() -> None:
    deps, model, business = make()
    cancel = message("cancel order 5678")
    with pytest.raises(InjectedFault):
        process_message(cancel, with_faults(deps, "tool_after_result"))
    rdeps = ReconcilerDeps(settings=SETTINGS, store=deps.store, queue=deps.queue, clock=deps.clock)
    deps.clock.advance(SETTINGS.liveness_seconds + 1)
    reconcile(rdeps)
    closed = entry(deps, cancel.sid)
    assert closed.status == FAILED and "tool writes cancel_order done" in closed.reason
    assert len(business.writes()) == 1


def test_a_replayed_dead_letter_reuses_its_recorded_write() -> None:
    from shared.handlers.dead_letter import record_dead_letter
    from shared.ops.replay import replay
    from tests.unit.test_replay import FakeDeadLetters

    deps, model, business = make()
    cancel = message("cancel order 5678")
    with pytest.raises(InjectedFault):
        process_message(cancel, with_faults(deps, "tool_after_result"))
    record_dead_letter(cancel, deps, "10")
    hold = FakeDeadLetters(deps.clock, cancel)
    replay(deps.store, IDS, hold, deps.clock, SETTINGS.conversation_ttl_seconds,
           watch_after_seconds=SETTINGS.reconcile_after_seconds)
    (again,) = hold.published
    process_message(again, deps)
    assert len(business.writes()) == 1 and entry(deps, cancel.sid).status == ANSWERED
    assert "cancel_order answered" in reply(deps, cancel.sid)


def test_show_and_the_stored_document_name_each_call_but_never_its_arguments() -> None:
    deps, model, business = make()
    cancel = message("cancel order 5678")
    process_message(cancel, deps)
    stored = deps.store.document(conversation_id(USER))["messages"][cancel.sid]["toolLedger"]
    call = stored["rounds"][0]["calls"][0]
    assert (call["name"], call["status"], call["key"]) == ("cancel_order", DONE, idempotency_key(cancel.sid, 0, 0))
    assert call["arguments"] == "" and call["result"] == "" and "5678" not in json.dumps(stored)


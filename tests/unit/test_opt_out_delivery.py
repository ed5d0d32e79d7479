"""Opt-out across the pipeline: the confirmation always goes, nothing else of the business does after it,
and the rate window survives STOP and START."""

from __future__ import annotations

from typing import Callable

from shared.config import Settings
from shared.domain.lifecycle import IGNORED, SENT
from shared.domain.inbound import InboundMessage
from shared.handlers.outbound import OutboundDeps, handle_outbound
from shared.handlers.processor import process_message
from shared.handlers.sender import deliver, handle_send_request
from shared.ops.admin import AdminDeps, reply
from tests.fakes import IDS
from tests.unit.test_processor_controls import SHOP, USER, World, make_world
from tests.unit.test_outbound import TEMPLATE, request


def inbound(w: World, body: str) -> InboundMessage:
    w.n += 1
    return InboundMessage(sid=f"SM{w.n:032x}", sender=USER, recipient=SHOP, body=body)


def once_before_the_nth_write(w: World, n: int, action: Callable[[], None]) -> None:
    """Run ``action`` (its own writes not counted) just before the store's n-th write from now."""
    store = w.deps.store
    seen = {"writes": 0, "inside": False}

    def hook(_: str) -> None:
        if seen["inside"]:
            return
        seen["writes"] += 1
        if seen["writes"] == n:
            seen["inside"] = True
            try:
                action()
            finally:
                seen["inside"] = False

    store.before_apply = hook  # type: ignore[attr-defined]


def test_a_reply_finishing_between_stop_and_its_answer_keeps_the_address_for_the_confirmation() -> None:
    w = make_world()
    w.say("hello")
    question = inbound(w, "what is the price?")
    assert process_message(question, w.deps) == "answered"
    reply_task = next(t for k, t in w.deps.queue.tasks.items() if k not in w.delivered)
    w.delivered.add(reply_task.task_id)
    # STOP is claimed (write 1: claim and marker); reply n finishes before STOP's answer (write 2).
    once_before_the_nth_write(w, 2, lambda: deliver(reply_task, w.sender))
    stop = inbound(w, "STOP")
    assert process_message(stop, w.deps) == "answered"
    w.deps.store.before_apply = None  # type: ignore[attr-defined]
    w.flush()
    bodies = [b for _, b, _ in w.twilio.sent]
    assert bodies[-2:] == ["Hello!", w.deps.profile(SHOP).opt_out_reply]
    conv = w.conv()
    assert conv.entry(stop.sid).status == SENT
    # Once nothing is left to send, the number goes.
    assert conv.address == ""


def test_a_send_task_without_an_address_fails_once_instead_of_erroring() -> None:
    w = make_world()
    question = inbound(w, "hello")
    process_message(question, w.deps)
    cid = next(iter(w.deps.store.docs))
    data, version = w.deps.store.docs[cid]
    w.deps.store.docs[cid] = ({k: v for k, v in data.items() if k != "address"}, version)
    task = next(iter(w.deps.queue.tasks.values()))
    status, body = handle_send_request(task.to_json(), w.sender)
    assert (status, body.strip()) == (200, "failed")
    assert "no address" in w.deps.store.failures[question.sid]["reason"]


def test_business_and_person_messages_queued_before_stop_are_not_sent_after_it() -> None:
    w = make_world()
    w.say("hello")
    odeps = OutboundDeps(settings=w.deps.settings, store=w.deps.store, queue=w.deps.queue, clock=w.clock, ids=IDS)
    for key in ("promo-1", "promo-2", "promo-3"):
        assert handle_outbound(request(to=USER, content_sid=TEMPLATE, idempotency_key=key), odeps).status == 202
    admin = AdminDeps(settings=w.deps.settings, store=w.deps.store, ids=IDS, queue=lambda: w.deps.queue, clock=w.clock)
    reply(admin, USER, SHOP, "A person says hi.")
    before = len(w.twilio.sent)
    _, sent = w.say("STOP")
    assert sent == [w.deps.profile(SHOP).opt_out_reply]
    assert w.twilio.templates == [] and len(w.twilio.sent) == before + 1
    conv = w.conv()
    closed = [e for e in conv.messages.values() if e.by in ("business", "person")]
    assert len(closed) == 4
    assert all(e.status == IGNORED and e.reason == "opted out" for e in closed)
    assert conv.done_seq == conv.last_seq and conv.address == ""


def test_stop_then_start_keeps_the_rate_window_and_the_confirmations_count() -> None:
    settings = Settings(rate_limit_messages=4, rate_limit_window_seconds=60, conversation_ttl_seconds=3600)
    w = make_world(settings)
    for text in ("one", "STOP", "START", "STOP", "START", "two", "three"):
        w.say(text)
    # one, STOP, START, STOP: the window is full; START is confirmed all the same, then one notice.
    assert len(w.model.calls) == 1
    assert w.conv().rate.count >= 4
    reasons = [e.reason or (e.decided.reason if e.decided else None) for e in w.conv().messages.values()]
    assert reasons[-2:] == ["rate_limit_notice", "rate limited"]
    w.clock.advance(61)
    assert w.say("later")[1][-1:] == ["Hello!"]

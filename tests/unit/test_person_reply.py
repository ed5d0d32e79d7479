"""A person's reply, taking over and handing back (shared/handlers/person.py), with the processor and the
sender on fakes: the reply is one more answer on the one answer path, in order and exactly once."""

from __future__ import annotations

from dataclasses import replace

from shared.adapters.conversation_document import DELETE
from shared.domain.lifecycle import SENT
from shared.handlers import person
from shared.handlers.answer import ALREADY, ANSWERED, GONE, REFUSED
from tests.fakes import IDS, conversation_id
from tests.unit.test_processor_controls import SETTINGS, SHOP, USER, make_world

CID = conversation_id(USER, SHOP)
TEMPLATE = "HX" + "ab" * 16


def _reply(w, sid: str, text: str = "Hi, Ana here.", **kwargs) -> person.Replied:  # noqa: ANN001
    request = person.PersonReply(**{"sid": sid, "text": text, "business": SHOP, "window_rule": True,
                                    "must_exist": True, "mark": True, **kwargs})
    return person.reply_as_person(w.deps.store, w.deps.queue, w.deps.settings, w.clock, CID, request)


def test_after_the_handoff_the_person_answers_in_order_and_the_bot_sees_it_once_handed_back() -> None:
    w = make_world()
    assert w.say("agent")[1] == [w.deps.profile(SHOP).handoff_reply]
    assert w.say("my order is late") == ("ignored", [])
    done = _reply(w, "IN" + "1" * 32)
    assert (done.outcome, done.seq, done.queued) == (ANSWERED, 2, True)
    w.flush()
    assert [b for _, b, _ in w.twilio.sent][-1] == "Hi, Ana here."
    assert w.conv().entry("IN" + "1" * 32).status == SENT
    assert person.set_paused(w.deps.store, CID, None, w.clock, SHOP)
    w.say("thanks!")
    history, _ = w.model.calls[-1]
    assert [(t["role"], t.get("by"), t["content"]) for t in history][-2:] == [
        ("user", None, "my order is late"), ("assistant", "person", "Hi, Ana here.")]


def test_a_repeated_request_is_written_and_sent_once() -> None:
    w = make_world()
    w.say("agent")
    sid = "IN" + "2" * 32
    first, again = _reply(w, sid), _reply(w, sid)
    assert (first.outcome, again.outcome) == (ANSWERED, ALREADY)
    assert [t for t in w.deps.queue.tasks if t.endswith(sid)] == [f"{CID[:20]}-{sid}"], "one task, named"
    w.flush()
    assert _reply(w, sid).outcome == GONE
    assert [b for _, b, _ in w.twilio.sent].count("Hi, Ana here.") == 1
    # Long after, when the entry is gone: the dedupe marker still says it was taken on.
    w.deps.store.apply(CID, {f"messages.{sid}": DELETE}, w.deps.store.docs[CID][1])  # type: ignore[attr-defined]
    assert _reply(w, sid).outcome == GONE
    w.flush()
    assert [b for _, b, _ in w.twilio.sent].count("Hi, Ana here.") == 1


def test_refusals_are_decided_inside_the_write() -> None:
    w = make_world()
    assert _reply(w, "IN" + "3" * 32).refusal == person.NO_CONVERSATION
    w.say("hello")
    assert _reply(w, "IN" + "4" * 32, text="   ").outcome == REFUSED
    w.clock.advance(25 * 3600)
    outside = _reply(w, "IN" + "5" * 32)
    assert (outside.outcome, outside.refusal) == (REFUSED, person.OUTSIDE_WINDOW)
    template = _reply(w, "IN" + "6" * 32, template=TEMPLATE)
    assert template.outcome == ANSWERED
    w.flush()
    assert w.twilio.templates[-1][1] == TEMPLATE
    w.clock.advance(60)
    w.say("STOP")
    assert _reply(w, "IN" + "7" * 32, window_rule=False).refusal == person.OPTED_OUT
    other = person.PersonReply(sid="IN" + "8" * 32, text="x", business="whatsapp:+15550009999", must_exist=True)
    assert person.reply_as_person(w.deps.store, w.deps.queue, w.deps.settings, w.clock, CID, other).refusal == \
        person.NOT_THEIRS


def test_a_conversation_with_too_many_unfinished_messages_waits() -> None:
    w = make_world(settings=replace(SETTINGS, max_open_messages=1))
    w.say("hello")
    assert _reply(w, "IN" + "9" * 32).outcome == ANSWERED  # not sent yet: unfinished
    assert _reply(w, "IN" + "a" * 32).refusal == person.TOO_MANY_OPEN


def test_taking_over_pauses_the_bot_and_handing_back_resumes_it() -> None:
    w = make_world()
    w.say("hello")
    until = person.pause_until(w.clock, 600)
    assert person.set_paused(w.deps.store, CID, until, w.clock, SHOP)
    assert w.conv().paused_until == until
    assert w.say("are you a robot?") == ("ignored", [])
    assert not person.set_paused(w.deps.store, CID, None, w.clock, "whatsapp:+15550009999")
    assert not person.set_paused(w.deps.store, conversation_id("whatsapp:+1999", SHOP), None, w.clock)
    assert person.set_paused(w.deps.store, CID, None, w.clock, SHOP)
    assert w.say("hello again")[0] == "answered"
    assert IDS.inbox_reply_id(CID, "k" * 8) == IDS.inbox_reply_id(CID, "k" * 8) != IDS.inbox_reply_id(CID, "k" * 9)

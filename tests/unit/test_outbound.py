"""The outbound API: validation, idempotency, opt-out, the window, order with replies."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.firestore_store import Conflict
from shared.config import Settings
from shared.domain.lifecycle import SENT
from shared.domain.turns import trim_history
from shared.domain.outbound import InvalidRequest, parse_request
from shared.faults import FaultPoints
from shared.handlers.outbound import OutboundDeps, handle_outbound
from shared.handlers.processor import process_message
from shared.handlers.reconciler import ReconcilerDeps, reconcile
from shared.handlers.sender import SenderDeps, deliver
from tests.fakes import BUSINESS, IDS, Clock, FakeQueue, FakeStore, FakeTwilio, conversation_id
from tests.unit.test_processor import SENDER, make_deps, msg

TEMPLATE = "HX" + "a" * 32
DAY = 24 * 3600


@pytest.fixture
def world():
    clock = Clock()
    pdeps = make_deps(clock=clock)
    odeps = OutboundDeps(settings=pdeps.settings, store=pdeps.store, queue=pdeps.queue, clock=clock, ids=IDS)
    sdeps = SenderDeps(settings=Settings(send_max_attempts=3), store=pdeps.store, twilio=FakeTwilio(),
                       queue=pdeps.queue, faults=FaultPoints(), clock=clock)
    return pdeps, odeps, sdeps


def request(**fields: Any) -> bytes:
    body = {"to": SENDER, "idempotency_key": "order-1", **fields}
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def send_all(pdeps, sdeps) -> None:
    """Run every queued send task until none is left to do."""
    done: set[str] = set()
    while True:
        pending = [t for t in pdeps.queue.tasks.values() if t.task_id not in done]
        if not pending:
            return
        for task in pending:
            done.add(task.task_id)
            deliver(task, sdeps)


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"not json", "must be JSON"),
        (b"[1]", "JSON object"),
        (request(to=None, content_sid=TEMPLATE), "to is required"),
        (request(to="+34600111222", content_sid=TEMPLATE), "WhatsApp address"),
        (request(idempotency_key=None, content_sid=TEMPLATE), "idempotency_key is required"),
        (request(), "exactly one of body and content_sid"),
        (request(body="hi", content_sid=TEMPLATE), "exactly one of body and content_sid"),
        (request(content_sid="HX123"), "Content SID"),
        (request(content_sid=TEMPLATE, content_variables={"1": 2}), "object of strings"),
        (request(content_sid=TEMPLATE, content_variables="{"), "JSON object"),
        (request(body="hi", content_variables={"1": "x"}), "needs content_sid"),
        (request(body="hi", extra="x"), "unknown fields: extra"),
        (request(body="hi", idempotency_key=7), "must be a string"),
        (request(body="x" * 5000), "longer than"),
    ],
)
def test_invalid_requests_are_refused_with_the_reason(world, raw: bytes, reason: str) -> None:
    pdeps, odeps, _ = world
    with pytest.raises(InvalidRequest, match=reason):
        parse_request(raw, 3200)
    outcome = handle_outbound(raw, odeps)
    assert outcome.status == 400 and reason in outcome.body["error"]
    assert pdeps.store.docs == {} and pdeps.queue.tasks == {}


def test_content_variables_are_passed_on_as_a_json_object() -> None:
    parsed = parse_request(request(content_sid=TEMPLATE, content_variables={"2": "10:00", "1": "Ana"}), 3200)
    assert json.loads(parsed.content_variables) == {"1": "Ana", "2": "10:00"}
    as_text = parse_request(request(content_sid=TEMPLATE, content_variables='{"1": "Ana"}'), 3200)
    assert json.loads(as_text.content_variables) == {"1": "Ana"}


def test_a_template_goes_to_a_new_user_once_and_enters_the_history(world) -> None:
    pdeps, odeps, sdeps = world
    outcome = handle_outbound(request(content_sid=TEMPLATE, content_variables={"1": "Ana"}), odeps)
    assert outcome.status == 202
    oid = outcome.body["id"]
    assert oid == IDS.outbound_id(BUSINESS, "order-1") and oid.startswith("OB")
    send_all(pdeps, sdeps)
    assert sdeps.twilio.templates == [(SENDER, TEMPLATE, '{"1":"Ana"}')] and sdeps.twilio.sent == []
    assert sdeps.twilio.froms == [BUSINESS]
    conv = pdeps.store.conversation(conversation_id(SENDER))
    assert conv.entry(oid).status == SENT and conv.done_seq == 1
    assert conv.history == [
        {"role": "assistant", "content": f'[template {TEMPLATE}] {{"1":"Ana"}}', "sid": oid, "by": "business"}
    ]
    # The user answers: the model sees the template as the turn before theirs.
    process_message(msg(1, "yes please"), pdeps)
    history, text = pdeps.model.calls[-1]
    assert text == "yes please" and history[0]["content"].startswith(f"[template {TEMPLATE}]")


def test_the_same_key_returns_the_same_id_and_sends_nothing_more(world) -> None:
    pdeps, odeps, sdeps = world
    first = handle_outbound(request(content_sid=TEMPLATE), odeps)
    send_all(pdeps, sdeps)
    writes = pdeps.store.ops.writes
    again = handle_outbound(request(content_sid=TEMPLATE), odeps)
    send_all(pdeps, sdeps)
    assert again.status == 202 and again.body == first.body
    assert pdeps.store.ops.writes == writes
    assert len(sdeps.twilio.templates) == 1
    other = handle_outbound(request(content_sid=TEMPLATE, idempotency_key="order-2"), odeps)
    assert other.body["id"] != first.body["id"]


def test_the_key_is_remembered_after_the_conversation_is_gone(world) -> None:
    pdeps, odeps, sdeps = world
    first = handle_outbound(request(content_sid=TEMPLATE), odeps)
    send_all(pdeps, sdeps)
    pdeps.store.delete(conversation_id(SENDER))
    again = handle_outbound(request(content_sid=TEMPLATE), odeps)
    assert again.status == 202 and again.body == first.body
    assert conversation_id(SENDER) not in pdeps.store.docs
    send_all(pdeps, sdeps)
    assert len(sdeps.twilio.templates) == 1


def test_a_repeat_after_a_crash_before_the_task_creates_it_once(world) -> None:
    pdeps, odeps, sdeps = world
    pdeps.queue.error = RuntimeError("tasks down")
    with pytest.raises(RuntimeError):
        handle_outbound(request(content_sid=TEMPLATE), odeps)
    pdeps.queue.error = None
    assert handle_outbound(request(content_sid=TEMPLATE), odeps).status == 202
    send_all(pdeps, sdeps)
    assert len(sdeps.twilio.templates) == 1


def test_the_reconciler_sends_a_message_whose_task_was_lost(world) -> None:
    pdeps, odeps, sdeps = world
    pdeps.queue.error = RuntimeError("tasks down")
    with pytest.raises(RuntimeError):
        handle_outbound(request(content_sid=TEMPLATE), odeps)
    pdeps.queue.error = None
    odeps.clock.advance(pdeps.settings.reconcile_after_seconds + 1)
    reconcile(ReconcilerDeps(settings=pdeps.settings, store=pdeps.store, queue=pdeps.queue, clock=odeps.clock))
    send_all(pdeps, sdeps)
    assert len(sdeps.twilio.templates) == 1
    assert "watch" not in pdeps.store.document(conversation_id(SENDER))


def test_a_concurrent_write_is_retried(world) -> None:
    pdeps, odeps, sdeps = world
    process_message(msg(1), pdeps)
    cid = conversation_id(SENDER)
    interfere = [True]

    def before_apply(conversation: str) -> None:
        if interfere:
            interfere.pop()
            snap = pdeps.store.load(conversation)
            pdeps.store.apply(conversation, {"touched": True}, snap.version)

    pdeps.store.before_apply = before_apply
    assert handle_outbound(request(body="Your order shipped"), odeps).status == 202
    pdeps.store.before_apply = None
    conv = pdeps.store.conversation(cid)
    assert conv.extra["touched"] is True and conv.last_seq == 2


def test_free_text_inside_the_window_follows_the_reply_before_it(world) -> None:
    pdeps, odeps, sdeps = world
    process_message(msg(1, "where is my order?"), pdeps)
    outcome = handle_outbound(request(body="Your order shipped today."), odeps)
    assert outcome.status == 202
    oid = outcome.body["id"]
    conv = pdeps.store.conversation(conversation_id(SENDER))
    assert conv.entry(oid).seq == 2
    # Not its turn yet: the reply to message 1 hands off to it.
    assert [t.sid for t in pdeps.queue.tasks.values()] == [msg(1).sid]
    send_all(pdeps, sdeps)
    assert [body for _, body, _ in sdeps.twilio.sent] == ["Hello!", "Your order shipped today."]
    assert pdeps.store.conversation(conversation_id(SENDER)).entry(oid).status == SENT


def test_free_text_outside_the_window_is_refused(world) -> None:
    pdeps, odeps, sdeps = world
    never_wrote = handle_outbound(request(body="hello"), odeps)
    assert never_wrote.status == 409 and "24-hour window" in never_wrote.body["error"]
    process_message(msg(1), pdeps)
    odeps.clock.advance(DAY + 1)
    late = handle_outbound(request(body="hello"), odeps)
    assert late.status == 409 and "24-hour window" in late.body["error"]
    assert pdeps.store.conversation(conversation_id(SENDER)).last_seq == 1
    assert handle_outbound(request(content_sid=TEMPLATE), odeps).status == 202


def test_too_many_unfinished_messages_are_refused_until_some_are_sent(world) -> None:
    pdeps, odeps, sdeps = world
    odeps = replace(odeps, settings=replace(odeps.settings, max_open_messages=2))
    assert [handle_outbound(request(content_sid=TEMPLATE, idempotency_key=f"k{n}"), odeps).status for n in range(3)] == [
        202, 202, 429,
    ]
    send_all(pdeps, sdeps)
    assert handle_outbound(request(content_sid=TEMPLATE, idempotency_key="k2"), odeps).status == 202


def test_an_opted_out_user_is_refused(world) -> None:
    pdeps, odeps, sdeps = world
    process_message(msg(1), pdeps)
    cid = conversation_id(SENDER)
    snap = pdeps.store.load(cid)
    pdeps.store.apply(cid, {"optedOut": True}, snap.version)
    outcome = handle_outbound(request(content_sid=TEMPLATE), odeps)
    assert outcome.status == 403 and "opted out" in outcome.body["error"]
    assert pdeps.store.conversation(cid).last_seq == 1


def test_another_business_address_is_its_own_conversation(world) -> None:
    from shared.adapters.profile_store import StaticProfiles, defaults_from_settings

    pdeps, odeps, sdeps = world
    other = "whatsapp:+15550001111"
    defaults = defaults_from_settings(odeps.settings)
    odeps = replace(odeps, profiles=StaticProfiles(defaults, {other: replace(defaults, address=other)}))
    outcome = handle_outbound(request(content_sid=TEMPLATE, **{"from": other}), odeps)
    assert outcome.body["id"] == IDS.outbound_id(other, "order-1") != IDS.outbound_id(BUSINESS, "order-1")
    send_all(pdeps, sdeps)
    assert sdeps.twilio.froms == [other]
    assert pdeps.store.conversation(conversation_id(SENDER, other)).business == other


def test_only_business_turns_may_open_the_history() -> None:
    turns = [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]
    assert trim_history(turns, 10) == turns[1:]
    opened = [{"role": "assistant", "content": "a", "by": "business"}, {"role": "user", "content": "b"}]
    assert trim_history(opened, 10) == opened


def test_a_conflict_that_never_ends_is_raised(world) -> None:
    pdeps, odeps, _ = world
    store = FakeStore()

    def always(conversation: str) -> None:
        raise Conflict("changed")

    store.before_apply = always
    with pytest.raises(Conflict):
        handle_outbound(request(content_sid=TEMPLATE), replace(odeps, store=store, queue=FakeQueue()))


def test_the_webhook_does_not_load_what_only_the_outbound_api_needs() -> None:
    """Both targets share webhook_fn/main.py; the webhook's cold start must stay without Firestore and Cloud Tasks."""
    probe = (
        "import sys, webhook_fn.main\n"
        "print(sorted(m for m in ('google.cloud.firestore', 'google.cloud.tasks_v2', 'shared.handlers.outbound')"
        " if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


CLINIC = "whatsapp:+15550001111"


def scoped_world(callers: dict[str, tuple[str, ...]]):  # noqa: ANN201
    from shared.adapters.profile_store import StaticProfiles, defaults_from_settings
    from shared.domain.profiles import profile_from_mapping

    clock = Clock()
    pdeps = make_deps(clock=clock, settings=replace(make_deps().settings, outbound_callers=callers))
    defaults = defaults_from_settings(pdeps.settings)
    profiles = StaticProfiles(defaults, {CLINIC: profile_from_mapping(CLINIC, {"name": "Clinic"}, defaults)})
    odeps = OutboundDeps(settings=pdeps.settings, store=pdeps.store, queue=pdeps.queue, clock=clock, ids=IDS,
                         profiles=profiles)
    return pdeps, odeps


def test_only_numbers_of_the_deployment_may_send() -> None:
    pdeps, odeps = scoped_world({})
    stranger = "whatsapp:+19998887777"
    outcome = handle_outbound(request(content_sid=TEMPLATE, **{"from": stranger}), odeps)
    assert outcome.status == 403 and "may not send from" in outcome.body["error"]
    assert pdeps.store.docs == {} and pdeps.queue.tasks == {}
    for business in (BUSINESS, CLINIC):  # the default number, and one with a profile
        assert handle_outbound(request(content_sid=TEMPLATE, **{"from": business}), odeps).status == 202


def test_a_caller_sends_only_for_its_businesses_and_learns_nothing_of_the_others() -> None:
    crm, ops = "crm@shop.iam.gserviceaccount.com", "ops@x.iam.gserviceaccount.com"
    pdeps, odeps = scoped_world({crm: (BUSINESS,), ops: ("*",)})
    # A user who opted out of the clinic, and one who never wrote to it.
    snap = pdeps.store.load(conversation_id(SENDER, CLINIC))
    pdeps.store.apply(conversation_id(SENDER, CLINIC), {"optedOut": True}, snap.version)
    answers = [
        handle_outbound(request(to=user, body="hi", **{"from": CLINIC}), odeps, caller=crm)
        for user in (SENDER, "whatsapp:+34600999888")
    ]
    assert [a.status for a in answers] == [403, 403] and answers[0].body == answers[1].body
    assert handle_outbound(request(content_sid=TEMPLATE), odeps, caller=crm).status == 202
    # Every number for ops, so it hears of the clinic's opt-out: that user is the clinic's, and ops speaks for it.
    assert handle_outbound(request(content_sid=TEMPLATE, **{"from": CLINIC}), odeps, caller=ops).status == 403
    assert handle_outbound(request(content_sid=TEMPLATE, idempotency_key="k2"), odeps,
                           caller="nobody@x.iam.gserviceaccount.com").status == 403

"""Delivery ticks and the 24-hour window reasons, with in-memory fakes."""

from __future__ import annotations

import base64

import pytest

from shared.adapters.twilio_api import SendPermanent
from shared.domain.lifecycle import FAILED, SENT
from shared.domain.delivery import OUTSIDE_WINDOW, advances, failure_reason, ticks
from shared.domain.inbound import STATUS_KIND, StatusCallback
from shared.handlers.delivery_status import PartNotRecordedYet, apply_status
from shared.handlers.processor import handle_push, process_message
from shared.handlers.sender import deliver
from tests.fakes import BUSINESS, conversation_id
from tests.unit.test_processor import SENDER, msg
from tests.unit.test_sender import task_for, world  # noqa: F401 - fixture


def sent_reply(world) -> str:  # noqa: F811
    pdeps, sdeps = world
    process_message(msg(1), pdeps)
    assert deliver(task_for(pdeps, 1), sdeps) == "sent"
    return sdeps.twilio.sent[-1][2]


def callback(twilio_sid: str, status: str, code: str = "") -> StatusCallback:
    return StatusCallback(sid=twilio_sid, status=status, recipient=SENDER, error_code=code, sender=BUSINESS)


def deliveries(pdeps) -> dict:
    return dict(pdeps.store.conversation(conversation_id(SENDER)).entry(msg(1).sid).deliveries)


@pytest.mark.parametrize(
    ("current", "new", "moves"),
    [
        (None, "sent", True), ("sent", "delivered", True), ("delivered", "read", True),
        ("read", "delivered", False), ("delivered", "sent", False), ("read", "read", False),
        ("sent", "failed", True), ("read", "undelivered", True), ("failed", "read", False),
        ("undelivered", "failed", False), ("sent", "bogus", False),
    ],
)
def test_a_part_only_moves_forward_and_failures_are_terminal(current, new, moves) -> None:
    assert advances(current, new) is moves


def test_callbacks_out_of_order_end_in_the_newest_state(world) -> None:  # noqa: F811
    pdeps, _ = world
    part = sent_reply(world)
    assert apply_status(callback(part, "read"), pdeps) == "updated"
    writes = pdeps.store.ops.writes
    assert apply_status(callback(part, "sent"), pdeps) == "stale"
    assert apply_status(callback(part, "delivered"), pdeps) == "stale"
    assert pdeps.store.ops.writes == writes, "an older status writes nothing"
    assert deliveries(pdeps) == {part: "read"}
    assert ticks(pdeps.store.conversation(conversation_id(SENDER)).entry(msg(1).sid)) == "✓✓ read"


def test_a_failed_part_keeps_its_error_code_and_leaves_a_failure_record(world) -> None:  # noqa: F811
    pdeps, _ = world
    part = sent_reply(world)
    apply_status(callback(part, "delivered"), pdeps)
    assert apply_status(callback(part, "undelivered", "63016"), pdeps) == "failed"
    assert apply_status(callback(part, "read"), pdeps) == "stale"
    entry = pdeps.store.conversation(conversation_id(SENDER)).entry(msg(1).sid)
    assert entry.deliveries == {part: "undelivered"} and entry.delivery_errors == {part: "63016"}
    assert entry.status == SENT
    record = pdeps.store.failures[part]
    assert record["stage"] == "delivery" and OUTSIDE_WINDOW in record["reason"]


def test_a_callback_for_an_unknown_message_is_acknowledged(world) -> None:  # noqa: F811
    pdeps, _ = world
    sent_reply(world)
    assert apply_status(callback("SM" + "f" * 32, "read"), pdeps) == "unknown"
    other = StatusCallback(sid="SM" + "e" * 32, status="sent", recipient="whatsapp:+19990000000", sender=BUSINESS)
    assert apply_status(other, pdeps) == "unknown"


def test_a_callback_that_overtakes_the_senders_record_is_retried_only_while_the_part_is_in_flight(world) -> None:  # noqa: F811
    pdeps, sdeps = world
    process_message(msg(1), pdeps)
    cid = conversation_id(SENDER)
    snap = pdeps.store.load(cid)
    pdeps.store.apply(cid, {f"messages.{msg(1).sid}.sending": {"part": 0, "since": pdeps.clock(), "task": "t"}}, snap.version)
    with pytest.raises(PartNotRecordedYet):
        apply_status(callback("SM" + "a" * 32, "sent"), pdeps)
    pdeps.clock.advance(sdeps.settings.in_flight_grace_seconds + 1)
    assert apply_status(callback("SM" + "a" * 32, "sent"), pdeps) == "unknown"


def test_the_processor_takes_status_pushes_apart_from_messages(world) -> None:  # noqa: F811
    pdeps, _ = world
    part = sent_reply(world)
    push = {"data": base64.b64encode(callback(part, "delivered").to_json()).decode(), "attributes": {"kind": STATUS_KIND}}
    assert handle_push(push, "projects/p/subscriptions/inbound-messages-processor", pdeps) == "updated"
    assert handle_push(push, "projects/p/subscriptions/inbound-messages-dead-letter", pdeps) == "dead-lettered"
    bad = {"data": base64.b64encode(b"{}").decode(), "attributes": {"kind": STATUS_KIND}}
    assert handle_push(bad, "projects/p/subscriptions/x", pdeps) == "malformed"
    assert deliveries(pdeps) == {part: "delivered"}


def test_a_63016_from_twilio_is_recorded_as_outside_the_window(world) -> None:  # noqa: F811
    pdeps, sdeps = world
    process_message(msg(1), pdeps)
    sdeps.twilio.script = [SendPermanent(63016, "Failed to send freeform message because you are outside the allowed window.")]
    assert deliver(task_for(pdeps, 1), sdeps) == "failed"
    conv = pdeps.store.conversation(conversation_id(SENDER))
    assert conv.entry(msg(1).sid).status == FAILED
    assert conv.entry(msg(1).sid).reason.startswith(OUTSIDE_WINDOW)
    assert pdeps.store.failures[msg(1).sid]["reason"].startswith(OUTSIDE_WINDOW)


def test_failure_reasons_name_the_code() -> None:
    assert failure_reason("30008", "Unknown error") == "twilio error 30008: Unknown error"
    assert failure_reason("63016").startswith(OUTSIDE_WINDOW)
    assert failure_reason("") == "twilio reported no error code"


def test_status_payload_round_trips_and_rejects_junk() -> None:
    original = callback("SM" + "1" * 32, "read")
    assert StatusCallback.from_json(original.to_json()) == original
    with pytest.raises(ValueError):
        StatusCallback.from_json(b'{"kind": "status", "sid": 3}')


def test_a_failed_callback_error_message_is_scrubbed_before_it_is_stored(world, caplog) -> None:  # noqa: F811
    pdeps, _ = world
    part = sent_reply(world)
    token = "0123456789abcdef0123456789abcdef"
    failed = StatusCallback(
        sid=part, status="failed", recipient=SENDER, error_code="63024", sender=BUSINESS,
        error_message=f"Invalid recipient {SENDER} ({SENDER.split('+')[1]}); token {token}",
    )
    assert apply_status(failed, pdeps) == "failed"
    reason = pdeps.store.failures[part]["reason"]
    assert "63024" in reason and "Invalid recipient" in reason
    assert SENDER.split("+")[1] not in reason and token not in reason
    assert SENDER.split("+")[1] not in caplog.text

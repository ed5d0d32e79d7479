"""The event lines the analytics sink exports (terraform/analytics.tf, docs/analytics.md), as the real handlers
write them: every field a documented query reads is on the lines of the events it reads, no line carries a
message's text, and each field keeps one JSON type (BigQuery fixes a column's type on its first row).

The lines are captured from the webhook, the processor and the sender running with the unit fakes over the
paths the queries count: a plain answer, a fallback, a handoff, an opt-out, the knowledge base's unknown reply,
an ignored message and a business's outbound message, each sent. Nothing here is a list kept by hand: a field
the code stops writing, or a query that reads a field nobody writes, fails.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.profile_store import StaticProfiles, defaults_from_settings
from shared.domain.inbound import InboundMessage
from shared.domain.profiles import profile_from_mapping
from shared.handlers.outbound import OutboundDeps, handle_outbound
from shared.handlers.processor import ProcessorDeps, process_message
from shared.handlers.sender import deliver
from shared.log import JsonFormatter
from tests.fakes import IDS, conversation_id
from tests.unit import test_webhook as webhook
from tests.unit.test_knowledge_answer import KSET, FakeKnowledge
from tests.unit.test_processor_controls import SETTINGS, SHOP, SHOP_PROFILE, USER, World, make_world

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
TEXT = "zq-what-the-user-wrote"
REPLY = "zr-what-the-bot-answered"
UNKNOWN_REPLY = "zu-what-the-bakery-does-not-know"
BAKERY = "whatsapp:+15550002222"


def _world() -> World:
    defaults = defaults_from_settings(SETTINGS)
    shop = profile_from_mapping(SHOP, {**SHOP_PROFILE, "fallback_reply": f"{REPLY}-fallback",
                                       "handoff_reply": f"{REPLY}-handoff", "opt_out_reply": f"{REPLY}-stop"}, defaults)
    bakery = replace(profile_from_mapping(BAKERY, {"name": "Bakery", "unknown_reply": UNKNOWN_REPLY,
                                                   "knowledge": ["prices.md"], "knowledge_only": True,
                                                   "handoff_keyword": "agent"}, defaults), knowledge_set=KSET)
    world = make_world(profiles=StaticProfiles(defaults, {SHOP: shop, BAKERY: bakery}))
    world.deps = ProcessorDeps(**{**vars(world.deps), "knowledge": FakeKnowledge([])})
    world.model._reply = REPLY
    world.model.usage = (30, 8)  # the API reports usage on every answer, as OpenAI's does
    return world


def send_outbound(world: World) -> Any:
    """A business's message through the outbound API's handler: no inbound waited for it."""
    deps = OutboundDeps(settings=SETTINGS, store=world.deps.store, queue=world.deps.queue, clock=world.clock,
                        ids=IDS, profiles=world.deps.profiles)
    body = json.dumps({"to": USER, "from": SHOP, "body": f"{REPLY} news", "idempotency_key": "news-1"}).encode()
    return handle_outbound(body, deps)


def captured_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """Every event line the handlers write along the counted paths, as JSON objects (what Cloud Run exports)."""
    caplog.set_level(logging.INFO)
    response = webhook.post(webhook.make_deps(), webhook.text_form(Body=TEXT))
    assert response.status_code == 200
    world = _world()
    world.say(f"{TEXT} plain")
    world.clock.advance(1)
    world.model.error = RuntimeError("model down")
    world.say(f"{TEXT} while the model is down")
    world.model.error = None
    world.say("agent")
    world.say(f"{TEXT} to the bakery", to=BAKERY)
    world.say("STOP", user="whatsapp:+34600999888")
    world.say(f"{TEXT} after stop", user="whatsapp:+34600999888")
    assert send_outbound(world).status == 202
    world.flush()
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    return [line for line in lines if "event" in line]


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return captured_lines(caplog)


def documented_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def query_events(sql: str) -> set[str]:
    events = set(re.findall(r"jsonPayload\.event\s*=\s*'(\w+)'", sql))
    for listed in re.findall(r"jsonPayload\.event\s+IN\s*\(([^)]*)\)", sql):
        events |= set(re.findall(r"'(\w+)'", listed))
    return events


def test_the_doc_has_the_owners_queries() -> None:
    queries = documented_queries()
    assert len(queries) >= 5, "docs/analytics.md lost its queries"
    for sql in queries:
        assert query_events(sql), f"a query that does not say which event lines it reads:\n{sql}"
        assert "run_googleapis_com_stdout" in sql and "timestamp" in sql, f"not over the sink's table by time:\n{sql}"


def test_every_field_a_query_reads_is_written_on_the_lines_it_reads(lines: list[dict[str, Any]]) -> None:
    written: dict[str, set[str]] = {}
    for line in lines:
        written.setdefault(line["event"], set()).update(k for k, v in line.items() if v is not None)
    missing: set[str] = set()
    for sql in documented_queries():
        events = query_events(sql)
        on_them = set().union(*(written.get(e, set()) for e in events))
        for name in sorted(set(re.findall(r"jsonPayload\.(\w+)", sql))):
            if name not in on_them:
                missing.add(f"jsonPayload.{name} (events {', '.join(sorted(events))})")
    assert not missing, ("fields the documented queries read but no captured line writes:\n  "
                         + "\n  ".join(sorted(missing)))


def test_no_event_line_carries_message_text(lines: list[dict[str, Any]]) -> None:
    assert {line["event"] for line in lines} >= {"received", "answered", "sent", "ignored"}
    for line in lines:
        text = json.dumps(line)
        for marker in (TEXT, REPLY, UNKNOWN_REPLY, "34600111222", "34600999888"):
            assert marker not in text, f"{line['event']} line carries {marker!r}: {text}"


def test_each_field_keeps_one_json_type(lines: list[dict[str, Any]]) -> None:
    kinds: dict[str, set[str]] = {}
    for line in lines:
        for key, value in line.items():
            if value is None:
                continue
            kind = "bool" if isinstance(value, bool) else "number" if isinstance(value, (int, float)) \
                else type(value).__name__
            kinds.setdefault(key, set()).add(kind)
    mixed = {key: sorted(found) for key, found in kinds.items() if len(found) > 1}
    assert not mixed, f"fields with more than one JSON type (BigQuery would refuse the later rows): {mixed}"


def test_the_answered_and_sent_lines_say_whose_and_how_fast(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    world = _world()
    message = InboundMessage(sid="SM" + "a" * 32, sender=USER, recipient=SHOP, body=TEXT)
    assert process_message(message, world.deps) == "answered"
    world.clock.advance(2.5)
    task = next(iter(world.deps.queue.tasks.values()))  # type: ignore[attr-defined]
    assert deliver(task, world.sender) == "sent"
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    answered = next(line for line in lines if line.get("event") == "answered")
    sent = next(line for line in lines if line.get("event") == "sent")
    cid = conversation_id(USER, SHOP)
    assert answered["conversation"] == cid[:12] == sent["conversation"]
    assert answered["business"] == SHOP == sent["business"]
    assert answered["unknown"] is False
    assert sent["reply_ms"] == 2500


def test_the_unknown_reply_is_marked_on_its_answered_line(lines: list[dict[str, Any]]) -> None:
    answered = [line for line in lines if line["event"] == "answered"]
    assert [line["business"] for line in answered if line["unknown"]] == [BAKERY]
    assert {line["control"] for line in answered} >= {"handoff", "opt_out"}
    assert any(line["fallback"] for line in answered)


def test_an_outbound_message_has_no_reply_latency(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    world = _world()
    world.say("hello")  # the user wrote: the window is open, and their reply was timed
    assert send_outbound(world).status == 202
    world.clock.advance(3)
    world.flush()
    formatter = JsonFormatter()
    sent = [json.loads(formatter.format(r)) for r in caplog.records if getattr(r, "event", "") == "sent"]
    assert [line["reply_ms"] is None for line in sent] == [False, True]
    assert {line["business"] for line in sent} == {SHOP}

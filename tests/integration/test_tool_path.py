"""The rounds end to end over real HTTP: the openai SDK against the stand-in, the tool caller against the example server.

No pipeline yet: the store port keeps the ledger in a list. What this shows
is that the transcript the loop builds is one OpenAI accepts (the stand-in
refuses what OpenAI refuses), that the offline model calls the example's
tools from the user's words, and that a confirmed booking is made once.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from devstack.openai_stub import OpenAIStub
from devstack.tool_server import EXAMPLE_SECRET_ID, ExampleToolServer
from shared.adapters.openai_model import ChatModel
from shared.adapters.secret_manager import EnvSecrets
from shared.adapters.tool_caller import ToolCaller
from shared.config import Settings
from shared.domain.profiles import BusinessProfile, profiles_from_document
from shared.domain.proposals import confirmed_ledger
from shared.domain.tool_ledger import CALLING, DONE, Ledger
from shared.domain.tool_rounds import LoopOutcome, RoundsFailed, ToolLoop, fallback_with_outcomes
from shared.domain.tools import local_secret_variable

ROOT = Path(__file__).resolve().parents[2]
BAKERY = "whatsapp:+14155238886"
SECRET = "bakery-tools-secret"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def model_stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as stub:
        yield stub


@pytest.fixture()
def server(model_stub: OpenAIStub) -> Iterator[ExampleToolServer]:
    model_stub.reset()
    with ExampleToolServer(SECRET) as running:
        yield running


def bakery(server: ExampleToolServer) -> BusinessProfile:
    document = yaml.safe_load((ROOT / "profiles.example.yaml").read_text())
    raw = copy.deepcopy(document["businesses"][BAKERY])
    for tool in raw["tools"]:
        tool["url"] = tool["url"].replace("http://127.0.0.1:8095", server.base_url)
    return profiles_from_document({"businesses": {BAKERY: raw}}, BusinessProfile())[BAKERY]


class ToolPath:
    """The adapters wired as the processor will wire them; the ledger 'store' is a list."""

    def __init__(self, model_stub: OpenAIStub, server: ExampleToolServer) -> None:
        self.profile = bakery(server)
        self.model = ChatModel(model="offline-model", system_prompt="x", api_key=lambda: "sk-test",
                               base_url=model_stub.base_url, timeout_seconds=5.0, max_retries=0, budget_seconds=30.0)
        settings = Settings(env_secrets={local_secret_variable(EXAMPLE_SECRET_ID): SECRET})
        self.caller = ToolCaller(EnvSecrets(settings), max_response_bytes=16 * 1024)
        self.stored: list[Ledger] = []

    def run(self, sid: str, text: str, ledger: Ledger = Ledger()) -> LoopOutcome:
        loop = ToolLoop(ask=lambda m, t, final, d: self.model.tool_round(m, t, final, d),
                        call=self.caller.for_message(BAKERY, sid), record=self.stored.append,
                        clock=time.monotonic, answer_reserve_seconds=2.0)
        messages = self.model.conversation([], text, self.profile.system_prompt)
        return loop.run(sid=sid, messages=messages, tools=self.profile.tools, ledger=ledger,
                        max_rounds=self.profile.max_tool_rounds or 3, deadline=time.monotonic() + 20.0, now=NOW,
                        confirm_keyword=self.profile.confirm_keywords[0])


def test_a_read_tools_answer_reaches_the_reply(model_stub: OpenAIStub, server: ExampleToolServer) -> None:
    path = ToolPath(model_stub, server)
    outcome = path.run("SM" + "1" * 32, "What's the status of my order 1234?")
    assert "order_status answered" in outcome.reply and "ready for pickup" in outcome.reply
    assert [c.path for c in server.calls] == ["/orders/status"] and server.calls[0].verified
    first, second = model_stub.requests
    assert first.tool_names == ["order_status", "book_table"] and first.body["tool_choice"] == "auto"
    assert [m["role"] for m in second.messages][-2:] == ["assistant", "tool"]
    assert path.stored == [] and outcome.model_calls == 2


def test_a_confirmed_booking_is_proposed_then_made_once(model_stub: OpenAIStub, server: ExampleToolServer) -> None:
    path = ToolPath(model_stub, server)
    proposed = path.run("SM" + "2" * 32, "Book a table for 2 at 20:00 on Friday")
    assert proposed.reply == "Book a table for 2 at 20:00 on friday? Reply YES to confirm."
    assert server.calls == [] and proposed.proposal is not None
    confirming = "SM" + "3" * 32
    done = path.run(confirming, "YES", confirmed_ledger(proposed.proposal, confirming))
    assert "book_table answered" in done.reply and "T-0001" in done.reply
    assert [b["key"] for b in server.bookings()] == [proposed.proposal.key]
    assert [c.status for c in path.stored[0].calls] == [CALLING] and path.stored[-1].calls[0].status == DONE
    # Delivered again after the result was stored: the model answers again, the business hears nothing.
    again = path.run(confirming, "YES", path.stored[-1])
    assert len(server.calls) == 1 and len(server.bookings()) == 1 and "T-0001" in again.reply


def test_a_crash_during_the_booking_sends_the_same_key_once_more(model_stub: OpenAIStub, server: ExampleToolServer) -> None:
    path = ToolPath(model_stub, server)
    proposed = path.run("SM" + "4" * 32, "book a table for 3 at 13:30 tomorrow")
    assert proposed.proposal is not None
    confirming = "SM" + "5" * 32
    # The processor died while the request was out: its intent is all that was stored.
    intent = confirmed_ledger(proposed.proposal, confirming)
    intent = intent.with_call(0, 0, replace(intent.calls[0], status=CALLING, attempts=1))
    server.configure(drop_after_booking_next=1)
    path.caller.call(path.profile.tools[1], intent.calls[0].arguments, intent.calls[0].key, 5.0)
    outcome = path.run(confirming, "YES", intent)
    assert [c.key for c in server.calls] == [proposed.proposal.key] * 2
    assert len(server.bookings()) == 1 and "replayed" in outcome.reply
    assert path.stored[-1].calls[0].attempts == 2


def test_a_failing_tool_still_ends_in_an_answer(model_stub: OpenAIStub, server: ExampleToolServer) -> None:
    server.configure(fail_next=1, fail_status=503)
    outcome = ToolPath(model_stub, server).run("SM" + "6" * 32, "status of order 5678 please")
    assert "order_status failed" in outcome.reply and "HTTP 503" in outcome.reply


def test_the_model_failing_after_the_booking_names_it_in_the_fallback(
    model_stub: OpenAIStub, server: ExampleToolServer,
) -> None:
    path = ToolPath(model_stub, server)
    proposed = path.run("SM" + "7" * 32, "book a table for 2 at 21:00 today")
    assert proposed.proposal is not None
    model_stub.fail_next(5, status=500)
    confirming = "SM" + "8" * 32
    with pytest.raises(RoundsFailed) as failed:
        path.run(confirming, "YES", confirmed_ledger(proposed.proposal, confirming))
    assert len(server.bookings()) == 1
    assert fallback_with_outcomes("Sorry, I can't answer right now.", failed.value.ledger) == (
        "Sorry, I can't answer right now.\n(book_table: done)")


def test_a_business_without_tools_is_offered_none(model_stub: OpenAIStub) -> None:
    model = ChatModel(model="offline-model", system_prompt="x", api_key=lambda: "sk-test",
                      base_url=model_stub.base_url, timeout_seconds=5.0, max_retries=0)
    model_stub.reset()
    assert model.reply([], "status of order 1234").startswith("[offline model] You said")
    (request,) = model_stub.requests
    assert "tools" not in request.body and "tool_choice" not in request.body


"""The offline model's function calling is deterministic, and the stand-in refuses what OpenAI refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.offline_tools import OFFLINE_PREFIX, offline_tool_answer, request_problem
from shared.domain.profiles import BusinessProfile, profiles_from_document

EXAMPLE = Path(__file__).resolve().parents[2] / "profiles.example.yaml"
TOOLS = [t.definition() for p in profiles_from_document(yaml.safe_load(EXAMPLE.read_text()), BusinessProfile()).values()
         for t in p.tools]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "x"}, {"role": "user", "content": text}]


def called(answer: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    assert answer is not None and answer["tool_calls"], answer
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in answer["tool_calls"]]


def test_naming_a_tool_calls_it_with_arguments_from_the_text() -> None:
    assert called(offline_tool_answer(user("What's the status of my order 1234?"), TOOLS, "auto")) == [
        ("order_status", {"order_id": "1234"})]
    assert called(offline_tool_answer(user("Book a table for 2 at 20:00 on Friday"), TOOLS, "auto")) == [
        ("book_table", {"people": 2, "day": "friday", "time": "20:00"})]


def test_the_same_text_calls_the_same_way_every_time() -> None:
    first = offline_tool_answer(user("Book a table for 4 at 13:30 tomorrow"), TOOLS, "auto")
    assert first == offline_tool_answer(user("Book a table for 4 at 13:30 tomorrow"), TOOLS, "auto")


def test_a_missing_required_argument_is_asked_for() -> None:
    answer = offline_tool_answer(user("what is my order status?"), TOOLS, "auto")
    assert answer == {"content": f"{OFFLINE_PREFIX} To use order_status I need: order_id.", "tool_calls": None}


@pytest.mark.parametrize(("text", "tools", "choice"), [
    ("What are your opening hours?", TOOLS, "auto"),
    ("status of order 1234", TOOLS, "none"),
    ("status of order 1234", None, None),
])
def test_no_call_without_a_named_tool_or_when_tools_are_off(text: str, tools: Any, choice: Any) -> None:
    assert offline_tool_answer(user(text), tools, choice) is None


def test_after_the_tools_it_quotes_what_they_said() -> None:
    messages = [*user("status of order 1234 and 5678"), {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "order_status", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "book_table", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": '{"status": "ready"}'},
        {"role": "tool", "tool_call_id": "b", "content": '{"error": "no time left"}'}]
    answer = offline_tool_answer(messages, TOOLS, "auto")
    assert answer == {"content": f'{OFFLINE_PREFIX} order_status answered: {{"status": "ready"}}; '
                                 "book_table failed: no time left.", "tool_calls": None}


@pytest.mark.parametrize(("body", "says"), [
    ({"tools": [], "messages": []}, "empty array"),
    ({"tools": [{"type": "function", "function": {"name": "book table"}}], "messages": []}, "does not match pattern"),
    ({"tools": [{"type": "custom"}], "messages": []}, "type 'function'"),
    ({"tool_choice": "auto", "messages": []}, "only allowed when 'tools' are specified"),
    ({"tools": TOOLS, "tool_choice": "sometimes", "messages": []}, "Supported values"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "a", "content": "{}"}]},
     "must be a response to a preceeding message with 'tool_calls'"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a"}, {"id": "b"}]},
                   {"role": "tool", "tool_call_id": "a", "content": "{}"}, {"role": "user", "content": "x"}]},
     "did not have response messages: b"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a"}]}]}, "did not have response messages: a"),
    ({"messages": [{"role": "function", "content": "x"}]}, "Supported values"),
])
def test_requests_openai_refuses_are_refused(body: dict[str, Any], says: str) -> None:
    problem = request_problem(body)
    assert problem is not None and says in problem[0]


def test_a_proper_tool_transcript_passes() -> None:
    messages = [*user("x"), {"role": "assistant", "content": None, "tool_calls": [{"id": "a"}]},
                {"role": "tool", "tool_call_id": "a", "content": "{}"}]
    assert request_problem({"tools": TOOLS, "tool_choice": "none", "messages": messages}) is None

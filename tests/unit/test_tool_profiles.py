"""The profile's ``tools:`` key: what a valid tool becomes, and every kind of bad tool refused by business and key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.domain.profiles import BusinessProfile, ProfileError, profile_from_mapping, profiles_from_document
from shared.domain.tools import (
    DEFAULT_CONFIRM_KEYWORDS,
    WRITE,
    local_secret_variable,
    render_confirmation,
)

SHOP = "whatsapp:+14155238886"
DEFAULTS = BusinessProfile(system_prompt="default prompt")
EXAMPLE = Path(__file__).resolve().parents[2] / "profiles.example.yaml"

ORDER_STATUS: dict[str, Any] = {
    "name": "order_status",
    "description": "The status of a cake order, by its number.",
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string", "pattern": "^[0-9]{3,10}$"}},
        "required": ["order_id"],
        "additionalProperties": False,
    },
    "url": "https://api.example.com/orders/status",
    "effect": "read",
    "secret": "shop-tools",
}
BOOK_TABLE: dict[str, Any] = {
    "name": "book_table",
    "description": "Book a table.",
    "parameters": {
        "type": "object",
        "properties": {"people": {"type": "integer", "minimum": 1, "maximum": 12}, "time": {"type": "string"}},
        "required": ["people", "time"],
    },
    "url": "https://api.example.com/tables/book",
    "effect": "write",
    "confirm": True,
    "confirm_text": "Book a table for {people} at {time}? Reply YES to confirm.",
    "confirm_seconds": 300,
    "timeout_seconds": 4,
    "secret": "shop-tools",
}


def tools_profile(*tools: dict[str, Any], **more: Any) -> BusinessProfile:
    return profile_from_mapping(SHOP, {"tools": [copy.deepcopy(t) for t in tools], **more}, DEFAULTS)


def refused(*tools: dict[str, Any], **more: Any) -> str:
    with pytest.raises(ProfileError) as caught:
        tools_profile(*tools, **more)
    message = str(caught.value)
    assert SHOP in message, message
    return message


def test_a_read_and_a_confirmed_write_are_read_whole() -> None:
    profile = tools_profile(ORDER_STATUS, BOOK_TABLE, max_tool_rounds=2, confirm_keywords=["YES", "SÍ"])
    read, write = profile.tools
    assert (read.name, read.effect, read.method, read.timeout_seconds, read.confirm) == (
        "order_status", "read", "POST", 10.0, False)
    assert (write.effect, write.confirm, write.confirm_seconds, write.timeout_seconds) == (WRITE, True, 300, 4.0)
    assert write.secret == "shop-tools" and write.url.endswith("/tables/book")
    assert profile.max_tool_rounds == 2 and profile.confirm_keywords == ("YES", "SÍ")
    assert read.definition() == {"type": "function", "function": {
        "name": "order_status", "description": ORDER_STATUS["description"], "parameters": ORDER_STATUS["parameters"]}}


def test_a_profile_without_tools_has_none_and_the_defaults() -> None:
    profile = profile_from_mapping(SHOP, {"name": "Shop"}, DEFAULTS)
    assert profile.tools == () and profile.max_tool_rounds is None
    assert profile.confirm_keywords == DEFAULT_CONFIRM_KEYWORDS


def with_(tool: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(tool)
    for key, value in changes.items():
        if value is None:
            changed.pop(key, None)
        else:
            changed[key] = value
    return changed


@pytest.mark.parametrize(
    ("tool", "named"),
    [
        (with_(ORDER_STATUS, parameters={"type": "object", "properties": {"a": {"type": "strnig"}}}),
         "'tools[1].parameters': is not a valid JSON Schema at properties/a/type"),
        (with_(ORDER_STATUS, parameters={"type": "object", "required": "order_id"}),
         "'tools[1].parameters': is not a valid JSON Schema at required"),
        (with_(ORDER_STATUS, parameters={"type": "array", "items": {"type": "string"}}),
         "'tools[1].parameters.type': must be 'object'"),
        (with_(ORDER_STATUS, parameters="order_id: string"), "'tools[1].parameters': must be a JSON Schema object"),
        (with_(ORDER_STATUS, parameters={"type": "object", "properties": {"a": {"type": "string", "pattern": "(a)\\1"}}}),
         "RE2 can match in linear time"),
        (with_(ORDER_STATUS, parameters={"type": "object", "patternProperties": {"^x": {}}}),
         "patternProperties is not supported"),
        (with_(ORDER_STATUS, url="http://api.example.com/orders"), "'tools[1].url': must use HTTPS"),
        (with_(ORDER_STATUS, url="http://10.0.0.5/orders"), "'tools[1].url': must use HTTPS"),
        (with_(ORDER_STATUS, url="ftp://api.example.com/x"), "'tools[1].url': must be an https:// URL"),
        (with_(ORDER_STATUS, url="https://user:pw@api.example.com/x"), "'tools[1].url': must not carry credentials"),
        (with_(ORDER_STATUS, url="https://api.example.com:99999/x"), "'tools[1].url': has an invalid port"),
        (with_(ORDER_STATUS, url=None), "'tools[1].url': must be the tool's URL"),
        (with_(ORDER_STATUS, name="order status"), "'tools[1].name': must be 1 to 64 letters"),
        (with_(ORDER_STATUS, name="reply_with_choices"), "'tools[1].name': 'reply_with_choices' is the name of one"),
        (with_(ORDER_STATUS, effect=None), "'tools[1].effect': must be read or write"),
        (with_(ORDER_STATUS, effect="delete"), "'tools[1].effect': must be read or write"),
        (with_(ORDER_STATUS, method="GET"), "'tools[1].method': must be one of POST, PUT, PATCH"),
        (with_(ORDER_STATUS, secret=None), "'tools[1].secret': must name a secret"),
        (with_(ORDER_STATUS, secret="s3cr3t value!"), "'tools[1].secret': must name a secret"),
        (with_(ORDER_STATUS, confirm=True), "'tools[1].confirm': only a write tool"),
        (with_(ORDER_STATUS, confirm="yes"), "'tools[1].confirm': must be true or false"),
        (with_(ORDER_STATUS, confirm_text="Sure?"), "'tools[1].confirm_text': applies to a tool with confirm: true"),
        (with_(BOOK_TABLE, confirm_text="Book {people} on {day}?"), "'tools[1].confirm_text': {day} is not a property"),
        (with_(BOOK_TABLE, confirm_seconds=5), "'tools[1].confirm_seconds': must be a number between 30"),
        (with_(ORDER_STATUS, timeout_seconds=120), "'tools[1].timeout_seconds': must be a number between 0.5 and 30"),
        (with_(ORDER_STATUS, timeout_seconds="5"), "'tools[1].timeout_seconds': must be a number"),
        (with_(ORDER_STATUS, description=""), "'tools[1].description': must be non-empty text"),
        (with_(ORDER_STATUS, header="X-Api-Key: 123"), "'tools[1].header': unknown key"),
        (with_(ORDER_STATUS, log_arguments="no"), "'tools[1].log_arguments': must be true or false"),
    ],
)
def test_a_bad_tool_is_refused_naming_the_business_and_the_key(tool: dict[str, Any], named: str) -> None:
    assert named in refused(tool)


def test_duplicate_names_are_refused_at_the_second() -> None:
    assert "'tools[2].name': duplicate tool name 'order_status'" in refused(ORDER_STATUS, ORDER_STATUS)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"tools": {"name": "x"}}, "'tools': must be a list of tools"),
        ({"tools": ["order_status"]}, "'tools[1]': must be a mapping"),
        ({"tools": [ORDER_STATUS] * 21}, "'tools': has 21 tools, at most 20"),
        ({"max_tool_rounds": 0}, "'max_tool_rounds': must be a whole number between 1 and 10"),
        ({"max_tool_rounds": True}, "'max_tool_rounds'"),
        ({"confirm_keywords": []}, "'confirm_keywords': must list between 1 and 10"),
        ({"confirm_keywords": "YES"}, "'confirm_keywords'"),
        (yaml.safe_load("confirm_keywords: [YES]"), 'write "YES" in quotes'),
    ],
)
def test_bad_tool_keys_are_refused(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(ProfileError) as caught:
        profile_from_mapping(SHOP, raw, DEFAULTS)
    assert SHOP in str(caught.value) and named in str(caught.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8090/x", "http://localhost:8090/x", "http://[::1]:8090/x",
                                 "https://tools.example.com/x"])
def test_loopback_may_be_plain_http(url: str) -> None:
    assert tools_profile(with_(ORDER_STATUS, url=url)).tools[0].url == url


def test_arguments_are_checked_against_the_schema_in_linear_time() -> None:
    tool = tools_profile(ORDER_STATUS).tools[0]
    assert tool.argument_errors({"order_id": "1234"}) == []
    assert "does not match" in tool.argument_errors({"order_id": "12ab"})[0]
    assert "required" in tool.argument_errors({})[0]
    assert "Additional properties" in tool.argument_errors({"order_id": "1234", "x": 1})[0]
    # A pattern Python's re would take exponential time on is matched by RE2 at once.
    slow = with_(ORDER_STATUS, parameters={"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}})
    assert tools_profile(slow).tools[0].argument_errors({"a": "a" * 40 + "!"})


def test_the_proposal_is_built_from_the_arguments_not_the_models_words() -> None:
    write = tools_profile(BOOK_TABLE).tools[0]
    assert render_confirmation(write, {"people": 2, "time": "20:00"}, "YES") == (
        "Book a table for 2 at 20:00? Reply YES to confirm.")
    plain = tools_profile(with_(BOOK_TABLE, confirm_text=None)).tools[0]
    assert render_confirmation(plain, {"people": 2, "time": "20:00"}, "SÍ") == (
        "Book a table (people: 2, time: 20:00)? Reply SÍ to confirm.")


def test_a_secret_is_found_locally_under_its_variable() -> None:
    assert local_secret_variable("panaderia-sol-tools") == "TOOL_SECRET_PANADERIA_SOL_TOOLS"


def test_the_example_file_offers_a_read_and_a_confirmed_write() -> None:
    profiles = profiles_from_document(yaml.safe_load(EXAMPLE.read_text()), DEFAULTS)
    tools = [t for p in profiles.values() for t in p.tools]
    assert {(t.effect, t.confirm) for t in tools} == {("read", False), ("write", True)}

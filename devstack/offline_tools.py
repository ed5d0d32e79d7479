"""The offline model's function calling, and the checks OpenAI makes on a request that offers tools.

Deterministic, so a test or a person at ``make dev`` knows what it will do:

* offered ``tools`` (and ``tool_choice`` is not ``"none"``), a user message
  that contains every word of a tool's name (``order_status``: "order" and
  "status"; ``book_table``: "book" and "table") calls that tool, with
  arguments taken from the text by the tool's schema: for each property an
  ``enum`` value the text names, else the first match of its ``pattern``,
  else for an integer the first number not used yet. A required property it
  cannot find makes it ask for it instead of calling;
* after ``role: tool`` messages it answers in words, quoting what each tool
  answered (or its error), prefixed ``[offline model]`` like every offline answer.

:func:`request_problem` returns what OpenAI's API would refuse with 400 in
such a request (a tool name outside ``^[a-zA-Z0-9_-]{1,64}$``, ``tool_choice``
without tools, a ``role: tool`` message that answers no preceding call, an
assistant's ``tool_calls`` left without answers), so the stand-in is no
kinder than the real API.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

OFFLINE_PREFIX = "[offline model]"
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ROLES = {"system", "developer", "user", "assistant", "tool"}
QUOTE_LIMIT = 300


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def request_problem(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(message, param) of the 400 OpenAI would answer for this request's tools and tool messages, or None."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not tools:
            return "Invalid 'tools': empty array. Expected an array with minimum length 1.", "tools"
        for n, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
                return f"Invalid 'tools[{n}]': expected an object with type 'function' and a 'function'.", f"tools[{n}]"
            if not isinstance(function.get("name"), str) or not _NAME.fullmatch(function["name"]):
                return (f"Invalid 'tools[{n}].function.name': string does not match pattern. Expected a string that "
                        "matches the pattern '^[a-zA-Z0-9_-]+$'.", f"tools[{n}].function.name")
            parameters = function.get("parameters", {})
            if not isinstance(parameters, dict):
                return f"Invalid 'tools[{n}].function.parameters': expected an object.", f"tools[{n}].function.parameters"
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools:
            return "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", "tool_choice"
        if choice not in ("none", "auto", "required") and not isinstance(choice, dict):
            return f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.", "tool_choice"
    waiting: list[str] = []
    for n, message in enumerate(body.get("messages", [])):
        role = message.get("role")
        if role not in _ROLES:
            return (f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'tool', and "
                    "'developer'.", f"messages[{n}].role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in waiting:
                return ("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                        "'tool_calls'.", f"messages.[{n}].role")
            waiting.remove(call_id)
            continue
        if waiting:
            return ("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                    f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(waiting)}",
                    f"messages.[{n}].role")
        if role == "assistant" and message.get("tool_calls"):
            waiting = [str(c.get("id")) for c in message["tool_calls"] if isinstance(c, dict)]
    if waiting:
        return ("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(waiting)}",
                "messages")
    return None


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\-]+", name.lower()) if w]


def _argument(name: str, schema: Mapping[str, Any], text: str, used: list[str]) -> Any:
    lowered = text.lower()
    if isinstance(schema.get("enum"), list):
        for value in schema["enum"]:
            if isinstance(value, str) and re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", lowered):
                return value
        return None
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        bare = pattern.removeprefix("^").removesuffix("$")
        for match in re.finditer(bare, text):
            if match.group(0) not in used:
                used.append(match.group(0))
                return match.group(0)
        return None
    if schema.get("type") in ("integer", "number"):
        for match in re.finditer(r"(?<![\d:])\d+(?![\d:])", text):
            if match.group(0) not in used:
                used.append(match.group(0))
                return int(match.group(0))
    return None


def _arguments(function: Mapping[str, Any], text: str) -> tuple[dict[str, Any], list[str]]:
    """(arguments found, required properties missing), patterns and enums before plain numbers."""
    parameters = function.get("parameters") or {}
    properties: Mapping[str, Any] = parameters.get("properties") or {}
    order = sorted(properties, key=lambda p: 0 if ("pattern" in properties[p] or "enum" in properties[p]) else 1)
    used: list[str] = []
    found: dict[str, Any] = {}
    for prop in order:
        value = _argument(prop, properties[prop] if isinstance(properties[prop], dict) else {}, text, used)
        if value is not None:
            found[prop] = value
    missing = [p for p in parameters.get("required", []) if p not in found]
    return {p: found[p] for p in properties if p in found}, missing


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1] + "…"


def _after_tools(messages: Sequence[Mapping[str, Any]]) -> str:
    """Words about the tool answers since the last assistant turn that asked for them."""
    names: dict[str, str] = {}
    said: list[str] = []
    for message in messages:
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or []:
                names[str(call.get("id"))] = str(call.get("function", {}).get("name", "a tool"))
            said = []
        elif message.get("role") == "tool":
            name = names.get(str(message.get("tool_call_id")), "a tool")
            try:
                answer = json.loads(_text(message))
            except ValueError:
                answer = _text(message)
            if isinstance(answer, dict) and "error" in answer:
                said.append(f"{name} failed: {_quote(str(answer['error']))}")
            else:
                said.append(f"{name} answered: {_quote(json.dumps(answer, ensure_ascii=False))}")
    return f"{OFFLINE_PREFIX} " + "; ".join(said) + "."


def offline_tool_answer(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None,
                        tool_choice: Any) -> dict[str, Any] | None:
    """The assistant message when tools are involved (``content`` and ``tool_calls``); None: answer as usual."""
    if messages and messages[-1].get("role") == "tool":
        return {"content": _after_tools(messages), "tool_calls": None}
    if not tools or tool_choice == "none" or not messages or messages[-1].get("role") != "user":
        return None
    text = _text(messages[-1])
    words = set(re.findall(r"\w+", text.lower()))
    calls: list[dict[str, Any]] = []
    for tool in tools:
        function = tool.get("function", {})
        name = str(function.get("name", ""))
        if not name or not all(w in words for w in _words(name)):
            continue
        arguments, missing = _arguments(function, text)
        if missing:
            return {"content": f"{OFFLINE_PREFIX} To use {name} I need: {', '.join(missing)}.", "tool_calls": None}
        calls.append({"id": f"call_{len(messages)}_{len(calls)}", "type": "function",
                      "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}})
    return {"content": None, "tool_calls": calls} if calls else None

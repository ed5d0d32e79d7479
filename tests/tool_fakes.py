"""Fakes for business tools in unit tests: a model that calls tools as the offline model does, and a business.

:class:`ToolModel` answers a round exactly as devstack's offline model would
(devstack/offline_tools.py: a tool whose name's words the user wrote is
called, arguments from its schema) and refuses, as OpenAI does, a transcript
whose tool messages answer no call; its words are ``re: <user text>`` or
what the tools said. :class:`Business` is the business's side: every request
with its key, and a write done once per Idempotency-Key.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from devstack.offline_tools import offline_tool_answer, request_problem
from shared.domain.profiles import BusinessProfile, profile_from_mapping
from shared.domain.tool_calls import ModelTurn, RequestedCall, ToolAnswer
from shared.domain.tool_ledger import DONE, FAILED, UNKNOWN
from shared.domain.tools import ToolSpec
from tests.fakes import BUSINESS

EXAMPLE = Path(__file__).resolve().parents[1] / "profiles.example.yaml"
CANCEL_ORDER = {
    "name": "cancel_order", "description": "Cancel an order.", "effect": "write", "secret": "shop-tools",
    "url": "https://tools.example.com/orders/cancel",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "pattern": "^[0-9]{3,10}$"}},
                   "required": ["order_id"]},
}


def tools_profile(address: str = BUSINESS, **more: Any) -> BusinessProfile:
    """The example bakery's profile (order_status, book_table with confirm) plus a plain write, cancel_order."""
    raw = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text())["businesses"]["whatsapp:+14155238886"])
    raw.pop("keywords", None)
    raw.pop("welcome", None)
    raw["rate_limit_messages"] = 10_000
    raw["tools"].append(CANCEL_ORDER)
    raw.update(more)
    return profile_from_mapping(address, raw, BusinessProfile(fallback_reply="Sorry, try later."))


def reply_to(text: str) -> str:
    return f"re: {text}"


@dataclass
class ToolModel:
    """``reply`` for businesses without tools, ``tool_round`` for those with."""

    rounds: list[tuple[list[dict[str, Any]], bool]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    fail_rounds: int = 0  # the next N rounds raise (the model is down)
    script: Callable[[list[dict[str, Any]]], ModelTurn | None] | None = None
    # After the tools answered: ``re: <user text>`` instead of quoting them (one reply text per message).
    echo_after_tools: bool = False

    def reply(self, history: list[dict[str, str]], user_text: str, system_prompt: str | None = None,
              model: str | None = None) -> str:
        self.replies.append(user_text)
        return reply_to(user_text)

    def conversation(self, history: list[dict[str, str]], user_content: str, system_prompt: str | None = None
                     ) -> list[dict[str, Any]]:
        return [{"role": "system", "content": system_prompt or "x"}, *[dict(t) for t in history],
                {"role": "user", "content": user_content}]

    def tool_round(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], final: bool, deadline: float,
                   model: str | None = None) -> ModelTurn:
        problem = request_problem({"messages": messages, "tools": tools, "tool_choice": "none" if final else "auto"})
        assert problem is None, problem
        self.rounds.append((messages, final))
        if self.fail_rounds:
            self.fail_rounds -= 1
            raise RuntimeError("model down")
        scripted = self.script(messages) if self.script is not None else None
        if scripted is not None:
            return scripted
        answer = offline_tool_answer(messages, tools, "none" if final else "auto")
        last_user = next(m for m in reversed(messages) if m["role"] == "user")
        if answer is None or (self.echo_after_tools and messages[-1]["role"] == "tool"):
            return ModelTurn(reply_to(str(last_user["content"])))
        calls = tuple(RequestedCall(c["id"], c["function"]["name"], c["function"]["arguments"])
                      for c in answer.get("tool_calls") or [])
        return ModelTurn(str(answer.get("content") or ""), calls)


@dataclass
class Business:
    """The business's endpoints: every request (tool, key, body), and each write done once per key."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> the write's answer
    trouble: list[str] = field(default_factory=list)  # "fail" | "timeout" | "lost" (done, answer lost), per request

    def for_message(self, business: str, sid: str) -> Callable[[ToolSpec, str, str, float], ToolAnswer]:
        return self.call

    def call(self, tool: ToolSpec, arguments: str, key: str, timeout: float) -> ToolAnswer:
        self.requests.append((tool.name, key, arguments))
        trouble = self.trouble.pop(0) if self.trouble else ""
        if trouble == "fail":
            return ToolAnswer(FAILED, json.dumps({"error": "the tool answered HTTP 503"}), 503, 3.0, "http_error")
        if trouble == "timeout" and not tool.writes:
            return ToolAnswer(FAILED, json.dumps({"error": "timed out"}), 0, timeout * 1000, "timeout")
        if not tool.writes:
            return ToolAnswer(DONE, json.dumps({"tool": tool.name, "arguments": json.loads(arguments)}), 200, 4.0)
        if key not in self.done and trouble != "timeout":
            self.done[key] = {"done": f"{tool.name}-{len(self.done) + 1}", **json.loads(arguments)}
        if trouble in ("timeout", "lost"):
            return ToolAnswer(UNKNOWN, json.dumps({"error": "no answer", "outcome": "unknown"}), 0, 9.0, "timeout")
        return ToolAnswer(DONE, json.dumps(self.done[key]), 200, 6.0)

    def writes(self, tool: str = "") -> list[str]:
        """The keys of the write requests received (a key twice: sent twice)."""
        return [key for name, key, _ in self.requests if name != "order_status" and (not tool or name == tool)]

"""Business tools: what a profile's ``tools:`` key may say, validated once when the profile is loaded.

A tool is an HTTPS endpoint of the business that the model may call through
function calling (docs/decisions/0016-business-tools.md). Everything that
could misbehave at the first message that uses it is refused here, with the
business and the key named: a parameters schema that is not a valid JSON
Schema object (checked by ``jsonschema`` against its meta-schema), a duplicate
name, a name the assistant keeps for its own functions, a URL that is not
HTTPS (plain HTTP only on loopback, for the local example server), a write
that says nothing about its effect, a secret given by value instead of by
name. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from shared.domain.tool_schema import argument_errors, checked_parameters

READ = "read"
WRITE = "write"
EFFECTS = (READ, WRITE)
METHODS = ("POST", "PUT", "PATCH")

# OpenAI's function names; also what a log line and a dashboard label can hold.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A Secret Manager secret id; locally the environment variable TOOL_SECRET_<ID>.
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")

MAX_TOOLS = 20
MAX_DESCRIPTION_CHARS = 1024
MAX_CONFIRM_TEXT_CHARS = 500
MAX_CONFIRM_KEYWORDS = 10
DEFAULT_TIMEOUT_SECONDS = 10.0
TIMEOUT_RANGE = (0.5, 30.0)
DEFAULT_CONFIRM_SECONDS = 600
CONFIRM_SECONDS_RANGE = (30, 24 * 3600)
MAX_TOOL_ROUNDS_RANGE = (1, 10)
DEFAULT_CONFIRM_KEYWORDS = ("YES",)
# Functions the assistant offers the model itself (a reply with choices, ...):
# a business tool must not shadow one.
RESERVED_FUNCTION_NAMES = frozenset({"reply_with_choices"})

TOOL_KEYS = frozenset({"tools", "max_tool_rounds", "confirm_keywords"})
_TOOL_FIELDS = frozenset({
    "name", "description", "parameters", "url", "method", "effect", "timeout_seconds", "confirm",
    "confirm_text", "confirm_seconds", "secret", "log_arguments",
})
LOCAL_SECRET_PREFIX = "TOOL_SECRET_"  # shared/config.py reads these variables


@dataclass(frozen=True)
class ToolSpec:
    """One business tool as the model and the tool caller see it.

    ``confirm``: a write the user must approve (shown ``confirm_text`` with the
    arguments filled in, executed only on a confirming reply within
    ``confirm_seconds``). ``log_arguments``: the business's log policy for the
    call's arguments (off: logs name the call, never what was in it).
    """

    name: str
    description: str
    parameters: Mapping[str, Any] = field(compare=False)
    url: str
    effect: str
    secret: str
    method: str = "POST"
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    confirm: bool = False
    confirm_text: str = ""
    confirm_seconds: int = DEFAULT_CONFIRM_SECONDS
    log_arguments: bool = False

    @property
    def writes(self) -> bool:
        return self.effect == WRITE

    def definition(self) -> dict[str, Any]:
        """The entry of the chat-completions ``tools`` parameter."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }

    def argument_errors(self, arguments: Any) -> list[str]:
        """What is wrong with the model's arguments for this tool (empty: they fit the schema)."""
        return argument_errors(self.parameters, arguments)


def local_secret_variable(secret: str) -> str:
    """The environment variable that holds tool secret ``secret`` locally (SECRET_SOURCE=env)."""
    return LOCAL_SECRET_PREFIX + secret.upper().replace("-", "_")


def render_confirmation(tool: ToolSpec, arguments: Mapping[str, Any], keyword: str) -> str:
    """The proposal the user must confirm, built from the arguments the call would send, never from the model's prose.

    A model talked into something by the user's message cannot word the
    proposal: the user reads what would be sent.
    """
    def value(match: re.Match[str]) -> str:
        raw = arguments.get(match.group(1), "")
        return raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)

    if tool.confirm_text:
        return _PLACEHOLDER.sub(value, tool.confirm_text)[:1000]
    listed = ", ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                       for k, v in arguments.items())
    return f"{tool.description.rstrip('.')} ({listed})? Reply {keyword} to confirm."[:1000]


Fail = Callable[[str, str], Exception]


def tool_values(raw: Mapping[str, Any], fail: Fail) -> dict[str, Any]:
    """The profile fields of the tool keys present in ``raw``: ``tools``, ``max_tool_rounds``, ``confirm_keywords``.

    ``fail(key, problem)`` builds the profile's error naming the business and the key.
    """
    values: dict[str, Any] = {}
    if "tools" in raw:
        values["tools"] = _tools(raw["tools"], fail)
    if "max_tool_rounds" in raw:
        rounds = raw["max_tool_rounds"]
        lo, hi = MAX_TOOL_ROUNDS_RANGE
        if isinstance(rounds, bool) or not isinstance(rounds, int) or not lo <= rounds <= hi:
            raise fail("max_tool_rounds", f"must be a whole number between {lo} and {hi}, got {rounds!r}")
        values["max_tool_rounds"] = rounds
    if "confirm_keywords" in raw:
        words = raw["confirm_keywords"]
        if isinstance(words, list) and any(isinstance(w, bool) for w in words):
            raise fail("confirm_keywords", "has true or false in it: YAML reads a bare YES or NO as one, "
                                           "write \"YES\" in quotes")
        if (not isinstance(words, list) or not 1 <= len(words) <= MAX_CONFIRM_KEYWORDS
                or not all(isinstance(w, str) and w.strip() and len(w) <= 30 for w in words)):
            raise fail("confirm_keywords", f"must list between 1 and {MAX_CONFIRM_KEYWORDS} short non-empty words")
        values["confirm_keywords"] = tuple(w.strip() for w in words)
    return values


def _tools(raw: Any, fail: Fail) -> tuple[ToolSpec, ...]:
    if not isinstance(raw, list):
        raise fail("tools", f"must be a list of tools, got {type(raw).__name__}")
    if len(raw) > MAX_TOOLS:
        raise fail("tools", f"has {len(raw)} tools, at most {MAX_TOOLS}")
    tools: list[ToolSpec] = []
    for n, item in enumerate(raw, start=1):
        tool = _tool(item, f"tools[{n}]", fail)
        if any(t.name == tool.name for t in tools):
            raise fail(f"tools[{n}].name", f"duplicate tool name {tool.name!r}")
        tools.append(tool)
    return tuple(tools)


def _text(item: Mapping[str, Any], where: str, key: str, limit: int, fail: Fail, required: bool = True) -> str:
    value = item.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise fail(f"{where}.{key}", "must be non-empty text" if required else "must be text")
    if len(value) > limit:
        raise fail(f"{where}.{key}", f"is {len(value)} characters long, at most {limit}")
    return value.strip()


def _number(item: Mapping[str, Any], where: str, key: str, default: float, bounds: tuple[float, float],
            fail: Fail) -> float:
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds[0] <= value <= bounds[1]:
        raise fail(f"{where}.{key}", f"must be a number between {bounds[0]:g} and {bounds[1]:g}, got {value!r}")
    return value


def _flag(item: Mapping[str, Any], where: str, key: str, fail: Fail) -> bool:
    value = item.get(key, False)
    if not isinstance(value, bool):
        raise fail(f"{where}.{key}", f"must be true or false, got {type(value).__name__}")
    return value


def _tool(item: Any, where: str, fail: Fail) -> ToolSpec:
    if not isinstance(item, Mapping):
        raise fail(where, "must be a mapping with name, description, parameters, url, effect and secret")
    extra = sorted(str(k) for k in item if k not in _TOOL_FIELDS)
    if extra:
        raise fail(f"{where}.{extra[0]}", f"unknown key (a tool has: {', '.join(sorted(_TOOL_FIELDS))})")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fail(f"{where}.name", "must be 1 to 64 letters, digits, '_' or '-' (OpenAI's function names)")
    if name in RESERVED_FUNCTION_NAMES:
        raise fail(f"{where}.name", f"{name!r} is the name of one of the assistant's own functions")
    effect = item.get("effect")
    if effect not in EFFECTS:
        raise fail(f"{where}.effect", f"must be read or write, got {effect!r}: a write is never called twice, "
                                      "a read may be")
    method = item.get("method", "POST")
    if method not in METHODS:
        raise fail(f"{where}.method", f"must be one of {', '.join(METHODS)} (the arguments travel as a JSON body), "
                                      f"got {method!r}")
    secret = item.get("secret")
    if not isinstance(secret, str) or not _SECRET_ID.fullmatch(secret):
        raise fail(f"{where}.secret", "must name a secret (a Secret Manager secret id: letters, digits, '_', '-'); "
                                      "never the value itself")
    confirm = _flag(item, where, "confirm", fail)
    if confirm and effect != WRITE:
        raise fail(f"{where}.confirm", "only a write tool needs the user's confirmation")
    for key in ("confirm_text", "confirm_seconds"):
        if key in item and not confirm:
            raise fail(f"{where}.{key}", "applies to a tool with confirm: true only")
    parameters = checked_parameters(item.get("parameters"), f"{where}.parameters", fail)
    confirm_text = _text(item, where, "confirm_text", MAX_CONFIRM_TEXT_CHARS, fail, required=False)
    unknown = sorted(set(_PLACEHOLDER.findall(confirm_text)) - set(parameters.get("properties", {})))
    if unknown:
        raise fail(f"{where}.confirm_text", f"{{{unknown[0]}}} is not a property of the parameters")
    return ToolSpec(
        name=name,
        description=_text(item, where, "description", MAX_DESCRIPTION_CHARS, fail),
        parameters=parameters,
        url=_url(item.get("url"), f"{where}.url", fail),
        effect=effect,
        secret=secret,
        method=method,
        timeout_seconds=float(_number(item, where, "timeout_seconds", DEFAULT_TIMEOUT_SECONDS, TIMEOUT_RANGE, fail)),
        confirm=confirm,
        confirm_text=confirm_text,
        confirm_seconds=int(_number(item, where, "confirm_seconds", DEFAULT_CONFIRM_SECONDS, CONFIRM_SECONDS_RANGE,
                                    fail)),
        log_arguments=_flag(item, where, "log_arguments", fail),
    )


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(raw: Any, where: str, fail: Fail) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 2000:
        raise fail(where, "must be the tool's URL, such as https://api.example.com/orders/status")
    parts = urlsplit(raw.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise fail(where, f"must be an https:// URL with a host, got {raw!r}")
    if parts.scheme == "http" and not is_loopback(host):
        raise fail(where, f"must use HTTPS (plain HTTP only on loopback, for a local server), got {raw!r}")
    if parts.username or parts.password:
        raise fail(where, "must not carry credentials; name a secret instead")
    if parts.fragment:
        raise fail(where, "must not have a #fragment")
    try:
        parts.port
    except ValueError:
        raise fail(where, f"has an invalid port: {raw!r}") from None
    return raw.strip()

"""Business profiles: what one WhatsApp number says and allows, validated once when loaded.

A profile is keyed by the business's WhatsApp address (the webhook's ``To``).
Every key is optional: a missing one takes the deployment's default (the
settings: ``SYSTEM_PROMPT``, ``OPENAI_MODEL``, ``RATE_LIMIT_MESSAGES``, ...),
so an unknown ``To`` is answered exactly as before profiles existed.

Validation refuses, with the business and the key named, unknown keys, wrong
types, out-of-range limits and keyword rules whose regular expression does not
compile, or cannot be matched in bounded time (shared/domain/keyword_rules.py):
a bad profile is stopped before it is written, never at the first message that
meets it. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from shared.domain.keyword_rules import MAX_PROFILE_PROGRAM_SIZE, RuleError, RulePattern, compile_rule
from shared.domain.menus import Menu, parse_menus
from shared.domain.knowledge import (
    DEFAULT_UNKNOWN_REPLY,
    KNOWLEDGE_KEYS,
    KnowledgeSet,
    KnowledgeSource,
    knowledge_values,
)
from shared.domain.tools import DEFAULT_CONFIRM_KEYWORDS, TOOL_KEYS, ToolSpec, tool_values
from shared.domain.staff import INBOX_KEYS, InboxKeyError, inbox_keys
from shared.domain.budgets import BUDGET_KEYS, Budget, budget_values
from shared.domain.send_rate import SEND_RATE_KEYS, send_rate_values

DEFAULT_HELP = (
    "I'm this business's WhatsApp assistant: ask me anything. "
    "Send /reset to start over, STOP to stop receiving messages."
)
DEFAULT_RESET_REPLY = "Done: I've forgotten our conversation. What can I do for you?"
DEFAULT_OPT_OUT_REPLY = "You won't receive any more messages from us. Send START to resume."
DEFAULT_OPT_IN_REPLY = "Welcome back! You'll receive our messages again. How can I help?"
DEFAULT_RATE_LIMIT_REPLY = "You're sending messages faster than I can answer. Please wait a minute and try again."
DEFAULT_EMPTY_REPLY = "Your message arrived empty. What would you like to ask?"
DEFAULT_HANDOFF_REPLY = "Thanks, a person from our team will answer you here shortly."
DEFAULT_OPT_OUT_KEYWORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
DEFAULT_OPT_IN_KEYWORDS = ("START", "UNSTOP")
DEFAULT_RESET_COMMANDS = ("/reset",)
DEFAULT_HELP_COMMANDS = ("/help",)

# Texts a profile may set are sent as WhatsApp messages and stored in the
# conversation document: bounded like everything else in it.
MAX_TEXT_CHARS = 1600
MAX_PROMPT_CHARS = 20_000
MAX_KEYWORD_RULES = 100
MAX_WORDS = 50


_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")


class ProfileError(ValueError):
    """A profile that must not be used; the message names the business and the key."""


@dataclass(frozen=True)
class KeywordRule:
    """``match`` must match the whole message, ignoring case; ``reply`` answers it without the model.

    The pattern runs in RE2, in time linear in the message (shared/domain/keyword_rules.py).
    """

    match: str
    reply: str
    pattern: RulePattern = field(compare=False, repr=False)

    def matches(self, text: str) -> bool:
        return self.pattern.fullmatch(text)


@dataclass(frozen=True)
class BusinessProfile:
    """Everything the processor needs to know about the business a message was written to."""

    address: str = ""
    name: str = ""
    system_prompt: str = ""
    model: str = ""
    fallback_reply: str = ""
    help: str = DEFAULT_HELP
    welcome: str = ""
    keywords: tuple[KeywordRule, ...] = ()
    rate_limit_messages: int = 20
    rate_limit_window_seconds: int = 60
    rate_limit_reply: str = DEFAULT_RATE_LIMIT_REPLY
    empty_reply: str = DEFAULT_EMPTY_REPLY
    reset_commands: tuple[str, ...] = DEFAULT_RESET_COMMANDS
    reset_reply: str = DEFAULT_RESET_REPLY
    help_commands: tuple[str, ...] = DEFAULT_HELP_COMMANDS
    opt_out_keywords: tuple[str, ...] = DEFAULT_OPT_OUT_KEYWORDS
    opt_out_reply: str = DEFAULT_OPT_OUT_REPLY
    opt_in_keywords: tuple[str, ...] = DEFAULT_OPT_IN_KEYWORDS
    opt_in_reply: str = DEFAULT_OPT_IN_REPLY
    handoff_keyword: str = ""
    handoff_reply: str = DEFAULT_HANDOFF_REPLY
    handoff_pause_seconds: int = 3600
    # The WhatsApp channel's switches; None or "": the deployment's setting.
    typing_indicator: bool | None = None
    vision_model: str = ""
    transcribe_model: str = ""
    burst_window_seconds: float | None = None
    # The approved template sent in place of a reply past the 24-hour window.
    reengagement_content_sid: str = ""
    # Business tools (shared/domain/tools.py); max_tool_rounds None: the setting's.
    tools: tuple[ToolSpec, ...] = ()
    max_tool_rounds: int | None = None
    confirm_keywords: tuple[str, ...] = DEFAULT_CONFIRM_KEYWORDS
    # Menus: a keyword or the welcome answered with fixed choices (shared/domain/menus.py).
    menus: tuple[Menu, ...] = ()
    # The model may answer with choices (reply_with_choices); off: its requests stay as they were.
    model_choices: bool = False
    # The knowledge base (shared/domain/knowledge.py); knowledge_set is what profiles-apply stored, never written.
    knowledge: tuple[KnowledgeSource, ...] = ()
    knowledge_only: bool = False
    unknown_reply: str = DEFAULT_UNKNOWN_REPLY
    knowledge_set: KnowledgeSet | None = None
    # The inbox (shared/domain/staff.py): who may answer in it, and where a handoff is announced.
    staff: tuple[str, ...] = ()
    notify_webhook: str = ""
    budget: Budget | None = None  # the model budget (shared/domain/budgets.py); None: unlimited
    # shared/domain/send_rate.py: the rate asked for; send_queue is what profiles-apply stored (sendQueue).
    send_rate_per_second: float | None = None
    send_queue: str = ""


def profile_value(profile: BusinessProfile | None, key: str, default: Any) -> Any:
    """A business profile's channel key, or the setting when the profile does not set it."""
    value = getattr(profile, key, None) if profile is not None else None
    return default if value in (None, "") else value


_TEXT_KEYS = {
    "name": 200,
    "system_prompt": MAX_PROMPT_CHARS,
    "model": 200,
    "fallback_reply": MAX_TEXT_CHARS,
    "help": MAX_TEXT_CHARS,
    "welcome": MAX_TEXT_CHARS,
    "rate_limit_reply": MAX_TEXT_CHARS,
    "empty_reply": MAX_TEXT_CHARS,
    "reset_reply": MAX_TEXT_CHARS,
    "opt_out_reply": MAX_TEXT_CHARS,
    "opt_in_reply": MAX_TEXT_CHARS,
    "handoff_keyword": 100,
    "handoff_reply": MAX_TEXT_CHARS,
    "vision_model": 200,
    "transcribe_model": 200,
    "reengagement_content_sid": 34,
}
# Texts that may be left empty: an empty welcome sends none, an empty handoff keyword turns it off.
_MAY_BE_EMPTY = {"welcome", "handoff_keyword", "name"}
_INT_KEYS = {
    "rate_limit_messages": (1, 10_000),
    "rate_limit_window_seconds": (1, 7 * 24 * 3600),
    "handoff_pause_seconds": (60, 30 * 24 * 3600),
}
_WORD_KEYS = ("reset_commands", "help_commands", "opt_out_keywords", "opt_in_keywords")
_BOOL_KEYS = ("typing_indicator", "model_choices")
# Seconds, fractions allowed; the range of the matching setting.
_SECONDS_KEYS = {"burst_window_seconds": (0.0, 30.0)}
KNOWN_KEYS = frozenset({*_TEXT_KEYS, *_INT_KEYS, *_WORD_KEYS, *_BOOL_KEYS, *_SECONDS_KEYS, "keywords", "menus",
                        *KNOWLEDGE_KEYS, *TOOL_KEYS, *INBOX_KEYS, *BUDGET_KEYS, *SEND_RATE_KEYS})


def _fail(address: str, key: str, problem: str) -> ProfileError:
    return ProfileError(f"business {address!r}: key {key!r}: {problem}")


def _check_address(address: Any) -> str:
    if not isinstance(address, str) or not address.strip():
        raise ProfileError(f"business {address!r}: the address must be a non-empty string such as 'whatsapp:+14155238886'")
    if "/" in address or address.strip() != address or len(address) > 200:
        raise ProfileError(f"business {address!r}: the address must have no '/' or surrounding spaces")
    return address


def profile_from_mapping(address: str, raw: Any, defaults: BusinessProfile) -> BusinessProfile:
    """The profile of ``address`` from its stored or written form; missing keys come from ``defaults``.

    Raises :class:`ProfileError` naming the business and the key for anything
    that would misbehave later.
    """
    address = _check_address(address)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ProfileError(f"business {address!r}: the profile must be a mapping of keys to values, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in KNOWN_KEYS)
    if unknown:
        raise _fail(address, unknown[0], f"unknown key (known keys: {', '.join(sorted(KNOWN_KEYS))})")
    values: dict[str, Any] = {"address": address}
    for key, limit in _TEXT_KEYS.items():
        if key not in raw:
            continue
        value = raw[key]
        if not isinstance(value, str):
            raise _fail(address, key, f"must be text, got {type(value).__name__}")
        value = value.strip()
        if not value and key not in _MAY_BE_EMPTY:
            raise _fail(address, key, "must not be empty")
        if len(value) > limit:
            raise _fail(address, key, f"is {len(value)} characters long, at most {limit}")
        values[key] = value
    for key, (lo, hi) in _INT_KEYS.items():
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(address, key, f"must be a whole number, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise _fail(address, key, f"must be between {lo} and {hi}, got {value}")
        values[key] = value
    for key in _WORD_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        if not isinstance(value, list) or not all(isinstance(w, str) and w.strip() for w in value):
            raise _fail(address, key, "must be a list of non-empty texts")
        if not value or len(value) > MAX_WORDS:
            raise _fail(address, key, f"must list between 1 and {MAX_WORDS} words")
        values[key] = tuple(w.strip() for w in value)
    for key in _BOOL_KEYS:
        if key in raw:
            if not isinstance(raw[key], bool):
                raise _fail(address, key, f"must be true or false, got {type(raw[key]).__name__}")
            values[key] = raw[key]
    for key, (lo_s, hi_s) in _SECONDS_KEYS.items():
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(address, key, f"must be a number of seconds, got {type(value).__name__}")
        if not lo_s <= value <= hi_s:
            raise _fail(address, key, f"must be between {lo_s:g} and {hi_s:g}, got {value}")
        values[key] = float(value)
    sid = values.get("reengagement_content_sid")
    if sid is not None and not _CONTENT_SID.fullmatch(sid):
        raise _fail(address, "reengagement_content_sid",
                    f"must be a Twilio Content SID (HX and 32 hex digits), got {sid!r}")
    if "keywords" in raw:
        values["keywords"] = _keyword_rules(address, raw["keywords"])
    values.update(tool_values(raw, lambda key, problem: _fail(address, key, problem)))
    values.update(knowledge_values(raw, lambda key, problem: _fail(address, key, problem)))
    values.update(budget_values(raw, lambda key, problem: _fail(address, key, problem)))
    values.update(send_rate_values(raw, lambda key, problem: _fail(address, key, problem)))
    try:
        values.update(inbox_keys(raw))
    except InboxKeyError as exc:
        raise _fail(address, exc.key, exc.problem) from None
    if "menus" in raw:
        values["menus"] = parse_menus(address, raw["menus"], replace(defaults, **values), _fail)
    return replace(defaults, **values)


def _keyword_rules(address: str, raw: Any) -> tuple[KeywordRule, ...]:
    if not isinstance(raw, list):
        raise _fail(address, "keywords", f"must be a list of {{match, reply}} rules, got {type(raw).__name__}")
    if len(raw) > MAX_KEYWORD_RULES:
        raise _fail(address, "keywords", f"has {len(raw)} rules, at most {MAX_KEYWORD_RULES}")
    rules: list[KeywordRule] = []
    for n, rule in enumerate(raw, start=1):
        where = f"keywords[{n}]"
        if not isinstance(rule, Mapping):
            raise _fail(address, where, "must be a mapping with 'match' and 'reply'")
        extra = sorted(str(k) for k in rule if k not in ("match", "reply"))
        if extra:
            raise _fail(address, f"{where}.{extra[0]}", "unknown key (a rule has 'match' and 'reply')")
        for part in ("match", "reply"):
            if not isinstance(rule.get(part), str) or not rule[part].strip():
                raise _fail(address, f"{where}.{part}", "must be non-empty text")
        if len(rule["reply"]) > MAX_TEXT_CHARS:
            raise _fail(address, f"{where}.reply", f"is {len(rule['reply'])} characters long, at most {MAX_TEXT_CHARS}")
        try:
            pattern = compile_rule(rule["match"])
        except RuleError as exc:
            raise _fail(address, f"{where}.match", f"{exc}: {rule['match'][:100]!r}") from None
        rules.append(KeywordRule(rule["match"], rule["reply"].strip(), pattern))
    total = sum(r.pattern.size for r in rules)
    if total > MAX_PROFILE_PROGRAM_SIZE:
        raise _fail(address, "keywords", f"compile to {total} RE2 instructions together, at most "
                                         f"{MAX_PROFILE_PROGRAM_SIZE}: fewer or simpler rules")
    return tuple(rules)


def profiles_from_document(document: Any, defaults: BusinessProfile) -> dict[str, BusinessProfile]:
    """Every profile of a profiles file (``businesses:`` mapping addresses to profiles), validated.

    All of them are checked before any is returned, so a file with one bad
    profile writes nothing.
    """
    if not isinstance(document, Mapping):
        raise ProfileError("the profiles file must be a mapping with the key 'businesses'")
    unknown = sorted(str(k) for k in document if k != "businesses")
    if unknown:
        raise ProfileError(f"the profiles file: unknown top-level key {unknown[0]!r} (only 'businesses')")
    businesses = document.get("businesses")
    if not isinstance(businesses, Mapping) or not businesses:
        raise ProfileError("the profiles file: 'businesses' must map WhatsApp addresses to profiles")
    return {str(address): profile_from_mapping(address, raw, defaults) for address, raw in businesses.items()}

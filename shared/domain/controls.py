"""What ends a message: the model, a canned reply, or nothing sent (recorded).

Every control a business or its customer has (commands, opt-out, rate limits,
keyword rules, handoff to a person, the empty-message reply) is one more way a
message ends on the exactly-once path, decided here, purely, from the cleaned
text, the business profile, the conversation and the time:

* ``MODEL``: a model turn (with the welcome text as part 1 of a new conversation);
* ``REPLY``: a canned reply, written and sent exactly like a model reply
  (answer write, send task, order), entering the history or not;
* ``IGNORE``: recorded as ``ignored`` with its reason and not answered (opted
  out, rate limited, paused for a person); terminal at once.

State lives in fields of the conversation document that the claim write
already writes (docs/decisions/0012-business-controls.md), so these rules add
no Firestore read or write to a message:

    optedOut, optedOutAt   the user opted out of this business; the document
                           then has no ``expireAt`` (the opt-out outlives the TTL)
    rate {start, count, noticed}
                           the user's current rate-limit window
    pausedUntil            a person handles this conversation until then
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.domain.budgets import Budget
from shared.domain.conversation import Conversation, RateWindow, expire_at
from shared.domain.turns import cap_text
from shared.domain.entry import Decided, MessageEntry
from shared.domain.profiles import BusinessProfile
from shared.domain.proposals import CONFIRM, answer_to_proposal

MODEL = "model"
REPLY = "reply"
IGNORE = "ignore"

# Reasons, as recorded in the message entry (``decided.reason``) and logged.
RESET = "reset"
HELP = "help"
KEYWORD = "keyword"
OPT_OUT = "opt_out"
OPT_IN = "opt_in"
RATE_NOTICE = "rate_limit_notice"
EMPTY = "empty"
HANDOFF = "handoff"
OPTED_OUT = "opted out"
RATE_LIMITED = "rate limited"
PAUSED = "paused"
BUDGET = "budget"  # the model budget is spent (shared/domain/budgets.py)

# Line breaks and tabs are text; every other control character is not.
_KEPT_CONTROLS = {"\n", "\t"}


def clean_text(text: str, max_chars: int) -> str:
    """The user's text as everything downstream may use it: no control characters, bounded.

    ``\\r\\n`` and lone ``\\r`` become line breaks; other C0/C1 control
    characters go; the result is stripped and capped at ``max_chars``.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(ch for ch in text if ch in _KEPT_CONTROLS or unicodedata.category(ch) != "Cc")
    return cap_text(kept.strip(), max_chars)


@dataclass(frozen=True)
class ControlState:
    """What a decision changes in the conversation besides the message, applied with the first claim."""

    rate: RateWindow | None = None
    opted_out: bool | None = None  # True: the user opts out now; False: opts back in
    at: datetime | None = None  # the opt-out's time
    address: str = ""  # an opt-in's address, back
    expire_at: datetime | None = None  # an opt-in's expiry, back
    clear_history: bool = False
    paused_until: datetime | None = None

    def apply(self, conv: Conversation) -> None:
        if self.rate is not None:
            conv.rate = self.rate
        if self.opted_out is True:
            conv.opted_out, conv.opted_out_at, conv.expire_at, conv.paused_until = True, self.at, None, None
        elif self.opted_out is False:
            conv.opted_out, conv.opted_out_at = False, None
            conv.address, conv.expire_at = self.address, self.expire_at
        if self.clear_history:
            conv.history = []
        if self.paused_until is not None:
            conv.paused_until = self.paused_until


@dataclass(frozen=True)
class Decision:
    """How one message ends, and what it changes in the conversation (``state``).

    ``state`` is applied once, with the first claim; a later claim of the same
    message (a redelivery after its lease ran out) re-reads the decision from
    the entry and applies nothing again, so a counter never counts twice.
    """

    kind: str
    reason: str = ""
    reply: str = ""
    in_history: bool = False
    welcome: str = ""
    record_user_turn: bool = False
    state: ControlState = field(default_factory=ControlState)

    def record(self) -> Decided | None:
        """What the claim stores in the entry so a re-claim finds the same decision (None: a plain model turn)."""
        if self.kind == MODEL and not self.welcome:
            return None
        return Decided(kind=self.kind, reason=self.reason, reply=self.reply, history=self.in_history,
                       welcome=self.welcome)

    @classmethod
    def recorded(cls, entry: MessageEntry) -> "Decision":
        """The decision the first claim of ``entry`` took; absent means a plain model turn."""
        record = entry.decided
        if record is None:
            return cls(MODEL)
        return cls(kind=record.kind or MODEL, reason=record.reason, reply=record.reply, in_history=record.history,
                   welcome=record.welcome)


def _word(text: str) -> str:
    return text.strip().casefold()


def _is_one_of(text: str, words: tuple[str, ...]) -> bool:
    return _word(text) in {_word(w) for w in words}


def _rate(conv: Conversation, profile: BusinessProfile, now: datetime) -> tuple[str, RateWindow]:
    """``allow``, ``notice`` or ``drop`` for one more answered message, and the window after it."""
    window = conv.rate or RateWindow()
    start = window.start
    if start is None or now - start >= timedelta(seconds=profile.rate_limit_window_seconds) or start > now:
        return "allow", RateWindow(start=now, count=1, noticed=False)
    if window.count < profile.rate_limit_messages:
        return "allow", RateWindow(start, window.count + 1, window.noticed)
    if not window.noticed:
        return "notice", RateWindow(start, window.count, True)
    return "drop", RateWindow(start, window.count, window.noticed)


def _counted(conv: Conversation, profile: BusinessProfile, now: datetime) -> RateWindow:
    """The window with one more message in it, whatever the limit: a reply that is sent anyway."""
    verdict, window = _rate(conv, profile, now)
    if verdict == "allow":
        return window
    old = conv.rate or RateWindow()
    return RateWindow(old.start, old.count + 1, old.noticed)


def decide(
    text: str,
    has_content: bool,
    profile: BusinessProfile,
    conv: Conversation,
    now: datetime,
    address: str,
    ttl_seconds: int,
) -> Decision:
    """How the message with cleaned ``text`` ends (``has_content``: media, a location or a button).

    The order matters: an opt-in is heard while opted out, and nothing else is;
    an opt-out is always confirmed; a paused conversation is left to the
    person; the rate limit covers every reply that is not an opt-out or opt-in
    confirmation, and those confirmations, always sent, still count in its
    window, which outlives STOP and START (alternating them must not buy model
    calls); commands, the handoff keyword and keyword rules come before the
    model, after the yes to a write proposed to the user. ``address`` and
    ``ttl_seconds`` restore what an opt-out removed.
    """
    is_word = not has_content
    # Confirmations are always sent, and count in the window all the same.
    counted = _counted(conv, profile, now)
    if conv.opted_out:
        if is_word and _is_one_of(text, profile.opt_in_keywords):
            return Decision(
                REPLY, OPT_IN, profile.opt_in_reply,
                state=ControlState(rate=counted, opted_out=False, address=address,
                                   expire_at=expire_at(now, ttl_seconds)),
            )
        return Decision(IGNORE, OPTED_OUT)
    if is_word and _is_one_of(text, profile.opt_out_keywords):
        # The rate window stays (and counts this confirmation): STOP then START must not reset it.
        return Decision(REPLY, OPT_OUT, profile.opt_out_reply,
                        state=ControlState(rate=counted, opted_out=True, at=now, clear_history=True))
    if conv.paused(now):
        return Decision(IGNORE, PAUSED, record_user_turn=True)
    verdict, window = _rate(conv, profile, now)
    state = ControlState(rate=window)
    if verdict == "notice":
        return Decision(REPLY, RATE_NOTICE, profile.rate_limit_reply, state=state)
    if verdict == "drop":
        return Decision(IGNORE, RATE_LIMITED)
    if is_word and answer_to_proposal(conv.pending_tool, text, now, profile.confirm_keywords) == CONFIRM:
        # The yes to a proposed write (shared/domain/tool_events.py): no keyword rule or command may take it.
        return Decision(MODEL, state=state)
    if not text and not has_content:
        return Decision(REPLY, EMPTY, profile.empty_reply, state=state)
    if is_word and _is_one_of(text, profile.reset_commands):
        return Decision(REPLY, RESET, profile.reset_reply, state=ControlState(rate=window, clear_history=True))
    if is_word and _is_one_of(text, profile.help_commands):
        return Decision(REPLY, HELP, profile.help, state=state)
    if is_word and profile.handoff_keyword and _is_one_of(text, (profile.handoff_keyword,)):
        until = now + timedelta(seconds=profile.handoff_pause_seconds)
        return Decision(REPLY, HANDOFF, profile.handoff_reply, in_history=True,
                        state=ControlState(rate=window, paused_until=until))
    if is_word:
        for rule in profile.keywords:
            if rule.matches(text.strip()):
                return Decision(REPLY, KEYWORD, rule.reply, in_history=True, state=state)
    welcome = profile.welcome if not conv.turns(now) else ""
    return Decision(MODEL, welcome=welcome, state=state)


def take_over(conv: Conversation, until: datetime, now: datetime) -> None:
    """A person takes the conversation over: the bot records the user's messages and answers none until ``until``."""
    conv.paused_until, conv.updated_at = until, now


def hand_back(conv: Conversation, now: datetime) -> None:
    """The person hands the conversation back: the bot answers the next message, with the person's turns in its history."""
    conv.paused_until, conv.updated_at = None, now


def within_budget(decision: Decision, budget: Budget | None, spent: bool) -> Decision:
    """After every control above: a model turn of a spent budget becomes the business's budget reply.

    The rate window is kept, and a new conversation's welcome; the reply does
    not enter the history, so the model does not take it for its own words later.
    """
    if not spent or budget is None or decision.kind != MODEL:
        return decision
    return Decision(REPLY, BUDGET, budget.reply, welcome=decision.welcome, state=decision.state)

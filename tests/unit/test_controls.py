"""The rules that decide how a message ends: commands, opt-out states, limits, keywords, handoff."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.domain import controls
from shared.domain.claims import take_on
from shared.domain.controls import IGNORE, MODEL, REPLY, ControlState, Decision, clean_text, decide
from shared.domain.conversation import Answer, Conversation, Limits, RateWindow
from shared.domain.entry import MessageEntry
from shared.domain.lifecycle import ANSWERED, IGNORED
from shared.domain.profiles import BusinessProfile, profile_from_mapping

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
USER = "whatsapp:+34600111222"
SHOP = "whatsapp:+14155238886"
PROFILE = profile_from_mapping(SHOP, {
    "help": "Ask about bread.", "welcome": "Hi, I'm the bakery bot.", "handoff_keyword": "agent",
    "keywords": [{"match": "(opening )?hours\\??", "reply": "7 to 20."}, {"match": "hours.*", "reply": "never used"}],
    "rate_limit_messages": 3, "rate_limit_window_seconds": 60,
}, BusinessProfile(system_prompt="p", model="m", fallback_reply="f"))
TTL = 3600
LIMITS = Limits(ttl_seconds=TTL, max_messages=20, max_history_chars=16000, watch_after_seconds=180, lease_seconds=120)


def conv(**fields: object) -> Conversation:
    return Conversation(address=USER, history=[{"role": "user", "content": "earlier", "sid": "SMa"}], exists=True,
                        **fields)  # type: ignore[arg-type]


def claimed(c: Conversation, sid: str, decision: Decision, now: datetime = NOW, first_claim: bool = True,
            text: str = "") -> Conversation:
    """``c`` after the claim write that takes ``sid`` on with ``decision`` (``c`` itself is changed)."""
    take_on(c, sid, decision, now, LIMITS, address=USER, user_text=text, first_claim=first_claim)
    return c


def d(text: str, c: Conversation | None = None, now: datetime = NOW, has_content: bool = False,
      profile: BusinessProfile = PROFILE) -> Decision:
    return decide(text, has_content, profile, conv() if c is None else c, now, USER, TTL)


def test_clean_text_strips_control_characters_and_caps() -> None:
    assert clean_text("  hi\x00 there\x1b[31m\r\nnext\tline\x7f\u0085 ", 100) == "hi there[31m\nnext\tline"
    assert clean_text("x" * 50, 10) == "x" * 9 + "…"
    assert clean_text("\x00\x01 ", 10) == ""


def test_a_plain_message_is_a_model_turn_that_counts_toward_the_limit() -> None:
    decision = d("what bread do you have?")
    assert decision.kind == MODEL and decision.welcome == ""
    assert decision.state == ControlState(rate=RateWindow(start=NOW, count=1, noticed=False))
    assert decision.record() is None


def test_the_welcome_goes_with_the_first_answer_of_a_new_conversation_only() -> None:
    assert d("hello", Conversation()).welcome == "Hi, I'm the bakery bot."
    assert d("hello", conv()).welcome == ""
    expired = conv(expire_at=NOW - timedelta(seconds=1))
    assert d("hello", expired).welcome == "Hi, I'm the bakery bot."


@pytest.mark.parametrize("text", ["/reset", "  /RESET ", "/Reset"])
def test_reset_forgets_the_history_and_confirms(text: str) -> None:
    decision = d(text)
    assert (decision.kind, decision.reason, decision.in_history) == (REPLY, controls.RESET, False)
    assert decision.state.clear_history and decision.reply == PROFILE.reset_reply
    c = conv()
    decision.state.apply(c)
    assert c.history == []


def test_reset_must_be_the_whole_message() -> None:
    assert d("/reset please").kind == MODEL


def test_help_answers_with_the_business_help_text() -> None:
    decision = d("/HELP")
    assert (decision.kind, decision.reason, decision.reply) == (REPLY, controls.HELP, "Ask about bread.")


@pytest.mark.parametrize("word", ["STOP", "stopall", " Unsubscribe ", "CANCEL", "end", "Quit"])
def test_opt_out_words_opt_out_with_one_confirmation(word: str) -> None:
    decision = d(word)
    assert (decision.kind, decision.reason) == (REPLY, controls.OPT_OUT)
    assert decision.state.opted_out is True and decision.state.clear_history
    c = conv(expire_at=NOW + timedelta(hours=1))
    decision.state.apply(c)
    assert c.opted_out is True and c.history == [] and c.expire_at is None


def test_opt_out_is_only_the_whole_word() -> None:
    assert d("please stop sending me offers").kind == MODEL


@pytest.mark.parametrize("text", ["hello", "/reset", "/help", "STOP", "agent", "hours", ""])
def test_while_opted_out_nothing_is_answered(text: str) -> None:
    decision = d(text, conv(opted_out=True))
    assert (decision.kind, decision.reason) == (IGNORE, controls.OPTED_OUT)
    assert decision.state == ControlState() and not decision.record_user_turn


@pytest.mark.parametrize("word", ["START", "unstop"])
def test_start_opts_back_in_and_restores_address_and_expiry(word: str) -> None:
    decision = d(word, Conversation(opted_out=True, exists=True))
    assert (decision.kind, decision.reason) == (REPLY, controls.OPT_IN)
    assert decision.state.opted_out is False and decision.state.address == USER
    assert decision.state.expire_at == NOW + timedelta(seconds=TTL)


def test_start_when_not_opted_out_is_an_ordinary_message() -> None:
    assert d("start").kind == MODEL


def test_a_media_message_whose_caption_is_stop_is_not_an_opt_out() -> None:
    assert d("STOP", has_content=True).kind == MODEL


def test_opt_out_words_are_per_business() -> None:
    spanish = profile_from_mapping(SHOP, {"opt_out_keywords": ["BAJA"]}, BusinessProfile())
    assert d("baja", profile=spanish).reason == controls.OPT_OUT
    assert d("stop", profile=spanish).kind == MODEL


def test_empty_text_without_media_gets_the_short_reply() -> None:
    decision = d("")
    assert (decision.kind, decision.reason, decision.reply) == (REPLY, controls.EMPTY, PROFILE.empty_reply)
    assert d("", has_content=True).kind == MODEL


def test_keyword_rules_match_the_whole_message_ignoring_case_first_rule_wins() -> None:
    decision = d("Opening Hours?")
    assert (decision.kind, decision.reason, decision.reply, decision.in_history) == (REPLY, controls.KEYWORD, "7 to 20.", True)
    assert d("hours of the weekend").reply == "never used"
    assert d("what are your opening hours?").kind == MODEL


def test_rate_limit_counts_per_window_with_exactly_one_notice() -> None:
    c = conv()
    kinds = []
    for n in range(6):
        decision = d(f"q{n}", c, now=NOW + timedelta(seconds=n))
        kinds.append((decision.kind, decision.reason))
        decision.state.apply(c)
    assert kinds == [(MODEL, ""), (MODEL, ""), (MODEL, ""), (REPLY, controls.RATE_NOTICE),
                     (IGNORE, controls.RATE_LIMITED), (IGNORE, controls.RATE_LIMITED)]
    # A new window: answered again, and a new notice is possible.
    after = d("later", c, now=NOW + timedelta(seconds=61))
    assert after.kind == MODEL and after.state.rate == RateWindow(start=NOW + timedelta(seconds=61), count=1, noticed=False)


def test_commands_count_toward_the_limit_but_opt_out_never_waits() -> None:
    full = conv(rate=RateWindow(start=NOW, count=3, noticed=True))
    assert d("/help", full).kind == IGNORE
    assert d("STOP", full).reason == controls.OPT_OUT


def test_the_handoff_keyword_pauses_and_says_a_person_will_answer() -> None:
    decision = d("Agent")
    assert (decision.kind, decision.reason, decision.in_history) == (REPLY, controls.HANDOFF, True)
    assert decision.state.paused_until == NOW + timedelta(seconds=PROFILE.handoff_pause_seconds)


def test_while_paused_messages_are_recorded_not_answered_until_the_pause_ends() -> None:
    c = conv(paused_until=NOW + timedelta(minutes=5))
    decision = d("is anyone there?", c)
    assert (decision.kind, decision.reason, decision.record_user_turn) == (IGNORE, controls.PAUSED, True)
    assert d("STOP", c).reason == controls.OPT_OUT
    assert d("is anyone there?", c, now=NOW + timedelta(minutes=6)).kind == MODEL


def test_an_ignored_message_is_closed_by_its_claim() -> None:
    c = conv(paused_until=NOW + timedelta(minutes=5), watch=NOW + timedelta(minutes=1))
    after = claimed(c, "SMb", d("hello?", c), text="hello?")
    entry = after.entry("SMb")
    assert entry is not None and entry.status == IGNORED and entry.reason == controls.PAUSED
    assert entry.lease_until is None and entry.seq is None
    assert [t["content"] for t in after.turns(NOW)] == ["earlier", "hello?"]
    assert after.open_entries() == {}
    assert after.watch == NOW + timedelta(minutes=1), "an ignored message asks the reconciler for nothing"


def test_an_opted_out_users_message_keeps_no_text() -> None:
    c = Conversation(opted_out=True, exists=True)
    after = claimed(c, "SMb", d("hello", c), text="hello")
    assert after.entry("SMb").status == IGNORED and after.history is None
    assert after.expire_at is None and after.address == ""


def test_a_re_claim_applies_the_state_only_once_and_keeps_the_decision() -> None:
    c = conv()
    decision = d("/help", c)
    first = claimed(c, "SMb", decision, text="/help")
    assert first.rate is not None and first.rate.count == 1
    again = Decision.recorded(first.entry("SMb"))
    assert (again.kind, again.reason, again.reply) == (REPLY, controls.HELP, "Ask about bread.")
    second = claimed(first, "SMb", again, first_claim=False, text="/help")
    assert second.rate.count == 1 and second.entry("SMb").attempts == 2


def test_opt_out_outlives_the_ttl_and_drops_the_address_once_the_confirmation_is_done() -> None:
    c = conv()
    decision = d("STOP", c)
    claimed(c, "SMs", decision, text="STOP")
    assert c.expire_at is None and c.history == []
    c.answer("SMs", Answer(parts=[decision.reply], asked="STOP", in_history=False), NOW, LIMITS)
    assert c.expire_at is None and c.history == [] and c.address == USER
    c.finish("SMs", "sent", NOW)
    assert c.address == "" and c.opted_out is True
    # START brings them back.
    claimed(c, "SMt", d("START", c), text="START")
    assert c.address == USER and c.expire_at == NOW + timedelta(seconds=TTL) and c.opted_out is False


def test_the_address_stays_while_a_reply_before_the_confirmation_is_unsent() -> None:
    c = Conversation(address=USER, opted_out=True, last_seq=2, done_seq=0, exists=True, messages={
        "SM1": MessageEntry(status=ANSWERED, seq=1, parts=["a"]), "SM2": MessageEntry(status=ANSWERED, seq=2, parts=["bye"]),
    })
    c.finish("SM1", "sent", NOW)
    assert c.address == USER


def test_a_person_reply_is_next_in_order_and_enters_the_history() -> None:
    c = conv(last_seq=4, done_seq=4, business=SHOP)
    c.answer("OP1", Answer(parts=["We open at 7."], by="person", to=USER), NOW, LIMITS)
    entry = c.entry("OP1")
    assert entry.status == ANSWERED and entry.seq == 5 and entry.parts == ["We open at 7."]
    assert c.history[-1] == {"role": "assistant", "content": "We open at 7.", "sid": "OP1", "by": "person"}
    assert c.watch == NOW + timedelta(seconds=180)


def test_ignored_messages_keep_the_document_bounded() -> None:
    from shared.domain.conversation import MAX_TRACKED_MESSAGES

    c = Conversation(opted_out=True, exists=True)
    for n in range(MAX_TRACKED_MESSAGES + 30):
        now = NOW + timedelta(seconds=n)
        claimed(c, f"SM{n}", d("hi", c, now=now), now=now, text="hi")
    assert len(c.messages) == MAX_TRACKED_MESSAGES

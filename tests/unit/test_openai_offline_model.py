"""The offline model must visibly reflect the conversation it was given, deterministically."""

from __future__ import annotations

from devstack.openai_stub import OFFLINE_PREFIX, QUOTE_LIMIT, offline_reply


def test_first_turn_echoes_latest_message_only() -> None:
    reply = offline_reply([{"role": "system", "content": "rules"}, {"role": "user", "content": "Hello"}])
    assert reply == f"{OFFLINE_PREFIX} You said: «Hello». (turn 1)"


def test_later_turn_mentions_previous_user_message_and_counts_turns() -> None:
    messages = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "three"},
    ]
    assert offline_reply(messages) == f"{OFFLINE_PREFIX} You said: «three». Earlier you said: «two». (turn 3)"
    assert offline_reply(messages) == offline_reply(list(messages))


def test_reply_changes_with_the_conversation() -> None:
    a = offline_reply([{"role": "user", "content": "x"}])
    b = offline_reply([{"role": "user", "content": "y"}])
    assert a != b


def test_content_parts_are_read_as_text() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "part "}, {"type": "text", "text": "two"}]}]
    assert "«part two»" in offline_reply(messages)


def test_no_user_message() -> None:
    reply = offline_reply([{"role": "system", "content": "rules"}])
    assert reply.startswith(OFFLINE_PREFIX) and "(turn 0)" in reply


def test_long_messages_are_shortened_in_the_echo() -> None:
    reply = offline_reply([{"role": "user", "content": "z" * 5000}])
    assert len(reply) < QUOTE_LIMIT + 60
    assert "…»" in reply

"""What a business and its customers control, end to end through the three functions on the emulators:
commands, opt-out, limits, business profiles, handoff to a person, and the admin command.

Each test writes the profile of its own business (a WhatsApp number no other
test uses) to the Firestore emulator, as ``make profiles-apply`` does; the
stack reads profiles with a one-second cache here (tests/plugin.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from devstack.stack import ROOT
from shared.adapters.profile_store import FirestoreProfiles
from shared.domain.profiles import (
    DEFAULT_EMPTY_REPLY,
    DEFAULT_OPT_IN_REPLY,
    DEFAULT_OPT_OUT_REPLY,
    DEFAULT_RESET_REPLY,
    BusinessProfile,
)
from tests.plugin import unique_user, wait_until


def offline(text: str) -> str:
    return f"You said: «{text}»"


def new_business() -> str:
    return f"whatsapp:+1888{uuid.uuid4().int % 10**7:07d}"


def put_profile(pipeline, business: str, **raw: Any) -> None:  # noqa: ANN001
    profiles = FirestoreProfiles(lambda: pipeline.db, "business_profiles", BusinessProfile(), 0)
    profiles.put(business, raw, datetime.now(timezone.utc))


def admin(pipeline, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    """``make admin ARGS=...`` against this stack's emulators."""
    env = {**os.environ, **pipeline.stack.function_env()}
    return subprocess.run([sys.executable, "-m", "shared.ops.admin", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=check)


def replies_from(pipeline, user: str, business: str) -> list[str]:  # noqa: ANN001
    return [m.body for m in pipeline.twilio_messages_to(user) if m.from_ == business]


def wait_replies(pipeline, user: str, business: str, count: int) -> list[str]:  # noqa: ANN001
    wait_until(lambda: len(replies_from(pipeline, user, business)) >= count, timeout=30)
    return replies_from(pipeline, user, business)


def wait_finished(pipeline, user: str, business: str, count: int) -> dict[str, Any]:  # noqa: ANN001
    """The user's message entries once ``count`` of them are finished (answered ones sent)."""
    def done() -> dict[str, Any] | None:
        messages = pipeline.conversation(user, business).messages
        finished = [e for e in messages.values() if e.status in ("sent", "ignored", "failed")]
        return dict(messages) if len(finished) >= count else None
    return wait_until(done, timeout=30)  # type: ignore[return-value]


def settle() -> None:
    """Time in which a wrong extra reply would have arrived."""
    import time

    time.sleep(1.5)


def test_business_profile_commands_keywords_and_the_welcome(pipeline) -> None:
    business, user = new_business(), unique_user()
    put_profile(pipeline, business, name="Bakery", system_prompt="You are the bakery's assistant.", model="bakery-model",
                help="Ask me about bread.", welcome="Welcome to the bakery!",
                keywords=[{"match": "(opening )?hours\\??", "reply": "We open 7 to 20."}])
    pipeline.post(user, "hello bakery", to=business)
    replies = wait_replies(pipeline, user, business, 2)
    assert replies[0] == "Welcome to the bakery!" and offline("hello bakery") in replies[1]
    [request] = [r for r in pipeline.model.requests if r.messages[-1].get("content") == "hello bakery"]
    assert request.model == "bakery-model"
    assert request.messages[0] == {"role": "system", "content": "You are the bakery's assistant."}
    for text, answer in (("/HELP", "Ask me about bread."), ("Opening hours?", "We open 7 to 20."), (" /reset ", DEFAULT_RESET_REPLY)):
        count = len(replies_from(pipeline, user, business))
        pipeline.post(user, text, to=business)
        assert wait_replies(pipeline, user, business, count + 1)[-1] == answer
        assert pipeline.model_requests_for(text.strip()) == [] and pipeline.model_requests_for(text) == []
    # After /reset: the first answer of a new conversation, the model sees no earlier turn.
    pipeline.post(user, "who am I?", to=business)
    replies = wait_replies(pipeline, user, business, 7)
    assert replies[-2] == "Welcome to the bakery!" and offline("who am I?") in replies[-1]
    [messages] = pipeline.model_requests_for("who am I?")
    assert [m["role"] for m in messages] == ["system", "user"]
    # Every reply went out from the number the user wrote to.
    assert {m.from_ for m in pipeline.twilio_messages_to(user)} == {business}


def test_an_unknown_business_gets_the_defaults(pipeline) -> None:
    business, user = new_business(), unique_user()
    pipeline.post(user, "anyone home?", to=business)
    assert offline("anyone home?") in wait_replies(pipeline, user, business, 1)[0]
    [request] = [r for r in pipeline.model.requests if r.messages[-1].get("content") == "anyone home?"]
    assert "WhatsApp assistant of a small business" in request.messages[0]["content"]


def test_opt_out_silences_everything_until_start(pipeline) -> None:
    business, user = new_business(), unique_user()
    put_profile(pipeline, business, name="Shop", welcome="Hi from the shop!")
    pipeline.post(user, "first question", to=business)
    wait_replies(pipeline, user, business, 2)
    pipeline.post(user, "Stop", to=business)
    assert wait_replies(pipeline, user, business, 3)[-1] == DEFAULT_OPT_OUT_REPLY
    for text in ("are you there?", "/help", "/reset", "STOP"):
        pipeline.post(user, text, to=business)
    entries = wait_finished(pipeline, user, business, 6)
    settle()
    assert len(replies_from(pipeline, user, business)) == 3
    assert sorted(e.reason for e in entries.values() if e.status == "ignored") == ["opted out"] * 4
    assert pipeline.model_requests_for("are you there?") == []
    conv = pipeline.conversation(user, business)
    assert conv.opted_out is True
    assert conv.expire_at is None and conv.address == "" and conv.history == []
    pipeline.post(user, "start", to=business)
    assert wait_replies(pipeline, user, business, 4)[-1] == DEFAULT_OPT_IN_REPLY
    pipeline.post(user, "back again", to=business)
    replies = wait_replies(pipeline, user, business, 6)
    assert replies[-2] == "Hi from the shop!" and offline("back again") in replies[-1]
    # Opted out of one business, the user still talks to another.
    assert pipeline.conversation(user, business).address == user


def test_rate_limit_one_notice_then_recorded(pipeline) -> None:
    business, user = new_business(), unique_user()
    put_profile(pipeline, business, name="Strict", rate_limit_messages=2, rate_limit_window_seconds=3600,
                rate_limit_reply="Slow down please.")
    texts = [f"quick {n}" for n in range(5)]
    for text in texts:
        pipeline.post(user, text, to=business)
    entries = wait_finished(pipeline, user, business, 5)
    settle()
    replies = replies_from(pipeline, user, business)
    assert len(replies) == 3 and replies[2] == "Slow down please."
    assert offline("quick 0") in replies[0] and offline("quick 1") in replies[1]
    assert sorted(e.reason for e in entries.values() if e.status == "ignored") == ["rate limited"] * 2
    assert [len(pipeline.model_requests_for(t)) for t in texts] == [1, 1, 0, 0, 0]


def test_an_empty_message_gets_a_short_reply_without_the_model(pipeline) -> None:
    user = unique_user()
    business = pipeline.stack.options.twilio_whatsapp_from
    pipeline.post(user, " \x07\x1b ", to=business)
    assert wait_replies(pipeline, user, business, 1) == [DEFAULT_EMPTY_REPLY]
    settle()
    assert pipeline.model_requests_for("[The customer sent an empty message.]") == []
    assert len(pipeline.replies(user)) == 1


def test_handoff_to_a_person_and_back(pipeline) -> None:
    business, user = new_business(), unique_user()
    put_profile(pipeline, business, name="Clinic", handoff_keyword="person", handoff_reply="A person will write to you.")
    pipeline.post(user, "PERSON", to=business)
    assert wait_replies(pipeline, user, business, 1) == ["A person will write to you."]
    pipeline.post(user, "my tooth hurts", to=business)
    wait_finished(pipeline, user, business, 2)
    out = admin(pipeline, "reply", user, "--business", business, "Hi, this is Ana from the front desk.").stdout
    assert "queued" in out
    assert wait_replies(pipeline, user, business, 2)[-1] == "Hi, this is Ana from the front desk."
    assert pipeline.model_requests_for("my tooth hurts") == []
    shown = admin(pipeline, "show", user, "--business", business).stdout
    assert "paused for a person: until" in shown and "my tooth hurts" in shown and "person     Hi, this is Ana" in shown
    assert user.split("+")[1] not in shown
    admin(pipeline, "resume", user, "--business", business)
    pipeline.post(user, "thanks, bye", to=business)
    assert offline("thanks, bye") in wait_replies(pipeline, user, business, 3)[-1]
    [messages] = pipeline.model_requests_for("thanks, bye")
    contents = [m["content"] for m in messages]
    assert "my tooth hurts" in contents and "Hi, this is Ana from the front desk." in contents
    admin(pipeline, "pause", user, "--business", business, "--minutes", "5")
    pipeline.post(user, "one more thing", to=business)
    wait_finished(pipeline, user, business, 5)
    settle()
    assert len(replies_from(pipeline, user, business)) == 3


def test_a_profile_change_takes_effect_without_a_redeploy(pipeline) -> None:
    import time

    business, user = new_business(), unique_user()
    put_profile(pipeline, business, help="Version one.")
    pipeline.post(user, "/help", to=business)
    assert wait_replies(pipeline, user, business, 1) == ["Version one."]
    put_profile(pipeline, business, help="Version two.")
    time.sleep(1.2)  # the stack's PROFILE_CACHE_SECONDS
    pipeline.post(user, "/help", to=business)
    assert wait_replies(pipeline, user, business, 2)[-1] == "Version two."


def test_erase_keeps_only_the_opt_out(pipeline) -> None:
    business, user = new_business(), unique_user()
    pipeline.post(user, "remember me", to=business)
    wait_replies(pipeline, user, business, 1)
    pipeline.post(user, "STOP", to=business)
    wait_replies(pipeline, user, business, 2)
    wait_finished(pipeline, user, business, 2)
    # No --business: erase finds the conversation although its number has no profile.
    out = admin(pipeline, "erase", user).stdout
    assert "opt-out is kept" in out and f"at {business}" in out
    assert set(pipeline.document(user, business)) == {"optedOut", "optedOutAt", "business", "userId"}
    pipeline.post(user, "hello?", to=business)
    wait_finished(pipeline, user, business, 1)
    settle()
    assert len(replies_from(pipeline, user, business)) == 2


def test_profiles_are_validated_before_anything_is_written(pipeline, tmp_path: Path) -> None:
    business = new_business()
    bad = tmp_path / "profiles.yaml"
    bad.write_text(f'businesses:\n  "{business}":\n    name: Fine\n    rate_limit_messages: many\n')
    result = admin(pipeline, "profiles-validate", str(bad), check=False)
    assert result.returncode == 1 and "'rate_limit_messages': must be a whole number" in result.stderr
    result = admin(pipeline, "profiles-apply", str(bad), check=False)
    assert result.returncode == 1
    assert not pipeline.db.collection("business_profiles").document(business).get().exists
    good = tmp_path / "good.yaml"
    good.write_text(f'businesses:\n  "{business}":\n    name: Fine\n    help: Applied from a file.\n')
    assert f"applied {business}" in admin(pipeline, "profiles-apply", str(good)).stdout
    user = unique_user()
    pipeline.post(user, "/help", to=business)
    assert wait_replies(pipeline, user, business, 1) == ["Applied from a file."]

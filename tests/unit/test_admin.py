"""The admin command's core with fakes: show, pause/resume, a person's reply in order, erase, profile files."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.domain.conversation import SENT
from shared.domain.profiles import BusinessProfile, ProfileError
from shared.ops.admin import (
    AdminDeps,
    AdminError,
    apply_profiles,
    erase,
    pause,
    read_profiles_file,
    reply,
    resume,
    show,
)
from tests.fakes import IDS, conversation_id
from tests.unit.test_processor_controls import SHOP, USER, make_world

EXAMPLE = Path(__file__).resolve().parents[2] / "profiles.example.yaml"


def admin_for(w) -> AdminDeps:  # noqa: ANN001
    return AdminDeps(w.deps.settings, w.deps.store, IDS, lambda: w.deps.queue, w.clock)


def test_show_has_history_states_opt_out_and_pause_without_the_number() -> None:
    w = make_world()
    w.say("hello")
    w.say("/help")
    text = show(admin_for(w), USER, SHOP)
    assert "opted out: no" in text and "paused for a person: no" in text
    assert "user       hello" in text and "sent" in text and "help" in text
    assert USER.split("+")[1] not in text
    assert "has no conversation" in show(admin_for(w), "whatsapp:+1999", SHOP)


def test_pause_resume_and_a_person_reply_in_order_exactly_once() -> None:
    w = make_world()
    w.say("hello")
    admin = admin_for(w)
    assert "paused" in pause(admin, USER, SHOP, 600)
    assert w.say("where is my order?") == ("ignored", [])
    out = reply(admin, USER, SHOP, "Hi, this is Marta. It ships today.", sid="OP" + "a" * 32)
    assert "seq 2" in out
    w.flush()
    assert [b for _, b, _ in w.twilio.sent][-1] == "Hi, this is Marta. It ships today."
    assert w.conv().entry("OP" + "a" * 32)["status"] == SENT
    with pytest.raises(AdminError, match="exists already"):
        reply(admin, USER, SHOP, "again", sid="OP" + "a" * 32)
    resume(admin, USER, SHOP)
    w.say("thanks!")
    history, _ = w.model.calls[-1]
    assert (history[-1]["role"], history[-1]["content"]) == ("assistant", "Hi, this is Marta. It ships today.")
    assert "where is my order?" in [t["content"] for t in history]


def test_a_person_reply_waits_for_the_reply_before_it() -> None:
    w = make_world()
    w.deps.model._reply = "bot answer"
    from shared.domain.inbound import InboundMessage
    from shared.handlers.processor import process_message

    process_message(InboundMessage(sid=f"SM{1:032x}", sender=USER, recipient=SHOP, body="hi"), w.deps)
    assert "after the replies before it" in reply(admin_for(w), USER, SHOP, "person", sid="OP" + "b" * 32)
    w.flush()
    assert [b for _, b, _ in w.twilio.sent] == ["Hi, I'm the bakery bot.", "bot answer", "person"]


def test_no_reply_to_an_opted_out_user_and_no_pause_without_a_conversation() -> None:
    w = make_world()
    w.say("STOP")
    with pytest.raises(AdminError, match="opted out"):
        reply(admin_for(w), USER, SHOP, "come back!")
    with pytest.raises(AdminError, match="no conversation"):
        pause(admin_for(w), "whatsapp:+1999", SHOP, 60)


def test_erase_removes_the_conversation_and_failures_and_keeps_only_the_opt_out() -> None:
    w = make_world()
    w.say("hello")
    cid = conversation_id(USER, SHOP)
    w.deps.store.failures["SMx"] = {"conversation": cid, "status": "failed"}
    w.deps.store.failures["SMy"] = {"conversation": "other", "status": "failed"}
    assert "1 failure record" in erase(admin_for(w), USER, SHOP)
    assert cid not in w.deps.store.docs and list(w.deps.store.failures) == ["SMy"]
    w.say("STOP")
    assert "opt-out is kept" in erase(admin_for(w), USER, SHOP)
    assert w.conv().data == {"optedOut": True, "optedOutAt": w.conv().data["optedOutAt"], "business": SHOP}
    assert w.say("hello again") == ("ignored", [])


def test_erase_waits_for_a_message_in_flight() -> None:
    w = make_world()
    from shared.domain.inbound import InboundMessage
    from shared.handlers.processor import process_message

    process_message(InboundMessage(sid=f"SM{1:032x}", sender=USER, recipient=SHOP, body="hi"), w.deps)
    with pytest.raises(AdminError, match="in flight"):
        erase(admin_for(w), USER, SHOP)


def test_profile_files_are_validated_before_anything_is_written(tmp_path: Path) -> None:
    written: list[str] = []
    raw, profiles = read_profiles_file(EXAMPLE, BusinessProfile())
    apply_profiles(lambda address, profile, now: written.append(address), raw, None)  # type: ignore[arg-type]
    assert written == list(profiles) and len(written) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text('businesses:\n  "whatsapp:+1":\n    keywords:\n      - match: "(x"\n        reply: y\n')
    with pytest.raises(ProfileError, match=r"bad.yaml: business 'whatsapp:\+1': key 'keywords\[1\].match'"):
        read_profiles_file(bad, BusinessProfile())
    broken = tmp_path / "broken.yaml"
    broken.write_text("businesses: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        read_profiles_file(broken, BusinessProfile())
    with pytest.raises(ProfileError, match="cannot read"):
        read_profiles_file(tmp_path / "missing.yaml", BusinessProfile())

"""The admin command's core with fakes: show, pause/resume, a person's reply in order, erase, profile files."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.domain.lifecycle import SENT
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
from shared.domain.inbound import InboundMessage
from tests.fakes import IDS, conversation_id
from tests.unit.test_replay import FakeDeadLetters
from tests.unit.test_processor_controls import CLINIC, SHOP, USER, make_world

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
    assert w.conv().entry("OP" + "a" * 32).status == SENT
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
    assert w.doc() == {"optedOut": True, "optedOutAt": w.conv().opted_out_at, "business": SHOP,
                             "userId": IDS.user_id(USER)}
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


def test_erasing_an_opted_out_user_keeps_the_opt_out_whatever_happens_during_the_erase() -> None:
    w = make_world()
    w.say("hello")
    w.say("STOP")
    store = w.deps.store

    def crash(_: str) -> None:
        raise RuntimeError("the erase died here")

    # A crash in the middle of the erase: the opt-out is still there.
    store.before_apply = crash
    with pytest.raises(RuntimeError):
        erase(admin_for(w), USER, SHOP)
    store.before_apply = None
    assert w.conv().opted_out is True
    assert w.say("hello again") == ("ignored", [])

    # A message in the middle of the erase: still opted out, and the erase still ends.
    def message_arrives(_: str) -> None:
        store.before_apply = None
        assert w.say("and again") == ("ignored", [])

    store.before_apply = message_arrives
    assert "opt-out is kept" in erase(admin_for(w), USER, SHOP)
    assert set(w.doc()) == {"optedOut", "optedOutAt", "business", "userId"}
    assert w.say("anyone?") == ("ignored", [])


def test_an_erase_of_an_opted_out_user_is_one_write() -> None:
    w = make_world()
    w.say("STOP")
    writes = w.deps.store.ops.writes
    erase(admin_for(w), USER, SHOP)
    assert w.deps.store.ops.writes - writes == 1


def _cli(w, monkeypatch, *argv: str, held: FakeDeadLetters | None = None) -> str:  # noqa: ANN001
    """``make admin ARGS=...`` on the world's fakes; what it printed."""
    import io
    from contextlib import redirect_stdout

    from shared import bootstrap
    from shared.adapters.profile_store import StaticProfiles
    from shared.ops import admin, replay

    class Profiles(StaticProfiles):
        def stored(self) -> dict:
            return {SHOP: {}}

    monkeypatch.setattr(bootstrap, "settings", lambda: w.deps.settings)
    monkeypatch.setattr(bootstrap, "store", lambda: w.deps.store)
    monkeypatch.setattr(bootstrap, "pseudonyms", lambda: IDS)
    monkeypatch.setattr(bootstrap, "queue", lambda: w.deps.queue)
    monkeypatch.setattr(bootstrap, "profiles", lambda: Profiles(w.deps.profile(SHOP)))
    monkeypatch.setattr(admin, "utcnow", w.clock)
    monkeypatch.setattr(replay, "PubSubDeadLetters", lambda *names: held or FakeDeadLetters(w.clock))
    out = io.StringIO()
    with redirect_stdout(out):
        assert admin.main(list(argv)) == 0
    return out.getvalue()


def test_show_and_erase_find_every_conversation_of_a_user_whatever_the_number(monkeypatch) -> None:  # noqa: ANN001
    w = make_world()
    w.say("hello shop")                     # a number with a profile
    w.say("hello clinic", to=CLINIC)        # a number routed to the webhook without a profile
    gone = "whatsapp:+15550002222"          # a number whose profile was deleted since
    w.say("hello old number", to=gone)
    w.deps.store.failures["SMfailed"] = {"conversation": conversation_id(USER, gone), "status": "failed"}
    numbers = [SHOP, CLINIC, gone]
    cids = [conversation_id(USER, n) for n in numbers]
    assert all(cid in w.deps.store.docs for cid in cids)
    w.say("not me", to=CLINIC, user="whatsapp:+34699999999")
    shown = _cli(w, monkeypatch, "show", USER)
    for number, text in zip(numbers, ["hello shop", "hello clinic", "hello old number"]):
        assert f"with {number}" in shown and text in shown
    assert "not me" not in shown and USER.split("+")[1] not in shown
    # Dead-lettered copies wait in the hold subscription with the raw number and text.
    theirs = InboundMessage(sid=f"SM{901:032x}", sender=USER, recipient=gone, body="held")
    someone_else = InboundMessage(sid=f"SM{902:032x}", sender="whatsapp:+34699999999", recipient=gone, body="held")
    held = FakeDeadLetters(w.clock, theirs, someone_else)
    erased = _cli(w, monkeypatch, "erase", USER, held=held)
    assert erased.count("erased ") == 3, erased
    assert not any(cid in w.deps.store.docs for cid in cids) and w.deps.store.failures == {}
    assert list(held.held) == [f"ack-{someone_else.sid}"] and held.released == [f"ack-{someone_else.sid}"]
    assert "removed 1 held copy" in erased
    assert conversation_id("whatsapp:+34699999999", CLINIC) in w.deps.store.docs


def test_every_writer_that_can_start_a_conversation_records_whose_it_is() -> None:
    """Claim, outbound API, a person's reply, replay, erase's opt-out: each new document knows its
    number (the sender answers from it) and its user (erase finds it)."""
    import json

    from shared.handlers.outbound import OutboundDeps, handle_outbound

    w = make_world()
    w.say("hello", to=CLINIC)
    default = w.deps.settings.twilio_whatsapp_from
    api_user, person_user = "whatsapp:+34611000001", "whatsapp:+34611000002"
    request = {"to": api_user, "content_sid": "HX" + "0" * 32, "idempotency_key": "k1"}
    assert handle_outbound(json.dumps(request).encode(),
                           OutboundDeps(w.deps.settings, w.deps.store, w.deps.queue, w.clock, IDS)).status == 202
    reply(admin_for(w), person_user, CLINIC, "Hello from a person.")
    for user, number in ((USER, CLINIC), (api_user, default), (person_user, CLINIC)):
        data = w.doc(number, user)
        assert (data["business"], data["userId"]) == (number, IDS.user_id(user)), user
    w.say("STOP", to=CLINIC)
    erase(admin_for(w), USER, CLINIC)
    assert w.conv(CLINIC).user_id == IDS.user_id(USER)


def test_a_person_reply_whose_commit_answer_was_lost_is_reported_written_and_sent_once() -> None:
    w = make_world()
    w.say("hello")
    w.deps.store.lose_answers = 1  # the commit went through; its answer did not
    out = reply(admin_for(w), USER, SHOP, "A person writes.", sid="OP" + "c" * 32)
    assert "seq 2" in out and "queued now" in out
    w.flush()
    assert [b for _, b, _ in w.twilio.sent].count("A person writes.") == 1
    assert w.conv().entry("OP" + "c" * 32).status == SENT
    # The operator runs the same command again: nothing more is sent, and it says so.
    assert "already" in reply(admin_for(w), USER, SHOP, "A person writes.", sid="OP" + "c" * 32)
    w.flush()
    assert [b for _, b, _ in w.twilio.sent].count("A person writes.") == 1


def test_recording_whose_conversation_it_is_costs_no_operation() -> None:
    """userId and business ride in the claim's write: a first and a later plain message cost 2 reads, 5 writes."""
    w = make_world()
    store = w.deps.store
    for text in ("first message", "a later one"):
        reads, writes = store.ops.reads, store.ops.writes
        w.say(text, to=CLINIC)
        assert (store.ops.reads - reads, store.ops.writes - writes) == (2, 5), text
    assert w.conv(CLINIC).user_id == IDS.user_id(USER)

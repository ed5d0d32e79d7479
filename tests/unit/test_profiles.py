"""Business profiles: what a valid profile becomes, and every kind of bad input refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.domain.profiles import (
    DEFAULT_OPT_OUT_KEYWORDS,
    BusinessProfile,
    ProfileError,
    profile_from_mapping,
    profiles_from_document,
)

SHOP = "whatsapp:+14155238886"
DEFAULTS = BusinessProfile(system_prompt="default prompt", model="gpt-default", fallback_reply="default fallback")
EXAMPLE = Path(__file__).resolve().parents[2] / "profiles.example.yaml"


def test_missing_keys_take_the_defaults() -> None:
    profile = profile_from_mapping(SHOP, {"name": "Shop"}, DEFAULTS)
    assert profile.name == "Shop" and profile.address == SHOP
    assert profile.system_prompt == "default prompt" and profile.model == "gpt-default"
    assert profile.opt_out_keywords == DEFAULT_OPT_OUT_KEYWORDS
    assert profile.keywords == ()


def test_every_key_is_read() -> None:
    profile = profile_from_mapping(SHOP, {
        "name": "Shop", "system_prompt": "You sell shoes.", "model": "gpt-x", "fallback_reply": "Later!",
        "help": "Ask about shoes.", "welcome": "Hi, I'm the shoe bot.",
        "keywords": [{"match": "hours?|opening hours", "reply": "9 to 5."}],
        "rate_limit_messages": 5, "rate_limit_window_seconds": 30, "rate_limit_reply": "Slow down.",
        "empty_reply": "Empty?", "reset_commands": ["/reset", "/new"], "reset_reply": "Forgotten.",
        "help_commands": ["/help", "?"], "opt_out_keywords": ["BAJA"], "opt_out_reply": "Bye.",
        "opt_in_keywords": ["ALTA"], "opt_in_reply": "Back.", "handoff_keyword": "agent",
        "handoff_reply": "A person will answer.", "handoff_pause_seconds": 600,
    }, DEFAULTS)
    assert profile.keywords[0].matches("OPENING HOURS") and not profile.keywords[0].matches("what are the hours")
    assert profile.rate_limit_messages == 5 and profile.reset_commands == ("/reset", "/new")
    assert profile.handoff_keyword == "agent" and profile.handoff_pause_seconds == 600


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"nmae": "typo"}, "'nmae': unknown key"),
        ({"system_prompt": 42}, "'system_prompt': must be text, got int"),
        ({"help": ""}, "'help': must not be empty"),
        ({"rate_limit_messages": "20"}, "'rate_limit_messages': must be a whole number"),
        ({"rate_limit_messages": True}, "'rate_limit_messages': must be a whole number"),
        ({"rate_limit_window_seconds": 0}, "'rate_limit_window_seconds': must be between 1"),
        ({"opt_out_keywords": "STOP"}, "'opt_out_keywords': must be a list"),
        ({"opt_out_keywords": []}, "'opt_out_keywords': must list between 1"),
        ({"keywords": {"match": "x"}}, "'keywords': must be a list"),
        ({"keywords": ["hours"]}, "'keywords[1]': must be a mapping"),
        ({"keywords": [{"match": "hours", "reply": "9-5", "extra": 1}]}, "'keywords[1].extra': unknown key"),
        ({"keywords": [{"match": "hours"}]}, "'keywords[1].reply': must be non-empty text"),
        ({"keywords": [{"match": "ok", "reply": "fine"}, {"match": "(unclosed", "reply": "x"}]},
         "'keywords[2].match': is not a valid regular expression"),
        ({"welcome": "x" * 2000}, "'welcome': is 2000 characters long"),
    ],
)
def test_bad_input_is_refused_naming_the_business_and_the_key(raw: dict, named: str) -> None:
    with pytest.raises(ProfileError) as caught:
        profile_from_mapping(SHOP, raw, DEFAULTS)
    assert SHOP in str(caught.value) and named in str(caught.value)


@pytest.mark.parametrize("address", ["", "  ", "whatsapp:+1/2", 5])
def test_bad_addresses_are_refused(address: object) -> None:
    with pytest.raises(ProfileError):
        profile_from_mapping(address, {}, DEFAULTS)  # type: ignore[arg-type]


def test_a_profile_must_be_a_mapping() -> None:
    with pytest.raises(ProfileError, match="must be a mapping"):
        profile_from_mapping(SHOP, ["name"], DEFAULTS)


def test_a_file_with_one_bad_profile_is_refused_whole() -> None:
    document = {"businesses": {SHOP: {"name": "Shop"}, "whatsapp:+15550001111": {"model": 3}}}
    with pytest.raises(ProfileError, match=r"whatsapp:\+15550001111.*'model'"):
        profiles_from_document(document, DEFAULTS)


@pytest.mark.parametrize("document", [None, [], {"business": {}}, {"businesses": []}, {"businesses": {}}])
def test_a_file_must_map_businesses(document: object) -> None:
    with pytest.raises(ProfileError):
        profiles_from_document(document, DEFAULTS)


def test_the_example_file_is_valid_and_has_two_businesses() -> None:
    profiles = profiles_from_document(yaml.safe_load(EXAMPLE.read_text()), DEFAULTS)
    assert len(profiles) == 2
    for profile in profiles.values():
        assert profile.name and profile.system_prompt and profile.help


def test_channel_switches_are_profile_keys() -> None:
    profile = profile_from_mapping(SHOP, {"typing_indicator": False, "vision_model": "gpt-vision", "burst_window_seconds": 1.5}, DEFAULTS)
    assert (profile.typing_indicator, profile.vision_model, profile.burst_window_seconds) == (False, "gpt-vision", 1.5)
    unset = profile_from_mapping(SHOP, {}, DEFAULTS)
    assert (unset.typing_indicator, unset.vision_model, unset.burst_window_seconds) == (None, "", None)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"typing_indicator": "no"}, "typing_indicator"),
        ({"burst_window_seconds": 90}, "burst_window_seconds"),
        ({"burst_window_seconds": True}, "burst_window_seconds"),
        ({"vision_model": ""}, "vision_model"),
    ],
)
def test_bad_channel_switches_are_refused_by_name(raw: dict, named: str) -> None:
    with pytest.raises(ProfileError, match=named):
        profile_from_mapping(SHOP, raw, DEFAULTS)

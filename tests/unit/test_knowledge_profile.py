"""The knowledge keys of a profile, the stored knowledge set, and the unknown answer."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from shared.adapters.profile_store import FirestoreProfiles
from shared.domain.knowledge import (
    DEFAULT_UNKNOWN_REPLY,
    MAX_DOCUMENTS,
    KnowledgeSet,
    KnowledgeSource,
    StoredDocument,
    knowledge_set_from_stored,
    unknown_answer,
)
from shared.domain.profiles import (
    KNOWN_KEYS,
    BusinessProfile,
    ProfileError,
    profile_from_mapping,
    profiles_from_document,
)

SHOP = "whatsapp:+14155238886"
DEFAULTS = BusinessProfile(system_prompt="default prompt")
EXAMPLE = Path(__file__).resolve().parents[2] / "profiles.example.yaml"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def test_documents_are_paths_or_files_with_a_title() -> None:
    profile = profile_from_mapping(SHOP, {
        "knowledge": ["knowledge/prices.md", {"file": "docs/./policy.HTML", "title": "  Returns   policy "}],
        "knowledge_only": True, "unknown_reply": "  No idea, sorry.  ",
    }, DEFAULTS)
    assert profile.knowledge == (KnowledgeSource("knowledge/prices.md"),
                                 KnowledgeSource("docs/policy.HTML", "Returns policy"))
    assert [s.kind for s in profile.knowledge] == ["markdown", "html"]
    assert profile.knowledge_only is True and profile.unknown_reply == "No idea, sorry."
    assert {"knowledge", "knowledge_only", "unknown_reply"} <= KNOWN_KEYS


def test_a_profile_without_knowledge_has_none() -> None:
    profile = profile_from_mapping(SHOP, {"name": "Shop"}, DEFAULTS)
    assert profile.knowledge == () and not profile.knowledge_only and profile.knowledge_set is None
    assert profile.unknown_reply == DEFAULT_UNKNOWN_REPLY


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"knowledge": "prices.md"}, "'knowledge': must be a list of documents, got str"),
        ({"knowledge": [""]}, "'knowledge[1]': must be the path of a document"),
        ({"knowledge": [42]}, "'knowledge[1]': must be the path of a document"),
        ({"knowledge": ["/etc/passwd.txt"]}, "'knowledge[1]': '/etc/passwd.txt' must be a relative path"),
        ({"knowledge": ["C:/docs/a.txt"]}, "must be a relative path"),
        ({"knowledge": ["docs\\a.txt"]}, "must be a relative path with '/' separators"),
        ({"knowledge": ["../secrets.md"]}, "'knowledge[1]': '../secrets.md' leaves the profiles file's folder"),
        ({"knowledge": ["docs/../../x.md"]}, "leaves the profiles file's folder"),
        ({"knowledge": ["menu.docx"]}, "'knowledge[1]': 'menu.docx': unsupported type '.docx'"),
        ({"knowledge": ["README"]}, "unsupported type '(none)'"),
        ({"knowledge": ["a.md", "./a.md"]}, "'knowledge[2]': 'a.md' is listed twice"),
        ({"knowledge": [{"file": "a.md", "name": "A"}]}, "'knowledge[1].name': unknown key"),
        ({"knowledge": [{"file": "a.md", "title": ""}]}, "'knowledge[1].title': must be non-empty text"),
        ({"knowledge": [{"file": "a.md", "title": "x" * 201}]}, "'knowledge[1].title': is 201 characters long"),
        ({"knowledge": [{"title": "A"}]}, "'knowledge[1].file': must be the path of a document"),
        ({"knowledge": [f"d{n}.md" for n in range(MAX_DOCUMENTS + 1)]}, f"lists {MAX_DOCUMENTS + 1} documents"),
        ({"knowledge_only": True}, "'knowledge_only': is true but the profile lists no knowledge documents"),
        ({"knowledge": ["a.md"], "knowledge_only": "yes"}, "'knowledge_only': must be true or false, got str"),
        ({"unknown_reply": " "}, "'unknown_reply': must be non-empty text"),
        ({"unknown_reply": "x" * 1601}, "'unknown_reply': is 1601 characters long, at most 1600"),
    ],
)
def test_bad_knowledge_keys_are_refused_naming_business_and_key(raw: dict, named: str) -> None:
    with pytest.raises(ProfileError) as caught:
        profile_from_mapping(SHOP, raw, DEFAULTS)
    assert f"business {SHOP!r}" in str(caught.value)
    assert named in str(caught.value)


def test_the_example_file_gives_both_businesses_knowledge() -> None:
    profiles = profiles_from_document(yaml.safe_load(EXAMPLE.read_text()), DEFAULTS)
    assert all(p.knowledge for p in profiles.values()) and len(profiles) == 2
    for profile in profiles.values():
        for source in profile.knowledge:
            assert (EXAMPLE.parent / source.path).is_file(), source


def test_the_unknown_answer_offers_the_handoff_when_there_is_one() -> None:
    assert unknown_answer("I don't know that.", "agent") == "I don't know that. Send AGENT to talk to a person."
    assert unknown_answer("I don't know that.", "") == "I don't know that."
    # Already offered in the business's own words: not twice.
    assert unknown_answer("Write AGENT for a person.", "agent") == "Write AGENT for a person."
    assert unknown_answer("", "") == DEFAULT_UNKNOWN_REPLY


def _set() -> KnowledgeSet:
    return KnowledgeSet("v2", "text-embedding-3-small", 1536, 5,
                        (StoredDocument("prices.md", "Prices", 3, "ab"), StoredDocument("faq.txt", "FAQ", 2, "cd")),
                        "v1", NOW)


def test_a_knowledge_set_survives_its_stored_form() -> None:
    stored = _set().to_stored()
    assert knowledge_set_from_stored(stored) == _set()
    assert _set().searchable and _set().title_of("faq.txt") == "FAQ" and _set().title_of("gone.md") == "gone.md"
    assert not KnowledgeSet("", "m", 8, 0).searchable


@pytest.mark.parametrize("raw", [None, "v2", {"version": "v", "chunks": "many"},
                                 {"documents": [{"title": "no source"}]}])
def test_a_stored_set_of_another_shape_is_no_set(raw: object) -> None:
    assert knowledge_set_from_stored(raw) is None


def test_the_stored_profile_brings_its_knowledge_set_and_a_broken_one_is_dropped() -> None:
    store = FirestoreProfiles(lambda: None, "business_profiles", DEFAULTS, 60)
    good = store._parse(SHOP, {"knowledge": ["prices.md"], "knowledgeSet": _set().to_stored(), "updatedAt": NOW})
    assert good.knowledge_set == _set() and good.knowledge == (KnowledgeSource("prices.md"),)
    broken = store._parse(SHOP, {"knowledge": ["prices.md"], "knowledgeSet": "corrupt"})
    assert broken.knowledge_set is None and broken.knowledge
    plain = store._parse(SHOP, {"name": "No knowledge"})
    assert plain.knowledge_set is None and plain.name == "No knowledge"

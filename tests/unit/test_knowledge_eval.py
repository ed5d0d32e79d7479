"""Golden questions: the file's checks, the three scores, thresholds and what a failure looks like."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.domain.knowledge_eval import DEFAULT_THRESHOLDS, Golden, GoldenError, Outcome, golden_sets, report, score

SHOP = "whatsapp:+14155238886"
SOURCES = {SHOP: ["prices.md", "policy.html"]}
EXAMPLE = Path(__file__).resolve().parents[2] / "profiles.example.golden.yaml"


def one_set(questions: list[dict], thresholds: dict | None = None) -> object:
    doc: dict = {"businesses": {SHOP: {"questions": questions}}}
    if thresholds:
        doc["businesses"][SHOP]["thresholds"] = thresholds
    return golden_sets(doc, SOURCES)[0]


def test_a_golden_file_is_read_with_its_thresholds() -> None:
    golden = one_set([{"ask": "How much is bread?", "source": "prices.md", "phrase": "4.50"},
                      {"ask": "Bitcoin?", "unknown": True}], {"cited": 0.5})
    assert golden.questions == (Golden("How much is bread?", "prices.md", "4.50"), Golden("Bitcoin?", unknown=True))
    assert golden.thresholds == {**DEFAULT_THRESHOLDS, "cited": 0.5}


@pytest.mark.parametrize(("doc", "named"), [
    ({"business": {}}, "must be a mapping with 'businesses'"),
    ({"businesses": {}, "extra": 1}, "unknown top-level key 'extra'"),
    ({"businesses": {"whatsapp:+1999": {"questions": [{"ask": "x", "unknown": True}]}}}, "not in the profiles file"),
    ({"businesses": {SHOP: {"questions": []}}}, "non-empty list of questions"),
    ({"businesses": {SHOP: {"questions": [{"ask": "x"}]}}}, "questions[1]: needs 'source'"),
    ({"businesses": {SHOP: {"questions": [{"ask": "x", "source": "menu.pdf"}]}}}, "'menu.pdf' is not one of its"),
    ({"businesses": {SHOP: {"questions": [{"ask": "x", "unknown": True, "source": "prices.md"}]}}}, "names no source"),
    ({"businesses": {SHOP: {"questions": [{"ask": " ", "unknown": True}]}}}, "questions[1].ask"),
    ({"businesses": {SHOP: {"questions": [{"ask": "x", "unknown": True, "why": 1}]}}}, "unknown key 'why'"),
    ({"thresholds": {"hit_at_k": 1.5}, "businesses": {SHOP: {"questions": [{"ask": "x", "unknown": True}]}}},
     "must be a number from 0 to 1"),
    ({"thresholds": {"recall": 0.5}, "businesses": {SHOP: {"questions": [{"ask": "x", "unknown": True}]}}},
     "unknown threshold 'recall'"),
])
def test_a_bad_golden_file_is_refused_by_name(doc: dict, named: str) -> None:
    with pytest.raises(GoldenError, match=named.replace("[", r"\[").replace("]", r"\]")):
        golden_sets(doc, SOURCES)


def test_the_example_golden_file_is_valid() -> None:
    profiles = yaml.safe_load((EXAMPLE.parent / "profiles.example.yaml").read_text())["businesses"]
    sources = {a: [d if isinstance(d, str) else d["file"] for d in p.get("knowledge", [])] for a, p in profiles.items()}
    sets = golden_sets(yaml.safe_load(EXAMPLE.read_text()), sources)
    assert {s.business for s in sets} == set(profiles)
    assert all(any(q.unknown for q in s.questions) and any(q.source for q in s.questions) for s in sets)


def test_scores_count_hits_citations_and_refusals_and_show_each_failure() -> None:
    golden = one_set([
        {"ask": "Bread price?", "source": "prices.md", "phrase": "4.50"},
        {"ask": "Cake price?", "source": "prices.md"},
        {"ask": "Returns?", "source": "policy.html"},
        {"ask": "Bitcoin?", "unknown": True},
        {"ask": "Weather?", "unknown": True},
    ])
    q = golden.questions
    outcomes = [
        Outcome(q[0], (("prices.md#2", "prices.md", 0.3),), "Sourdough is 4.50 € — from Prices", True, "Prices"),
        Outcome(q[1], (("prices.md#3", "prices.md", 0.4),), "A cake is 24 €.", True, "Prices"),
        Outcome(q[2], (), "We refund within a day — from Prices", True, "Returns"),
        Outcome(q[3], (), "Sorry, I don't know. Send AGENT to talk to a person.", False),
        Outcome(q[4], (("prices.md#1", "prices.md", 0.6),), "It is sunny — from Prices", True),
    ]
    result = score(golden, outcomes, "Sorry, I don't know.", ["Prices", "Returns"])
    assert (result.hits, result.cited, result.answerable) == (2, 1, 3)
    assert (result.refused, result.unknown) == (1, 2)
    assert len(result.failures) == 3
    assert "'Cake price?' found prices.md but the reply does not say \"— from Prices\"" in result.failures[0]
    quoted = Outcome(q[0], (("prices.md#2", "prices.md", 0.3),), "Sourdough is 4.90 € — from Prices", True, "Prices")
    [wrong_phrase] = score(golden, [quoted], "", ["Prices"]).failures
    assert "does not say '4.50': «" in wrong_phrase, "only what the reply lacks is named"
    assert "'Returns?' expected policy.html: retrieved nothing" in result.failures[1]
    assert "'Weather?' should be refused: retrieved prices.md#1 (0.60)" in result.failures[2]
    lines, passed = report(golden, result, "Shop", 4)
    assert not passed
    assert any("retrieval hit@4" in line and "2/3" in line and "BELOW THRESHOLD" in line for line in lines)
    assert any("unknown questions refused" in line and "1/2" in line for line in lines)
    assert sum(line.startswith("  ✗ ") for line in lines) == 3


def test_a_model_reply_that_says_it_does_not_know_and_cites_nothing_is_a_refusal() -> None:
    golden = one_set([{"ask": "Parking?", "unknown": True}])
    said = Outcome(golden.questions[0], (), "I don't have that information, sorry.", True)
    assert score(golden, [said], "unused", ["Prices"]).refused == 1
    cited = Outcome(golden.questions[0], (), "I don't know, but — from Prices: maybe.", True)
    assert score(golden, [cited], "unused", ["Prices"]).refused == 0


def test_all_scores_at_their_thresholds_pass() -> None:
    golden = one_set([{"ask": "Bread?", "source": "prices.md"}])
    out = Outcome(golden.questions[0], (("prices.md#1", "prices.md", 0.2),), "4.50 € — from Prices", True, "Prices")
    lines, passed = report(golden, score(golden, [out], "", ["Prices"]), "Shop", 4)
    assert passed and any("(no such questions)" in line for line in lines)

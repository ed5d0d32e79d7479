"""Golden questions: what a business expects of its knowledge base, scored before a change goes live.

A golden file sits beside the profiles file (``profiles.yaml`` ->
``profiles.golden.yaml``)::

    thresholds: {hit_at_k: 0.8, cited: 0.8, refused: 1.0}   # the defaults of every business
    businesses:
      "whatsapp:+14155238886":
        thresholds: {cited: 0.9}                             # optional, per business
        questions:
          - ask: How much is the sourdough?
            source: knowledge/bakery/prices.md               # the document the answer must come from
            phrase: "4.50"                                   # optional: the reply must say this
          - ask: Can I pay with bitcoin?
            unknown: true                                    # the bot must not answer it

Three scores per business: **hit@k**, the share of answerable questions whose
document is among the chunks retrieved; **cited**, the share whose reply
names that document's title (and says the phrase); **refused**, the share of
``unknown`` questions the bot declined (its unknown reply, or a reply that
cites nothing and says it does not know). A score below its threshold fails
the run. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

DEFAULT_THRESHOLDS = {"hit_at_k": 0.8, "cited": 0.8, "refused": 1.0}
# How a reply says it does not know, in the languages of our examples; a golden file may add its own.
REFUSALS = ("don't have that information", "do not have that information", "don't know", "do not know",
            "not sure", "no tengo esa información", "no lo sé", "no sé")
MAX_QUESTIONS = 500


class GoldenError(ValueError):
    """A golden file that cannot be scored; the message names the business and the question."""


@dataclass(frozen=True)
class Golden:
    ask: str
    source: str = ""
    phrase: str = ""
    unknown: bool = False


@dataclass(frozen=True)
class GoldenSet:
    business: str
    questions: tuple[Golden, ...]
    thresholds: Mapping[str, float]
    refusals: tuple[str, ...] = REFUSALS


@dataclass(frozen=True)
class Outcome:
    """What happened to one golden question."""

    golden: Golden
    retrieved: tuple[tuple[str, str, float], ...]  # (chunk id, source, distance), nearest first
    reply: str
    model_called: bool
    title: str = ""  # the expected document's title, as the bot cites it

    @property
    def hit(self) -> bool:
        return any(source == self.golden.source for _, source, _ in self.retrieved)

    @property
    def cited(self) -> bool:
        text = self.reply.lower()
        named = bool(self.title) and self.title.lower() in text
        return named and (not self.golden.phrase or self.golden.phrase.lower() in text)


@dataclass
class Score:
    business: str
    hits: int = 0
    cited: int = 0
    answerable: int = 0
    refused: int = 0
    unknown: int = 0
    failures: list[str] = field(default_factory=list)

    def rate(self, name: str) -> float | None:
        num, den = {"hit_at_k": (self.hits, self.answerable), "cited": (self.cited, self.answerable),
                    "refused": (self.refused, self.unknown)}[name]
        return None if den == 0 else num / den


def _thresholds(raw: Any, where: str, base: Mapping[str, float]) -> dict[str, float]:
    if raw is None:
        return dict(base)
    if not isinstance(raw, Mapping):
        raise GoldenError(f"{where}: thresholds must be a mapping of {', '.join(DEFAULT_THRESHOLDS)} to 0..1")
    out = dict(base)
    for key, value in raw.items():
        if key not in DEFAULT_THRESHOLDS:
            raise GoldenError(f"{where}: unknown threshold {key!r} (known: {', '.join(DEFAULT_THRESHOLDS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise GoldenError(f"{where}: threshold {key} must be a number from 0 to 1, got {value!r}")
        out[key] = float(value)
    return out


def _question(raw: Any, where: str) -> Golden:
    if not isinstance(raw, Mapping):
        raise GoldenError(f"{where}: must be a mapping with 'ask' and 'source', 'phrase' or 'unknown'")
    extra = sorted(str(k) for k in raw if k not in ("ask", "source", "phrase", "unknown"))
    if extra:
        raise GoldenError(f"{where}: unknown key {extra[0]!r}")
    ask = raw.get("ask")
    if not isinstance(ask, str) or not ask.strip():
        raise GoldenError(f"{where}.ask: must be the question, as a customer would write it")
    unknown = raw.get("unknown", False)
    source, phrase = raw.get("source", ""), raw.get("phrase", "")
    if not isinstance(unknown, bool) or not isinstance(source, str) or not isinstance(phrase, str):
        raise GoldenError(f"{where}: 'unknown' is true or false, 'source' and 'phrase' are text")
    if unknown and (source or phrase):
        raise GoldenError(f"{where}: an unknown question names no source or phrase")
    if not unknown and not source:
        raise GoldenError(f"{where}: needs 'source' (the document the answer comes from) or 'unknown: true'")
    return Golden(ask.strip(), source.strip(), phrase.strip(), unknown)


def golden_sets(document: Any, sources: Mapping[str, Sequence[str]]) -> list[GoldenSet]:
    """The golden sets of a file; ``sources`` maps each business to its documents, which a source must name."""
    if not isinstance(document, Mapping) or not isinstance(document.get("businesses"), Mapping):
        raise GoldenError("the golden file must be a mapping with 'businesses' (and optional 'thresholds')")
    extra = sorted(str(k) for k in document if k not in ("businesses", "thresholds", "refusals"))
    if extra:
        raise GoldenError(f"the golden file: unknown top-level key {extra[0]!r}")
    base = _thresholds(document.get("thresholds"), "the golden file", DEFAULT_THRESHOLDS)
    refusals = document.get("refusals", [])
    if not isinstance(refusals, list) or not all(isinstance(r, str) and r.strip() for r in refusals):
        raise GoldenError("the golden file: refusals must be a list of phrases")
    sets = []
    for business, raw in document["businesses"].items():
        where = f"business {business!r}"
        if business not in sources:
            raise GoldenError(f"{where}: not in the profiles file")
        if not isinstance(raw, Mapping) or not isinstance(raw.get("questions"), list) or not raw["questions"]:
            raise GoldenError(f"{where}: needs a non-empty list of questions")
        if len(raw["questions"]) > MAX_QUESTIONS:
            raise GoldenError(f"{where}: {len(raw['questions'])} questions, at most {MAX_QUESTIONS}")
        questions = tuple(_question(q, f"{where}: questions[{n}]") for n, q in enumerate(raw["questions"], start=1))
        for n, q in enumerate(questions, start=1):
            if q.source and q.source not in sources[business]:
                raise GoldenError(f"{where}: questions[{n}].source {q.source!r} is not one of its knowledge "
                                  f"documents ({', '.join(sources[business]) or 'none'})")
        thresholds = _thresholds(raw.get("thresholds"), where, base)
        sets.append(GoldenSet(str(business), questions, thresholds,
                              REFUSALS + tuple(r.strip().lower() for r in refusals)))
    return sets


def refused(outcome: Outcome, unknown_reply: str, titles: Sequence[str], refusals: Sequence[str]) -> bool:
    """The bot declined: its unknown reply without the model, or a reply citing nothing that says it does not know."""
    text = outcome.reply.lower()
    if not outcome.model_called and unknown_reply and outcome.reply.startswith(unknown_reply):
        return True
    cites = any(f"from {title.lower()}" in text for title in titles if title)
    return not cites and any(phrase in text for phrase in refusals)


def score(golden: GoldenSet, outcomes: Sequence[Outcome], unknown_reply: str, titles: Sequence[str]) -> Score:
    result = Score(golden.business)
    for outcome in outcomes:
        q = outcome.golden
        seen = ", ".join(f"{cid} ({distance:.2f})" for cid, _, distance in outcome.retrieved) or "nothing"
        said = " ".join(outcome.reply.split())[:160]
        if q.unknown:
            result.unknown += 1
            if refused(outcome, unknown_reply, titles, golden.refusals):
                result.refused += 1
            else:
                result.failures.append(f"{q.ask!r} should be refused: retrieved {seen}; replied «{said}»")
            continue
        result.answerable += 1
        result.hits += outcome.hit
        result.cited += outcome.cited
        if not outcome.hit:
            result.failures.append(f"{q.ask!r} expected {q.source}: retrieved {seen}; replied «{said}»")
        elif not outcome.cited:
            text = outcome.reply.lower()
            named = bool(outcome.title) and outcome.title.lower() in text
            missing = [] if named else [f"\"— from {outcome.title or q.source}\""]
            missing += [repr(q.phrase)] if q.phrase and q.phrase.lower() not in text else []
            result.failures.append(f"{q.ask!r} found {q.source} but the reply does not say "
                                   f"{' or '.join(missing)}: «{said}»")
    return result


def report(golden: GoldenSet, result: Score, name: str, top_k: int) -> tuple[list[str], bool]:
    """The lines printed for one business, and whether it meets every threshold."""
    labels = {"hit_at_k": f"retrieval hit@{top_k}", "cited": "answers citing the source",
              "refused": "unknown questions refused"}
    counts = {"hit_at_k": (result.hits, result.answerable), "cited": (result.cited, result.answerable),
              "refused": (result.refused, result.unknown)}
    lines = [f"{golden.business}  {name}: {len(golden.questions)} golden questions"]
    passed = True
    for key, label in labels.items():
        rate = result.rate(key)
        num, den = counts[key]
        wanted = golden.thresholds[key]
        if rate is None:
            lines.append(f"  {label:28s}   -/-          (no such questions)")
            continue
        ok = rate >= wanted
        passed &= ok
        lines.append(f"  {label:28s} {num:3d}/{den:<3d} {rate:6.0%}  threshold {wanted:.0%}  "
                     f"{'ok' if ok else 'BELOW THRESHOLD'}")
    for failure in result.failures:
        lines.append(f"  ✗ {failure}")
    return lines, passed

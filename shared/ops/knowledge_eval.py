"""``make eval``: a profiles file's golden questions through the real retrieval and the configured model.

    python -m shared.ops.knowledge_eval profiles.yaml [--golden profiles.golden.yaml]

For each business of the golden file, its documents are read and written as
a candidate version exactly as profiles-apply writes them, but not switched
on: customers keep the live version while the candidate is measured, and the
apply that follows finds the candidate's chunks written and embeds nothing
again. Each question is then answered as a message is: embedded once, the
nearest chunks of that business's candidate within the threshold, the
documents' block in the system prompt, ``knowledge_only`` answered without
the model. Per business it prints hit@k, answers citing the source, unknown
questions refused and every failure, and exits 1 when a score is below its
threshold, so cloudbuild-profiles.yaml stops before the apply.

This module runs against whatever the settings name (the cloud in the
profiles build); ``make eval`` runs devstack/eval.py, which starts a
Firestore emulator and the offline model first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from shared.adapters.knowledge_search import KnowledgeSearch
from shared.adapters.openai_model import ChatModel, ModelUnavailable
from shared.adapters.profile_store import FirestoreProfiles, defaults_from_settings
from shared.config import Settings
from shared.domain.conversation import utcnow
from shared.domain.knowledge import KnowledgeSet, knowledge_set_from_stored
from shared.domain.knowledge_eval import GoldenError, GoldenSet, Outcome, golden_sets, report, score
from shared.domain.knowledge_prompt import plan_answer
from shared.domain.profiles import BusinessProfile, ProfileError
from shared.ops.admin import read_profiles_file
from shared.ops.knowledge_apply import lazy_knowledge, prepare
from shared.ops.knowledge_files import Document, read_knowledge


def golden_path(profiles_file: Path) -> Path:
    """``profiles.yaml`` -> ``profiles.golden.yaml``, beside it."""
    return profiles_file.with_name(f"{profiles_file.stem}.golden.yaml")


def _ask(search: KnowledgeSearch, model: ChatModel, settings: Settings, profile: BusinessProfile,
         knowledge: Any, question: str) -> tuple[tuple[tuple[str, str, float], ...], str, bool]:
    retrieved = search.search(profile.address, knowledge, question, settings.model_budget_seconds)
    plan = plan_answer(profile.system_prompt or settings.system_prompt, retrieved, settings.knowledge_prompt_tokens,
                       profile.knowledge_only, profile.unknown_reply, profile.handoff_keyword)
    seen = tuple((r.chunk_id, r.source, r.distance) for r in retrieved)
    if plan.unknown is not None:
        return seen, plan.unknown, False
    assert plan.prompt is not None
    try:
        reply = model.reply([], question, system_prompt=plan.prompt.system_prompt, model=profile.model or None)
    except ModelUnavailable as exc:
        reply = f"(the model failed: {exc})"
    return seen, reply, True


def evaluate(settings: Settings, profiles_file: Path, golden_file: Path, client: Callable[[], Any],
             openai_api_key: Callable[[], str], print_line: Callable[[str], None] = print) -> bool:
    """Score every business of the golden file; True when all meet their thresholds."""
    _, profiles = read_profiles_file(profiles_file, defaults_from_settings(settings))
    documents = read_knowledge(profiles, profiles_file.parent, settings)
    try:
        raw = yaml.safe_load(golden_file.read_text())
    except OSError as exc:
        raise GoldenError(f"{golden_file}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise GoldenError(f"{golden_file}: not valid YAML: {exc}") from None
    sets = golden_sets(raw, {address: [d.source for d in docs] for address, docs in documents.items()})
    store, embedder = lazy_knowledge(settings, client, openai_api_key)
    stored = FirestoreProfiles(client, settings.profiles_collection, defaults_from_settings(settings), 0).stored()
    search = KnowledgeSearch(embedder(), store(), settings.knowledge_top_k, settings.knowledge_max_distance)
    model = ChatModel(settings.openai_model, settings.system_prompt, openai_api_key, settings.openai_base_url,
                      settings.openai_timeout_seconds, settings.openai_max_retries, settings.model_budget_seconds,
                      settings.openai_max_tokens)
    passed = True
    for golden in sets:
        live = knowledge_set_from_stored(stored.get(golden.business, {}).get("knowledgeSet"))
        passed &= _evaluate_business(golden, profiles[golden.business], documents[golden.business], live, store(),
                                     search, model, settings, print_line)
    print_line("eval: every business meets its thresholds" if passed else "eval: FAILED, see the lines above")
    return passed


def _evaluate_business(golden: GoldenSet, profile: BusinessProfile, documents: tuple[Document, ...],
                       live: KnowledgeSet | None, store: Any, search: KnowledgeSearch, model: ChatModel,
                       settings: Settings, print_line: Callable[[str], None]) -> bool:
    """One business: its candidate version written (not switched on), then its questions answered from it."""
    candidate = prepare(store, search.embedder, golden.business, documents, live, utcnow()).knowledge_set
    titles = {d.source: d.title for d in documents}
    outcomes = []
    for question in golden.questions:
        retrieved, reply, called = _ask(search, model, settings, profile, candidate, question.ask)
        outcomes.append(Outcome(question, retrieved, reply, called, titles.get(question.source, "")))
    result = score(golden, outcomes, profile.unknown_reply, list(titles.values()))
    lines, ok = report(golden, result, profile.name, settings.knowledge_top_k)
    for line in lines:
        print_line(line)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.ops.knowledge_eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles_file", type=Path)
    parser.add_argument("--golden", type=Path, help="default: PROFILES.golden.yaml beside the profiles file")
    args = parser.parse_args(argv)
    golden = args.golden or golden_path(args.profiles_file)
    if args.golden is None and not golden.exists():
        print(f"eval: no golden questions beside {args.profiles_file} ({golden.name}): nothing to evaluate")
        return 0
    from shared import bootstrap

    try:
        ok = evaluate(bootstrap.settings(), args.profiles_file, golden, lambda: bootstrap.store().client,
                      bootstrap.secrets().openai_api_key)
    except (ProfileError, GoldenError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

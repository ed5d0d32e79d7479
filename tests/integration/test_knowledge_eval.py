"""make eval on the emulator and the offline model: scores, failures, exit status, and nothing switched on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from google.cloud import firestore

from devstack.offline_knowledge import OFFLINE_MAX_DISTANCE
from devstack.openai_stub import OpenAIStub
from shared.adapters.knowledge_store import FirestoreKnowledge
from shared.adapters.profile_store import FirestoreProfiles, defaults_from_settings
from shared.config import Settings
from shared.domain.conversation import utcnow
from shared.ops.admin import read_profiles_file
from shared.ops.knowledge_apply import apply_with_knowledge, lazy_knowledge
from shared.ops.knowledge_eval import evaluate, golden_path, main
from shared.ops.knowledge_files import read_knowledge

REPO = Path(__file__).resolve().parents[2]
BAKERY = "whatsapp:+14155238886"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    running = OpenAIStub().start()
    yield running
    running.stop()


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of profiles.example.yaml with its documents and golden questions."""
    shutil.copytree(REPO / "knowledge", tmp_path / "knowledge")
    for name in ("profiles.example.yaml", "profiles.example.golden.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path / "profiles.example.yaml"


def settings_for(stub: OpenAIStub) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return Settings(openai_base_url=stub.base_url, knowledge_collection=f"chunks-{suffix}",
                    profiles_collection=f"profiles-{suffix}", knowledge_max_distance=OFFLINE_MAX_DISTANCE,
                    profile_cache_seconds=0)


def run(settings: Settings, profiles: Path, golden: Path, client: Any) -> tuple[bool, list[str]]:
    lines: list[str] = []
    ok = evaluate(settings, profiles, golden, lambda: client, lambda: "offline-model", lines.append)
    return ok, lines


def test_the_example_businesses_meet_their_thresholds_and_nothing_goes_live(emulators: Any, stub: OpenAIStub,
                                                                             example: Path) -> None:
    settings = settings_for(stub)
    client = firestore.Client(project=emulators.project)
    ok, lines = run(settings, example, golden_path(example), client)
    assert ok, "\n".join(lines)
    assert any(line.startswith(BAKERY) and "9 golden questions" in line for line in lines)
    assert any("retrieval hit@4" in line and "7/7" in line for line in lines)
    assert lines[-1] == "eval: every business meets its thresholds"
    # The candidate's chunks are written, but no profile was switched to them.
    assert list(client.collection(settings.profiles_collection).stream()) == []
    assert FirestoreKnowledge(lambda: client, settings.knowledge_collection).versions(BAKERY)
    # The apply that follows finds the candidate written: it embeds nothing.
    embedded = len(stub.embedding_requests)
    raw, profiles = read_profiles_file(example, defaults_from_settings(settings))
    store, embedder = lazy_knowledge(settings, lambda: client, lambda: "offline-model")
    put = FirestoreProfiles(lambda: client, settings.profiles_collection, defaults_from_settings(settings), 0)
    apply_with_knowledge(put.put, {}, raw, read_knowledge(profiles, example.parent, settings), store, embedder,
                         settings, utcnow)
    assert len(stub.embedding_requests) == embedded
    client.close()


def test_a_score_below_its_threshold_fails_and_shows_the_failure(emulators: Any, stub: OpenAIStub,
                                                                  example: Path) -> None:
    golden = example.with_name("strict.golden.yaml")
    golden.write_text(f"""
thresholds: {{hit_at_k: 1.0, cited: 1.0, refused: 1.0}}
businesses:
  "{BAKERY}":
    questions:
      - ask: When are you shut for Xmas?
        source: knowledge/bakery/opening-hours.md
      - ask: How much is the sourdough?
        source: knowledge/bakery/prices.md
        phrase: "4.50"
      - ask: Do you sell sourdough loaves?
        unknown: true
""")
    client = firestore.Client(project=emulators.project)
    ok, lines = run(settings_for(stub), example, golden, client)
    client.close()
    assert not ok and lines[-1] == "eval: FAILED, see the lines above"
    assert any("retrieval hit@4" in line and "1/2" in line and "BELOW THRESHOLD" in line for line in lines)
    assert any(line.startswith("  ✗ 'When are you shut for Xmas?' expected knowledge/bakery/opening-hours.md")
               for line in lines)
    assert any(line.startswith("  ✗ 'Do you sell sourdough loaves?' should be refused") for line in lines)


def test_without_a_golden_file_the_profiles_build_step_passes_saying_so(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text('businesses:\n  "whatsapp:+1555":\n    name: Plain\n')
    assert main([str(profiles)]) == 0
    assert "no golden questions beside" in capsys.readouterr().out


def test_profiles_validate_names_the_business_and_the_bad_document(tmp_path: Path) -> None:
    (tmp_path / "menu.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "profiles.yaml").write_text(f'businesses:\n  "{BAKERY}":\n    knowledge: [menu.txt]\n')
    result = subprocess.run([sys.executable, "-m", "shared.ops.admin", "profiles-validate", "profiles.yaml"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"business '{BAKERY}': knowledge document 'menu.txt' is binary" in result.stderr

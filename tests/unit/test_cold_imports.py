"""What each function's module loads before its first request, and how: the cold-start budget, without a clock.

Bench figure 5 measures the cold start against a bare function; these checks
keep the trimming behind it from slipping back unnoticed: a module-level
import of a library a function does not need on its common path shows here as
a name in ``sys.modules`` of a fresh interpreter
(docs/decisions/0026-cold-start.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Loaded on demand only: Pub/Sub by the webhook's publisher, jsonschema by a
# business's first tool, id_token by the outbound API's signed-token proof,
# PyYAML by profile files (ops), the inbox page and the ops commands by their own entry points.
NOBODY_AT_IMPORT = (
    "google.cloud.pubsub_v1", "jsonschema", "referencing", "google.oauth2.id_token", "yaml",
    "shared.ops", "shared.inbox_app", "shared.handlers.outbound", "shared.adapters.tool_caller",
    "shared.adapters.content_records", "shared.adapters.twilio_content",
)
NOT_LOADED = {
    # The processor needs openai, Firestore and Cloud Tasks; not Twilio's REST client nor the sender's steps.
    "processor_fn.main": NOBODY_AT_IMPORT + ("twilio.rest", "shared.handlers.sender", "shared.adapters.twilio_api"),
    "sender_fn.main": NOBODY_AT_IMPORT + ("openai", "pydantic", "shared.handlers.processor",
                                          "shared.adapters.knowledge_search"),
    "webhook_fn.main": NOBODY_AT_IMPORT + ("openai", "google.cloud.firestore", "google.cloud.tasks_v2", "twilio.rest",
                                           "cryptography", "shared.handlers.processor", "shared.handlers.sender"),
}


def loaded_after_import(module: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` a fresh interpreter holds after importing ``module`` (and functions_framework, as served)."""
    probe = (
        f"import json, sys, functions_framework, {module}\n"
        f"print(json.dumps(sorted(n for n in {list(names)!r} if n in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("module", sorted(NOT_LOADED))
def test_a_function_module_loads_no_library_its_first_message_does_not_need(module: str) -> None:
    assert loaded_after_import(module, NOT_LOADED[module]) == []


def test_the_probe_sees_a_module_that_is_loaded() -> None:
    """The check can fail: what the processor does need is seen."""
    needed = ("openai", "google.cloud.firestore", "google.cloud.tasks_v2")
    assert loaded_after_import("processor_fn.main", needed) == sorted(needed)


@pytest.mark.parametrize("module", sorted(NOT_LOADED))
def test_a_function_module_freezes_what_it_loaded_and_leaves_the_collector_on(module: str) -> None:
    """The collector pauses only while the module loads: left off, the process's garbage would never be freed."""
    probe = f"import gc, json, functions_framework, {module}\nprint(json.dumps([gc.isenabled(), gc.get_freeze_count()]))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    enabled, frozen = json.loads(out.stdout)
    assert enabled is True
    # functions_framework and Flask alone leave about 31,000 tracked objects; each function's module adds more.
    assert frozen > 40_000, f"only {frozen} objects frozen: the module did not freeze what it loaded"

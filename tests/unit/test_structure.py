"""The shape of shared/, read with ``ast`` (scripts/structure_report.py prints the same figures).

Roles depend only downwards: domain (pure) <- adapters <- handlers (steps, then the pipelines that
run them) <- ops and the composition root. No import circle anywhere, no module over about 300
lines, one place that writes a message's status, and no compare-and-set retry loop written by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.structure_report import cycles, graph, scan

ROOT = Path(__file__).resolve().parents[2]
MODULES = scan(ROOT)
EDGES = graph(MODULES)
# The entry modules of the handlers: what *_fn/main.py and bootstrap call. No step imports them.
PIPELINES = {f"shared.handlers.{name}" for name in ("processor", "sender", "reconciler", "outbound", "webhook")}
MAX_LINES = 310


def imports_of(prefix: str) -> dict[str, set[str]]:
    return {name: targets for name, targets in EDGES.items() if name.startswith(prefix)}


def test_the_import_graph_has_no_circle() -> None:
    assert cycles(EDGES) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_domain_is_pure_and_imports_only_itself() -> None:
    outside = {name: sorted(t for t in targets if not t.startswith("shared.domain."))
               for name, targets in imports_of("shared.domain.").items()}
    assert {name: t for name, t in outside.items() if t} == {}


def test_adapters_never_import_handlers_ops_or_the_composition_root() -> None:
    upward = {name: sorted(t for t in targets if t.startswith(("shared.handlers", "shared.ops", "shared.bootstrap")))
              for name, targets in imports_of("shared.adapters.").items()}
    assert {name: t for name, t in upward.items() if t} == {}


def test_handlers_depend_only_downwards_and_no_step_imports_a_pipeline() -> None:
    wrong = {}
    for name, targets in imports_of("shared.handlers.").items():
        bad = sorted(t for t in targets if t.startswith(("shared.ops", "shared.bootstrap")) or t in PIPELINES)
        if bad:
            wrong[name] = bad
    assert wrong == {}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_much_over_300_lines(name: str) -> None:
    assert MODULES[name].lines <= MAX_LINES, f"{MODULES[name].path} has {MODULES[name].lines} lines"


def test_one_place_writes_a_message_status() -> None:
    writes = [(str(m.path.relative_to(ROOT)), line) for m in MODULES.values() for line in m.status_writes]
    assert [path for path, _ in writes] == ["shared/domain/entry.py"], writes


def test_no_compare_and_set_retry_loop_is_written_by_hand() -> None:
    loops = [(str(m.path.relative_to(ROOT)), line) for m in MODULES.values() for line in m.retry_loops]
    assert [path for path, _ in loops] == ["shared/adapters/compare_and_set.py"], loops

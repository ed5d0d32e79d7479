"""bench/charts.py draws every chart the results hold, from those results alone."""

from __future__ import annotations

import json
from pathlib import Path

from bench import charts
from devstack.stack import ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _results() -> dict:
    return json.loads((ROOT / "bench" / "results.json").read_text())


def test_a_full_results_file_gives_a_chart_per_section(tmp_path: Path) -> None:
    results = _results()
    written = charts.write_charts(results, tmp_path)
    expected = {name for name in charts.CHARTS if name != "burst_user" or "burst" in results}
    assert {p.stem for p in written} == expected
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 10_000


def test_a_section_missing_from_the_results_is_skipped_not_invented(tmp_path: Path) -> None:
    results = {k: v for k, v in _results().items() if k in ("machine", "throughput", "quick")}
    assert [p.stem for p in charts.write_charts(results, tmp_path)] == ["throughput"]


def test_a_redraw_of_the_same_results_is_the_same_file(tmp_path: Path) -> None:
    results = _results()
    first = {p.name: p.read_bytes() for p in charts.write_charts(results, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in charts.write_charts(results, tmp_path / "b")}
    assert first == second


def test_the_numbers_drawn_come_from_the_results(tmp_path: Path) -> None:
    """Change one figure in the results and its chart changes: nothing is drawn from elsewhere."""
    results = _results()
    before = charts.write_charts(results, tmp_path / "a")
    results["throughput"]["steps"][0]["completion_rate"] += 3.0
    after = charts.write_charts(results, tmp_path / "b")
    changed = {a.stem for a, b in zip(before, after) if a.read_bytes() != b.read_bytes()}
    assert changed == {"throughput"}

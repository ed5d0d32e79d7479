"""The dashboard and the Cloud Build files against Google's published API schemas.

The dashboard's JSON is rendered from terraform/dashboard.tf by the real
terraform binary (tests/infra/hcl_render.py) for every environment, then
checked recursively against the ``Dashboard`` schema of the discovery
document ``monitoring v1``; each cloudbuild*.yaml is checked against the
``Build`` schema of ``cloudbuild v1`` (tests/infra/discovery.py). Both
documents ship with google-api-python-client, pinned in requirements-dev.txt,
so nothing is fetched. On top of the schema, what the schema cannot say: a
legend template names labels the way a filter-based chart can resolve them.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.infra import discovery, hcl_render
from tests.infra.test_terraform import REPO, TERRAFORM

MONITORING = ("monitoring", "v1")
CLOUDBUILD = ("cloudbuild", "v1")
ENVIRONMENTS = sorted(path.stem for path in (TERRAFORM / "environments").glob("*.tfvars"))
BUILD_FILES = sorted(path.name for path in REPO.glob("cloudbuild*.yaml"))
# Values of the variables no tfvars sets (they come from the command line).
COMMAND_LINE = {
    "project_id": "example-project",
    "state_bucket": "example-project-tfstate",
    "state_prefix": "whatsapp-assistant/example",
}


def render_dashboard(directory: Path, environment: str, workdir: Path) -> dict[str, Any]:
    text = (directory / "dashboard.tf").read_text()
    expression = hcl_render.attribute_expression(text, "dashboard_json")
    rendered = hcl_render.render(
        directory, workdir, {"dashboard": expression}, COMMAND_LINE,
        var_file=(directory / "environments" / f"{environment}.tfvars").resolve(),
    )
    return json.loads(rendered["dashboard"])


@pytest.fixture(scope="module")
def dashboards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return {env: render_dashboard(TERRAFORM, env, tmp_path_factory.mktemp(f"render-{env}")) for env in ENVIRONMENTS}


def _data_sets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    widgets = list(dashboard.get("gridLayout", {}).get("widgets", []))
    widgets += [tile.get("widget", {}) for tile in dashboard.get("mosaicLayout", {}).get("tiles", [])]
    for layout, groups in (("rowLayout", "rows"), ("columnLayout", "columns")):
        for group in dashboard.get(layout, {}).get(groups, []):
            widgets += group.get("widgets", [])
    return [
        (widget.get("title", "?"), data_set)
        for widget in widgets
        for data_set in widget.get("xyChart", {}).get("dataSets", [])
    ]


# A filter (not MQL, not PromQL) chart names a series' labels these ways (Google's dashboard samples, DASHBOARD_TIPS).
_FILTER_LEGEND_LABEL = re.compile(r"(metric|resource)\.labels\.(\w+)|metadata\.(?:system|user)_labels\\?\.(\w+)")


def check_legends(dashboard: dict[str, Any]) -> None:
    """Every ${...} in a legend template is a label the chart's series carry, in the filter charts' syntax."""
    checked = 0
    for title, data_set in _data_sets(dashboard):
        series = data_set.get("timeSeriesQuery", {}).get("timeSeriesFilter")
        template = data_set.get("legendTemplate", "")
        if series is None or "${" not in template:
            continue
        aggregation = series.get("aggregation", {})
        grouped = {
            match.groups()
            for field in aggregation.get("groupByFields", [])
            for match in [re.fullmatch(r'(metric|resource)\.label\."?(\w+)"?', field)]
            if match
        }
        for field in aggregation.get("groupByFields", []):
            assert re.fullmatch(r'(metric|resource)\.label\."?\w+"?|resource\.type', field), (
                f"{title!r}: groupByFields {field!r} is not metric.label.KEY or resource.label.KEY"
            )
        for placeholder in re.findall(r"\$\{([^}]*)\}", template):
            match = _FILTER_LEGEND_LABEL.fullmatch(placeholder)
            assert match, (
                f"{title!r}: legend ${{{placeholder}}} is not ${{metric.labels.KEY}} or ${{resource.labels.KEY}} "
                "(labels.KEY is MQL's form, metric.label.KEY the filter's)"
            )
            kind, key = match.group(1), match.group(2)
            reduced = aggregation.get("crossSeriesReducer", "REDUCE_NONE") != "REDUCE_NONE"
            if kind and reduced:
                assert (kind, key) in grouped, f"{title!r}: legend names {kind} label {key}, which the reducer drops"
            checked += 1
    assert checked, "no legend template names a label: the check found nothing to check"


def test_dashboard_matches_the_monitoring_api(dashboards: dict[str, dict[str, Any]]) -> None:
    for env, dashboard in dashboards.items():
        errors = discovery.validate(dashboard, MONITORING, "Dashboard")
        assert not errors, f"{env}: the dashboard breaks the monitoring v1 Dashboard schema:\n  " + "\n  ".join(errors)
        assert _data_sets(dashboard), f"{env}: no chart found in the rendered dashboard"


def test_dashboard_legends_name_series_labels(dashboards: dict[str, dict[str, Any]]) -> None:
    for dashboard in dashboards.values():
        check_legends(dashboard)


@pytest.mark.parametrize(
    "old, new",
    [
        pytest.param('"$${metric.labels.${trimprefix', '"$${labels.${trimprefix', id="mql-syntax"),
        pytest.param("$${metric.labels.business}", "$${metric.label.business}", id="filter-field-syntax"),
        pytest.param('groupByFields      = ["metric.label.business"]', "groupByFields      = []", id="label-reduced-away"),
    ],
)
def test_legend_check_fails_on_the_old_templates(old: str, new: str, tmp_path: Path) -> None:
    """The dashboard as it was (two label syntaxes, both wrong for a filter chart) is refused."""
    copy_dir = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy_dir, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "bootstrap"))
    text = (copy_dir / "dashboard.tf").read_text()
    assert old in text
    (copy_dir / "dashboard.tf").write_text(text.replace(old, new, 1))
    with pytest.raises(AssertionError, match=r"legend"):
        check_legends(render_dashboard(copy_dir, ENVIRONMENTS[0], tmp_path / "render"))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set the field at a dotted path (list indexes as numbers) of a rendered document."""
    def apply(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return apply


def _rename(path: str, new_name: str) -> Callable[[dict[str, Any]], None]:
    def apply(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[new_name] = node.pop(last)

    return apply


CHART = "gridLayout.widgets.0.xyChart"


@pytest.mark.parametrize(
    "change, expect",
    [
        pytest.param(_rename(f"{CHART}.dataSets.0.legendTemplate", "legend"), r"legend: unknown field", id="unknown-field"),
        pytest.param(_set(f"{CHART}.dataSets.0.plotType", "LINES"), r"'LINES' is not one of", id="enum"),
        pytest.param(_set("gridLayout.columns", ["2"]), r"columns: expected a string", id="type"),
        pytest.param(_set(f"{CHART}.dataSets.0.timeSeriesQuery.timeSeriesFilter.aggregation.alignmentPeriod", "1m"),
                     r"not a duration", id="duration"),
        pytest.param(_set(f"{CHART}.dataSets.0.timeSeriesQuery.timeSeriesFilter.aggregation.perSeriesAligner", "ALIGN_SUM_OF"),
                     r"perSeriesAligner", id="aligner"),
        pytest.param(_set(f"{CHART}.dataSets.0.timeSeriesQuery.timeSeriesFilter.statisticalTimeSeriesFilter", {}),
                     r"statisticalTimeSeriesFilter: deprecated", id="deprecated-field"),
        pytest.param(_rename(f"{CHART}.yAxis", "y_axis"), r"y_axis: unknown field", id="snake-case"),
    ],
)
def test_dashboard_schema_check_fails_on_a_broken_dashboard(
    change: Callable[[dict[str, Any]], None], expect: str, dashboards: dict[str, dict[str, Any]]
) -> None:
    broken = copy.deepcopy(dashboards[ENVIRONMENTS[0]])
    change(broken)
    errors = discovery.validate(broken, MONITORING, "Dashboard")
    assert any(re.search(expect, e) for e in errors), errors


# -------------------------------------------------------------- Cloud Build


def check_build_file(name: str, build: dict[str, Any]) -> None:
    errors = discovery.validate(build, CLOUDBUILD, "Build")
    assert not errors, f"{name} breaks the cloudbuild v1 Build schema:\n  " + "\n  ".join(errors)
    ids = [step.get("id") for step in build["steps"]]
    for step in build["steps"]:
        for wanted in step.get("waitFor", []):
            earlier = ids[: ids.index(step.get("id"))]
            assert wanted == "-" or wanted in earlier, f"{name}: {step.get('id')} waits for {wanted}"
    for key in build.get("substitutions", {}):
        assert re.fullmatch(r"_[A-Z0-9_]+", key), f"{name}: user substitution {key} must be _UPPER_CASE"
    for tag in build.get("tags", []):
        assert re.fullmatch(r"[\w][\w.-]{0,127}", tag), f"{name}: tag {tag!r} is not a valid build tag"


def _build(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize("name", BUILD_FILES)
def test_build_file_matches_the_cloudbuild_api(name: str) -> None:
    check_build_file(name, _build(name))


def test_every_build_file_is_checked() -> None:
    assert {"cloudbuild.yaml", "cloudbuild-test.yaml", "cloudbuild-profiles.yaml"} <= set(BUILD_FILES)


@pytest.mark.parametrize(
    "change, expect",
    [
        pytest.param(_set("steps.0.waitFor", "tools"), r"waitFor: expected a list", id="waitfor-string"),
        pytest.param(_rename("options.logging", "logs"), r"logs: unknown field", id="unknown-option"),
        pytest.param(_set("options.logging", "STACKDRIVER_ONLY"), r"deprecated", id="deprecated-enum"),
        pytest.param(_set("timeout", "2h"), r"not a duration", id="timeout-not-seconds"),
        pytest.param(_set("substitutions._TESTS_WAIT_SECONDS", 3000), r"expected a string", id="unquoted-number"),
        pytest.param(_set("status", "SUCCESS"), r"output only", id="output-only"),
        pytest.param(_rename("steps.1.entrypoint", "entry_point"), r"entry_point: unknown field", id="step-field"),
        pytest.param(_set("steps.2.waitFor", ["later"]), r"waits for later", id="waits-for-unknown-step"),
    ],
)
def test_build_schema_check_fails_on_a_broken_build(change: Callable[[dict[str, Any]], None], expect: str) -> None:
    broken = _build("cloudbuild.yaml")
    change(broken)
    with pytest.raises(AssertionError, match=expect):
        check_build_file("cloudbuild.yaml", broken)

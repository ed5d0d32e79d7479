"""terraform/ for business tools: each tool secret exists without a value and only processor_fn reads it; the
dashboard counts tool calls and errors per business from the log lines the tool caller writes.

Every check is shown to fail on a configuration that breaks it (as in test_terraform.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.infra.test_api_schemas import ENVIRONMENTS, render_dashboard
from tests.infra.test_terraform import (
    IDENTITY,
    REPO,
    TERRAFORM,
    TOOL_SECRET,
    Expr,
    TfConfig,
    check_secret_access,
    load_config,
)

TOOLS_TF = TERRAFORM / "tools.tf"
CALLER = REPO / "shared" / "adapters" / "tool_caller.py"
# What an operator's tfvars would say for the example bakery.
WITH_SECRETS = ["panaderia-sol-tools", "clinica-tools"]


def configured(directory: Path, secret_ids: list[str], tmp_path: Path, change: Callable[[str], str] = str) -> TfConfig:
    """terraform/ as applied with ``tool_secret_ids = secret_ids`` (the default written in), ``change`` applied to tools.tf."""
    copy = tmp_path / "terraform"
    shutil.copytree(directory, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    text = (copy / "tools.tf").read_text()
    listed = ", ".join(f'"{s}"' for s in secret_ids)
    text, count = re.subn(r'(variable "tool_secret_ids" \{.*?default\s*=\s*)\[\]', rf"\g<1>[{listed}]", text,
                          count=1, flags=re.DOTALL)
    assert count == 1, "tool_secret_ids has no empty default to replace"
    (copy / "tools.tf").write_text(change(text))
    return load_config(copy)


def check_tool_secrets(config: TfConfig, secret_ids: list[str]) -> None:
    secrets = {name: body for name, body in config.of_type("google_secret_manager_secret").items()
               if name.startswith("tool[")}
    assert {str(b.get("secret_id")) for b in secrets.values()} == set(secret_ids), f"tool secrets: {sorted(secrets)}"
    grants = [b for b in config.of_type("google_secret_manager_secret_iam_member").values()
              if TOOL_SECRET in str(b.get("secret_id"))]
    assert len(grants) == len(secret_ids), f"{len(grants)} accessor grants for {len(secret_ids)} tool secrets"
    for body in grants:
        assert body.get("role") == "roles/secretmanager.secretAccessor", f"tool secret role {body.get('role')}"
        assert body.get("member") == Expr(f'{IDENTITY}["processor"].member'), f"tool secret read by {body.get('member')}"
    for name, body in config.of_type("google_secret_manager_secret_version").items():
        assert TOOL_SECRET not in str(body.get("secret")), f"version {name}: a tool secret's value would be in the state"
    check_secret_access(config)


def test_no_tool_secret_by_default() -> None:
    check_tool_secrets(load_config(), [])


def test_each_listed_tool_secret_exists_and_only_the_processor_reads_it(tmp_path: Path) -> None:
    check_tool_secrets(configured(TERRAFORM, WITH_SECRETS, tmp_path), WITH_SECRETS)


@pytest.mark.parametrize(("change", "expect"), [
    (lambda t: t.replace('google_service_account.identity["processor"].member',
                         'google_service_account.identity["sender"].member'), "granted to|read by"),
    (lambda t: t.replace("roles/secretmanager.secretAccessor", "roles/secretmanager.admin"), "role"),
    (lambda t: t + '\nresource "google_secret_manager_secret_version" "tool" {\n  for_each    = toset(var.tool_secret_ids)\n'
               '  secret      = google_secret_manager_secret.tool[each.key].id\n  secret_data = "x"\n}\n', "in the state"),
    (lambda t: re.sub(r'resource "google_secret_manager_secret_iam_member" "tool_accessor" \{.*?\n\}\n', "", t,
                      flags=re.DOTALL), "accessor grants"),
])
def test_the_secret_check_fails_on_a_broken_grant(change: Callable[[str], str], expect: str, tmp_path: Path) -> None:
    broken = configured(TERRAFORM, WITH_SECRETS, tmp_path, change)
    with pytest.raises(AssertionError, match=expect):
        check_tool_secrets(broken, WITH_SECRETS)


def logged_events() -> set[str]:
    """The events the tool caller logs for a call (its success and its failure)."""
    found = set(re.findall(r'"(tool_[a-z_]+)" if answer\.status == DONE else "(tool_[a-z_]+)"', CALLER.read_text()))
    events = {e for pair in found for e in pair}
    assert events, "cannot find the tool caller's events"
    return events


def _chart(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    found = [w for w in dashboard["gridLayout"]["widgets"] if w.get("title", "").startswith(title)]
    assert found, f"the dashboard has no chart {title!r}"
    (query,) = [d["timeSeriesQuery"]["timeSeriesFilter"] for d in found[0]["xyChart"]["dataSets"]]
    return query


def check_tool_charts(dashboard: dict[str, Any]) -> None:
    """On the dashboard as Terraform renders it: the calls and errors charts, per business, of the caller's events."""
    events = logged_events()
    for title, wanted in (("Tool calls per business", events), ("Tool errors per business", {"tool_failed"} & events)):
        query = _chart(dashboard, title)
        counted = set(re.findall(r'metric\.label\.event="(\w+)"', query["filter"]))
        assert counted == wanted, f"{title}: counts {sorted(counted)}, the tool caller logs {sorted(wanted)}"
        assert "logging.googleapis.com/user/" in query["filter"], f"{title}: not the events metric"
        assert query["aggregation"].get("groupByFields") == ["metric.label.business"], f"{title} is not per business"


def test_the_dashboard_counts_tool_calls_and_errors_per_business(tmp_path: Path) -> None:
    check_tool_charts(render_dashboard(TERRAFORM, ENVIRONMENTS[0], tmp_path))


@pytest.mark.parametrize(("change", "expect"), [
    (lambda t: t.replace("        local.event_chart.tool_errors,\n", ""), "no chart 'Tool errors per business'"),
    (lambda t: t.replace('events = ["tool_called", "tool_failed"]', 'events = ["tool_called"]'), "the tool caller logs"),
    (lambda t: t.replace('events = ["tool_failed"], by = "metric.label.business"',
                         'events = ["tool_failed"], by = "metric.label.reason"'), "not per business"),
])
def test_the_chart_check_fails_on_a_broken_dashboard(change: Callable[[str], str], expect: str, tmp_path: Path) -> None:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    text = (copy / "dashboard.tf").read_text()
    assert change(text) != text, "the mutation did not change dashboard.tf"
    (copy / "dashboard.tf").write_text(change(text))
    with pytest.raises(AssertionError, match=expect):
        check_tool_charts(render_dashboard(copy, ENVIRONMENTS[0], tmp_path / "render"))

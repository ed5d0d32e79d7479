"""terraform/analytics.tf: the pipeline's event lines go to a partitioned BigQuery dataset with an expiry, through
a sink whose own identity may write that dataset and nothing else; the inbox's lines and tool arguments stay out.

The sink's filter is rendered by the real Terraform binary (tests/infra/hcl_render.py). Every check is shown to
fail on a configuration that breaks it (as in test_terraform.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests.infra import hcl_render
from tests.infra.test_api_schemas import COMMAND_LINE
from tests.infra.test_terraform import TERRAFORM, Expr, TfConfig, load_config

SINK = "google_logging_project_sink"
DATASET = "google_bigquery_dataset"
GRANT = "google_bigquery_dataset_iam_member"
PIPELINE = ("webhook", "processor", "sender", "reconciler", "outbound")


def check_sink(config: TfConfig) -> None:
    sinks = config.of_type(SINK)
    assert list(sinks) == ["analytics"], f"sinks: {sorted(sinks)}"
    sink = sinks["analytics"]
    datasets = config.of_type(DATASET)
    assert list(datasets) == ["analytics"], f"datasets: {sorted(datasets)}"
    assert str(sink.get("destination")).startswith("bigquery.googleapis.com/projects/${var.project_id}/datasets/"), \
        f"sink destination {sink.get('destination')}"
    destination = str(sink.get("destination"))
    assert "${google_bigquery_dataset.analytics.dataset_id}" in destination, "sink not into the dataset"
    options = sink.get("bigquery_options") or [{}]
    assert options[0].get("use_partitioned_tables") is True, "tables not partitioned (a table per day instead)"
    assert sink.get("unique_writer_identity") is True, "the sink must have its own writer identity"
    assert not sink.get("disabled"), "sink disabled"


def check_expiry(config: TfConfig) -> None:
    dataset = config.resource(DATASET, "analytics")
    expiry = str(dataset.get("default_partition_expiration_ms"))
    assert re.fullmatch(r"var\.analytics_partition_expiration_days \* 86400000", expiry), \
        f"partition expiry {expiry!r} is not the days variable in milliseconds"
    variable = config.variables["analytics_partition_expiration_days"]
    assert variable.get("description") and int(variable["default"]) >= 1
    assert dataset.get("delete_contents_on_destroy") is not True, "a destroy would drop the history"


def check_writer_grant(config: TfConfig) -> None:
    writer = Expr("google_logging_project_sink.analytics.writer_identity")
    grants = config.of_type(GRANT)
    assert len(grants) == 1, f"dataset grants: {sorted(grants)}"
    grant = next(iter(grants.values()))
    assert grant.get("member") == writer, f"dataset grant to {grant.get('member')}"
    assert grant.get("role") == "roles/bigquery.dataEditor", f"writer role {grant.get('role')}"
    assert grant.get("dataset_id") == Expr("google_bigquery_dataset.analytics.dataset_id"), "grant on another dataset"
    for rtype, bodies in config.resources.items():
        for name, body in bodies.items():
            if rtype != GRANT and "writer_identity" in str(body.get("member", "")):
                raise AssertionError(f"{rtype}.{name} grants the sink's writer more than its dataset")


def rendered_filter(directory: Path, workdir: Path, **variables: str) -> str:
    return hcl_render.render(directory, workdir, {"filter": "local.analytics_filter"}, {**COMMAND_LINE, **variables},
                             var_file=(directory / "environments" / "prod.tfvars").resolve())["filter"]


def check_filter(text: str) -> None:
    assert 'resource.type="cloud_run_revision"' in text, text
    for service in PIPELINE:
        assert f'resource.labels.service_name="wa-{service}"' in text, f"{service}'s lines are not exported: {text}"
    assert "wa-inbox" not in text, "the inbox's lines (staff e-mails) would be exported"
    assert "jsonPayload.event:*" in text, "not only the event lines"
    for field in ("arguments", "stack_trace"):
        assert f"NOT jsonPayload.{field}:*" in text, f"lines with {field} would be exported"


def test_the_sink_exports_into_a_partitioned_dataset_with_an_expiry() -> None:
    config = load_config()
    check_sink(config)
    check_expiry(config)
    check_writer_grant(config)


def test_the_filter_keeps_the_pipeline_event_lines_only(tmp_path: Path) -> None:
    check_filter(rendered_filter(TERRAFORM, tmp_path))


def test_a_list_of_events_exports_only_those(tmp_path: Path) -> None:
    text = rendered_filter(TERRAFORM, tmp_path, analytics_events='["received","answered","sent"]')
    assert '(jsonPayload.event="received" OR jsonPayload.event="answered" OR jsonPayload.event="sent")' in text, text
    assert "jsonPayload.event:*" not in text and "NOT jsonPayload.arguments:*" in text


def broken(tmp_path: Path, change: Callable[[str], str]) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    text = (copy / "analytics.tf").read_text()
    changed = change(text)
    assert changed != text, "the change did not apply"
    (copy / "analytics.tf").write_text(changed)
    return copy


@pytest.mark.parametrize(("change", "check", "expect"), [
    (lambda t: t.replace("use_partitioned_tables = true", "use_partitioned_tables = false"), check_sink, "partitioned"),
    (lambda t: t.replace("unique_writer_identity = true", "unique_writer_identity = false"), check_sink, "identity"),
    (lambda t: t.replace("${google_bigquery_dataset.analytics.dataset_id}\"\n  filter", "other\"\n  filter"),
     check_sink, "into the dataset"),
    (lambda t: t.replace("var.analytics_partition_expiration_days * 86400000", "null"), check_expiry, "expiry"),
    (lambda t: t.replace("roles/bigquery.dataEditor", "roles/bigquery.admin"), check_writer_grant, "role"),
    (lambda t: t + '\nresource "google_project_iam_member" "sink_everywhere" {\n  project = var.project_id\n'
               '  role    = "roles/bigquery.dataEditor"\n'
               '  member  = google_logging_project_sink.analytics.writer_identity\n}\n',
     check_writer_grant, "more than its dataset"),
    (lambda t: re.sub(r'resource "google_bigquery_dataset_iam_member" "analytics_writer" \{.*?\n\}\n', "", t,
                      flags=re.DOTALL), check_writer_grant, "dataset grants"),
])
def test_each_check_fails_on_a_broken_configuration(change: Callable[[str], str], check: Callable[[TfConfig], None],
                                                    expect: str, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=expect):
        check(load_config(broken(tmp_path, change)))


@pytest.mark.parametrize(("change", "expect"), [
    (lambda t: t.replace('if key != "inbox"', 'if key != "none"'), "inbox"),
    (lambda t: t.replace('    "NOT jsonPayload.arguments:*",\n', ""), "arguments"),
    (lambda t: t.replace('if key != "inbox"', 'if key != "inbox" && key != "sender"'), "sender"),
])
def test_the_filter_check_fails_on_a_broken_filter(change: Callable[[str], str], expect: str, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=expect):
        check_filter(rendered_filter(broken(tmp_path, change), tmp_path / "render"))

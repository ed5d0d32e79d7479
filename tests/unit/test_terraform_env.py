"""terraform/ rendered for the local stack: the environment, front ends and pushes Terraform declares.

Files only (python-hcl2), no network: the renderer must give each service
exactly what Terraform would, refuse what Terraform would refuse, and let a
variable Terraform misspells or sets to a refused value fail locally.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace
from pathlib import Path
from typing import Any

import pytest

from devstack import container
from devstack.cloud_shape import CloudShape
from devstack.hcl_expr import HclError, evaluate, tf_string
from devstack.terraform_env import TERRAFORM, TerraformError, render
from shared.config import ConfigError, Settings

SERVICES = ("webhook", "processor", "sender", "reconciler", "outbound", "inbox")
URLS = {name: f"http://127.0.0.1:{9100 + i}" for i, name in enumerate(SERVICES)}
TFVARS: dict[str, Any] = {
    "project_id": "demo-project", "environment": "dev", "image_tag": "local",
    "twilio_account_sid": "AC" + "1" * 32, "twilio_whatsapp_from": "whatsapp:+15550001111",
}


def _render(directory: Path = TERRAFORM, **tfvars: Any):  # noqa: ANN202 - devstack.terraform_env.Deployment
    return render({**TFVARS, **tfvars}, URLS, "the-caller-key", directory=directory)


def test_every_service_gets_an_environment_its_settings_accept() -> None:
    deployment = _render()
    for name in SERVICES:
        env = deployment.services[name].env
        settings = Settings.from_env(env)
        assert settings.project_id == "demo-project"
        assert env["SECRET_SOURCE"] == "secretmanager"
    processor = deployment.services["processor"].env
    assert processor["AUTH_AUDIENCE"] == URLS["processor"] == processor["PROCESSOR_URL"]
    assert processor["SENDER_URL"] == URLS["sender"]
    assert processor["TASKS_SERVICE_ACCOUNT"] == "wa-tasks-invoker@demo-project.iam.gserviceaccount.com"
    assert processor["PROCESSING_LEASE_SECONDS"] == "120" and processor["THREADS"] == "16"
    assert "TWILIO_API_BASE_URL" not in processor, "empty values are left out, as run.tf does"
    assert deployment.services["webhook"].env["PUBLIC_WEBHOOK_URL"] == URLS["webhook"]


def test_front_end_settings_and_invokers_are_terraforms() -> None:
    services = _render().services
    assert {n: s.ingress for n, s in services.items()} == {
        "webhook": "INGRESS_TRAFFIC_ALL", "processor": "INGRESS_TRAFFIC_INTERNAL_ONLY",
        "sender": "INGRESS_TRAFFIC_INTERNAL_ONLY", "reconciler": "INGRESS_TRAFFIC_INTERNAL_ONLY",
        "outbound": "INGRESS_TRAFFIC_ALL", "inbox": "INGRESS_TRAFFIC_ALL",
    }
    member = "serviceAccount:wa-{}@demo-project.iam.gserviceaccount.com".format
    assert services["webhook"].invokers == {"allUsers"}
    assert services["processor"].invokers == {member("pubsub-push"), member("tasks-invoker")}
    assert services["sender"].invokers == {member("tasks-invoker")}
    assert services["reconciler"].invokers == {member("scheduler")}
    assert services["outbound"].invokers == frozenset(), "nobody, by default"
    assert services["inbox"].invokers == {"allUsers"}, "the inbox signs its staff in itself"
    assert services["inbox"].env["INBOX_URL"] == URLS["inbox"], "Google posts the sign-in to the inbox's own URL"
    assert services["processor"].timeout_seconds == 120 and services["reconciler"].timeout_seconds == 60
    crm = "crm@demo-project.iam.gserviceaccount.com"
    allowed = _render(outbound_invokers=[f"serviceAccount:{crm}"], outbound_allowed_service_accounts=[crm])
    assert allowed.services["outbound"].invokers == {f"serviceAccount:{crm}"}
    assert allowed.services["outbound"].env["AUTH_ALLOWED_SERVICE_ACCOUNTS"] == crm


def test_pushes_and_the_job_carry_the_caller_key() -> None:
    deployment = _render()
    assert set(deployment.pushes) == {"inbound-messages-processor", "inbound-messages-dead-letter"}
    for push in deployment.pushes.values():
        assert push.endpoint == f"{URLS['processor']}/?caller_key=the-caller-key"
        assert push.audience == URLS["processor"]
        assert push.service_account == "wa-pubsub-push@demo-project.iam.gserviceaccount.com"
    job = deployment.job
    assert (job.uri, job.method, job.audience) == (URLS["reconciler"], "POST", URLS["reconciler"])
    assert job.headers == {"X-Caller-Key": "the-caller-key"} and job.attempt_deadline_seconds == 60
    assert deployment.secret_ids["caller_key"] == "caller-key"


def test_what_terraform_would_refuse_stops_the_local_stack() -> None:
    with pytest.raises(TerraformError, match="undeclared variables"):
        _render(procesor_ack_deadline_seconds=30)
    with pytest.raises(TerraformError, match="model_budget_seconds must be below"):
        _render(model_budget_seconds=200)
    with pytest.raises(TerraformError, match="twilio_account_sid has no value"):
        render({k: v for k, v in TFVARS.items() if k != "twilio_account_sid"}, URLS, "k")


def _mutated(tmp_path: Path, old: str, new: str) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    locals_tf = copy / "locals.tf"
    text = locals_tf.read_text()
    assert old in text
    locals_tf.write_text(text.replace(old, new, 1))
    return copy


def test_a_value_terraform_sets_that_the_code_refuses_fails_locally(tmp_path: Path) -> None:
    copy = _mutated(tmp_path, 'CALLER_PROOF                    = "caller-key"', 'CALLER_PROOF = "callerkey"')
    env = _render(copy).services["sender"].env
    with pytest.raises(ConfigError, match="CALLER_PROOF"):
        Settings.from_env(env)


def test_a_variable_terraform_misspells_is_missing_locally(tmp_path: Path) -> None:
    copy = _mutated(tmp_path, "AUTH_AUDIENCE                   = local.sender_url",
                    "AUTH_AUDIENCES                  = local.sender_url")
    env = _render(copy).services["sender"].env
    assert "AUTH_AUDIENCE" not in env
    assert Settings.from_env(env).auth_audience == "", "the sender would start unguarded (and the e2e tests see it)"


def test_a_test_override_that_no_service_has_is_refused() -> None:
    shape = CloudShape("demo-project")
    shape.deployment = _render()
    # Addresses only: no server is started in a unit test.
    shape.secret_manager = SimpleNamespace(address="127.0.0.1:1")  # type: ignore[assignment]
    shape.issuer = SimpleNamespace(certs_url="http://127.0.0.1:2/oauth2/v1/certs")  # type: ignore[assignment]
    env = shape.environment("processor", {}, {"PROCESSING_LEASE_SECONDS": "5", "TEST_FAULT_POINTS": "after_ai"})
    assert env["PROCESSING_LEASE_SECONDS"] == "5" and env["TEST_FAULT_POINTS"] == "after_ai"
    assert "PROCESSING_LEASE_SECONDS" not in shape.environment("webhook", {}, {"PROCESSING_LEASE_SECONDS": "5"})
    with pytest.raises(TerraformError, match="PROCESING_LEASE_SECONDS"):
        shape.environment("processor", {}, {"PROCESING_LEASE_SECONDS": "5"})


class _Scope:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def resolve(self, path: tuple[Any, ...]) -> Any:
        value: Any = self.values
        for step in path:
            value = value[step]
        return value


def test_expressions_evaluate_as_terraform_does() -> None:
    scope = _Scope({"var": {"n": 120, "x": 0.001, "on": True, "empty": "", "list": ["a", "b"], "m": {"k": 3}},
                    "local": {"url": "https://u"}})
    assert evaluate('"${var.n}s"', scope) == "120s"
    assert evaluate("${tostring(var.x)}", scope) == "0.001" and evaluate("${tostring(var.on)}", scope) == "true"
    assert evaluate('${var.empty != "" ? var.empty : local.url}', scope) == "https://u"
    assert evaluate('${join(",", var.list)}', scope) == "a,b"
    assert evaluate('${var.m["k"] * 2 + 1 < 10}', scope) is True
    assert evaluate('"a \\"b\\" ${upper("c")}"', scope) == 'a "b" C'
    assert tf_string(1e-05) == "0.00001" and tf_string(5.0) == "5"
    with pytest.raises(HclError, match="for expressions"):
        evaluate("${[for v in var.list : v]}", scope)
    with pytest.raises(HclError, match="not supported"):
        evaluate("${nonsense(var.n)}", scope)


def test_the_services_start_with_the_images_command_and_environment() -> None:
    command = container.command()
    assert command[:2] == ["/bin/sh", "-c"] and "functions-framework" in command[2]
    assert '--source="${FUNCTION_SOURCE' in command[2] and '--target="${FUNCTION_TARGET' in command[2]
    env = container.process_env("wa-sender", 1234, base={"PATH": "/usr/bin", "FIRESTORE_EMULATOR_HOST": "x"})
    assert env["PYTHONPATH"] == str(container.ROOT) and env["PORT"] == "1234" and env["K_SERVICE"] == "wa-sender"
    assert "FIRESTORE_EMULATOR_HOST" not in env, "emulator hosts come from the stack, not the caller's shell"

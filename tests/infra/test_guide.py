"""docs/deploy.md from an empty project, and the names and counts that outputs and docs give.

The guide's ```sh blocks are read as the commands a person runs, in order:
ADC before anything that uses it, the bootstrap root instead of hand-run IAM,
every variable set before it is used, every build with its account and
source bucket, every output and -target that it names existing, every secret
given a value. The mutation tests at the bottom break a copy, including the
guide's old counts and the outputs that left accounts out, and expect the
checks to fail.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from tests.infra.deploy_config import (
    BUILD_ACCOUNTS,
    SERVICES,
    Break,
    Deploy,
    assert_break_fails,
    first,
    guide_commands,
    real_deploy,
    replace,
)
from tests.infra.test_terraform import TfConfig

NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
HAND_RUN_IAM = ("add-iam-policy-binding", "service-accounts create", "storage buckets create", "for role in")


def _secret_ids(main: TfConfig) -> dict[str, str]:
    return {
        re.fullmatch(r'secret\["(\w+)"\]', name).group(1): main.resolve(body["secret_id"])
        for name, body in main.of_type("google_secret_manager_secret").items()
    }


def _secrets_terraform_fills(main: TfConfig) -> set[str]:
    """Keys of the secrets whose value terraform/ itself writes (a ``google_secret_manager_secret_version``)."""
    filled = set()
    for body in main.of_type("google_secret_manager_secret_version").values():
        match = re.search(r'secret\["(\w+)"\]', str(body.get("secret", "")))
        if match:
            filled.add(match.group(1))
    return filled


def _check_variables_set_first(deploy: Deploy, commands: list[str]) -> None:
    value = str(deploy.boot.outputs.get("shell_exports", {}).get("value"))
    exported = set(re.findall(r"\b([A-Z_]+)=\$\{", value))
    defined: set[str] = set()
    for command in commands:
        # `read ... NAME && ... "$NAME"` sets it before its use on the same line.
        defined |= set(re.findall(r"\bread\b[^&|]*\s([A-Z_][A-Z0-9_]*)\s*(?:&&|$)", command))
        for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", command):
            assert name in defined, f"the guide uses ${name} before setting it: {command[:100]}"
        defined |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", command))
        if "output -raw shell_exports" in command:
            defined |= exported


def _check_named_things_exist(deploy: Deploy, commands: list[str]) -> None:
    roots = {"terraform": deploy.main, "terraform/bootstrap": deploy.boot}
    for command in commands:
        for root, name in re.findall(r"terraform -chdir=(\S+) output(?: -raw| -json)? ([a-z_]+)", command):
            assert name in roots[root].outputs, f"the guide reads output {name} that {root} does not have"
        for target in re.findall(r"-target=([a-z0-9_]+\.[a-z0-9_]+)", command):
            rtype, name = target.split(".")
            assert any(n.split("[")[0] == name for n in deploy.main.of_type(rtype)), f"-target={target} does not exist"
        if command.startswith(("gcloud builds submit", "gcloud builds triggers create")):
            assert "--service-account=" in command, (
                f"a build without its account runs as the default one: {command[:80]}"
            )
        if command.startswith("gcloud builds submit"):
            assert re.search(r'--gcs-source-staging-dir="?gs://\$SOURCES/', command), (
                f"a build account cannot read the default staging bucket: {command[:80]}"
            )
            config = re.search(r"--config=(\S+)", command)
            assert config and (deploy.root / config.group(1)).is_file(), f"no such build config: {command[:80]}"


def check_guide(deploy: Deploy) -> None:
    """docs/deploy.md runs from an empty project, in an order that works, with nothing left to hand-run IAM."""
    commands = guide_commands(deploy.guide)
    adc = first(commands, r"gcloud auth application-default login")
    assert adc is not None, (
        "the guide never sets up Application Default Credentials (gcloud auth application-default login)"
    )
    quota = first(commands, r"gcloud auth application-default set-quota-project")
    assert quota is not None and quota > adc, "ADC of a user needs a quota project (set-quota-project after the login)"
    for pattern in (r"terraform\b.*\binit\b", r"\bmake failures\b", r"\bmake replay\b"):
        used = first(commands, pattern)
        assert used is not None and used > quota, f"the guide runs {pattern!r} before ADC is set up"
    for forbidden in HAND_RUN_IAM:
        assert not any(forbidden in c for c in commands), (
            f"the guide still runs {forbidden!r} by hand: terraform/bootstrap does"
        )
    assert "iam.allowedPolicyMemberDomains" in deploy.guide and "allUsers" in deploy.guide, (
        "the guide does not warn that iam.allowedPolicyMemberDomains can forbid the webhook's allUsers binding"
    )
    _check_variables_set_first(deploy, commands)
    _check_named_things_exist(deploy, commands)
    generated = _secrets_terraform_fills(deploy.main)
    for key, secret_id in _secret_ids(deploy.main).items():
        if key in generated:
            continue
        assert any(f"gcloud secrets versions add {secret_id} " in c for c in commands), (
            f"the guide never gives the secret {secret_id} ({key}) a value"
        )


def check_counts(deploy: Deploy) -> None:
    """The guide's counts of services and secrets are terraform/'s, and it names every secret."""
    services = len(deploy.main.locals["services"])
    secrets = _secret_ids(deploy.main)
    said = re.findall(r"\b(\w+)\s+Cloud\s+Run\s+services\b", deploy.guide)
    assert said, "the guide does not say how many Cloud Run services it creates"
    for word in said:
        assert NUMBER_WORDS.get(word.lower()) == services, (
            f"the guide says {word} Cloud Run services; there are {services}"
        )
    said = [w for w in re.findall(r"\b(\w+)\s+secrets\b", deploy.guide) if w.lower() in NUMBER_WORDS]
    assert said, "the guide does not say how many secrets there are"
    for word in said:
        assert NUMBER_WORDS[word.lower()] == len(secrets), f"the guide says {word} secrets; there are {len(secrets)}"
    for secret_id in secrets.values():
        assert f"`{secret_id}`" in deploy.guide, f"the guide does not name the secret {secret_id}"


def _enumerations(text: str, keys: tuple[str, ...]) -> list[list[str]]:
    """Runs of at least three of ``keys`` written as a list ("a, b and c")."""
    alternatives = "|".join(keys)
    runs = re.finditer(rf"\b(?:{alternatives})\b(?:(?:, and |, | and )\b(?:{alternatives})\b)+", text)
    return [found for run in runs if len(found := re.findall(rf"\b(?:{alternatives})\b", run.group(0))) >= 3]


def check_outputs_and_descriptions(deploy: Deploy) -> None:
    """Outputs and descriptions that list services or accounts list every one that exists."""
    output = deploy.main.outputs.get("service_accounts", {})
    for account in tuple(deploy.main.locals["identities"]) + ("profiles",):
        assert re.search(rf"\b{account}\b", str(output.get("description"))), (
            f"output service_accounts does not describe the {account} account"
        )
    assert "data.google_service_account.profiles.email" in str(output.get("value")), (
        "output service_accounts leaves out the profiles account"
    )
    build = deploy.boot.outputs.get("build_service_accounts", {})
    for account in BUILD_ACCOUNTS:
        assert re.search(rf"\b{account}\b", str(build.get("description"))), f"build_service_accounts: no {account}"
    texts = [
        (f"{rtype}.{name}", str(body.get("description", "")))
        for rtype, bodies in deploy.main.resources.items()
        for name, body in bodies.items()
    ] + [(f"output {name}", str(body.get("description", ""))) for name, body in deploy.main.outputs.items()]
    for where, text in texts:
        for run in _enumerations(text, SERVICES):
            assert set(run) == set(SERVICES), f"{where} lists the services {run}, not all of {list(SERVICES)}"
    header = "\n".join(line for line in deploy.dockerfile.splitlines() if line.startswith("#"))
    targets = {str(deploy.main.resolve(env)["FUNCTION_TARGET"]) for env in deploy.main.locals["env"].values()}
    for target in sorted(targets):
        assert re.search(rf"\b{target}\b", header), f"the Dockerfile's header leaves out the {target} entry point"


CHECKS: list[Callable[[Deploy], None]] = [check_guide, check_counts, check_outputs_and_descriptions]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_guide_property(check: Callable[[Deploy], None]) -> None:
    check(real_deploy())


# ------------------------------------------------------ mutation: can fail

ADC_LINES = 'gcloud auth application-default login\ngcloud auth application-default set-quota-project "$PROJECT_ID"\n'
GUIDE = "docs/deploy.md"
OLD_SA_DESCRIPTION = (
    'description = "Service account emails per role '
    '(webhook, processor, sender, reconciler, pubsub_push, tasks_invoker, scheduler)."'
)


def _moved(lines: str, after: str) -> Callable[[str], str]:
    return lambda text: replace(after, after + lines)(replace(lines, "")(text))


BREAKS = {
    "guide-without-adc": Break(
        GUIDE, replace("gcloud auth application-default login\n", ""), check_guide, r"Application Default Credentials"),
    "guide-adc-after-init": Break(
        GUIDE, _moved(ADC_LINES, after="terraform -chdir=terraform/bootstrap init\n"), check_guide, r"before ADC"),
    "guide-role-loop": Break(
        GUIDE,
        replace(
            "terraform -chdir=terraform/bootstrap init\n",
            'for role in roles/run.admin; do gcloud projects add-iam-policy-binding "$PROJECT_ID" --role="$role"; done\n'
            "terraform -chdir=terraform/bootstrap init\n",
        ),
        check_guide, r"by hand",
    ),
    "guide-without-org-policy": Break(
        GUIDE, lambda t: t.replace("iam.allowedPolicyMemberDomains", "a policy"), check_guide,
        r"allowedPolicyMemberDomains"),
    "guide-build-without-staging": Break(
        GUIDE,
        replace(
            '/$PROFILES_ACCOUNT" \\\n  --gcs-source-staging-dir="gs://$SOURCES/source" \\\n',
            '/$PROFILES_ACCOUNT" \\\n',
        ),
        check_guide, r"default staging bucket",
    ),
    "guide-variable-never-set": Break(
        GUIDE,
        replace("export PROJECT_ID=my-assistant-prod REGION=us-central1 ENV=prod",
                "export PROJECT_ID=my-assistant-prod ENV=prod"),
        check_guide, r"uses \$REGION before setting it",
    ),
    "guide-secret-without-value": Break(
        GUIDE, replace("gcloud secrets versions add openai-api-key --data-file=-", "true"), check_guide,
        r"openai-api-key"),
    "guide-output-that-does-not-exist": Break(
        GUIDE, replace("output -raw twilio_webhook_url_with_retries", "output -raw webhook_url"), check_guide,
        r"output webhook_url that terraform does not have"),
    "guide-five-services": Break(
        GUIDE, replace("six Cloud Run services", "five Cloud Run services"), check_counts,
        r"five Cloud Run services; there are 6"),
    "guide-four-secrets": Break(
        GUIDE, replace("the five secrets", "the four secrets"), check_counts, r"four secrets; there are 5"),
    "outputs-of-the-old-accounts": Break(
        "terraform/outputs.tf",
        lambda t: re.sub(r'description = "Service account emails per role:[^"]*"', OLD_SA_DESCRIPTION, t),
        check_outputs_and_descriptions, r"does not describe the outbound account",
    ),
    "registry-of-four-services": Break(
        "terraform/registry.tf",
        replace("one image for the webhook, processor, sender, reconciler, outbound and inbox services",
                "webhook, processor, sender, reconciler"),
        check_outputs_and_descriptions, r"lists the services \['webhook', 'processor', 'sender', 'reconciler'\]",
    ),
    "dockerfile-three-functions": Break(
        "Dockerfile",
        lambda t: "\n".join(re.sub(r"\boutbound\b", "", line) if line.startswith("#") else line for line in t.split("\n")),
        check_outputs_and_descriptions,
        r"leaves out the outbound entry point",
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_guide_check_fails_when_broken(name: str, tmp_path: Path) -> None:
    assert_break_fails(BREAKS[name], tmp_path)

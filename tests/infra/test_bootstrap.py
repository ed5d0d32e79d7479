"""terraform/bootstrap: the buckets, the build accounts' exact grants, the deployer's roles, the Pub/Sub agent.

And the profiles build, which runs as one of those accounts: it can read its
source and runs the deployed image's code. The mutation tests at the bottom
break a copy, including the deployer's roles as the guide listed them before
this root existed (the dashboard's apply failed), and expect the checks to fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.infra import permissions
from tests.infra.deploy_config import (
    BUILD_ACCOUNTS,
    Break,
    Deploy,
    assert_break_fails,
    boot_grants,
    copy_repo,
    deployer_roles,
    first,
    guide_commands,
    load_deploy,
    real_deploy,
    replace,
)

# The deployer's roles as docs/deploy.md listed them before the bootstrap root (no dashboard role).
OLD_GUIDE_DEPLOYER_ROLES = (
    "roles/artifactregistry.admin", "roles/run.admin", "roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountUser",
    "roles/pubsub.admin", "roles/cloudtasks.admin", "roles/cloudscheduler.admin", "roles/secretmanager.admin",
    "roles/datastore.owner", "roles/monitoring.alertPolicyEditor", "roles/logging.configWriter",
    "roles/logging.logWriter", "roles/serviceusage.serviceUsageAdmin", "roles/resourcemanager.projectIamAdmin",
    "roles/cloudbuild.builds.viewer",
)
DEPLOYED_IMAGE = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/whatsapp-assistant:${_IMAGE_TAG}"


def check_bootstrap(deploy: Deploy) -> None:
    """Its own local state, pinned providers, the two buckets, the three build accounts and their exact grants."""
    boot = deploy.boot
    blocks = [b for b in boot.terraform if "required_providers" in b]
    assert len(blocks) == 1 and not any("backend" in b for b in boot.terraform), (
        "the bootstrap root keeps local state: no backend block"
    )
    providers = blocks[0]["required_providers"][0]
    for name in ("google", "google-beta"):
        version = str(providers.get(name, {}).get("version", ""))
        assert re.fullmatch(r"~>\s*7\.\d+", version), f"{name} is not pinned ~> 7.x"
    buckets = boot.of_type("google_storage_bucket")
    assert set(buckets) == {"state", "source"}, f"buckets: {sorted(buckets)}"
    for name, bucket in buckets.items():
        assert bucket.get("uniform_bucket_level_access") is True, f"bucket {name}: no uniform access"
        assert bucket.get("public_access_prevention") == "enforced", f"bucket {name}: public access not prevented"
    assert buckets["state"].get("versioning", [{}])[0].get("enabled") is True, "the state bucket is not versioned"
    ages = [rule["condition"][0].get("age") for rule in buckets["source"].get("lifecycle_rule", [])]
    assert ages and boot.resolve(ages[0]) == 7, "uploaded sources are not deleted after a week"
    accounts = boot.of_type("google_service_account")
    assert set(accounts) == {f'build["{a}"]' for a in BUILD_ACCOUNTS}, f"build accounts: {sorted(accounts)}"
    for body in accounts.values():
        assert re.fullmatch(r"\$\{var\.name_prefix\}-(deployer|ci|profiles)", str(body.get("account_id"))), body
    others = {g for g in boot_grants(deploy) if not (g[0] == "deployer" and g[1] == "project")}
    assert others == {
        ("deployer", "bucket:state", "roles/storage.objectAdmin"),
        ("deployer", "bucket:source", "roles/storage.objectViewer"),
        ("ci", "project", "roles/logging.logWriter"),
        ("ci", "bucket:source", "roles/storage.objectViewer"),
        ("profiles", "project", "roles/logging.logWriter"),
        ("profiles", "bucket:source", "roles/storage.objectViewer"),
    }, f"build account grants: {sorted(others)}"


def check_deployer_roles(deploy: Deploy) -> None:
    """The deployer holds a role for every permission each type of terraform/ needs, and no role nothing needs."""
    wanted, unmapped = permissions.needs(deploy.main.resources, deploy.main.data)
    assert not unmapped, f"resource types of terraform/ missing from tests/infra/permissions.py: {unmapped}"
    project, buckets = deployer_roles(deploy)
    gaps = permissions.missing(wanted, project, buckets)
    assert not gaps, "the deployer (terraform/bootstrap) lacks:\n  " + "\n  ".join(gaps)
    for role in sorted(project):
        assert permissions.missing(wanted, project - {role}, buckets), f"the deployer's {role} is needed by nothing"


def check_pubsub_agent_created_first(deploy: Deploy) -> None:
    """The Pub/Sub service agent exists before terraform/ grants it the dead-letter roles."""
    identities = [
        body
        for body in deploy.boot.of_type("google_project_service_identity").values()
        if body.get("service") == "pubsub.googleapis.com"
    ]
    assert len(identities) == 1, "the bootstrap root does not create the Pub/Sub service agent"
    assert identities[0].get("provider") == "google-beta", "google_project_service_identity exists in google-beta only"
    agent = str(deploy.main.locals.get("pubsub_service_agent"))
    assert re.fullmatch(
        r"serviceAccount:service-\$\{data\.google_project\.this\.number\}@gcp-sa-pubsub\.iam\.gserviceaccount\.com",
        agent,
    ), f"terraform/ grants to {agent}, not to the agent the bootstrap creates"
    granted = [
        body
        for bodies in deploy.main.resources.values()
        for body in bodies.values()
        if body.get("member") == "local.pubsub_service_agent"
    ]
    assert granted, "terraform/ grants the Pub/Sub service agent nothing (the dead-letter roles are gone)"
    commands = guide_commands(deploy.guide)
    boot_apply = first(commands, r"terraform -chdir=terraform/bootstrap apply")
    main_init = first(commands, r"terraform -chdir=terraform init")
    assert boot_apply is not None and main_init is not None and boot_apply < main_init, (
        "docs/deploy.md must apply terraform/bootstrap before the first init of terraform/"
    )


def _profiles_steps(deploy: Deploy) -> list[dict[str, Any]]:
    """The build's steps: the golden-question evaluation (knowledge base), then the apply, last."""
    steps = yaml.safe_load(deploy.profiles_build)["steps"]
    assert steps and steps[-1].get("id") == "profiles-apply", "cloudbuild-profiles.yaml ends with profiles-apply"
    assert steps[-1]["args"][:3] == ["-m", "shared.ops.admin", "profiles-apply"], steps[-1]
    return steps


def imported_by_profiles_step(deploy: Deploy, scratch: Path, step: dict[str, Any]) -> str:
    """Which shared/ a profiles build step imports, "image" or "workspace", started as Cloud Build starts it.

    Cloud Build runs the step's container with its working directory at
    ``dir`` (absolute, or under /workspace; /workspace by default) and the
    image's ENV; ``python -m`` puts that directory first on sys.path. Here
    /workspace (the uploaded checkout) and the image's WORKDIR each get the
    step's module (shared/ops/...) that says which it is.
    """
    assert step.get("entrypoint") == "python" and step["args"][0] == "-m", step
    module = str(step["args"][1])
    assert module.startswith("shared.ops."), f"the step runs {module}, not an operator command of shared/ops"
    workdir = re.findall(r"^WORKDIR\s+(\S+)", deploy.dockerfile, re.MULTILINE)[-1]
    pythonpath = re.search(r"\bPYTHONPATH=(\S+)", deploy.dockerfile)
    places = {"/workspace": scratch / "workspace", workdir: scratch / "image"}
    for where, folder in places.items():
        (folder / "shared" / "ops").mkdir(parents=True, exist_ok=True)
        (folder / "shared" / "__init__.py").write_text("")
        (folder / "shared" / "ops" / "__init__.py").write_text("")
        said = "workspace" if where == "/workspace" else "image"
        (folder / (module.replace(".", "/") + ".py")).write_text(f"print({said!r})\n")

    def local(path: str) -> str:
        for where, folder in places.items():
            if path == where or path.startswith(where + "/"):
                return str(folder) + path[len(where):]
        return path

    directory = str(step.get("dir", ""))
    cwd = directory if directory.startswith("/") else f"/workspace/{directory}".rstrip("/.")
    Path(local(cwd)).mkdir(parents=True, exist_ok=True)  # docker run -w creates it
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": local(pythonpath.group(1)) if pythonpath else ""}
    result = subprocess.run(
        [sys.executable, "-m", module], cwd=local(cwd), env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def check_profiles_build(deploy: Deploy, scratch: Path) -> None:
    """The profiles build can read its source and runs the deployed image's code."""
    header = "\n".join(line for line in deploy.profiles_build.splitlines() if line.startswith("#"))
    assert "--gcs-source-staging-dir=gs://" in header, (
        "the profiles build's command does not stage its source in the source bucket"
    )
    assert ("profiles", "bucket:source", "roles/storage.objectViewer") in boot_grants(deploy), (
        "wa-profiles cannot read the uploaded source"
    )
    for n, step in enumerate(_profiles_steps(deploy)):
        assert step["name"] == DEPLOYED_IMAGE, f"the profiles step {step.get('id')} does not run in the deployed image"
        imported = imported_by_profiles_step(deploy, scratch / str(n), step)
        assert imported == "image", (
            f"the profiles step {step.get('id')} imports the uploaded checkout's shared/ ({imported}), not the image's"
        )


CHECKS: list[Callable[[Deploy], None]] = [check_bootstrap, check_deployer_roles, check_pubsub_agent_created_first]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_bootstrap_property(check: Callable[[Deploy], None]) -> None:
    check(real_deploy())


def test_profiles_build(tmp_path: Path) -> None:
    check_profiles_build(real_deploy(), tmp_path)


def test_permission_map_names_known_permissions() -> None:
    """Every permission a type needs has its roles in the map (a typo would pass every check silently)."""
    tables = (permissions.RESOURCE_PERMISSIONS, permissions.DATA_PERMISSIONS, permissions.BUILD_PERMISSIONS)
    used = {p.rsplit(":", 1)[-1] for table in tables for perms in table.values() for p in perms}
    assert used <= set(permissions.PERMISSION_ROLES), sorted(used - set(permissions.PERMISSION_ROLES))
    assert all(roles for roles in permissions.PERMISSION_ROLES.values())


# ------------------------------------------------------ mutation: can fail


def _deployer_roles_of(roles: tuple[str, ...]) -> Callable[[str], str]:
    def apply(text: str) -> str:
        body = "\n".join(f'    "{role}" = "listed"' for role in roles)
        changed, count = re.subn(
            r'(resource "google_project_iam_member" "deployer" \{\n(?:  #[^\n]*\n)*  for_each = \{\n).*?(\n  \})',
            lambda m: m.group(1) + body + m.group(2),
            text,
            count=1,
            flags=re.DOTALL,
        )
        assert count == 1
        return changed

    return apply


BOOT = "terraform/bootstrap/main.tf"
BREAKS = {
    # What the guide granted before terraform/bootstrap: the dashboard's apply would fail.
    "deployer-roles-of-the-old-guide": Break(
        BOOT, _deployer_roles_of(OLD_GUIDE_DEPLOYER_ROLES), check_deployer_roles,
        r"google_monitoring_dashboard needs monitoring\.dashboards\.create",
    ),
    "deployer-without-actas": Break(
        BOOT, replace('    "roles/iam.serviceAccountUser"', '    "roles/iam.serviceAccountCreator"'),
        check_deployer_roles, r"google_cloud_run_v2_service needs iam\.serviceAccounts\.actAs",
    ),
    "deployer-with-a-role-nothing-needs": Break(
        BOOT, replace('    "roles/run.admin"', '    "roles/storage.admin" = "x"\n    "roles/run.admin"'),
        check_deployer_roles, r"roles/storage\.admin is needed by nothing",
    ),
    "deployer-cannot-write-state": Break(
        BOOT, replace('role   = "roles/storage.objectAdmin"', 'role   = "roles/storage.objectViewer"'),
        check_deployer_roles, r"GCS backend.*storage\.objects\.create",
    ),
    "type-missing-from-the-map": Break(
        "terraform/run.tf",
        lambda t: t + '\nresource "google_cloud_run_domain_mapping" "webhook" {\n  name = "chat.example.com"\n}\n',
        check_deployer_roles, r"missing from tests/infra/permissions\.py: \['google_cloud_run_domain_mapping'\]",
    ),
    "no-pubsub-agent": Break(
        BOOT, replace('service = "pubsub.googleapis.com"', 'service = "cloudtasks.googleapis.com"'),
        check_pubsub_agent_created_first, r"does not create the Pub/Sub service agent",
    ),
    "guide-bootstrap-after-main": Break(
        "docs/deploy.md",
        replace('terraform -chdir=terraform/bootstrap apply -var="project_id=$PROJECT_ID"',
                'echo "project_id=$PROJECT_ID"'),
        check_pubsub_agent_created_first, r"before the first init",
    ),
    "profiles-cannot-read-source": Break(
        BOOT, replace('for_each = toset(["deployer", "ci", "profiles"])', 'for_each = toset(["deployer", "ci"])'),
        check_bootstrap, r"build account grants",
    ),
    "state-not-versioned": Break(
        BOOT, replace("    enabled = true", "    enabled = false"), check_bootstrap, r"not versioned"),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_bootstrap_check_fails_when_broken(name: str, tmp_path: Path) -> None:
    assert_break_fails(BREAKS[name], tmp_path)


def test_the_state_before_the_bootstrap_root_fails(tmp_path: Path) -> None:
    """Without terraform/bootstrap (the hand-run gcloud list) none of the above can hold."""
    root = copy_repo(tmp_path)
    shutil.rmtree(root / "terraform" / "bootstrap")
    with pytest.raises(AssertionError, match="terraform/bootstrap does not exist"):
        load_deploy(root)


@pytest.mark.parametrize(
    "change, expect",
    [
        pytest.param(replace("    dir: /app\n", ""), r"imports the uploaded checkout's shared/ \(workspace\)",
                     id="runs-workspace-code"),
        pytest.param(replace("    dir: /app\n", "    dir: .\n"), r"\(workspace\)", id="dir-is-the-checkout"),
        pytest.param(replace("#     --gcs-source-staging-dir=gs://PROJECT-build-source/source \\\n", ""),
                     r"stage its source", id="no-staging-dir"),
        pytest.param(replace("whatsapp-assistant:${_IMAGE_TAG}", "python:3.11-slim"), r"deployed image",
                     id="other-image"),
    ],
)
def test_profiles_check_fails_when_broken(change: Callable[[str], str], expect: str, tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    target = root / "cloudbuild-profiles.yaml"
    target.write_text(change(target.read_text()))
    with pytest.raises(AssertionError, match=expect):
        check_profiles_build(load_deploy(root), tmp_path / "scratch")

"""The deploy as the tests read it: both Terraform roots, the guide, the profiles build, the Dockerfile.

Shared by tests/infra/test_bootstrap.py and tests/infra/test_guide.py. Each
check there takes a ``Deploy`` read from one directory, so the same check
runs on the repository and on a copy with one thing broken (``Break``).
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.infra.test_terraform import REPO, TfConfig, load_config

SERVICES = ("webhook", "processor", "sender", "reconciler", "outbound", "inbox")
BUILD_ACCOUNTS = ("deployer", "ci", "profiles")
# Files a broken copy is made of.
COPIED = ("docs/deploy.md", "cloudbuild-profiles.yaml", "Dockerfile", "cloudbuild.yaml", "cloudbuild-test.yaml")


@dataclass
class Deploy:
    root: Path
    main: TfConfig
    boot: TfConfig
    guide: str
    profiles_build: str
    dockerfile: str


_PARSED: dict[str, TfConfig] = {}


def _parsed(directory: Path) -> TfConfig:
    """load_config, once per distinct content: most broken copies change one file of one root."""
    files = sorted(directory.glob("*.tf")) + sorted((directory / "environments").glob("*.tfvars"))
    key = hashlib.sha256(b"".join(p.name.encode() + b"\0" + p.read_bytes() for p in files)).hexdigest()
    if key not in _PARSED:
        _PARSED[key] = load_config(directory)
    return _PARSED[key]


def load_deploy(root: Path = REPO) -> Deploy:
    boot_dir = root / "terraform" / "bootstrap"
    assert boot_dir.is_dir() and list(boot_dir.glob("*.tf")), (
        "terraform/bootstrap does not exist: buckets, build accounts and their roles are still hand-run gcloud commands"
    )
    return Deploy(
        root=root,
        main=_parsed(root / "terraform"),
        boot=_parsed(boot_dir),
        guide=(root / "docs" / "deploy.md").read_text(),
        profiles_build=(root / "cloudbuild-profiles.yaml").read_text(),
        dockerfile=(root / "Dockerfile").read_text(),
    )


@functools.lru_cache(maxsize=1)
def real_deploy() -> Deploy:
    return load_deploy(REPO)


def build_member(account: str) -> str:
    return f'google_service_account.build["{account}"].member'


def boot_grants(deploy: Deploy) -> set[tuple[str, str, str]]:
    """Every grant of the bootstrap root as (account, where, role); where is "project" or "bucket:NAME"."""
    members = {build_member(account): account for account in BUILD_ACCOUNTS}
    grants = set()
    for rtype, bodies in deploy.boot.resources.items():
        if "_iam_" not in rtype:
            continue
        assert rtype.endswith("_iam_member"), f"{rtype}: only non-authoritative *_iam_member grants are used"
        for name, body in bodies.items():
            member = str(body.get("member"))
            assert member in members, f"{rtype}.{name} grants {body.get('role')} to {member}, not to a build account"
            if rtype == "google_project_iam_member":
                where = "project"
            else:
                bucket = re.fullmatch(r"google_storage_bucket\.(\w+)\.name", str(body.get("bucket")))
                assert bucket and rtype == "google_storage_bucket_iam_member", f"{rtype}.{name}: unexpected grant"
                where = f"bucket:{bucket.group(1)}"
            grants.add((members[member], where, str(body.get("role"))))
    return grants


def deployer_roles(deploy: Deploy) -> tuple[set[str], dict[str, set[str]]]:
    """The deployer's project roles, and its roles on each bucket by the bucket's resource name."""
    project: set[str] = set()
    buckets: dict[str, set[str]] = {}
    for account, where, role in boot_grants(deploy):
        if account != "deployer":
            continue
        if where == "project":
            project.add(role)
        else:
            buckets.setdefault(where.split(":", 1)[1], set()).add(role)
    return project, buckets


def guide_commands(text: str) -> list[str]:
    """The shell commands of the guide's ```sh blocks, in order, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
    return commands


def first(commands: list[str], pattern: str) -> int | None:
    """Index of the first command matching ``pattern``."""
    return next((i for i, command in enumerate(commands) if re.search(pattern, command)), None)


# ---------------------------------------------------------- broken copies


def copy_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "terraform", root / "terraform", ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    for name in COPIED:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    return root


def replace(old: str, new: str) -> Callable[[str], str]:
    def apply(text: str) -> str:
        assert old in text, f"{old!r} not found"
        return text.replace(old, new, 1)

    return apply


@dataclass(frozen=True)
class Break:
    file: str
    change: Callable[[str], str]
    check: Callable[[Deploy], None]
    expect: str  # a regex the failure must match, so it fails for the intended reason


def assert_break_fails(broken: Break, tmp_path: Path) -> None:
    """The check passes on the repository and fails, for the expected reason, on a copy with ``broken`` applied."""
    root = copy_repo(tmp_path)
    target = root / broken.file
    original = target.read_text()
    changed = broken.change(original)
    assert changed != original, "the change did not change the file"
    target.write_text(changed)
    broken.check(real_deploy())
    with pytest.raises(AssertionError, match=broken.expect):
        broken.check(load_deploy(root))

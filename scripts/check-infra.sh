#!/usr/bin/env bash
# Static checks of the deployment files, offline:
#   1. terraform fmt -check on terraform/ and terraform/bootstrap (no
#      providers needed);
#   2. checkov on both roots (Terraform and secret scanners; -d recurses into
#      terraform/bootstrap) and on the Dockerfile, from the pinned
#      requirements-infra.txt in .venv-infra.
# terraform init/validate are not run: they need provider downloads, which
# this project's CI cannot make. Every check runs; the script exits non-zero
# if any failed, naming each one.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${INFRA_VENV:-$ROOT/.venv-infra}"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS="$ROOT/requirements-infra.txt"
failures=()

say() { printf 'check-infra: %s\n' "$*"; }
fail() { failures+=("$1"); printf 'check-infra: FAILED: %s\n' "$1" >&2; }

# ------------------------------------------------------------ terraform fmt
if ! command -v terraform >/dev/null 2>&1; then
    fail "terraform is not installed. Install Terraform >= 1.6 (https://developer.hashicorp.com/terraform/install; e.g. unzip the linux_amd64 release into /usr/local/bin), then rerun."
else
    # fmt needs no CLI config: an empty one silences the warning about a
    # missing file, and CHECKPOINT_DISABLE stops the version check call.
    if [[ -z "${TF_CLI_CONFIG_FILE:-}" || ! -f "${TF_CLI_CONFIG_FILE}" ]]; then
        export TF_CLI_CONFIG_FILE=/dev/null
    fi
    export CHECKPOINT_DISABLE=1
    say "terraform fmt -check ($(terraform version | head -n 1))"
    if ! terraform fmt -check -recursive -diff terraform/; then
        fail "terraform fmt: files above are not formatted; run 'terraform fmt -recursive terraform/'"
    fi
fi

# ------------------------------------------------------------------ checkov
ensure_checkov() {
    local stamp="$VENV/.requirements-infra.sha256"
    local wanted
    wanted="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    if [[ -x "$VENV/bin/checkov" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
        return 0
    fi
    say "installing pinned checkov into ${VENV#"$ROOT"/} (once; takes a minute or two)"
    "$PYTHON" -m venv "$VENV" || return 1
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS" || return 1
    echo "$wanted" >"$stamp"
}

if ! ensure_checkov; then
    fail "could not install checkov from requirements-infra.txt into ${VENV} (needs python3 with venv, and PyPI)"
else
    # --skip-download keeps checkov offline (no external policies, no
    # guideline fetch); no API key is ever used.
    unset BC_API_KEY PRISMA_API_URL
    checkov_args=(--skip-download --quiet --compact)
    say "checkov on terraform/"
    if ! "$VENV/bin/checkov" -d terraform --framework terraform secrets "${checkov_args[@]}"; then
        fail "checkov found problems in terraform/ (fix them, or skip one inline with '#checkov:skip=CKV_ID:reason')"
    fi
    say "checkov on Dockerfile"
    if ! "$VENV/bin/checkov" -f Dockerfile --framework dockerfile "${checkov_args[@]}"; then
        fail "checkov found problems in Dockerfile"
    fi
fi

if ((${#failures[@]})); then
    say "${#failures[@]} check(s) failed:"
    for item in "${failures[@]}"; do
        printf '  - %s\n' "$item" >&2
    done
    exit 1
fi
say "all infrastructure checks OK (terraform fmt, checkov terraform+secrets, checkov dockerfile)"

#!/usr/bin/env bash
# `make test`: every test tier and the infrastructure checks, in two lanes at once.
#
#   lane e2e:  tests/e2e, the whole pipeline as real processes. It spends most
#              of its time waiting on queues, leases and the emulators, so it
#              leaves a core free for
#   lane rest: tests/unit, tests/infra, tests/integration, then
#              scripts/check-infra.sh.
#
# Each lane is its own pytest session with its own emulators on free loopback
# ports (tests/plugin.py), so nothing is shared between them. The rest lane
# streams to the terminal; the e2e lane writes .stack/test-e2e.log, printed
# when it ends. The script exits non-zero if any lane failed, naming each.
# Extra arguments go to both pytest runs (e.g. `-x`).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
mkdir -p .stack
E2E_LOG=.stack/test-e2e.log

"$PY" -m pytest tests/e2e -o cache_dir=.pytest_cache/e2e "$@" >"$E2E_LOG" 2>&1 &
e2e_pid=$!
# A signal to make reaches both lanes (one process group); this only makes
# sure the e2e lane is waited for, so its watchdogs can end what it started.
trap 'kill -TERM "$e2e_pid" 2>/dev/null; wait "$e2e_pid"; exit 130' INT TERM
echo "test lanes: tests/e2e runs beside this one (its log: $E2E_LOG, printed when it ends)"

failed=()
"$PY" -m pytest tests/unit tests/infra tests/integration -o cache_dir=.pytest_cache/rest "$@" || failed+=("unit, infra or integration tests")
bash scripts/check-infra.sh || failed+=("infrastructure checks")

echo "test lanes: waiting for tests/e2e"
wait "$e2e_pid" || failed+=("e2e tests")
trap - INT TERM
echo "================================ tests/e2e ================================="
cat "$E2E_LOG"

if ((${#failed[@]})); then
    printf 'test lanes: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "test lanes: every tier passed"

#!/usr/bin/env bash
# `make test`: every test tier and the infrastructure checks, in three lanes at once.
#
#   lane faults: the exactly-once fault suite (tests/e2e/test_exactly_once.py,
#                test_tool_exactly_once.py, test_choices.py), the pipeline as
#                real processes; its run ends with the suite's summary line;
#   lane e2e:    the rest of tests/e2e;
#   lane rest:   tests/unit, tests/infra, tests/integration, then
#                scripts/check-infra.sh.
#
# The e2e lanes spend most of their time waiting on queues, leases and the
# emulators, so three lanes fit two cores. Each lane is its own pytest session
# with its own emulators and stack on free loopback ports (tests/plugin.py),
# so nothing is shared between them. The rest lane streams to the terminal;
# the others write .stack/test-faults.log and .stack/test-e2e.log, printed when
# they end. The script exits non-zero if any lane failed, naming each. Extra
# arguments go to every pytest run (e.g. `-x`).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
mkdir -p .stack
FAULT_SUITE=(tests/e2e/test_exactly_once.py tests/e2e/test_tool_exactly_once.py tests/e2e/test_choices.py)
ignored=()
for file in "${FAULT_SUITE[@]}"; do ignored+=(--ignore="$file"); done

"$PY" -m pytest "${FAULT_SUITE[@]}" -o cache_dir=.pytest_cache/faults "$@" >.stack/test-faults.log 2>&1 &
faults_pid=$!
"$PY" -m pytest tests/e2e "${ignored[@]}" -o cache_dir=.pytest_cache/e2e "$@" >.stack/test-e2e.log 2>&1 &
e2e_pid=$!
# A signal to make reaches every lane (one process group); this only makes
# sure the background lanes are waited for, so their watchdogs end what they started.
trap 'kill -TERM "$faults_pid" "$e2e_pid" 2>/dev/null; wait; exit 130' INT TERM
echo "test lanes: the fault suite and tests/e2e run beside this one (logs: .stack/test-faults.log, .stack/test-e2e.log)"

failed=()
"$PY" -m pytest tests/unit tests/infra tests/integration -o cache_dir=.pytest_cache/rest "$@" || failed+=("unit, infra or integration tests")
bash scripts/check-infra.sh || failed+=("infrastructure checks")

echo "test lanes: waiting for the e2e lanes"
wait "$e2e_pid" || failed+=("e2e tests")
wait "$faults_pid" || failed+=("the fault suite")
trap - INT TERM
for lane in e2e faults; do
    echo "================================ lane: $lane ================================"
    cat ".stack/test-$lane.log"
done

if ((${#failed[@]})); then
    printf 'test lanes: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "test lanes: every tier passed"

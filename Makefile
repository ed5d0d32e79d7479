# The README's two commands are `make dev` and `make test`; everything else is optional.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv prereqs browser dev stack test test-unit test-integration test-e2e check-infra failures replay bench eval clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is required; found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the pinned requirements into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(STAMP) ## Create the virtualenv and install the pinned requirements

prereqs: venv
	@$(PY) -m devstack check

# The chat page's browser test drives Debian's chromium (a browser build cannot be downloaded here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "missing: Debian's chromium for the browser test; install it: sudo apt-get install chromium" >&2; exit 1; \
	  fi; }

dev: prereqs ## Start the local stack and chat with the bot in the terminal
	@$(PY) -m devstack chat

stack: prereqs ## Start the local stack headless; prints READY <webhook-url>
	@$(PY) -m devstack stack

test: prereqs browser ## Run every test tier and the infrastructure checks (two lanes at once: scripts/test-lanes.sh)
	@PY=$(PY) bash scripts/test-lanes.sh

test-unit: venv ## Unit tests only (no emulators)
	@$(PY) -m pytest tests/unit

test-integration: prereqs ## Integration tests against the emulators
	@$(PY) -m pytest tests/integration

test-e2e: prereqs browser ## The whole pipeline as real processes
	@$(PY) -m pytest tests/e2e

check-infra: ## terraform fmt and offline checkov on terraform/
	@bash scripts/check-infra.sh

failures: venv ## List failed and dead-lettered messages (needs FIRESTORE_EMULATOR_HOST or cloud credentials)
	@$(PY) -m shared.ops.failures

replay: venv ## Answer dead-lettered messages after all: make replay [SIDS="SM... SM..."] (needs the emulators' or cloud credentials)
	@$(PY) -m shared.ops.replay $(SIDS)

admin: venv ## Conversations, handoff and profiles: make admin ARGS="show whatsapp:+34600111222" (README, "Admin command")
	@$(PY) -m shared.ops.admin $(ARGS)

profiles-apply: venv ## Validate a business profiles file, then write it to Firestore: make profiles-apply FILE=profiles.yaml
	@$(PY) -m shared.ops.admin profiles-apply $(FILE)

eval: prereqs ## A profiles file's golden questions through the retrieval and the model: make eval [FILE=profiles.yaml]
	@$(PY) -m devstack.eval $(FILE)

bench: prereqs ## Benchmarks against the local stack; prints a table, writes bench/results.json
	@$(PY) -m bench

clean: ## Remove the virtualenvs and local stack logs
	rm -rf $(VENV) .venv-infra .stack .pytest_cache

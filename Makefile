SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON := $(shell scripts/find-python 3.12)
UV := scripts/uv
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

# requirements.lock is `uv export` of uv.lock: the same pins and hashes, without the registry
# addresses uv.lock records, which this project keeps out of its history. dev/ is the
# development harness (demo, bench): a distribution of its own, so no wheel, image or Composer
# sync of the core carries it; what it imports is in requirements.lock.
$(INSTALLED): pyproject.toml dev/pyproject.toml requirements.lock scripts/uv scripts/find-python \
		emulators/bigquery/requirements.txt emulators/bigquery/install.sh
	@echo "==> installing .venv ($(PYTHON)) with uv, bytecode compiled"
	$(UV) venv --quiet --allow-existing --python "$(PYTHON)" $(VENV)
	$(UV) pip sync --python $(BIN)/python --quiet --compile-bytecode --require-hashes requirements.lock
	$(UV) pip install --python $(BIN)/python --quiet --compile-bytecode --no-deps -e .
	$(UV) pip install --python $(BIN)/python --quiet --compile-bytecode --no-deps -e dev
	UV="$(CURDIR)/$(UV)" emulators/bigquery/install.sh
	@touch $@

setup: $(INSTALLED) ## create .venv and install everything (idempotent)

lock: ## re-resolve the pins after editing pyproject.toml
	$(UV) lock --python "$(PYTHON)"
	$(UV) export --quiet --frozen --all-extras --all-groups --no-emit-project -o requirements.lock
	$(UV) export --quiet --frozen --extra api --no-dev --no-emit-project -o api/requirements.txt
	$(UV) export --quiet --frozen --extra pipeline --no-dev --no-emit-project \
		-o beam_pipelines/requirements.txt
	$(UV) export --quiet --frozen --extra airflow --extra gcp --extra pipeline --no-dev \
		--no-emit-project -o docker/airflow/requirements.txt
	$(BIN)/python scripts/composer-requirements

composer-constraints: ## re-resolve composer/constraints.txt (Composer's preinstalled packages), then make lock
	scripts/composer-constraints

docs: setup ## regenerate docs/configuration.md from the Settings model
	$(BIN)/python scripts/settings-doc

lint: setup ## ruff format check, ruff lint (with AIR rules), mypy on the core
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: setup ## apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

airflow-runtimes: setup ## Composer's Airflow 3.1 on Python 3.11 and Airflow 3.3, quotestream installed from its wheel
	scripts/airflow-runtime composer-3.1
	scripts/airflow-runtime airflow-3.3

browser: ## Debian's chromium for the browser test (apt-get; nothing once it is there)
	scripts/install-browser

# The suite waits (polls, ack deadlines, process starts) more than it computes: workers, each
# with its own emulators, overlap the waits. A test file stays on one worker (its module
# fixtures, the demo's run, start once), and the files come in collection order, slow ones
# first (tests/conftest.py), not xdist's most-tests-first.
TEST_WORKERS ?= 3
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# A tier of its own for what takes minutes a test and is not the core's loop: the DAGs in the
# two Airflow runtimes, the sources' outage scenarios and the writer's crash test. CI runs it
# after make test.
TIERS := composer or scenario or crash

test: lint browser ## the suite in TEST_WORKERS processes: lint, unit, api, integration, e2e in a browser (starts the emulators itself); then make test-tiers
	$(BIN)/pytest $(XDIST) -m "not ($(TIERS))"

test-tiers: setup airflow-runtimes ## what CI runs after make test: the DAGs in Composer's Airflow 3.1 and in Airflow 3.3, the sources' outage scenarios, the writer's crash test
	$(BIN)/pytest $(XDIST) -m "$(TIERS)"

test-crash: setup ## the Storage Write writer's crash test alone (five kills and a BigQuery restart during a 20,000-message drain; also in test-tiers)
	$(BIN)/pytest -m crash

QUICK := not emulators and not airflow and not gcp and not e2e and not composer

check: lint ## lint and the quick loop: the tests that need no emulator, Airflow, stand-in or browser
	$(BIN)/pytest $(XDIST) -m "$(QUICK)"

demo: setup ## the whole pipeline locally, driven from Airflow, until Ctrl-C (DEMO_SECONDS=60)
	$(BIN)/quotestream demo --seconds $(or $(DEMO_SECONDS),60)

compose-config: ## validate docker-compose.yaml (installs docker-compose 1.29.2 when Docker has none)
	@f=$$(mktemp -d)/.env; scripts/compose-env "$$f" >/dev/null; \
		scripts/compose --env-file "$$f" config --quiet && echo "docker-compose.yaml is valid"

wheel: setup ## build the quotestream wheel (for a Composer environment's PyPI packages)
	$(UV) build --wheel --out-dir dist --build-constraints build-requirements.txt --require-hashes

bench: setup ## print the benchmark figures: API, pipeline, whole stack, backlog drain, CPU per quote, Airflow start
	$(BIN)/quotestream bench api
	$(BIN)/quotestream bench pipeline
	$(BIN)/quotestream bench load
	$(BIN)/quotestream bench drain
	$(BIN)/quotestream bench cost
	$(BIN)/quotestream bench airflow

clean: ## remove the venv and local state
	rm -rf $(VENV) .venv-composer-3.1 .venv-airflow-3.3 .local .pytest_cache .mypy_cache .ruff_cache

.PHONY: help setup lock composer-constraints airflow-runtimes docs lint format browser test test-tiers test-crash check demo compose-config wheel bench clean

# The command list of the Generation Service. `make help` shows it.
SHELL := /bin/bash
UV := uv run --frozen
PY_PATHS := libs services tests bench

.DEFAULT_GOAL := help
.PHONY: help install fmt lint typecheck test test-fast test-faults schemas openapi env-example \
        bench up down status logs demo smoke ci clean run-ingest run-status run-vision run-translate \
        run-notifier run-sim

help: ## show this list
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

install: ## install uv, PostgreSQL, Java/Maven (apt when missing), Python packages, Kafka jars
	@bash scripts/bootstrap.sh

fmt: ## format the code
	$(UV) ruff format $(PY_PATHS)
	$(UV) ruff check --fix $(PY_PATHS)

lint: ## ruff, format check, import contracts
	$(UV) ruff check $(PY_PATHS)
	$(UV) ruff format --check $(PY_PATHS)
	$(UV) lint-imports

typecheck: ## mypy --strict over every package and the tests
	$(UV) mypy libs/common/gen_common libs/devstack/gen_devstack libs/openai_sim/openai_sim libs/client/gen_client \
	  services/ingest/gen_ingest services/status/gen_status services/vision/gen_vision \
	  services/translate/gen_translate services/notifier/gen_notifier tests bench

test: install ## run every test; starts its own Kafka and PostgreSQL on loopback (no Docker)
	$(UV) pytest

test-fast: ## tests without the slow fault tests
	$(UV) pytest -m "not slow"

test-faults: ## only the slow fault tests, at the catalogue's full load (FAULTS_FULL=1)
	FAULTS_FULL=1 $(UV) pytest -m slow

schemas: ## regenerate schemas/ from gen_common.events
	$(UV) python -m gen_common.schemas schemas

env-example: ## regenerate .env.example from the settings classes
	$(UV) python -m gen_devstack.env_example > .env.example

bench: ## run every benchmark against `make up`'s Kafka/PostgreSQL, each in its own database
	@set -e; for b in bench/bench_*.py; do name=$$(basename $$b .py); echo "== $$b"; \
	  createdb -h 127.0.0.1 -p 55432 -U gen $$name 2>/dev/null || true; \
	  export DB__URL=$$($(UV) python -m gen_devstack.pg_local url --database $$name); \
	  $(UV) python -m gen_common.migrate >/dev/null 2>&1; $(UV) python $$b; done

up: ## run the whole system locally: Kafka, PostgreSQL, migrations, every service, proxy
	@WITH_PROXY=yes bash scripts/bootstrap.sh >/dev/null
	$(UV) python -m gen_devstack.stack up

down: ## stop everything `make up` started
	$(UV) python -m gen_devstack.stack down

status: ## what `make up` is running
	$(UV) python -m gen_devstack.stack status

logs: ## follow the logs of the local stack
	tail -F .run/logs/*.log

demo: ## submit a sync lot and a batch job to the running local stack
	$(UV) python -m gen_devstack.demo

smoke: ## the README's first command checked: make up, make demo (must succeed), make down
	@$(MAKE) --no-print-directory up; rc=$$?; \
	if [ $$rc -eq 0 ]; then $(MAKE) --no-print-directory demo; rc=$$?; fi; \
	$(MAKE) --no-print-directory down; exit $$rc

ci: lint typecheck test ## what CI runs

run-ingest: ; $(UV) python -m gen_ingest ## run one service against the local stack
run-status: ; $(UV) python -m gen_status
run-vision: ; $(UV) python -m gen_vision
run-translate: ; $(UV) python -m gen_translate
run-notifier: ; $(UV) python -m gen_notifier
run-sim: ; $(UV) python -m openai_sim --port 18080

clean: ## remove local state (.run/) and caches
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache

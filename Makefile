# cohortflow: the one front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROTOS := $(shell find protos -name '*.proto')
GEN_STAMP := gen/.stamp

.PHONY: help install proto lint fmt typecheck test test-unit test-integration test-e2e run demo bench lock clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) protos/generate.py  # the editable install maps the package `cohortflow` to gen/
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

install: $(STAMP) $(GEN_STAMP) ## create .venv with the locked dependencies and generate protos

$(GEN_STAMP): $(PROTOS) $(STAMP) protos/generate.py
	$(PY) protos/generate.py
	@touch $@

proto: $(STAMP) ## generate Python code from protos/ into gen/ (not committed)
	$(PY) protos/generate.py
	@touch $(GEN_STAMP)

lint: install ## buf lint, ruff, import contracts, mypy
	$(BIN)/buf lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

fmt: install ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

test: lint ## lint, then every test: unit, integration (real PostgreSQL and NATS), end to end
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install
	$(PY) -m pytest tests/integration

test-e2e: install
	$(PY) -m pytest tests/e2e

run: install ## run the suite (embedded PostgreSQL and NATS unless DATABASE_URL / NATS_URL are set; RUN_ARGS="--var DIR")
	$(PY) -m services.devstack run $(RUN_ARGS)

demo: install ## the suite plus example segments, campaigns and simulated users, shown live (DEMO_ARGS="--users 300")
	$(PY) -m services.devstack demo $(DEMO_ARGS)

bench: install ## run the benchmarks and print their tables (not tests)
	$(PY) -m tests.bench $(BENCH_ARGS)

lock: ## re-resolve requirements.lock from pyproject.toml
	$(PYTHON) -m pip install --quiet uv && $(PYTHON) -m uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean: ## remove generated code and the venv (keeps ./var data)
	rm -rf gen $(VENV) .pytest_cache .mypy_cache .ruff_cache

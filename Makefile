# joblens — the single entry point for developers and CI.
#   make run    start the local Redis + Elasticsearch stack and serve the API (foreground)
#   make test   lint + format check + mypy + pytest against the local stack, then against the cluster stack (CI)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV  := .venv
BIN   := $(VENV)/bin
PY    := $(BIN)/python
STAMP := $(VENV)/.installed
STACK := $(BIN)/joblens stack
SERVE_ARGS ?=

.PHONY: help setup venv run test test-single test-cluster lint fmt docs stack-up stack-down stack-status \
	cluster-up cluster-down cluster-status bench bench-quick clean

help:
	@echo "make run           stack up + joblens serve (foreground)"
	@echo "make test          ruff, ruff format --check, mypy --strict, pytest against the stack and the cluster stack"
	@echo "make test-single | test-cluster   one pass only (the cluster pass: scripts/test.sh CLUSTER_TESTS)"
	@echo "make lint | fmt    static checks (scripts/lint.sh, also run by make test) | apply ruff's fixes"
	@echo "make docs          regenerate docs/configuration.md from service/settings.py"
	@echo "make stack-up | stack-down | stack-status"
	@echo "make cluster-up | cluster-down | cluster-status   (joblens stack … --cluster)"
	@echo "make bench | bench-quick"
	@echo "make setup | venv | clean"

# System tools: redis-server (apt), Maven and a Java 21+ JDK for Elasticsearch.
setup:
	@bash scripts/setup.sh

venv: $(STAMP)

# Re-installed only when pyproject.toml changes; pip's own cache makes re-runs cheap.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

run: setup venv
	$(STACK) up
	eval "$$($(STACK) env)" && exec $(BIN)/joblens serve $(SERVE_ARGS)

test: setup venv
	bash scripts/test.sh

test-single: setup venv
	JOBLENS_TEST_PASSES=single bash scripts/test.sh

test-cluster: setup venv
	JOBLENS_TEST_PASSES=cluster bash scripts/test.sh

# One definition of the checks, shared with scripts/test.sh (make test, CI).
lint: venv
	VENV=$(VENV) bash scripts/lint.sh

fmt: venv
	VENV=$(VENV) bash scripts/lint.sh --fix

# tests/test_settings_docs.py fails when the committed reference differs from this output.
docs: venv
	$(PY) -m service.settings > docs/configuration.md.tmp && mv docs/configuration.md.tmp docs/configuration.md

stack-up: setup venv
	$(STACK) up

stack-down: venv
	$(STACK) down

stack-status: venv
	$(STACK) status

cluster-up: setup venv
	$(STACK) up --cluster

cluster-down: venv
	$(STACK) down --cluster

cluster-status: venv
	$(STACK) status --cluster

bench: setup venv
	$(STACK) up
	eval "$$($(STACK) env)" && $(PY) -m bench.run

bench-quick: setup venv
	$(STACK) up
	eval "$$($(STACK) env)" && $(PY) -m bench.run --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# Orchard — run `make` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
UV ?= $(shell command -v uv 2>/dev/null || echo $(VENV)-bootstrap/bin/uv)
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export DO_NOT_TRACK := 1

.PHONY: help setup demo test test-fast bench lint ui clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(VENV)-bootstrap/bin/uv:
	@# uv is absent: bootstrap it from the package registry with pip, in its own small venv
	python3 -m venv $(VENV)-bootstrap && $(VENV)-bootstrap/bin/pip install --quiet uv

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-groups
	@touch $@

setup: $(VENV)/.synced ## Create the virtual environment from the lock file (uv.lock)

demo: setup ## Run the whole 2019–2021 lifecycle on embedded defaults (state in .orchard/)
	$(VENV)/bin/orchard demo

test: setup ## Run every test tier (unit, integration, e2e, services)
	$(PY) -m pytest

test-fast: setup ## Run the tests without the slow scenarios
	$(PY) -m pytest -m "not slow"

bench: setup ## Print benchmark figures (demo stages, Prefect overhead, materialization, PSI)
	$(PY) -m benchmarks.run

lint: setup ## Lint and check formatting with ruff
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

ui: setup ## Open the Prefect, MLflow and Evidently UIs over the demo's state
	$(VENV)/bin/orchard ui

clean: ## Remove the demo state folder (.orchard/)
	rm -rf .orchard

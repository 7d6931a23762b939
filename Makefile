# Orchard — run `make` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
UV ?= $(shell command -v uv 2>/dev/null || echo $(VENV)-bootstrap/bin/uv)
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export DO_NOT_TRACK := 1
# Let Python cache the bytecode of what it imports in the virtual environment (uv installs none): with
# PYTHONDONTWRITEBYTECODE set, every process (the demo, its Prefect server, each CLI call of the tests)
# compiles MLflow, Prefect, Great Expectations, Feast... from source again, about 25 s of CPU each.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help setup demo test test-fast bench bench-scale bench-lightgbm-dask bench-psi bench-api bench-binning bench-real bench-federated bench-federated-fate bench-secureboost lint ui clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(VENV)-bootstrap/bin/uv:
	@# uv is absent: bootstrap it from the package registry with pip, in its own small venv
	python3 -m venv $(VENV)-bootstrap && $(VENV)-bootstrap/bin/pip install --quiet uv

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-groups
	@touch $@

setup: $(VENV)/.synced ## Create the virtual environment from the lock file (uv.lock)

demo: setup ## Run the whole 2019–2021 lifecycle on embedded defaults (state in .orchard/)
	$(VENV)/bin/orchard demo

# Two pytest-xdist workers (one per core of the reference machine); a test file stays whole on one worker and
# the files go out in the order tests/conftest.py sorts them (longest scenarios first): --no-loadscope-reorder,
# or xdist would hand out the files with the most tests first and the one-test scenarios last.
# TEST_WORKERS=0 runs everything in one process.
# (--dist loadfile, not loadgroup: pytest-xdist 3.8 cannot tag the node ids of pytest 9 with their group.)
TEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: setup ## Run every test tier (unit, integration, e2e, services) on two workers
	$(PY) -m pytest $(PYTEST_PARALLEL)

test-fast: setup ## Run the tests without the slow scenarios
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not slow"

bench: setup ## Demo wall time per stage + Prefect overhead share; materialization vs stock feast
	$(PY) -m benchmarks.run

bench-scale: setup ## Lifecycle 2019 at 1x, 4x, 10x the demo's users, one process and a Dask LocalCluster: time per month, peak memory (slow: ~16 min)
	$(PY) -m benchmarks.scale

bench-lightgbm-dask: setup ## A LightGBM fit on 1M rows in one process vs LightGBM's Dask estimator on a 2-worker LocalCluster
	$(PY) -m benchmarks.lightgbm_dask

bench-psi: setup ## PSI/CSI on 1M rows x 50 columns vs Evidently's PSI preset (slow: ~10-20 min)
	$(PY) -m benchmarks.psi

bench-api: setup ## Decision latency in process and over HTTP at 100 req/s, next to Feast's online read
	$(PY) -m benchmarks.decision_latency

bench-binning: setup ## Binning + WOE + selection on 200k x 50 vs optbinning's BinningProcess
	$(PY) -m benchmarks.binning

bench-real: setup ## Scorecard and LightGBM vs optbinning+LR and a tuned LightGBM on four real credit data sets
	$(PY) -m benchmarks.real_data

bench-federated: setup ## Federated (two processes, Paillier) vs centralized training, PSI on 100k ids
	$(PY) -m benchmarks.federated

bench-secureboost: setup ## Hetero SecureBoost (Paillier 2048-bit, 80k rows, depth 5): s/tree split by party, AUC vs centralised and LightGBM
	$(PY) -m benchmarks.secureboost --rows 80000 --guest-features 16 --host-features 12 --depth 5 --bins 32 --trees 3 --key-bits 2048

FATE_PYTHON ?=
bench-federated-fate: setup ## 80k rows: Orchard federated vs FATE 2.x coordinated LR (FATE_PYTHON=<fate venv>/bin/python; slow)
	@test -n "$(FATE_PYTHON)" || { echo "set FATE_PYTHON to the python of a venv with pyfate 2.2 (see benchmarks/README.md)"; exit 2; }
	$(PY) -m benchmarks.federated --users 73000 --host-decoys 1 --epochs 5 --psi-ids 0 --fate-python $(FATE_PYTHON)

lint: setup ## Lint and check formatting with ruff; check the import layers (import-linter) and the types (mypy)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports && $(VENV)/bin/mypy

ui: setup ## Open the Prefect, MLflow and Evidently UIs over the demo's state
	$(VENV)/bin/orchard ui

clean: ## Remove the demo state folder (.orchard/)
	rm -rf .orchard

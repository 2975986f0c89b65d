# The two commands of the README's Quick start: `make run` and `make test`.
# Both create .venv/ and install the project (pinned in pyproject.toml) when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SPEC ?= sweeps/specs/paper-fig2.yaml

.PHONY: run test bench ui fig2 clean cluster-up cluster-down cluster-status

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,openspiel,browser,postgres,optuna]"
	touch $(STAMP)

## run: the Figure 2 sweep on a local Ray, tracked in runs/mlflow (SQLite + artifacts)
run: $(STAMP)
	$(BIN)/metasweep run $(SPEC)
	@echo "Open the MLflow UI: make ui   (or .venv/bin/metasweep ui)"

## ui: the MLflow UI for runs/mlflow on http://127.0.0.1:5000
ui: $(STAMP)
	$(BIN)/metasweep ui

## fig2: the Figure 2 experiment without Ray or MLflow: table, curves and figure in runs/fig2
fig2: $(STAMP)
	$(BIN)/metasweep fig2 --out runs/fig2

## test: the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

## bench: the ratio benchmarks recorded in docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_algorithm1.py

## cluster-up: a local multi-node cluster on 127.0.0.1 (Ray head + WORKERS worker nodes, PostgreSQL,
## MLflow server), state in .state/cluster; prints the Ray address and tracking URI (README, "Running on a cluster")
WORKERS ?= 1
cluster-up: $(STAMP)
	$(BIN)/python cluster/harness.py up --workers $(WORKERS)

## cluster-down: stop everything cluster-up started (by PID)
cluster-down:
	$(BIN)/python cluster/harness.py down

cluster-status:
	$(BIN)/python cluster/harness.py status

## clean: runtime state and Numba's on-disk kernel caches (see README, Development)
clean:
	rm -rf runs .pytest_cache
	find solvers sweeps tracking -name '*.nb[ic]' -delete

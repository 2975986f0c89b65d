# The two commands of the README's Quick start: `make run` and `make test`.
# Both create .venv/ and install the project (pinned in pyproject.toml) when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= runs/fig2

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

## run: the paper's Figure 2 experiment (F.1 games, individual vs meta), result table on stdout
run: $(STAMP)
	$(BIN)/metasweep fig2 --out $(OUT)

## test: the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

## bench: the ratio benchmarks recorded in docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_algorithm1.py

clean:
	rm -rf runs .pytest_cache

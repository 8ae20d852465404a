# One-command entry points for a fresh machine (only python3 needed).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= disabled

.PHONY: setup bench quick test perf train figures clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/.installed

bench: setup          ## set up, then run every method x task on the embedded world
	$(BIN)/python -m bench all

quick: setup
	$(BIN)/python -m bench all --quick --out results-quick

test: setup           ## set up, then run the test suite (CPU, offline)
	$(BIN)/python -m pytest -q

perf: setup           ## cost benchmarks (pytest-benchmark)
	$(BIN)/python -m pytest -q benchmarks --benchmark-enable --benchmark-json=results/perf.json

train: setup          ## rebuild the embedded world from scratch (seeded)
	$(BIN)/python -m bench train

figures: setup
	$(BIN)/python -m bench figures --results results

clean:
	rm -rf $(VENV) results results-quick .pytest_cache

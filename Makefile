# ganrun — `make train` and `make test` are all a fresh machine needs.
# `make help` lists the targets.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train test test-all lint format bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev,sweeps,wandb]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install ganrun with its dev tools (once)

train: $(STAMP) ## train with the defaults (DCGAN on the embedded MNIST digits); extra overrides: make train ARGS="model=vanilla"
	$(BIN)/ganrun train $(ARGS)

test: $(STAMP) ## the fast test suite (under ~10 min on 2 CPU cores)
	$(BIN)/python -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-all: $(STAMP) ## every test, including the slow ones
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check ganrun tests scripts
	$(BIN)/ruff format --check ganrun tests scripts

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix ganrun tests scripts
	$(BIN)/ruff format ganrun tests scripts

bench: $(STAMP) ## training throughput of the default DCGAN-64 vs a hand-written loop (docs/BENCHMARKS.md)
	$(BIN)/python scripts/bench_throughput.py --compare-reference trainer.batch_size=128

clean: ## remove the venv and caches (never outputs/ or multirun/: those are your runs)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The two commands of the README's quickstart. Each creates (or reuses) .venv,
# installs what it needs when pyproject.toml changed, and runs.
# `make serve` keeps the demo (allotment.db) and its admin key between runs;
# `make serve ARGS=--reset` simulates it afresh. The CLI is .venv/bin/allotment
# (or `source .venv/bin/activate`, then `allotment`).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: serve test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/allotment serve --demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n 2 -q

test-fast: lint
	$(BIN)/pytest -n 2 -q -m 'not slow'

bench: $(STAMP)
	$(BIN)/python -m bench.pricing
	$(BIN)/python -m bench.estimate
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.postgres
	$(BIN)/python -m bench.ledger
	$(BIN)/python -m bench.routes
	$(BIN)/python -m bench.limits
	$(BIN)/python -m bench.credits

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

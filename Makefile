# l4s — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-unit bench lint stack-up stack-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## setup: create .venv with l4s and its test tools installed
setup: $(STAMP)

## demo: start Kafka+Redis, stream the real sample through l4s, print report and blocklist
demo: setup
	deploy/local/demo

## test: the whole suite; integration tests start the local Kafka+Redis themselves
test: setup
	$(BIN)/pytest

## test-unit: only the tests that need no Kafka or Redis
test-unit: setup
	$(BIN)/pytest -m "not integration"

## bench: every benchmark in bench/, each printing one JSON result line
bench: setup
	for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

lint: setup
	$(BIN)/ruff check pipeline detectors enrichers tests bench
	$(BIN)/mypy

stack-up:
	deploy/local/stack up

stack-down:
	deploy/local/stack down

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache

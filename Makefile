# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup tools demo test lint bench

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# Postfix's smtp-source and smtp-sink, for tests and benchmarks (the daemon is never started).
tools:
	./.ci/install-postfix-tools

demo: setup
	$(BIN)/maildrill run default

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy maildrill loadtest sinks

# One pytest process: with two workers (pytest -n 2 --dist loadfile) the suite takes half
# the time, but some timing tests still fail now and then under that load.
test: setup tools lint
	$(BIN)/pytest

bench: setup tools
	$(BIN)/python benchmarks/sink_throughput.py

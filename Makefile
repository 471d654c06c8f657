# Targets match the README: `make run` and `make test` set everything up from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser run test unit lint typecheck format sync bench bench-full bench-smoke clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## browser: Debian's chromium and chromedriver for the browser tier (tests/test_ui_browser.py)
browser:
	@bash scripts/browser.sh

## run: start oibus on the embedded engine, run the demo, stay up until Ctrl-C
run: $(STAMP)
	$(BIN)/oibus up --demo

## test: everything CI checks — generated code current, lint, types, both test tiers
test: $(STAMP) lint browser
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest -k fake

lint: $(STAMP) typecheck
	$(BIN)/python scripts/unasync.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## typecheck: mypy --strict over the package as installed (see scripts/typecheck.py)
typecheck: $(STAMP)
	$(BIN)/python scripts/typecheck.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## sync: regenerate the sync SDK from the async source
sync: $(STAMP)
	$(BIN)/python scripts/unasync.py

## bench: the whole suite in one run (core, peers, consumption, growth) -> bench/RESULTS.md
bench: $(STAMP)
	$(BIN)/python -m bench.suite --out bench/RESULTS.md --json bench/.work/results.json

## bench-full: the same with the 1,000,000-intent growth tier (about 6 GB of Redis memory)
bench-full: $(STAMP)
	$(BIN)/python -m bench.suite --full --out bench/RESULTS.md --json bench/.work/results.json

bench-smoke: $(STAMP)
	$(BIN)/python -m bench.suite --smoke

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache

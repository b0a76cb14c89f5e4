# TurboMode: two commands on a fresh machine — `make run` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= all,dev

.PHONY: setup run test lint unit bench lock clean

$(STAMP): pyproject.toml constraints.txt
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "TurboMode needs Python 3.11, found " + sys.version' 
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

## The pipeline on the default synthetic data: ingest → features into Feast → online store →
## train, evaluate and gate all 33 sector × horizon ensembles on Ray → tonight's signals.
run: setup
	$(BIN)/turbomode ingest
	$(BIN)/turbomode features build
	$(BIN)/turbomode features materialize
	$(BIN)/turbomode train
	$(BIN)/turbomode scan

## Lint, type-check and the whole test suite.
test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest -m "not integration and not slow"

bench: setup
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_feature_store.py

## Re-resolve the lock from pyproject.toml in a scratch venv.
lock:
	rm -rf /tmp/turbomode-lock && $(PY) -m venv /tmp/turbomode-lock
	/tmp/turbomode-lock/bin/python -m pip install --quiet --upgrade "pip>=24"
	/tmp/turbomode-lock/bin/python -m pip install --quiet ".[$(EXTRAS)]"
	{ echo "# Lock for a reproducible install: every package the project and its extras resolve to,"; \
	  echo "# tested together. Regenerate with 'make lock' after changing pyproject.toml."; \
	  /tmp/turbomode-lock/bin/python -m pip freeze --exclude-editable | grep -v '^turbomode'; } > constraints.txt

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

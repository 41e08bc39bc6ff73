# The two commands a newcomer needs:  make figures   and   make test   (each sets up .venv first).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIGS := $(wildcard configs/*.yaml)

.PHONY: setup test unit notebooks-smoke figures models bench gpu-check lint clean-runs

# Idempotent: reinstalls only when requirements.txt or pyproject.toml changed.
setup: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sparse-circuits)" >/dev/null
	touch $(STAMP)

# Lint, the layer contract (import-linter, see pyproject.toml), unit tests, then every notebook at smoke
# scale through papermill, checked by nbval.
test: setup
	$(PY) -m ruff check lib tests bench
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q tests
	$(PY) -m sparse_circuits.app.notebooks smoke

unit: setup
	$(PY) -m pytest -q tests

# Trains any model of configs/ that data/models/ lacks, then runs every notebook at full scale: those using every
# core alone, the single-threaded ones (04-14; none reads another's output) JOBS at a time; JOBS=1: one by one.
JOBS ?= 2
figures: setup models
	$(PY) -m sparse_circuits.app.notebooks full --jobs $(JOBS)

models: setup
	@for cfg in $(CONFIGS); do \
	  name=$$(basename $$cfg .yaml); \
	  if [ ! -f data/models/$$name/model.safetensors ]; then \
	    echo "training $$name (missing from data/models)"; \
	    $(PY) -m sparse_circuits train --config $$cfg --out data/models/$$name || exit 1; \
	  fi; \
	done

bench: setup
	$(PY) bench/run_all.py

# Where torch sees a CUDA device: the exactness tests on it, the three benchmarks at modest sizes on it (results
# in bench/results/cuda/), then the README's performance section regenerated. Elsewhere it does nothing.
gpu-check: setup
	@if ! $(PY) -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
	  echo "gpu-check: no CUDA device here; nothing to do (CPU results stay in bench/results/)"; \
	  exit 0; \
	fi; \
	set -ex; \
	$(PY) -m pytest -q tests/test_sparse_exec.py tests/test_fast_step.py tests/test_distributed.py --device cuda; \
	$(PY) bench/bench_sparse.py --device cuda --dims 512 1024 2048 --rows 256 2048 --repeats 5; \
	$(PY) bench/bench_train.py --device cuda --configs 256:16 512:32 1024:64 --rounds 1; \
	$(PY) bench/bench_prune.py --device cuda --steps 3 --big-seeds 8 --big-steps 2; \
	$(PY) bench/report.py --write

lint: setup
	$(PY) -m ruff check lib tests bench
	$(PY) -m ruff format --check lib tests bench
	$(VENV)/bin/lint-imports --no-cache

clean-runs:
	rm -rf runs

# The two commands a newcomer needs:  make figures   and   make test   (each sets up .venv first).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIGS := $(wildcard configs/*.yaml)

.PHONY: setup test unit notebooks-smoke figures models bench lint clean-runs

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

# Trains any model of configs/ that data/models/ lacks, then runs every notebook at full scale.
figures: setup models
	$(PY) -m sparse_circuits.app.notebooks full

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

lint: setup
	$(PY) -m ruff check lib tests bench
	$(PY) -m ruff format --check lib tests bench
	$(VENV)/bin/lint-imports --no-cache

clean-runs:
	rm -rf runs

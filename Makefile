# marketplace-elt: `make run` runs the pipeline on the embedded PostgreSQL, `make test` tests it.
# Nothing but Python 3.11+ and make is assumed; .venv is created on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench docs clean stop dagster

run: $(STAMP)
	$(BIN)/elt run

test: $(STAMP)
	$(BIN)/ruff check loader tests benchmarks
	$(BIN)/pytest --cov=loader --cov-report=term --cov-fail-under=80 --durations=15 tests  # the slowest 15: the suite keeps its time

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "marketplace-elt needs Python 3.11 or newer: set PYTHON=python3.11 (or newer)")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,aws,dagster]'  # make test runs the AWS and Dagster tests too
	touch $(STAMP)

# Dagster's UI on http://127.0.0.1:3000 over the embedded warehouse (a fresh one gets the
# simulated source first); Dagster's own storage in .elt/dagster-home
DAGSTER_PORT ?= 3000
dagster: $(STAMP)
	$(BIN)/elt warehouse start
	$(BIN)/python -c 'import sys; from loader.config import load_settings; from loader.source import simulator; sys.exit(0 if simulator.is_initialised(load_settings().source) else 1)' || $(BIN)/elt source init
	mkdir -p .elt/dagster-home && cp loader/dagster/dagster.yaml .elt/dagster-home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.elt/dagster-home $(BIN)/dagster dev -m loader.dagster.definitions -p $(DAGSTER_PORT)

lint: $(STAMP)
	$(BIN)/ruff check loader tests benchmarks
	$(BIN)/elt warehouse start >/dev/null  # sqlfluff's dbt templater compiles against it
	$(BIN)/python -m loader.packages  # dbt_packages/ (elt run and the tests install it too)
	DBT_PROFILES_DIR=profiles $(BIN)/sqlfluff lint models macros snapshots tests/dbt analyses

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --scale 1

stop: $(STAMP)
	$(BIN)/elt warehouse stop

clean: stop
	rm -rf .elt target logs reports

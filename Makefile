# IMS: `make run` (install, migrate, seed demo data, serve) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app run
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test install migrate seed translations extract-messages serve clean bench

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

install: $(VENV)/.installed

translations: install
	$(BIN)/pybabel -q compile -f -d translations

extract-messages: install
	$(BIN)/python translations/extract.py

# audit-rekey: a database from before audit keys gets its chain continued keyed (once; after
# that, and on a new database, it does nothing).
migrate: install
	$(FLASK) db upgrade
	$(FLASK) ims audit-rekey

# `ims setup --demo`: migrate, audit-rekey, sync-roles, sync-workflows and seed --demo in one
# process (each is a command of its own too)
seed: install
	$(FLASK) ims setup --demo

run: translations seed
	@echo "IMS: http://$(HOST):$(PORT)  (demo users: admin, wfadmin, head, manager, manager2, clerk, clerk2, cashier, auditor / Passw0rd!)"
	@$(FLASK) ims worker --interval 30 > instance/worker.log 2>&1 & \
	  trap "kill $$! 2>/dev/null" EXIT INT TERM; \
	  $(FLASK) run --host $(HOST) --port $(PORT)

# three pytest-xdist workers (each with its own database), whole test files to each: on two
# cores the third keeps them busy while browser and CLI tests wait; the files in the order
# collected, the slowest first (SLOW_FIRST in tests/conftest.py)
TEST_WORKERS ?= 3
test: translations
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# every benchmark on a throw-away PostgreSQL database; one summary table (bench/results.md)
bench: install
	$(BIN)/pip install -q -r bench/requirements.txt
	$(BIN)/python bench/all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance/*.db

# CLM — the commands the README tells people to type.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CLM := $(VENV)/bin/clm
PYTEST := $(VENV)/bin/pytest
HOST ?= 127.0.0.1
PORT ?= 8000
export CLM_VAR_DIR ?= $(CURDIR)/var

.PHONY: run install assets test lint test-sqlite test-postgres test-e2e bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed assets

src/clm/web/static/vendor/htmx.min.js: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	frontend/copy-assets.sh

assets: src/clm/web/static/vendor/htmx.min.js

## run: install, migrate the embedded SQLite database, load demo data, serve with the worker
run: install
	$(CLM) migrate --noinput -v0
	$(CLM) seed_demo --contacts 2000 --if-empty
	$(CLM) ensure_demo_admin
	$(CLM) run_services --host $(HOST) --port $(PORT)

## test: lint, the suite on SQLite and on PostgreSQL, and the browser tests
test: install
	scripts/ensure-system-packages.sh
	$(MAKE) lint
	$(MAKE) test-sqlite
	$(MAKE) test-postgres
	$(MAKE) test-e2e

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench

test-sqlite: install
	$(PYTEST) -q -m "not e2e" -n 2

test-postgres: install
	scripts/with-postgres.sh $(PYTEST) -q -m "not e2e" -n 2

test-e2e: install
	DJANGO_ALLOW_ASYNC_UNSAFE=true $(PYTEST) -q -m e2e tests/e2e

## bench: measure and write docs/benchmarks.md
bench: install
	scripts/ensure-system-packages.sh
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) var frontend/node_modules src/clm/web/static/vendor

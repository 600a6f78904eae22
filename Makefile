# scraperd — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run stop test lint bench bench-full mariadb deps clean

# mysqlclient compiles against the MariaDB client headers; a fresh machine lacks them.
deps:
	@if ! pkg-config --exists libmariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then \
	  echo "installing MariaDB client headers (libmariadb-dev, pkg-config)"; \
	  apt-get update -qq && apt-get install -y -qq libmariadb-dev pkg-config; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory deps
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Start MariaDB when it is down (the tests use it as real source and target).
mariadb:
	@if ! mariadb-admin ping >/dev/null 2>&1; then \
	  echo "starting MariaDB"; \
	  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; \
	  for i in $$(seq 1 60); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 1; done; \
	  mariadb-admin ping; \
	fi

test: $(STAMP) mariadb
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check scraperd tests bench
	$(BIN)/mypy scraperd

run: $(STAMP)
	@bash deploy/demo.sh start

stop:
	@bash deploy/demo.sh stop

bench: $(STAMP) mariadb
	$(BIN)/python -m bench

bench-full: $(STAMP) mariadb
	$(BIN)/python -m bench --full

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis

# The two commands: `make demo` and `make test`. Each sets everything up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup sysdeps lint clean

demo: setup
	$(PY) -m agent.sim.demo

test: setup
	@scripts/ensure-postgres.sh
	$(VENV)/bin/ruff check identity attestor agent tests
	$(VENV)/bin/mypy
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check identity attestor agent tests
	$(VENV)/bin/mypy

setup: sysdeps $(STAMP)

sysdeps:
	@scripts/sysdeps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

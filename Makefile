# The two commands: `make demo` and `make test`. Each sets everything up first.
# `make images` builds the container images (deploy/images/README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := attest signature public eventlog uefi ima ima_per_bank ima_ascii csr certificates hwname

.PHONY: demo demo-onboarding test setup sysdeps tools lint fuzz images clean

demo: setup
	$(PY) -m agent.sim.demo

# Zero-touch onboarding (docs/onboarding.md): an OEM provisions a TPM, an owner onboards it.
demo-onboarding: setup
	$(PY) -m agent.sim.onboarding_demo

test: setup
	@scripts/ensure-postgres.sh
	$(VENV)/bin/ruff check identity attestor agent tests bench fuzz deploy
	$(VENV)/bin/mypy
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check identity attestor agent tests bench fuzz deploy
	$(VENV)/bin/mypy

images: setup
	scripts/images.sh

fuzz: setup
	$(PY) -m pip install -q 'atheris>=2.3,<4'
	@mkdir -p .fuzz
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzzing $$t for $(FUZZ_SECONDS)s"; \
	  if ! $(PY) fuzz/targets.py $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	       -artifact_prefix=.fuzz/$$t- > .fuzz/$$t.log 2>&1; then \
	    tail -40 .fuzz/$$t.log; echo "fuzz target $$t failed; crash input in .fuzz/"; exit 1; \
	  fi; \
	  grep -E "stat::number_of_executed_units" .fuzz/$$t.log; \
	done

setup: sysdeps tools $(STAMP)

sysdeps:
	@scripts/sysdeps.sh

# Pinned tools that are no Debian package (helm), cached in ~/.cache/edgeproof/tools.
tools: sysdeps
	@scripts/tools.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Two entry points: `make run` (the service's set-up, then start) and `make test` (the service's
# and the test stack's set-up, then test). A stamp is written only by a set-up that succeeded,
# and set-up runs again whenever what it installs from changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SETUP_INPUTS := pyproject.toml constraints.txt service/web/package-lock.json scripts/setup.sh scripts/torch-index.sh

.PHONY: setup setup-test run test bench lock clean

$(VENV)/.installed-run: $(SETUP_INPUTS)
	PYTHON=$(PYTHON) bash scripts/setup.sh run

$(VENV)/.installed-test: $(SETUP_INPUTS)
	PYTHON=$(PYTHON) bash scripts/setup.sh test

setup: $(VENV)/.installed-run

setup-test: $(VENV)/.installed-test

run: $(VENV)/.installed-run
	$(BIN)/surfrecon serve

# Lint first (the rule set is in pyproject.toml), then the suite.
test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

bench: $(VENV)/.installed-run
	$(BIN)/python bench/pointcloud.py

# Re-resolve every dependency and rewrite constraints.txt (then commit it).
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

clean:
	rm -rf $(VENV) build *.egg-info service/web/vendor

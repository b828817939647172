# The front door. `make up` runs the appliance; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
ENGINE_EXTRA ?= cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(ENGINE_EXTRA)

.DEFAULT_GOAL := help
.PHONY: help install up serve test test-fast test-e2e lint format clean

help: ## Show the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/install-venv.sh
	VENV=$(VENV) PYTHON=$(PYTHON) ENGINE_EXTRA=$(ENGINE_EXTRA) scripts/install-venv.sh
	@touch $@

install: $(STAMP) ## Create .venv and install everything (ENGINE_EXTRA=cpu|gpu)

up: $(STAMP) ## Run the appliance: vLLM engine + gateway (Ctrl-C stops both)
	$(VENV)/bin/appliance up

serve: $(STAMP) ## Run only the gateway, in front of engines started elsewhere
	$(VENV)/bin/appliance serve

test: $(STAMP) ## Run the whole suite, including the real-engine end-to-end tests
	$(PY) -m pytest

test-fast: $(STAMP) ## Everything but the real-engine tests (seconds, for your own loop)
	$(PY) -m pytest -m "not e2e"

test-e2e: $(STAMP) ## Only the real-engine tests
	$(PY) -m pytest -m e2e

lint: $(STAMP) ## ruff and mypy (strict)
	$(VENV)/bin/ruff check appliance tests
	$(VENV)/bin/ruff format --check appliance tests
	$(VENV)/bin/mypy

format: $(STAMP) ## Apply ruff's formatting and fixes
	$(VENV)/bin/ruff check --fix appliance tests
	$(VENV)/bin/ruff format appliance tests

clean: ## Remove the venv (keeps .data: models, database, secrets)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

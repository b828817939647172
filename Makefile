# The front door. `make up` runs the appliance; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
ENGINE_EXTRA ?= cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(ENGINE_EXTRA)

# `make` alone deploys (issue 8); without a site inventory it only says how to start.
.DEFAULT_GOAL := deploy
.PHONY: help install up serve test test-fast test-e2e test-deploy lint format clean bench soak deploy deploy-inventory image bundle

help: ## Show the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/install-venv.sh
	VENV=$(VENV) PYTHON=$(PYTHON) ENGINE_EXTRA=$(ENGINE_EXTRA) scripts/install-venv.sh
	@touch $@

# Test identity provider (npm) and Debian's chromium; see the script.
TEST_TOOLS := tests/oidc/node_modules/.package-lock.json
$(TEST_TOOLS): tests/oidc/package-lock.json scripts/install-test-tools.sh
	scripts/install-test-tools.sh

install: $(STAMP) $(TEST_TOOLS) ## Create .venv and install everything (ENGINE_EXTRA=cpu|gpu)

up: $(STAMP) ## Run the appliance: chat + embedding vLLM engines and the gateway (Ctrl-C stops all)
	$(VENV)/bin/appliance up

serve: $(STAMP) ## Run only the gateway, in front of engines started elsewhere
	$(VENV)/bin/appliance serve

test: $(STAMP) $(TEST_TOOLS) ## Run the whole suite, including the real-engine end-to-end tests
	$(PY) -m pytest

test-fast: $(STAMP) $(TEST_TOOLS) ## Everything but the real-engine tests (seconds, for your own loop)
	$(PY) -m pytest -m "not e2e"

test-e2e: $(STAMP) ## Only the real-engine tests
	$(PY) -m pytest -m e2e

# LITELLM=0 leaves LiteLLM's proxy out of the gateway bench (else it is installed once
# into bench/.litellm-venv, never into $(VENV), and measured beside the gateway).
LITELLM ?= 1
bench: $(STAMP) ## Audit log; direct vs gateway vs LiteLLM (LITELLM=0: no LiteLLM); real engine -> bench/results/*.json (BENCH_ARGS, GATEWAY_BENCH_ARGS, ENGINE_BENCH_ARGS)
	$(PY) bench/audit_bench.py $(BENCH_ARGS)
	$(PY) bench/gateway_bench.py --profile $(if $(filter 0,$(LITELLM)),--no-litellm) $(GATEWAY_BENCH_ARGS)
	$(PY) bench/engine_bench.py $(ENGINE_BENCH_ARGS)

soak: $(STAMP) ## Moderate load for SOAK_SECONDS (600) at SOAK_RATE (20/s): no errors, memory +<10 %, no lost record
	$(PY) bench/soak.py

# TARGET=baremetal (default): Ansible against INVENTORY, planned from the inventory
# (docs/ansible.md: CHECK=1 for a dry run with a diff, ANSIBLE_ARGS).
# TARGET=k8s: helm upgrade --install with the planner's values (docs/helm.md: PLAN_ARGS,
# VALUES, RELEASE, NAMESPACE, HELM_ARGS); needs the helm CLI on the admin host.
TARGET ?= baremetal
INVENTORY ?= ansible/inventory/hosts.yml
# Refuse a missing or example inventory before anything is installed.
deploy-inventory:
	@if [ "$(TARGET)" = "baremetal" ]; then INVENTORY=$(INVENTORY) scripts/ansible-deploy.sh --check-inventory; fi

deploy: deploy-inventory $(STAMP) ## Deploy: Ansible on bare metal (INVENTORY, CHECK=1; docs/ansible.md) or TARGET=k8s (Helm; docs/helm.md)
	@if [ "$(TARGET)" = "k8s" ]; then VENV=$(VENV) scripts/helm-deploy.sh; \
	elif [ "$(TARGET)" = "baremetal" ]; then \
	  VENV=$(VENV) INVENTORY=$(INVENTORY) CHECK=$(CHECK) scripts/ansible-deploy.sh; \
	else echo "make deploy: unknown TARGET=$(TARGET) (baremetal or k8s)" >&2; exit 2; fi

test-deploy: $(STAMP) ## Deployment tests: Ansible roles run locally, Helm chart rendered (no e2e)
	$(PY) -m pytest tests/deploy -m "not e2e"

# Daemonless (mmdebstrap, umoci, skopeo; root); docs/images.md. IMAGE_ARGS: --only gateway,
# --update-lock (re-pin the Debian packages), --wheelhouse DIR, --lock-fallback (or
# IMAGE_LOCK_FALLBACK=1: re-resolve, with a warning, when a pinned version left the mirror).
image: $(STAMP) ## Build the gateway and CPU engine OCI images -> dist/images/ (archives, SBOMs, images.json)
	$(PY) scripts/build_images.py $(IMAGE_ARGS)

# The signed release bundle (docs/airgap.md). SIGNING_KEY: your release key; without
# one, a development key is made once in .data/release-keys (never ship with it).
SIGNING_KEY ?= .data/release-keys/release.key
BUNDLE_OUT ?= dist/bundle
BUNDLE_ARGS ?= --set gateway --set cpu --set gpu --set deploy
bundle: $(STAMP) ## Signed release bundle -> dist/bundle (SIGNING_KEY, BUNDLE_ARGS; images from make image if built)
	@if [ ! -e "$(SIGNING_KEY)" ] && [ "$(SIGNING_KEY)" = ".data/release-keys/release.key" ]; then \
	  $(VENV)/bin/appliance bundle keygen .data/release-keys --name appliance-dev-release; fi
	rm -rf $(BUNDLE_OUT)
	$(VENV)/bin/appliance bundle create $(BUNDLE_OUT) --signing-key $(SIGNING_KEY) \
	  $(if $(wildcard dist/images/images.json),--images dist/images) $(BUNDLE_ARGS)

lint: $(STAMP) ## ruff, mypy (strict) and ansible-lint (production profile)
	$(VENV)/bin/ruff check appliance tests
	$(VENV)/bin/ruff format --check appliance tests
	$(VENV)/bin/mypy
	cd ansible && $(abspath $(VENV))/bin/ansible-lint --profile production .

format: $(STAMP) ## Apply ruff's formatting and fixes
	$(VENV)/bin/ruff check --fix appliance tests
	$(VENV)/bin/ruff format appliance tests

clean: ## Remove the venv (keeps .data: models, database, secrets)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

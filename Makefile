# One task runner for people, the README and CI alike.
# `make demo` and `make test` each do all set-up on a fresh machine.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install up down status test test-unit test-integration test-reliability lint typecheck check checkers check-deploy demo bench schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@echo "installing Python dependencies into $(VENV) ..."
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

up: install
	@$(BIN)/mindstream dev up

down: install
	@$(BIN)/mindstream dev down

status: install
	@$(BIN)/mindstream dev status

lint: install
	@$(BIN)/ruff check .

typecheck: install
	@$(BIN)/mypy

schemas: install
	@$(BIN)/mindstream schemas export

# The README's test command: installs, starts the infrastructure, runs every test.
test: install up checkers
	@$(BIN)/pytest -n 2 --dist loadfile -m "not reliability"

test-unit: install
	@$(BIN)/pytest -m unit -q

test-integration: install up
	@$(BIN)/pytest -m integration

test-reliability: install up
	@$(BIN)/pytest -m reliability

check: lint typecheck

# Offline validators for the deploy checks (kustomize, kubeconform, hadolint, k8s schemas), pinned.
checkers:
	@bash deploy/tools/install-checkers.sh

# Render and validate the Kubernetes overlays, compose file and Dockerfile offline (also run by `make test`).
check-deploy: install
	@bash deploy/tools/install-checkers.sh
	@$(BIN)/python deploy/tools/generate.py --check
	@$(BIN)/pytest -q -m unit tests/unit/deploy

demo: install up
	@$(BIN)/mindstream demo

bench: install up
	@$(BIN)/mindstream bench

clean: down
	rm -rf .cache/dev

# sc2s3 entry points. `make demo` and `make test` install everything they need on a fresh
# Debian 12 machine (as root): apt tools, the project venv, and the cached test-host images.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
SANDBOX := $(BIN)/python inventory/sandbox/sandbox.py
# Debian releases of the sandbox's test hosts, in host order and cycling: th1 and th3 run
# Debian 12, th2 Debian 13 (as the system tests do).
SANDBOX_DEBIAN ?= 12,13
# apt packages the controller needs: venv creation, podman test hosts, SSH to them, `ss` (the
# SeaweedFS test support), faketime (agents with a skewed clock in the fleet tests).
APT_PACKAGES := python3-venv podman debootstrap runc openssh-client iproute2 faketime
# promtool, which checks and tests contrib/prometheus/, comes only with the server's package:
# installed without its recommends (node exporter), and its service, if systemd started it, is
# stopped and disabled (nothing here needs a Prometheus server).
PROMETHEUS_PACKAGE := prometheus
RUFF_PATHS := $(wildcard agent inventory/sandbox tests bench roles/sc2s3_agent/files)
# The provision play talks to moto, which accepts any credentials (sandbox only).
MOTO_ENV := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1

# ansible-lint and ansible-playbook look for their sibling tools on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help deps venv lock image lint test test-agent test-system demo demo-down bench

help:
	@echo "make demo        sandbox (3 test hosts: Debian 12, 13, 12; SeaweedFS, SoundCloud simulator,"
	@echo "                 moto) + deploy"
	@echo "make demo-down   stop the sandbox"
	@echo "make test        lint + agent tests + system tests (installs what it needs)"
	@echo "make lock        refresh the hashed lock files after editing a requirement"
	@echo "make lint | test-agent | test-system | bench | venv | deps | image"

deps:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "ok installed" \
	    || missing="$$missing $$pkg"; \
	done; \
	promtool=""; \
	dpkg-query -W -f='$${Status}' $(PROMETHEUS_PACKAGE) 2>/dev/null | grep -q "ok installed" \
	  || promtool=$(PROMETHEUS_PACKAGE); \
	if [ -n "$$missing$$promtool" ]; then \
	  echo "installing:$$missing $$promtool"; \
	  apt-get update -q; \
	fi; \
	if [ -n "$$missing" ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi; \
	if [ -n "$$promtool" ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$promtool; \
	  if [ -d /run/systemd/system ]; then systemctl disable --now prometheus || true; fi; \
	fi

venv: $(VENV_STAMP)

# Both lock files pin the whole tree with hashes. The agent's lock is universal (every target
# CPython and architecture the hosts may have); the release build installs from it too. The
# controller's lock takes the agent's as constraints, so tests run the versions hosts get.
$(VENV_STAMP): requirements-dev.lock agent/requirements.lock agent/pyproject.toml | deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e agent
	touch $@

UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --generate-hashes --python-version 3.11

lock: venv
	$(UV_COMPILE) agent/pyproject.toml -o agent/requirements.lock
	$(UV_COMPILE) requirements-dev.in agent/pyproject.toml -c agent/requirements.lock \
	  -o requirements-dev.lock

image: deps venv
	$(SANDBOX) image --debian $(SANDBOX_DEBIAN)

lint: venv
	$(BIN)/ruff check $(RUFF_PATHS)
	$(BIN)/ansible-lint

test-agent: venv
	$(BIN)/pytest agent/tests

test-system: deps venv image
	$(BIN)/pytest tests

# Every suite runs even when an earlier one fails (one CI run shows every failure); the exit
# status is non-zero if any failed.
test: deps venv image
	@failed=""; \
	for suite in lint test-agent test-system; do \
	  $(MAKE) --no-print-directory $$suite || failed="$$failed $$suite"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed" >&2; exit 1; fi

demo: deps venv image
	$(SANDBOX) up --hosts 3 --debian $(SANDBOX_DEBIAN)
	$(MOTO_ENV) $(BIN)/ansible-playbook deploy.yml -i inventory/sandbox/hosts.yml \
	  -e @.sandbox/sandbox_vars.yml
	$(SANDBOX) authorize --account band-one
	$(SANDBOX) show --wait
	@echo
	@echo "The sandbox keeps running (agents poll every 30 s). Stop it with: make demo-down"

demo-down: venv
	$(SANDBOX) down

# sc2s3 vs its peers on loopback, then large accounts against the baseline agent (see
# bench/README.md); `make bench BENCH_ARGS=--quick SCALE_ARGS=--quick` for a smoke run. Not part
# of `make test`: it prints ratios, PASS/FAIL lines and tables and exits 0.
bench: venv
	command -v rclone >/dev/null && command -v curl >/dev/null || { apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone curl; }
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-bench.txt
	$(BIN)/python bench/compare.py $(BENCH_ARGS)
	$(BIN)/python bench/scale.py $(SCALE_ARGS)

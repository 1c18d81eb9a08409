# kubegate — the commands every user relies on. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export KUBEGATE_CACHE ?= $(HOME)/.cache/kubegate
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
COLL        := collections/ansible_collections/kubegate/multicluster
PYTEST      := $(PY) -m pytest -p no:cacheprovider

.PHONY: help deps venv bench-venv lab lab-down lab-status demo test unit lab-test integration lint sanity molecule bench clean

help:
	@echo "make demo      bring up the local lab (if needed) and run playbooks/reload-ingress.yml -l cluster-b"
	@echo "make test      install what is needed, then unit, integration, molecule, lint and sanity checks"
	@echo "make lab       build (cached) and start the three-cluster lab;  make lab-down  stops it and cleans up"
	@echo "make bench     benchmarks against the lab, written to bench/results/latest.json"

# System packages and the lab's Go-built binaries (both idempotent and cached).
deps:
	@bash lab/deps.sh
	@bash lab/build.sh

# The project virtualenv, rebuilt only when requirements-dev.txt changes.
venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements-dev.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# The comparison baselines for `make bench` (ansible + kubernetes.core), kept apart from the project virtualenv.
bench-venv: .venv-bench/.stamp
.venv-bench/.stamp: requirements-bench.txt
	@test -x .venv-bench/bin/python || python3 -m venv .venv-bench
	@.venv-bench/bin/python -m pip install -q --disable-pip-version-check -r requirements-bench.txt
	@touch $@

lab: deps venv
	@$(PY) lab/labctl.py up

lab-down:
	@if [ -x $(PY) ]; then $(PY) lab/labctl.py down; else python3 lab/labctl.py down; fi

lab-status: venv
	@$(PY) lab/labctl.py status

demo: lab
	@bash lab/demo.sh

unit: venv
	@cd $(COLL) && $(CURDIR)/$(PYTEST) -q tests/unit

lab-test: lab
	@$(PYTEST) -q tests/lab

integration: lab
	@$(PYTEST) -q tests/integration

lint: venv
	@ansible-lint --offline -q

sanity: venv
	@bash tests/sanity.sh

molecule: lab
	@bash tests/molecule.sh

test: deps venv
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory lab
	@$(MAKE) --no-print-directory lab-test integration
	@$(MAKE) --no-print-directory molecule lint sanity

bench: lab bench-venv
	@$(PY) bench/run.py

clean: lab-down
	rm -rf $(VENV) $(COLL)/tests/output

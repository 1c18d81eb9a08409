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

.PHONY: help deps venv bench-venv lab lab-down lab-status demo test unit lab-test integration lint sanity molecule bench clean \
        venv-221 lane-221 ee-deps ee-base ee ee-test collection

help:
	@echo "make demo      bring up the local lab (if needed) and run playbooks/reload-ingress.yml -l cluster-b"
	@echo "make test      install what is needed, then unit, integration, molecule, lint and sanity checks"
	@echo "make lab       build (cached) and start the three-cluster lab;  make lab-down  stops it and cleans up"
	@echo "make bench     benchmarks against the lab, written to bench/results/latest.json"
	@echo "make lane-221  the ansible-core 2.21 lane (Python 3.12, .venv-221): unit, integration smoke set, sanity"
	@echo "make ee        build the execution environment image kubegate-ee:0.1.0 (podman, local base image)"
	@echo "make ee-test   build it (if needed) and run a reload job in it against the lab (ansible-runner, podman);"
	@echo "               make test EE=1 includes it"

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

# The second lane's virtualenv: ansible-core 2.21 (the execution environment's line) on CPython 3.12 from pyenv,
# rebuilt only when requirements-221.txt changes.
VENV221     := .venv-221
PY221       := $(VENV221)/bin/python
PYTHON312   ?= $(or $(lastword $(sort $(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/3.12*/bin/python3.12))),$(shell command -v python3.12))
venv-221: $(VENV221)/.stamp
$(VENV221)/.stamp: requirements-221.txt
	@test -n "$(PYTHON312)" || { echo "make venv-221: no Python 3.12 found (pyenv install 3.12, or PYTHON312=/path/to/python3.12)" >&2; exit 1; }
	@test -x $(PY221) || $(PYTHON312) -m venv $(VENV221)
	@$(PY221) -m pip install -q --disable-pip-version-check -r requirements-221.txt
	@touch $@

# The integration smoke set the 2.21 lane runs: the same tests as `make integration`, with ansible-playbook,
# ansible-inventory and ansible-doc taken from .venv-221 (KUBEGATE_ANSIBLE_VENV, tests/kgtest.py). pytest itself and
# the lab helpers stay in .venv.
SMOKE_221 := tests/integration/test_ansible_lane.py \
             tests/integration/test_api_request.py::test_configmap_crud_with_every_patch_type_reports_changed_honestly \
             tests/integration/test_pod_exec.py::test_single_and_multi_pod_exec_with_stdin_large_output_and_rc \
             tests/integration/test_nginx_map.py::test_apply_idempotence_check_diff_and_restore \
             tests/integration/test_reload_ingress.py::test_rollout_check_mode_and_idempotence_on_one_cluster \
             tests/integration/test_inventory_plugin.py \
             tests/integration/test_collection_build.py

lane-221: venv-221 lab
	@echo "== lane 2.21: unit tests ($$($(PY221) -c 'import importlib.metadata as m, platform; print("ansible-core", m.version("ansible-core"), "on Python", platform.python_version())'))"
	@cd $(COLL) && $(CURDIR)/$(PY221) -m pytest -p no:cacheprovider -q tests/unit
	@echo "== lane 2.21: integration smoke set"
	@KUBEGATE_ANSIBLE_VENV=$(CURDIR)/$(VENV221) \
	  KUBEGATE_EXPECT_ANSIBLE_CORE=$$(sed -n 's/^ansible-core==//p' requirements-221.txt) \
	  $(PYTEST) -q $(SMOKE_221)
	@echo "== lane 2.21: sanity"
	@bash tests/sanity.sh --lane 2.21

# The execution environment image (docs/awx.md, "Execution environment"): podman from Debian, a local trixie base
# image (ee/base-image.sh), ansible-builder from .venv. Podman settings for this machine kind: ee/containers.conf.
export CONTAINERS_CONF ?= $(CURDIR)/ee/containers.conf
ee-deps:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman runc uidmap debootstrap >/dev/null

ee-base: ee-deps
	@bash ee/base-image.sh >/dev/null

ee: ee-base venv
	@$(VENV)/bin/ansible-builder build -f execution-environment.yml -c $(KUBEGATE_CACHE)/ee-context \
	  -t kubegate-ee:0.1.0 --container-runtime podman

ee-test: ee lab
	@KUBEGATE_EE_IMAGE=localhost/kubegate-ee:0.1.0 $(PYTEST) -q tests/integration/test_ee_image.py

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

# test_ee_image.py builds the execution environment image (about 6 minutes cold): `make ee-test` or `make test EE=1`
integration: lab
	@$(PYTEST) -q tests/integration --ignore=tests/integration/test_ee_image.py

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
	@$(MAKE) --no-print-directory lane-221
	@$(if $(filter 1,$(EE)),$(MAKE) --no-print-directory ee-test,echo "(execution environment image not built: make ee-test, or make test EE=1)")

bench: lab bench-venv
	@$(PY) bench/run.py

clean: lab-down
	rm -rf $(VENV) $(VENV221) $(COLL)/tests/output

"""Which ansible-core the integration tests really run: `make lane-221` points the tests' ansible-playbook /
ansible-inventory / ansible-doc at .venv-221 (KUBEGATE_ANSIBLE_VENV) and states the version it expects
(KUBEGATE_EXPECT_ANSIBLE_CORE). Without this check a typo in the variable would silently test 2.19 twice.
Without the variables (plain `make integration`) the expectation is the pin in requirements-dev.txt."""
from __future__ import annotations

import os
import re
from pathlib import Path

from kgplay import lab_inventory, run_playbook
from kgtest import REPO


def _expected() -> str:
    wanted = os.environ.get("KUBEGATE_EXPECT_ANSIBLE_CORE")
    if wanted:
        return wanted
    return re.search(r"^ansible-core==(\S+)", (REPO / "requirements-dev.txt").read_text(), re.M).group(1)


def test_playbooks_and_modules_run_on_the_lanes_ansible_core_and_python(tmp_path):
    inventory = lab_inventory(tmp_path, {"probe": {}})
    play = [{"hosts": "probe", "gather_facts": False, "tasks": [
        {"name": "controller", "ansible.builtin.debug": {"msg": "{{ ansible_version.full }} {{ ansible_playbook_python }}"}},
        # a module runs with the inventory's interpreter (the lane's venv Python, as in every integration test)
        {"name": "module", "ansible.builtin.command": {"argv": ["{{ ansible_playbook_python }}", "-c",
                                                             "import ansible.release, sys; print(ansible.release.__version__, sys.executable)"]},
         "changed_when": False},
    ]}]
    run = run_playbook(tmp_path, play, inventory=inventory)
    assert run.rc == 0, run.output
    version, python = run.result("controller")["msg"].split()
    assert version == _expected(), run.output
    venv = Path(os.environ.get("KUBEGATE_ANSIBLE_VENV") or REPO / ".venv").resolve()
    assert Path(python).parent.parent.resolve() == venv, (python, venv)
    module_version, module_python = run.result("module")["stdout"].split()
    assert module_version == _expected() and Path(module_python).parent.parent.resolve() == venv, run.output

"""The literal command users type, `ansible-playbook reload-ingress.yml -l cluster-b`, from the project root and from
playbooks/, with the project's own ansible.cfg files (no ANSIBLE_CONFIG, no -i: the inventory ansible.cfg names),
and a selection of no host failing loudly instead of exiting 0 having done nothing.

Why a separate environment: kgtest.repo_env pins ANSIBLE_CONFIG for every other test; here the point is that
ansible-playbook finds ansible.cfg in the current directory by itself, as it does for a user.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from kgplay import no_traceback
from kgtest import REPO

LITERAL = ["ansible-playbook", "reload-ingress.yml", "-l", "cluster-b"]


def user_env(home: Path) -> dict:
    """A user's shell: the project virtualenv on PATH, and no ANSIBLE_* / K8S_AUTH_* settings from the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "K8S_AUTH_", "KUBEGATE_"))}
    env["PATH"] = "%s:%s" % (REPO / ".venv" / "bin", env.get("PATH", "/usr/bin:/bin"))
    env.update({"HOME": str(home), "KUBECONFIG": "/nonexistent", "ANSIBLE_NOCOLOR": "1"})
    return env


def typed(argv, cwd, home, timeout=600):
    return subprocess.run(argv, cwd=str(cwd), env=user_env(home), capture_output=True, text=True, timeout=timeout)


def recap(stdout):
    """{host: {ok: n, changed: n, failed: n, ...}} from the PLAY RECAP."""
    hosts = {}
    for line in stdout.split("PLAY RECAP")[-1].splitlines():
        m = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if m:
            hosts[m.group(1)] = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2)))
    return hosts


@pytest.mark.parametrize("where", [".", "playbooks"], ids=["project-root", "playbooks-dir"])
def test_the_literal_command_reloads_cluster_b_only(lab, tmp_path, where):
    proc = typed(LITERAL, REPO / where, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert list(recap(proc.stdout)) == ["cluster-b"], proc.stdout[-2000:]
    assert recap(proc.stdout)["cluster-b"]["failed"] == 0
    # the summary line of the playbook for the limited host (the lab inventory: tenant acme)
    assert re.search(r"cluster-b \(acme\): maps .*(pod\(s\) synced|nothing to reload)", proc.stdout), proc.stdout[-2000:]
    # the routing that the acme rules describe is live in every pod of cluster-b
    cm = lab.get_json("cluster-b", "get", "configmap", "-n", "ingress-nginx", "kubegate-nginx-map")
    assert '"~^v3-" "next";' in cm["data"]["kubegate-map.conf"]
    assert "Could not match" not in out and no_traceback(out)


@pytest.mark.parametrize("where", [".", "playbooks"], ids=["project-root", "playbooks-dir"])
def test_a_limit_matching_no_host_fails(lab, tmp_path, where):
    proc = typed(["ansible-playbook", "reload-ingress.yml", "-l", "cluster-x"], REPO / where, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "cluster-x" in out and "no hosts to target" in out and "PLAY RECAP" not in out
    assert no_traceback(out)


@pytest.mark.parametrize("where", [".", "playbooks"], ids=["project-root", "playbooks-dir"])
def test_an_empty_inventory_fails_naming_it_instead_of_doing_nothing(lab, tmp_path, where):
    """The inventory read has no host (a missing or not yet generated inventory): ansible-playbook alone would print
    "skipping: no hosts matched" and exit 0; the playbook fails, naming the inventory, its hosts and the limit."""
    empty = tmp_path / "inventory"
    empty.mkdir()
    for argv in (LITERAL + ["-i", str(empty)], ["ansible-playbook", "reload-ingress.yml", "-i", str(empty)]):
        proc = typed(argv, REPO / where, tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-3000:]
        assert "selects no host" in out or "No host" in out, out[-3000:]
        assert str(empty) in out and "whose hosts are: none" in out and "Nothing was done." in out
        assert ("--limit cluster-b selects no host" in out) == ("-l" in argv)
        assert "PLAY RECAP" not in out and no_traceback(out)

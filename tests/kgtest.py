"""Helpers shared by the repository-level tests (tests/lab, tests/integration): the lab description, kubectl, env."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / ".lab"


class Lab:
    def __init__(self, desc: dict):
        self.desc = desc
        self.clusters = desc["clusters"]
        self.kubectl_bin = desc["kubectl"]

    def netns_prefix(self, cluster: str) -> list[str]:
        ns = self.clusters[cluster]["netns"]
        return ["ip", "netns", "exec", ns] if ns else []

    def kubectl(self, cluster: str, *args: str, input: str | None = None, check: bool = True,
                as_user: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """kubectl against one lab cluster with its admin kubeconfig (inside its network namespace if it has one)."""
        argv = self.netns_prefix(cluster) + [self.kubectl_bin, "--kubeconfig", self.clusters[cluster]["admin_kubeconfig"]]
        if as_user:
            argv += ["--as", as_user]
        argv += list(args)
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} on {cluster} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def get_json(self, cluster: str, *args: str) -> dict:
        return json.loads(self.kubectl(cluster, *args, "-o", "json").stdout)

    def ingress_pods(self, cluster: str) -> list[str]:
        pods = self.get_json(cluster, "get", "pods", "-n", "ingress-nginx", "-l", "app.kubernetes.io/name=ingress-nginx")
        return sorted(p["metadata"]["name"] for p in pods["items"] if p["status"].get("phase") == "Running")


def ansible_tool(name: str) -> str:
    """An Ansible CLI (ansible-playbook, ansible-inventory, ...) of the virtualenv under test: .venv (ansible-core 2.19),
    or the one KUBEGATE_ANSIBLE_VENV names (`make lane-221` runs the integration smoke set with .venv-221)."""
    return str(Path(os.environ.get("KUBEGATE_ANSIBLE_VENV") or REPO / ".venv") / "bin" / name)


def repo_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0"})
    env.update(extra)
    return env


CLUSTERS = ["cluster-a", "cluster-b", "cluster-c"]

"""Helpers for tests that use the example tenant inventories (inventories/acme, inventories/globex) against the lab.

The examples ship placeholder CA files and example tokens encrypted with the published example vault password. A test
copies an inventory, puts the lab's real CA and known_hosts files where the inventory expects them, and re-encrypts
the lab's admin token with the example password through inventories/vault-pass.sh -- the way an operator fills in a
tenant inventory -- so the example files themselves (hosts.yml, the registry, group_vars) are used unchanged.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from kgtest import REPO, ansible_tool, repo_env

EXAMPLE_VAULT_PASSWORD = "kubegate-example-vault-password"
VAULT_PASS_SCRIPT = REPO / "inventories" / "vault-pass.sh"
TENANT_CLUSTERS = {"acme": ["cluster-a", "cluster-b"], "globex": ["cluster-c"]}
EDGE_KEY_NAME = "kubegate-globex-edge"   # ~/.ssh/<this> in inventories/globex/clusters.kubegate.yml


def tool(name):
    return ansible_tool(name)


def tenant_env(home: Path, **extra) -> dict:
    """Environment for ansible-* runs on a filled-in tenant copy: the example vault password, a private HOME (the
    globex registry names its jump key under ~/.ssh), no kubeconfig to fall back on."""
    return repo_env(KUBEGATE_VAULT_PASSWORD=EXAMPLE_VAULT_PASSWORD, HOME=str(home), KUBECONFIG="/nonexistent",
                    ANSIBLE_NOCOLOR="1", **extra)


def encrypt(value: str, name: str, env: dict) -> str:
    proc = subprocess.run([tool("ansible-vault"), "encrypt_string", "--vault-password-file", str(VAULT_PASS_SCRIPT),
                           "--stdin-name", name], input=value, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def fill_tenant(lab, tenant: str, dest: Path, home: Path, env: dict) -> Path:
    """Copy inventories/<tenant> to dest/<tenant> with the lab's CAs, token(s) and (globex) jump key in place."""
    inv = dest / tenant
    shutil.copytree(REPO / "inventories" / tenant, inv)
    for cluster in TENANT_CLUSTERS[tenant]:
        c = lab.clusters[cluster]
        shutil.copyfile(c["ca_file"], inv / "files" / cluster / "ca.crt")
        token = Path(c["admin_token_file"]).read_text().strip()
        vars_file = inv / "host_vars" / f"{cluster}.yml"
        vars_file.write_text("# test copy: the lab's token, encrypted with the example password\n"
                             + encrypt(token, "kubegate_token", env))
        vars_file.chmod(0o600)
    if tenant == "globex":
        edge = lab.desc["edge"]
        shutil.copyfile(edge["known_hosts"], inv / "files" / "edge_known_hosts")
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        shutil.copyfile(edge["key_file"], ssh / EDGE_KEY_NAME)
        os.chmod(ssh / EDGE_KEY_NAME, 0o600)
    return inv


def set_host_var(inv: Path, tenant: str, host: str, name: str, value) -> None:
    """Change one connection variable of a host in a filled-in copy (static hosts.yml or the registry)."""
    if tenant == "acme":
        path = inv / "hosts.yml"
        data = yaml.safe_load(path.read_text())
        data["all"]["children"]["acme"]["hosts"][host][name] = value
    else:
        path = inv / "clusters.kubegate.yml"
        data = yaml.safe_load(path.read_text())
        data["registry"]["tenants"][tenant]["clusters"][host][name] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))

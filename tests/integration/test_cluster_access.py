"""roles/cluster_access (playbooks/cluster-access.yml): the least-privilege identity runs the reload playbook and is
refused what it must not do; the token it writes for the inventory is vault-encrypted."""
from __future__ import annotations

import stat
from pathlib import Path

import yaml

from kgplay import no_traceback, run_playbook
from kgtest import REPO


def test_least_privilege_identity_runs_reload_and_nothing_else(lab, tmp_path):
    c = lab.clusters["cluster-a"]
    inv = tmp_path / "inv"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "children": {"acme": {"hosts": {"cluster-a": {"kubegate_tenant": "acme", "kubegate_host": c["server"],
                                                      "kubegate_ca_cert": c["ca_file"]}}}}}}))
    (inv / "group_vars").mkdir()
    for name in ("all.yml", "acme.yml"):
        (inv / "group_vars" / name).write_text((REPO / "inventories/lab/group_vars" / name).read_text())
    vault_pw = tmp_path / "vault-pw"
    vault_pw.write_text("kg-test-vault-password\n")
    # 1. with the lab's admin identity (the lab inventory), create the identity and write its vaulted token
    access = run_playbook(tmp_path, (REPO / "playbooks/cluster-access.yml").read_text(), "-l", "cluster-a",
                          "-e", "cluster_access_vars_dir=%s" % (inv / "host_vars"),
                          "-e", "cluster_access_vault_password_file=%s" % vault_pw,
                          playbook_name="cluster-access.yml")
    assert access.rc == 0, access.output[-3000:]
    written = inv / "host_vars" / "cluster-a.yml"
    text = written.read_text()
    assert "kubegate_token: !vault |" in text and "$ANSIBLE_VAULT" in text
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    again = run_playbook(tmp_path, (REPO / "playbooks/cluster-access.yml").read_text(), "-l", "cluster-a",
                         "-e", "cluster_access_issue_token=false", playbook_name="cluster-access.yml")
    assert "changed=0" in again.stdout, again.stdout[-2000:]
    # 2. the reload playbook works with that identity only (no kubeconfig)
    for cm in ("kubegate-nginx-map", "kubegate-nginx-map-previous"):
        lab.kubectl("cluster-a", "delete", "configmap", "-n", "ingress-nginx", cm, "--ignore-not-found")
    reload = run_playbook(tmp_path, (REPO / "playbooks/reload-ingress.yml").read_text(), "--vault-password-file",
                          str(vault_pw), inventory=inv / "hosts.yml", playbook_name="reload-ingress.yml",
                          env={"KUBECONFIG": "/nonexistent", "HOME": str(tmp_path)})
    assert reload.rc == 0, reload.output[-4000:]
    assert "routing check(s) passed" in reload.result("Summary", "cluster-a")["msg"]
    # 3. and is refused what it must not do
    tasks = [
        {"name": "secrets", "kubegate.multicluster.api_request": {"path": "/api/v1/namespaces/demo/secrets"}},
        {"name": "other configmap", "kubegate.multicluster.api_request":
         {"path": "/api/v1/namespaces/ingress-nginx/configmaps/kube-root-ca.crt"}},
        {"name": "exec outside ingress", "kubegate.multicluster.pod_exec":
         {"namespace": "demo", "label_selector": "app=echo", "command": "true"}},
        {"name": "delete map", "kubegate.multicluster.api_request":
         {"method": "DELETE", "path": "/api/v1/namespaces/ingress-nginx/configmaps/kubegate-nginx-map"}},
    ]
    for t in tasks:
        t["ignore_errors"] = True
    play = [{"name": "refused", "hosts": "cluster-a", "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": {
                 "host": "{{ kubegate_host }}", "ca_cert": "{{ kubegate_ca_cert }}", "api_key": "{{ kubegate_token }}"}},
             "tasks": tasks}]
    refused = run_playbook(tmp_path, play, "--vault-password-file", str(vault_pw), inventory=inv / "hosts.yml")
    for t in tasks:
        res = refused.result(t["name"], "cluster-a")
        assert res["failed"] and "forbidden" in res["msg"] and "system:serviceaccount:kubegate-system:kubegate" in res["msg"]
    assert lab.kubectl("cluster-a", "get", "configmap", "-n", "ingress-nginx", "kubegate-nginx-map").returncode == 0
    assert no_traceback(access.output + reload.output + refused.output)
    assert "$ANSIBLE_VAULT" not in reload.output and Path(written).read_text() == text

"""The ad-hoc ssh tunnel (ssh_jump, paramiko in-process) to cluster-c, which sits behind the lab's edge sshd:
API calls and exec with TLS verified end to end, the lab inventory's cluster-c in the reload playbook, and clear
refusals for unknown/changed host keys, a wrong key and unreachable targets."""
from __future__ import annotations

import subprocess
from pathlib import Path

from kgplay import (ADMIN_SA, assert_seen_as, assert_unauthorized, no_traceback, run_playbook, sa_identity, token,
                    whoami_task)
from kgtest import REPO


def jump(lab, **override):
    edge = lab.desc["edge"]
    j = {"host": edge["host"], "port": edge["port"], "user": edge["user"], "key_file": edge["key_file"],
         "known_hosts": edge["known_hosts"]}
    j.update(override)
    return j


def conn(lab, **override):
    c = lab.clusters["cluster-c"]
    base = {"host": c["server"], "ca_cert": c["ca_file"], "api_key": token(lab, "cluster-c"), "ssh_jump": jump(lab),
            "retries": 0}
    base.update(override)
    return base


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_api_and_exec_through_the_jump_host_with_tls_verified(lab, tmp_path):
    tasks = [whoami_task(),
             whoami_task("wrong token", api_key="kg-wrong-token"),
             {"name": "version", "kubegate.multicluster.api_request": {"path": "/version"}},
             {"name": "exec", "kubegate.multicluster.pod_exec": {
                 "namespace": "ingress-nginx", "label_selector": "app.kubernetes.io/name=ingress-nginx",
                 "command": ["nginx", "-t"], "read_only": True}},
             {"name": "echo", "kubegate.multicluster.service_proxy": {"namespace": "demo", "service": "echo",
                                                                      "port": "http"}}]
    play = [{"name": "jump", "hosts": "cluster-c", "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": conn(lab)}, "tasks": tasks}]
    for fastpath in ("0", "1"):
        run = run_playbook(tmp_path, play, env={"KUBEGATE_NO_FASTPATH": fastpath})
        assert run.result("version", "cluster-c")["json"]["gitVersion"].startswith("v1."), run.output[-3000:]
        # cluster-c itself authenticated the token sent through the jump host; a wrong one is a clear 401
        assert_seen_as(run, "cluster-c", sa_identity(*ADMIN_SA))
        assert_unauthorized(run, "cluster-c", lab.clusters["cluster-c"]["server"].split("//")[1], "a bearer token",
                            task="wrong token")
        assert all(r["rc"] == 0 for r in run.result("exec", "cluster-c")["results"])
        assert run.result("echo", "cluster-c")["json"]["cluster"] == "cluster-c"
        assert Path(lab.desc["edge"]["key_file"]).read_text().splitlines()[1] not in run.output


def test_refusals_are_clear(lab, tmp_path):
    edge = lab.desc["edge"]
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    other_host_key = keygen(tmp_path / "hostkey")
    changed = tmp_path / "changed_known_hosts"
    changed.write_text("%s %s" % (edge["host"], Path(str(other_host_key) + ".pub").read_text()))
    wrong_key = keygen(tmp_path / "wrong_id")
    cases = {
        "unknown host key": (conn(lab, ssh_jump=jump(lab, known_hosts=str(empty))), "is not in"),
        "changed host key": (conn(lab, ssh_jump=jump(lab, known_hosts=str(changed))), "CHANGED host key"),
        "wrong key": (conn(lab, ssh_jump=jump(lab, key_file=str(wrong_key))), "refused the key"),
        "unreachable target": (conn(lab, host="https://198.18.3.99:6443"), "could not open a connection to 198.18.3.99:6443"),
        "unreachable jump host": (conn(lab, ssh_jump=jump(lab, host="127.0.0.1", port=1)), "cannot reach the ssh jump host"),
        "incomplete ssh_jump": (conn(lab, ssh_jump={"host": edge["host"]}), "found in ssh_jump"),
        "proxy and jump": (conn(lab, proxy="http://127.0.0.1:3128"), "ssh_jump and proxy cannot be combined"),
    }
    tasks = [{"name": name, "kubegate.multicluster.api_request": {**c, "path": "/version"}, "ignore_errors": True}
             for name, (c, _) in cases.items()]
    run = run_playbook(tmp_path, [{"name": "refusals", "hosts": "cluster-c", "gather_facts": False, "tasks": tasks}])
    for name, (_, expected) in cases.items():
        res = run.result(name, "cluster-c")
        assert res["failed"] and expected in res["msg"], (name, res["msg"])
    assert no_traceback(run.output)


def test_reload_playbook_on_every_lab_cluster_with_the_lab_inventory(lab, tmp_path):
    """The committed lab inventory as users run it: cluster-c through its kubegate_jump settings."""
    for name in lab.clusters:
        lab.kubectl(name, "delete", "configmap", "-n", "ingress-nginx", "kubegate-nginx-map",
                    "kubegate-nginx-map-previous", "--ignore-not-found")
    run = run_playbook(tmp_path, (REPO / "playbooks" / "reload-ingress.yml").read_text(),
                       playbook_name="reload-ingress.yml")
    assert run.rc == 0, run.output[-4000:]
    for name in lab.clusters:
        assert "routing check(s) passed" in run.result("Summary", name)["msg"]

"""Controller fan-out (`fanout: "{{ ansible_play_hosts }}"` on a run_once task) against the lab: every cluster of the
lab inventory from one task -- cluster-c through its ssh jump settings -- with each host's own inventory variables;
an unreachable cluster fails only its own entry and the task names it; check mode and diff per host; tasks that would
execute the module refuse fanout, and so does the module itself."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid

import pytest
import yaml

from kgplay import no_traceback, playbook_connection, run_playbook
from kgtest import CLUSTERS, REPO

SELECTOR = "app.kubernetes.io/name=ingress-nginx"
COLL = REPO / "collections" / "ansible_collections" / "kubegate" / "multicluster"

MODULE_DEFAULTS = {"group/kubegate.multicluster.cluster": playbook_connection()}
FANOUT = "{{ ansible_play_hosts }}"


def play(tasks, hosts="all"):
    return [{"name": "fanout", "hosts": hosts, "gather_facts": False, "module_defaults": MODULE_DEFAULTS,
             "tasks": tasks}]


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture
def configmaps(lab):
    """Names of ConfigMaps in namespace demo that the test may create on every cluster; deleted afterwards."""
    made = []

    def make():
        name = "kg-fanout-" + uuid.uuid4().hex[:6]
        made.append(name)
        return name
    yield make
    for name in made:
        for cluster in CLUSTERS:
            lab.kubectl(cluster, "delete", "configmap", "-n", "demo", name, "--ignore-not-found", check=False)


def test_fanout_over_every_lab_cluster_with_each_hosts_own_settings(lab, tmp_path):
    tasks = [
        {"name": "version", "run_once": True, "register": "versions",
         "kubegate.multicluster.api_request": {"path": "/version", "fanout": FANOUT}},
        {"name": "where am i", "run_once": True,
         "kubegate.multicluster.pod_exec": {"namespace": "ingress-nginx", "label_selector": SELECTOR,
                                            "command": ["sh", "-c", "pwd"], "read_only": True,
                                            "fanout": FANOUT, "fanout_concurrency": 2}},
        {"name": "echo", "run_once": True,
         "kubegate.multicluster.service_proxy": {"namespace": "demo", "service": "echo", "port": "http",
                                                 "fanout": FANOUT}},
        {"name": "registered for every host", "ansible.builtin.debug": {
            "msg": "{{ versions.results_by_host[inventory_hostname].json.gitVersion }}"}},
    ]
    run = run_playbook(tmp_path, play(tasks))
    assert run.rc == 0, run.output[-4000:]
    version = run.result("version")
    assert version["failed_hosts"] == [] and version["fanout_summary"] == {
        "hosts": 3, "ok": 3, "failed": 0, "changed": 0}
    assert list(version["results_by_host"]) == CLUSTERS
    for cluster in CLUSTERS:
        assert version["results_by_host"][cluster]["json"]["gitVersion"].startswith("v1.35")
    where = run.result("where am i")
    for cluster in CLUSTERS:
        pods = lab.ingress_pods(cluster)
        res = where["results_by_host"][cluster]
        assert res["pods"] == pods and [r["rc"] for r in res["results"]] == [0] * len(pods)
        # every pod's exec ran in that pod's own directory, so each cluster really got its own call
        assert all(p in r["stdout"] for p, r in zip(pods, res["results"]))
    echo = run.result("echo")
    for cluster in CLUSTERS:  # the echo server names the cluster it serves: cluster-c's answer came through the jump
        assert cluster in json.dumps(echo["results_by_host"][cluster]), echo["results_by_host"][cluster]
    for cluster in CLUSTERS:  # run_once registers the fan-out result for every play host
        assert run.result("registered for every host", cluster)["msg"].startswith("v1.35")
    assert no_traceback(run.output)


def gone_host(tmp_path):
    """An extra inventory host, cluster-gone, whose apiserver address is a closed port: (port, inventory file)."""
    port = closed_port()
    extra = tmp_path / "gone.yml"
    extra.write_text(yaml.safe_dump({"all": {"hosts": {"cluster-gone": {
        "kubegate_context": "cluster-b", "kubegate_host": "https://127.0.0.1:%d" % port, "kubegate_retries": 0}}}}))
    return port, extra


def test_an_unreachable_cluster_fails_alone_and_is_named(lab, tmp_path):
    port, extra = gone_host(tmp_path)
    tasks = [
        {"name": "version", "run_once": True, "register": "versions", "failed_when": False,
         "kubegate.multicluster.api_request": {"path": "/version", "fanout": FANOUT}},
        {"name": "fail only the failed hosts", "ansible.builtin.fail": {
            "msg": "{{ versions.results_by_host[inventory_hostname].msg }}"},
         "when": "inventory_hostname in versions.failed_hosts"},
        {"name": "the others go on", "ansible.builtin.debug": {"msg": "{{ inventory_hostname }} goes on"}},
        {"name": "strict", "run_once": True,
         "kubegate.multicluster.api_request": {"path": "/version", "fanout": FANOUT}},
    ]
    run = run_playbook(tmp_path, play(tasks), "-i", str(REPO / "inventories" / "lab"), "-i", str(extra))
    version = run.result("version")
    assert version["failed_hosts"] == ["cluster-gone"]
    assert version["fanout_summary"] == {"hosts": 4, "ok": 3, "failed": 1, "changed": 0}
    for cluster in CLUSTERS:
        assert version["results_by_host"][cluster]["status"] == 200
    gone = version["results_by_host"]["cluster-gone"]
    assert gone["failed"] and "cannot reach the apiserver at 127.0.0.1:%d" % port in gone["msg"]
    assert run.status("fail only the failed hosts", "cluster-gone") == "failed"
    assert [run.status("the others go on", c) for c in CLUSTERS] == ["ok"] * 3
    assert run.status("the others go on", "cluster-gone") is None
    strict = run.result("strict")  # without failed_when, once the failed host has left the play
    assert not strict["failed"] and list(strict["results_by_host"]) == CLUSTERS
    assert no_traceback(run.output)


def test_the_failure_message_names_the_unreachable_host(lab, tmp_path):
    port, extra = gone_host(tmp_path)
    tasks = [{"name": "version", "run_once": True,
              "kubegate.multicluster.api_request": {"path": "/version", "fanout": FANOUT}}]
    run = run_playbook(tmp_path, play(tasks), "-i", str(REPO / "inventories" / "lab"), "-i", str(extra))
    assert run.rc != 0
    version = run.result("version")
    assert version["failed"] and version["failed_hosts"] == ["cluster-gone"]
    assert version["msg"].startswith("fanout: 1 of 4 host(s) failed: cluster-gone: ")
    assert "cannot reach the apiserver at 127.0.0.1:%d" % port in version["msg"]
    assert [version["results_by_host"][c]["status"] for c in CLUSTERS] == [200] * 3
    assert no_traceback(run.output)


def test_check_mode_and_diff_per_host_then_apply_and_idempotence(lab, tmp_path, configmaps):
    cm = configmaps()
    marker = "kg-fanout-marker-" + uuid.uuid4().hex[:6]
    tasks = [
        {"name": "maps", "run_once": True,
         "kubegate.multicluster.nginx_map": {"namespace": "demo", "configmap": cm, "maps": "{{ kubegate_routing_maps }}",
                                             "fanout": FANOUT}},
        {"name": "touch", "run_once": True,
         "kubegate.multicluster.pod_exec": {"namespace": "ingress-nginx", "label_selector": SELECTOR,
                                            "command": ["touch", marker], "fanout": FANOUT}},
    ]
    check = run_playbook(tmp_path, play(tasks), "--check", "--diff")
    assert check.rc == 0, check.output[-4000:]
    maps = check.result("maps")
    assert maps["changed"] and maps["fanout_summary"]["changed"] == 3
    # each cluster rendered its own tenant's rules (group_vars acme vs globex), shown as its own diff
    assert "$http_x_version" in maps["results_by_host"]["cluster-a"]["rendered"]
    assert "$http_x_tenant_tier" in maps["results_by_host"]["cluster-c"]["rendered"]
    assert [d["after_header"].split(":")[0].split(" ")[0] for d in maps["diff"]] == CLUSTERS
    assert "$http_x_tenant_tier" in maps["diff"][2]["after"] and "$http_x_version" not in maps["diff"][2]["after"]
    for cluster in CLUSTERS:
        assert maps["results_by_host"][cluster].get("dry_run") is True
        assert lab.kubectl(cluster, "get", "configmap", "-n", "demo", cm, check=False).returncode != 0
    touch = check.result("touch")
    assert touch["changed"]
    for cluster in CLUSTERS:
        assert "check mode: would run" in touch["results_by_host"][cluster]["msg"]
        assert touch["results_by_host"][cluster]["results"] == []
    check_files = [{"name": "look", "run_once": True, "register": "look",
                    "kubegate.multicluster.pod_exec": {"namespace": "ingress-nginx", "label_selector": SELECTOR,
                                                       "command": ["sh", "-c", "ls %s || true" % marker],
                                                       "read_only": True, "fanout": FANOUT}}]
    look = run_playbook(tmp_path, play(check_files)).result("look")
    for cluster in CLUSTERS:
        assert all(r["stdout"] == "" for r in look["results_by_host"][cluster]["results"])  # nothing was touched

    apply = run_playbook(tmp_path, play(tasks[:1]), "--diff")
    assert apply.rc == 0, apply.output[-4000:]
    applied = apply.result("maps")
    assert applied["changed"] and applied["fanout_summary"] == {"hosts": 3, "ok": 3, "failed": 0, "changed": 3}
    for cluster in CLUSTERS:
        data = lab.get_json(cluster, "get", "configmap", "-n", "demo", cm)["data"]
        assert data["kubegate-map.conf"] == applied["results_by_host"][cluster]["rendered"]
    again = run_playbook(tmp_path, play(tasks[:1])).result("maps")
    assert again["changed"] is False and again["fanout_summary"]["changed"] == 0


def test_tasks_that_would_execute_the_module_refuse_fanout(lab, tmp_path):
    base = {"path": "/version", "fanout": FANOUT}
    tasks = [
        {"name": "become", "run_once": True, "become": True, "ignore_errors": True,
         "kubegate.multicluster.api_request": base},
        {"name": "async", "run_once": True, "async": 30, "poll": 1, "ignore_errors": True,
         "kubegate.multicluster.api_request": base},
    ]
    run = run_playbook(tmp_path, play(tasks, hosts="cluster-a:cluster-b"))
    become = run.result("become")
    assert become["failed"] and become["msg"].startswith("fanout runs only on the controller")
    assert "because the task uses become" in become["msg"]
    assert "because the task is async" in run.result("async")["msg"]
    forced = run_playbook(tmp_path, play(tasks[:1] + [{"name": "forced", "run_once": True, "ignore_errors": True,
                                                       "kubegate.multicluster.api_request": base}],
                                         hosts="cluster-a:cluster-b"), env={"KUBEGATE_NO_FASTPATH": "1"})
    assert "because KUBEGATE_NO_FASTPATH is set" in forced.result("forced")["msg"]
    assert no_traceback(run.output + forced.output)


def test_the_module_itself_refuses_fanout(lab, tmp_path):
    """The module, executed as a process the way Ansible runs it on a target, refuses fanout before any request."""
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        "path": "/version", "fanout": ["cluster-a", "cluster-b"],
        "host": lab.clusters["cluster-a"]["server"], "ca_cert": lab.clusters["cluster-a"]["ca_file"]}}))
    env = dict(os.environ, PYTHONPATH=str(REPO / "collections"))
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(COLL / "plugins" / "modules" / "api_request.py"),
                           str(args)], capture_output=True, text=True, env=env, timeout=60)
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["failed"] is True
    assert out["msg"].startswith("fanout runs only on the controller") and "executed the module itself" in out["msg"]
    assert "status" not in out and no_traceback(proc.stdout + proc.stderr)

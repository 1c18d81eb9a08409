"""kubegate.multicluster.api_request against the real lab: CRUD with every patch type, honest changed, check and diff
mode, watch, aggregated and non-resource paths. Each flow runs through ansible-playbook (controller fast path) and,
where it matters, through the shipped module as well (KUBEGATE_NO_FASTPATH=1)."""
from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid

import pytest

from kgplay import conn_token, no_traceback, run_playbook

NS = "demo"
CM = "/api/v1/namespaces/demo/configmaps"


def play(lab, cluster, tasks, **extra):
    return [{"name": "api_request", "hosts": cluster, "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": conn_token(lab, cluster)},
             "tasks": tasks, **extra}]


def t(name, **args):
    return {"name": name, "kubegate.multicluster.api_request": args, "register": "r", "ignore_errors": True}


def cm_data(lab, cluster, name):
    proc = lab.kubectl(cluster, "get", "configmap", "-n", NS, name, "-o", "json", check=False)
    return json.loads(proc.stdout)["data"] if proc.returncode == 0 else None


@pytest.mark.parametrize("fastpath", ["1", "0"], ids=["controller", "module"])
def test_configmap_crud_with_every_patch_type_reports_changed_honestly(lab, tmp_path, fastpath):
    name = "kg-crud-" + uuid.uuid4().hex[:6]
    obj = "%s/%s" % (CM, name)
    apply_body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"c": "y"}}
    tasks = [
        t("create", method="POST", path=CM, body={"metadata": {"name": name}, "data": {"a": "1"}}),
        t("create again (conflict accepted)", method="POST", path=CM, body={"metadata": {"name": name}},
          status_code=[201, 409]),
        t("read", path=obj),
        t("merge-patch no-op", method="PATCH", path=obj, body={"data": {"a": "1"}}),
        t("merge-patch", method="PATCH", path=obj, body={"data": {"a": "2"}}),
        t("json-patch", method="PATCH", path=obj, content_type="json-patch",
          body=[{"op": "replace", "path": "/data/a", "value": "3"}]),
        t("strategic-merge-patch", method="PATCH", path=obj, content_type="strategic-merge-patch",
          body={"data": {"b": "x"}}),
        t("apply", method="PATCH", path=obj, content_type="apply-patch", field_manager="kg-test", body=apply_body),
        t("apply again", method="PATCH", path=obj, content_type="apply-patch", field_manager="kg-test",
          body=apply_body),
        t("apply conflicting", method="PATCH", path=obj, content_type="apply-patch", field_manager="other",
          body={**apply_body, "data": {"c": "z"}}),
        t("apply forced", method="PATCH", path=obj, content_type="apply-patch", field_manager="other", force=True,
          body={**apply_body, "data": {"c": "z"}}),
        {"name": "read for put", "kubegate.multicluster.api_request": {"path": obj}, "register": "cur"},
        t("put unchanged", method="PUT", path=obj, body="{{ cur.json }}"),
        t("delete", method="DELETE", path=obj),
        t("delete again", method="DELETE", path=obj, status_code=[200, 404]),
    ]
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks), env={"KUBEGATE_NO_FASTPATH": fastpath})
    assert no_traceback(run.output)

    def res(task):
        return run.result(task, "cluster-b")
    assert res("create")["status"] == 201 and res("create")["changed"] is True
    assert res("create again (conflict accepted)")["status"] == 409 and res("create again (conflict accepted)")["changed"] is False
    assert res("read")["changed"] is False and res("read")["json"]["data"] == {"a": "1"}
    assert res("merge-patch no-op")["changed"] is False
    assert res("merge-patch")["changed"] is True
    assert res("json-patch")["changed"] is True and res("json-patch")["json"]["data"]["a"] == "3"
    assert res("strategic-merge-patch")["changed"] is True and res("strategic-merge-patch")["json"]["data"]["b"] == "x"
    assert res("apply")["changed"] is True
    managers = [m["manager"] for m in res("apply")["json"]["metadata"]["managedFields"]]
    assert "kg-test" in managers
    assert res("apply again")["changed"] is False
    conflict = res("apply conflicting")
    assert conflict.get("failed") and conflict["status"] == 409 and "conflict" in conflict["msg"].lower()
    assert "kg-test" in conflict["msg"]
    assert res("apply forced")["changed"] is True and res("apply forced")["json"]["data"]["c"] == "z"
    assert res("put unchanged")["changed"] is False and res("put unchanged")["status"] == 200
    assert res("delete")["changed"] is True
    assert res("delete again")["changed"] is False and res("delete again")["status"] == 404
    assert cm_data(lab, "cluster-b", name) is None
    assert not [r for r in run.records if r["status"] == "failed" and r["task"] != "apply conflicting"], run.output[-3000:]


def test_check_mode_changes_nothing_and_predicts_with_server_dry_run(lab, tmp_path):
    name = "kg-check-" + uuid.uuid4().hex[:6]
    lab.kubectl("cluster-b", "create", "configmap", "-n", NS, name, "--from-literal=a=1")
    gone = "kg-absent-" + uuid.uuid4().hex[:6]
    obj = "%s/%s" % (CM, name)
    tasks = [
        t("patch", method="PATCH", path=obj, body={"data": {"a": "2"}}),
        t("patch no-op", method="PATCH", path=obj, body={"data": {"a": "1"}}),
        t("create", method="POST", path=CM, body={"metadata": {"name": gone}, "data": {"x": "1"}}),
        t("delete", method="DELETE", path=obj),
        t("invalid", method="PATCH", path=obj, body={"metadata": {"name": "Not_Valid"}}),
        t("proxy write", method="POST", path="/api/v1/namespaces/demo/services/echo:http/proxy/x", body={"a": 1}),
    ]
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks), "--check", "--diff")
    patch = run.result("patch", "cluster-b")
    assert patch["changed"] is True and patch["dry_run"] is True
    assert '"a": "1"' in patch["diff"]["before"] and '"a": "2"' in patch["diff"]["after"]
    assert "managedFields" not in patch["diff"]["after"]
    assert "+" in run.stdout and '"a": "2"' in run.stdout  # the diff is printed
    assert run.result("patch no-op", "cluster-b")["changed"] is False
    create = run.result("create", "cluster-b")
    assert create["changed"] is True and create["diff"]["before"] == "" and gone in create["diff"]["after"]
    assert run.result("delete", "cluster-b")["changed"] is True
    invalid = run.result("invalid", "cluster-b")
    assert invalid["failed"] and invalid["status"] in (400, 422)
    proxy = run.result("proxy write", "cluster-b")
    assert proxy["changed"] is True and proxy["status"] is None and "not sent" in proxy["msg"]
    # nothing changed in the cluster
    assert cm_data(lab, "cluster-b", name) == {"a": "1"}
    assert cm_data(lab, "cluster-b", gone) is None
    lab.kubectl("cluster-b", "delete", "configmap", "-n", NS, name)


def test_diff_masks_secret_values(lab, tmp_path):
    name = "kg-secret-" + uuid.uuid4().hex[:6]
    value = "s3cr3t-" + uuid.uuid4().hex
    tasks = [t("create secret", method="POST", path="/api/v1/namespaces/demo/secrets",
               body={"metadata": {"name": name}, "stringData": {"password": value}})]
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks), "--diff")
    res = run.result("create secret", "cluster-b")
    assert res["changed"] is True and "<hidden sha256:" in res["diff"]["after"]
    encoded = __import__("base64").b64encode(value.encode()).decode()
    assert value not in res["diff"]["after"] and encoded not in res["diff"]["after"]
    assert value not in run.stdout and encoded not in run.stdout.split("TASK")[0]
    lab.kubectl("cluster-b", "delete", "secret", "-n", NS, name)


def test_watch_until_returns_the_first_matching_object(lab, tmp_path):
    name = "kg-watch-" + uuid.uuid4().hex[:6]
    lab.kubectl("cluster-a", "create", "configmap", "-n", NS, name, "--from-literal=ready=no")

    def flip():
        time.sleep(2.5)
        lab.kubectl("cluster-a", "patch", "configmap", "-n", NS, name, "-p", '{"data":{"ready":"yes"}}')
    threading.Thread(target=flip, daemon=True).start()
    tasks = [
        t("wait ready", path="%s/%s" % (CM, name), watch=True, until="data.ready == 'yes'", timeout=30),
        t("already ready", path="%s/%s" % (CM, name), watch=True, until="data.ready == 'yes'", timeout=5),
        t("never", path="%s/%s" % (CM, name), watch=True, until="data.ready == 'never'", timeout=2),
        t("pods ready", path="/api/v1/namespaces/ingress-nginx/pods", query={"labelSelector":
                                                                           "app.kubernetes.io/name=ingress-nginx"},
          watch=True, until="status.conditions[?type=='Ready'].status | [0] == 'True'", timeout=10),
    ]
    started = time.monotonic()
    run = run_playbook(tmp_path, play(lab, "cluster-a", tasks))
    wait = run.result("wait ready", "cluster-a")
    assert wait["matched"] is True and wait["event"] == "MODIFIED" and wait["json"]["data"]["ready"] == "yes"
    assert wait["elapsed"] > 0  # MODIFIED (not EXISTING): the match came from the watch, after the change
    again = run.result("already ready", "cluster-a")
    assert again["event"] == "EXISTING"
    never = run.result("never", "cluster-a")
    assert never["failed"] and "timed out after 2" in never["msg"] and "until" in never["msg"]
    assert run.result("pods ready", "cluster-a")["json"]["metadata"]["labels"]["app.kubernetes.io/name"] == "ingress-nginx"
    assert time.monotonic() - started < 60
    lab.kubectl("cluster-a", "delete", "configmap", "-n", NS, name)


def test_aggregated_and_non_resource_paths(lab, tmp_path):
    name = "kg-flunder-" + uuid.uuid4().hex[:6]
    flunders = "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"
    tasks = [
        t("version", path="/version"),
        t("readyz", path="/readyz", query={"verbose": True}),
        t("metrics", path="/metrics", max_body_bytes=4096),
        t("openapi head", method="HEAD", path="/openapi/v2"),
        t("create flunder", method="POST", path=flunders,
          body={"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder", "metadata": {"name": name}}),
        t("list flunders", path=flunders),
        t("delete flunder", method="DELETE", path="%s/%s" % (flunders, name)),
    ]
    run = run_playbook(tmp_path, play(lab, "cluster-a", tasks))
    assert run.result("version", "cluster-a")["json"]["gitVersion"].startswith("v1.")
    readyz = run.result("readyz", "cluster-a")
    assert "readyz check passed" in readyz["body"] and "[+]etcd ok" in readyz["body"]
    metrics = run.result("metrics", "cluster-a")
    assert metrics["truncated"] is True and len(metrics["body"].encode()) <= 4096
    assert run.result("openapi head", "cluster-a")["status"] == 200
    assert run.result("create flunder", "cluster-a")["changed"] is True
    names = [i["metadata"]["name"] for i in run.result("list flunders", "cluster-a")["json"]["items"]]
    assert name in names
    assert run.result("delete flunder", "cluster-a")["changed"] is True


def test_log_follow_streams_real_lines_and_is_bounded_by_timeout(lab, tmp_path):
    # The lab's pod log is the pod's real nginx access log (docs/lab-contract.md); a follow never ends by itself, so
    # the task returning at all (with status 200 and the lines) shows the timeout bounded the stream.
    pod = lab.ingress_pods("cluster-b")[0]
    marker = "kg-api-follow-" + uuid.uuid4().hex[:8]
    pods = "/api/v1/namespaces/ingress-nginx/pods"
    tasks = [t("request", path="%s/%s:80/proxy/%s" % (pods, pod, marker)),
             {"name": "ship", "ansible.builtin.pause": {"seconds": 1}},
             t("follow", path="%s/%s/log" % (pods, pod), query={"follow": True, "tailLines": 20}, timeout=3)]
    started = time.monotonic()
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks))
    res = run.result("follow", "cluster-b")
    assert not res.get("failed") and res["status"] == 200, res
    assert '"GET /%s HTTP/1.1" 200' % marker in res["body"]
    assert time.monotonic() - started < 30


def test_module_and_fast_path_give_identical_results(lab, tmp_path):
    tasks = [t("version", path="/version"), t("ns", path="/api/v1/namespaces/demo")]
    a = run_playbook(tmp_path, play(lab, "cluster-b", tasks), env={"KUBEGATE_NO_FASTPATH": "0"})
    b = run_playbook(tmp_path, play(lab, "cluster-b", tasks), env={"KUBEGATE_NO_FASTPATH": "1"})
    for task in ("version", "ns"):
        ra, rb = a.result(task, "cluster-b"), b.result(task, "cluster-b")
        for key in ("changed", "status", "json"):
            assert ra[key] == rb[key], key
        assert ra["headers"]["content-type"] == rb["headers"]["content-type"]

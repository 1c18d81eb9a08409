# -*- coding: utf-8 -*-
"""Drift evaluation and the report writers (module_utils/_drift.py), without a cluster."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kubegate.multicluster.plugins.module_utils import _drift as drift

MAP = '# Managed by kubegate\nmap $http_x_version $kubegate_backend {\n    default "stable";\n    "v2" "canary";\n}\n'
SNIPPET = "proxy_set_header X-Kubegate-Backend $kubegate_backend;\n"


def cm_result(data, status=200):
    if status == 404:
        return {"status": 404, "json": {"kind": "Status", "reason": "NotFound"}, "changed": False}
    return {"status": 200, "changed": False,
            "json": {"metadata": {"name": "kubegate-nginx-map", "resourceVersion": "42"}, "data": data}}


def cm_check(data, status=200, expected=None):
    return {"name": "map_configmap", "kind": "configmap", "configmap": "ingress-nginx/kubegate-nginx-map",
            "expected": expected or {"kubegate-map.conf": MAP, "kubegate-routing.location": SNIPPET},
            "result": cm_result(data, status)}


def test_configmap_in_sync():
    out = drift.evaluate_check(cm_check({"kubegate-map.conf": MAP, "kubegate-routing.location": SNIPPET}))
    assert out["status"] == "in_sync" and out["diff"] == ""
    assert out["details"]["resource_version"] == "42"


def test_configmap_out_of_band_edit_is_drift_with_a_unified_diff():
    live = MAP.replace('"canary"', '"hotfix"')
    out = drift.evaluate_check(cm_check({"kubegate-map.conf": live, "kubegate-routing.location": SNIPPET}))
    assert out["status"] == "drifted"
    assert out["details"]["drifted_keys"] == ["kubegate-map.conf"]
    assert '-    "v2" "canary";' in out["diff"] and '+    "v2" "hotfix";' in out["diff"]
    assert "--- desired/kubegate-map.conf" in out["diff"]
    assert "+++ live/ingress-nginx/kubegate-nginx-map/kubegate-map.conf" in out["diff"]


def test_configmap_missing_and_unexpected_key():
    missing = drift.evaluate_check(cm_check({}, status=404))
    assert missing["status"] == "drifted" and "does not exist" in missing["summary"]
    # a key that must be absent (no proxy_set_header in the rules) but is there
    extra = drift.evaluate_check(cm_check({"kubegate-map.conf": MAP, "kubegate-routing.location": SNIPPET},
                                          expected={"kubegate-map.conf": MAP, "kubegate-routing.location": None}))
    assert extra["status"] == "drifted" and "(absent)" in extra["diff"]


def pods_result(*files):
    results = []
    for i, text in enumerate(files):
        if text is None:
            results.append({"pod": "p%d" % i, "rc": 1, "stdout": "", "stderr": "cat: x: No such file or directory"})
        else:
            results.append({"pod": "p%d" % i, "rc": 0, "stdout": text, "stderr": ""})
    return {"changed": False, "results": results, "pods": ["p%d" % i for i in range(len(files))]}


def test_pods_name_the_stale_and_broken_pods():
    check = {"name": "map_pods", "kind": "pods", "file": "conf.d/kubegate-map.conf", "expected": MAP,
             "result": pods_result(MAP, MAP.replace("canary", "old"), None)}
    out = drift.evaluate_check(check)
    assert out["status"] == "drifted"
    assert out["details"]["drifted_pods"] == ["p1", "p2"]
    assert "2 of 3 pod(s) differ: p1, p2" == out["summary"]
    assert "+++ p1:conf.d/kubegate-map.conf" in out["diff"] and "No such file" in out["diff"]
    rows = {r["pod"]: r for r in out["details"]["pods"]}
    assert rows["p0"]["sha256"] == drift.sha256(MAP) and rows["p0"]["in_sync"]


def test_pods_in_sync_and_no_pods():
    ok = drift.evaluate_check({"kind": "pods", "expected": MAP, "result": pods_result(MAP, MAP)})
    assert ok["status"] == "in_sync" and drift.sha256(MAP)[:12] in ok["summary"]
    none = drift.evaluate_check({"kind": "pods", "expected": MAP, "result": pods_result()})
    assert none["status"] == "error"


ROLE = {"path": "/apis/rbac.authorization.k8s.io/v1/namespaces/ingress-nginx/roles/kubegate-operator",
        "body": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                 "metadata": {"name": "kubegate-operator", "namespace": "ingress-nginx"},
                 "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]}}


def live(body, **changes):
    obj = json.loads(json.dumps(body))
    obj["metadata"].update({"uid": "u1", "resourceVersion": "7", "managedFields": [{"manager": "x"}]})
    obj.update(changes)
    return {"status": 200, "json": obj, "changed": False}


def test_objects_ignore_server_fields_but_see_changed_rules_and_missing_objects():
    same = drift.evaluate_check({"name": "rbac", "kind": "objects", "expected": [ROLE],
                                 "result": {"results": [live(ROLE["body"])]}})
    assert same["status"] == "in_sync"
    wider = live(ROLE["body"], rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}])
    changed = drift.evaluate_check({"kind": "objects", "expected": [ROLE], "result": {"results": [wider]}})
    assert changed["status"] == "drifted" and "Role ingress-nginx/kubegate-operator" in changed["summary"]
    assert '+        "*"' in changed["diff"] and '-        "get",' in changed["diff"]
    secrets_rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    extra_rule = live(ROLE["body"], rules=ROLE["body"]["rules"] + [secrets_rule])
    assert drift.evaluate_check({"kind": "objects", "expected": [ROLE],
                                 "result": {"results": [extra_rule]}})["status"] == "drifted"
    gone = drift.evaluate_check({"kind": "objects", "expected": [ROLE],
                                 "result": {"results": [{"status": 404, "json": {}}]}})
    assert gone["status"] == "drifted" and gone["details"]["objects"][0]["state"] == "missing"


def test_objects_forbidden_is_an_error_not_drift():
    res = {"results": [{"failed": True, "msg": "cluster-a: forbidden (403) for GET ...", "status": 403}]}
    out = drift.evaluate_check({"kind": "objects", "expected": [ROLE], "result": res})
    assert out["status"] == "error" and "forbidden" in out["summary"]


def apiservice(name, status, reason="Passed", message="all checks passed"):
    return {"metadata": {"name": name}, "status": {"conditions": [
        {"type": "Available", "status": status, "reason": reason, "message": message}]}}


def test_apiservices():
    ok = {"status": 200, "json": {"items": [apiservice("v1.", "True"), apiservice("v1alpha1.wardle.example.com", "True")]}}
    assert drift.evaluate_check({"kind": "apiservices", "result": ok})["status"] == "in_sync"
    bad = {"status": 200, "json": {"items": [apiservice("v1.", "True"),
                                             apiservice("v1alpha1.wardle.example.com", "False", "MissingEndpoints",
                                                        "endpoints for service/api in wardle have no addresses")]}}
    out = drift.evaluate_check({"kind": "apiservices", "result": bad})
    assert out["status"] == "drifted" and out["details"]["unavailable"] == ["v1alpha1.wardle.example.com"]
    assert "MissingEndpoints" in out["diff"]


@pytest.mark.parametrize("result,status", [
    ({"in_sync": True, "diff": "", "active": True}, "in_sync"),
    ({"in_sync": False, "diff": "-ExecStart=a\n+ExecStart=b\n", "active": True}, "drifted"),
    ({"in_sync": True, "diff": "", "active": False}, "drifted"),
    ({"diff": ""}, "error"),
])
def test_reported(result, status):
    assert drift.evaluate_check({"kind": "reported", "host": "edge", "result": result})["status"] == status


@pytest.mark.parametrize("result,status", [
    ({"failed": True, "unreachable": True, "msg": "cannot reach the apiserver at 127.0.0.1:1: connection refused"},
     "unreachable"),
    ({"failed": True, "timed_out": True, "msg": "GET /version timed out"}, "unreachable"),
    ({"failed": True, "msg": "forbidden (403)"}, "error"),
    (None, "error"),
])
def test_failed_results_are_classified(result, status):
    out = drift.evaluate_check({"kind": "configmap", "expected": {}, "result": result})
    assert out["status"] == status


def test_a_failed_probe_marks_every_check_of_the_cluster():
    probe = {"unreachable": True, "msg": "cannot reach the apiserver"}
    report = drift.build_report([{"cluster": "c", "tenant": "t", "probe": probe,
                                  "checks": [cm_check({}), {"kind": "apiservices", "result": {"skipped": True}}]}])
    assert report["status"] == "unreachable" and report["exit_code"] == 4
    assert {c["status"] for c in report["tenants"]["t"]["c"]["checks"].values()} == {"unreachable"}


def test_invalid_rules_are_an_error():
    check = dict(cm_check({"kubegate-map.conf": MAP}), expected_error="nginx_map: map 0: variable $host is built in")
    assert drift.evaluate_check(check)["status"] == "error"


def test_unknown_kind_and_odd_input_never_raise():
    assert drift.evaluate_check({"kind": "nope"})["status"] == "error"
    assert drift.evaluate_check({"kind": "pods", "expected": MAP, "result": {"results": "x"}})["status"] == "error"


def full_report():
    clusters = [
        {"cluster": "cluster-a", "tenant": "acme", "probe": {"status": 200},
         "checks": [cm_check({"kubegate-map.conf": MAP, "kubegate-routing.location": SNIPPET})]},
        {"cluster": "cluster-b", "tenant": "acme", "probe": {"status": 200},
         "checks": [cm_check({"kubegate-map.conf": MAP.replace("canary", "x|y"), "kubegate-routing.location": SNIPPET})]},
        {"cluster": "cluster-c", "tenant": "globex", "probe": {"unreachable": True, "msg": "connection refused"},
         "checks": [cm_check({})]},
    ]
    extra = drift.tunnel_entries([{"host": "edge", "probe": {"ping": "pong"},
                                   "facts": {"ssh_tunnel": [{"cluster": "cluster-c", "in_sync": True, "diff": "",
                                                             "active": True}]}}],
                                 {"cluster-c": "globex"})
    return drift.build_report(clusters, extra, run_id="20261129T190000Z", generated_at="2026-11-29T19:00:00Z")


def test_report_status_precedence_and_counts():
    report = full_report()
    assert report["status"] == "unreachable" and report["exit_code"] == 4
    assert report["counts"] == {"in_sync": 2, "drifted": 1, "unreachable": 1, "error": 0}
    assert report["tenants"]["acme"]["cluster-b"]["status"] == "drifted"
    assert report["tenants"]["globex"]["cluster-c"]["checks"]["ssh_tunnel@edge"]["status"] == "in_sync"
    assert drift.worst(["drifted", "error", "unreachable"]) == "error"
    assert drift.build_report([])["status"] == "error"  # nothing checked is never "in sync"
    json.loads(drift.render_json(report))


def test_junit_has_one_testcase_per_cluster_and_check():
    root = ET.fromstring(drift.render_junit(full_report()))
    assert root.get("tests") == "4" and root.get("failures") == "1" and root.get("errors") == "1"
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    assert set(cases) == {("acme.cluster-a", "map_configmap"), ("acme.cluster-b", "map_configmap"),
                          ("globex.cluster-c", "map_configmap"), ("globex.cluster-c", "ssh_tunnel@edge")}
    failure = cases[("acme.cluster-b", "map_configmap")].find("failure")
    assert failure.get("type") == "drifted" and '+    "v2" "x|y";' in failure.text
    assert cases[("globex.cluster-c", "map_configmap")].find("error").get("type") == "unreachable"


def test_markdown_table_per_tenant_with_short_diff_and_full_diffs():
    md = drift.render_markdown(full_report())
    assert "## Tenant acme" in md and "## Tenant globex" in md
    row = [line for line in md.splitlines() if line.startswith("| cluster-b | map_configmap |")][0]
    assert "**DRIFTED**" in row and '`+    "v2" "x\\|y";`' in row  # pipes escaped inside the table
    assert row.count("|") - row.count("\\|") == 5
    assert "| cluster-c | map_configmap | **UNREACHABLE** |" in md
    assert "### acme / cluster-b / map_configmap" in md and "```diff" in md


def test_tunnel_entries_contract_errors():
    out = drift.tunnel_entries([
        {"host": "edge-1", "probe": {"unreachable": True, "msg": "ssh: connect timed out"}, "facts": {}},
        {"host": "edge-2", "probe": {"ping": "pong"}, "facts": {"kubectl_proxy": None}},
    ])
    report = drift.build_report([], out)
    assert report["tenants"]["-"]["edge-1"]["checks"]["tunnel_host"]["status"] == "unreachable"
    err = report["tenants"]["-"]["edge-2"]["checks"]["kubectl_proxy"]
    assert err["status"] == "error" and "kubegate_kubectl_proxy_drift" in err["summary"]


def test_configmap_key_kubegate_did_not_render_is_drift():
    """The pods include every key of the map ConfigMap as a file: an extra key changes routing."""
    data = {"kubegate-map.conf": MAP, "kubegate-routing.location": SNIPPET,
            "zz-override.conf": "map $http_x_version $kubegate_backend2 { default x; }\n"}
    out = drift.evaluate_check(cm_check(data))
    assert out["status"] == "drifted" and out["details"]["unexpected_keys"] == ["zz-override.conf"]
    assert "did not render: zz-override.conf" in out["summary"]
    assert "+++ live/ingress-nginx/kubegate-nginx-map/zz-override.conf" in out["diff"]
    assert "--- desired/zz-override.conf (absent)" in out["diff"] and "+map $http_x_version" in out["diff"]
    binary = cm_result({"kubegate-map.conf": MAP, "kubegate-routing.location": SNIPPET})
    binary["json"]["binaryData"] = {"blob.conf": "AAAA"}
    out = drift.evaluate_check(dict(cm_check({}), result=binary))
    assert out["status"] == "drifted" and out["details"]["unexpected_keys"] == ["blob.conf"]


def test_configmap_missing_key_is_named():
    out = drift.evaluate_check(cm_check({"kubegate-map.conf": MAP}))
    assert out["status"] == "drifted" and out["summary"].endswith("misses kubegate-routing.location")
    assert out["details"]["drifted_keys"] == ["kubegate-routing.location"]


CHECKS = [{"headers": {"X-Version": "v2"}, "response_header": "X-Kubegate-Backend", "expect": "canary"},
          {"headers": {}, "response_header": "X-Kubegate-Backend", "expect": "stable"}]


def probes(*pods):
    """A looped api_request result: pods maps pod name -> {check index: header value, or an int HTTP failure}."""
    results, any_failed = [], False
    for pod, answers in pods:
        for i, check in enumerate(CHECKS):
            got = answers.get(i, check["expect"])
            if isinstance(got, int):
                any_failed = True
                results.append({"item": [pod, check], "failed": True, "status": got,
                                "msg": "cluster a: HTTP %d for GET /api/v1/.../proxy/kubegate/check" % got})
            else:
                headers = {"X-Kubegate-Backend": got} if got is not None else {}
                results.append({"item": [pod, check], "status": 200, "json": {"headers": headers}})
    out = {"changed": False, "results": results}
    if any_failed:
        out.update(failed=True, msg="One or more items failed")
    return out


def routing(result, expected=None):
    return drift.evaluate_check({"name": "map_routing", "kind": "routing",
                                 "expected": CHECKS if expected is None else expected, "result": result})


def test_routing_in_sync_and_header_matched_case_insensitively():
    out = routing(probes(("p0", {}), ("p1", {})))
    assert out["status"] == "in_sync" and out["summary"] == "2 pod(s) route all 2 request(s) as desired"
    lower = probes(("p0", {}))
    for r in lower["results"]:
        r["json"]["headers"] = {"x-kubegate-backend": r["item"][1]["expect"]}
    assert routing(lower)["status"] == "in_sync"


def test_routing_names_the_pod_serving_stale_routing_and_the_silent_one():
    out = routing(probes(("p0", {}), ("p1", {0: "old-canary"}), ("p2", {1: None}), ("p3", {0: 503})))
    assert out["status"] == "drifted" and out["details"]["drifted_pods"] == ["p1", "p2", "p3"]
    assert out["summary"] == "3 of 4 pod(s) route differently: p1, p2, p3"
    assert 'pod p1, request headers {"X-Version": "v2"}:\n-X-Kubegate-Backend: canary\n' \
           "+X-Kubegate-Backend: old-canary\n" in out["diff"]
    assert "pod p2, request headers {}:\n-X-Kubegate-Backend: stable\n+X-Kubegate-Backend: (not set)\n" in out["diff"]
    assert "+X-Kubegate-Backend: (no answer: cluster a: HTTP 503" in out["diff"]
    rows = {r["pod"]: r for r in out["details"]["pods"]}
    assert rows["p0"]["in_sync"] and rows["p1"]["failed"][0]["got"] == "old-canary"


def test_routing_failures_that_are_not_drift():
    forbidden = routing(probes(("p0", {0: 403})))
    assert forbidden["status"] == "error" and "403" in forbidden["summary"]
    down = probes(("p0", {}))
    down["results"][0] = dict(down["results"][0], unreachable=True, msg="cannot reach the apiserver")
    assert routing(down)["status"] == "unreachable"
    assert routing({"results": [], "skipped": True, "skip_reason": "No items in the list"})["status"] == "error"
    assert routing({"results": [{"status": 200}]})["status"] == "error"  # no (pod, check) item
    assert routing({"results": []}, expected=[])["status"] == "in_sync"  # rules without header routing

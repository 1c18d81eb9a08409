"""Gateway API on the lab: the real Gateway API CRDs (lab/kglab/gateway_api.py) validate every HTTPRoute kubegate
emits; kubegate.multicluster.http_route applies them with check mode, diff and honest `changed`;
playbooks/migrate-gateway-api.yml works --check --diff first, then for real.

The apiserver is the judge: every rule shape of inventories/lab and of the nginx map golden corpus is sent (dryRun=All)
and accepted, or reported as not expressible; a control route beyond the CRD's limits must be rejected, which proves the
schema and CEL rules are live (an apiserver without the CRDs would fail differently).
"""
from __future__ import annotations

import sys
import uuid

import pytest
import yaml

from kgplay import conn_token, no_traceback, run_playbook
from kgtest import CLUSTERS, REPO

PLAYBOOK = REPO / "playbooks" / "migrate-gateway-api.yml"
COLLECTION = REPO / "collections" / "ansible_collections" / "kubegate" / "multicluster"
GOLDEN = COLLECTION / "tests" / "unit" / "plugins" / "module_utils" / "golden"
PARENTS = [{"name": "kubegate", "namespace": "gateway-system"}]


def nginx_map_unit_cases():
    """Rule shapes of the nginx_map unit tests beyond the golden files: the PCRE-only regex list."""
    sys.path.insert(0, str(REPO / "collections"))
    from ansible_collections.kubegate.multicluster.tests.unit.plugins.module_utils.test_nginx_map import (
        PCRE_ONLY_VALID)
    maps = [{"source": "$http_x_a", "variable": "kg_pcre", "default": "v-default",
             "entries": [{"key": "~" + p, "value": "v%d" % i} for i, p in enumerate(PCRE_ONLY_VALID)]}]
    return [("pcre-only-valid", maps, 64)]


def corpus():
    cases = nginx_map_unit_cases()
    for path in sorted(GOLDEN.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        cases.append((path.stem, data["maps"], data.get("map_hash_bucket_size", 64)))
    for path in sorted((REPO / "inventories" / "lab" / "group_vars").glob("*.yml")):
        maps = (yaml.safe_load(path.read_text()) or {}).get("kubegate_routing_maps")
        if maps:
            cases.append(("lab-" + path.stem, maps, 64))
    return cases


def hr(name, **args):
    return {"name": name, "kubegate.multicluster.http_route": {"namespace": "demo", "parent_refs": PARENTS, **args},
            "ignore_errors": True}


def play(lab, cluster, tasks):
    return [{"name": "routes", "hosts": cluster, "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": conn_token(lab, cluster)}, "tasks": tasks}]


def test_crds_gatewayclass_and_gateway_in_every_cluster(lab):
    for cluster in CLUSTERS:
        crd = lab.get_json(cluster, "get", "crd", "httproutes.gateway.networking.k8s.io")
        annotations = crd["metadata"]["annotations"]
        assert annotations["gateway.networking.k8s.io/channel"] == "standard"
        assert annotations["gateway.networking.k8s.io/bundle-version"].startswith("v1.6.")
        assert [v["name"] for v in crd["spec"]["versions"] if v["storage"]] == ["v1"]
        gateway = lab.get_json(cluster, "get", "gateway", "-n", "gateway-system", "kubegate")
        assert gateway["spec"]["gatewayClassName"] == "kubegate-lab"
        assert lab.get_json(cluster, "get", "gatewayclass", "kubegate-lab")["spec"]["controllerName"]


@pytest.mark.parametrize("case", corpus(), ids=lambda c: c[0])
def test_every_rule_shape_is_accepted_by_the_apiserver_or_reported(lab, tmp_path, case):
    name, maps, bucket = case
    prefix = "kgt-" + uuid.uuid4().hex[:6]
    run = run_playbook(tmp_path, play(lab, "cluster-a", [
        {**hr("dry run", maps=maps, map_hash_bucket_size=bucket, name_prefix=prefix), "check_mode": True}]))
    result = run.result("dry run", "cluster-a")
    assert not result.get("failed"), result.get("msg")
    assert result.get("dry_run", False) is (len(result["routes"]) > 0)
    for item in result["report"]:
        # accepted (emitted into a route the apiserver took) or not expressible, with the reason and the fix
        assert item["emitted"] or all(d["text"] and d["what_to_do"] for d in item["differences"]), item
        assert item["emitted"] or item["differences"], item
    # check mode changed nothing on the server
    listed = lab.get_json("cluster-a", "get", "httproutes", "-n", "demo")["items"]
    assert not [r for r in listed if r["metadata"]["name"].startswith(prefix)]
    assert no_traceback(run.output)


def test_the_crd_rejects_what_it_should(lab, tmp_path):
    """Control: 17 rules (the CRD allows 16) and an upper-case hostname are refused by the apiserver itself."""
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "kgt-too-many", "namespace": "demo"},
             "spec": {"parentRefs": PARENTS, "hostnames": ["Upper.example.com"],
                      "rules": [{"backendRefs": [{"name": "echo", "port": 80}]} for _ in range(17)]}}
    run = run_playbook(tmp_path, play(lab, "cluster-a", [
        {"name": "send", "kubegate.multicluster.api_request": {
            "method": "POST", "path": "/apis/gateway.networking.k8s.io/v1/namespaces/demo/httproutes",
            "body": route, "query": {"dryRun": "All"}}, "ignore_errors": True}]))
    result = run.result("send", "cluster-a")
    assert result["failed"] and result.get("status") == 422, result
    assert "spec.rules" in result["msg"] and "spec.hostnames" in result["msg"], result["msg"]


def test_module_check_diff_idempotence_and_change(lab, tmp_path):
    prefix = "kgt-" + uuid.uuid4().hex[:6]
    maps = [{"source": "$http_x_version", "variable": "$kg_backend", "default": "echo",
             "backends": {"echo": {"name": "echo", "port": 80}, "canary": {"name": "echo", "port": 443}},
             "entries": [{"key": "v2", "value": "canary"}]}]
    changed = [{**maps[0], "entries": [{"key": "v3", "value": "canary"}]}]
    name = prefix + "-kg-backend"
    tasks = [
        {**hr("check create", maps=maps, name_prefix=prefix), "check_mode": True, "diff": True},
        hr("create", maps=maps, name_prefix=prefix),
        {**hr("again", maps=maps, name_prefix=prefix), "diff": True},
        {**hr("check again", maps=maps, name_prefix=prefix), "check_mode": True},
        {**hr("check change", maps=changed, name_prefix=prefix), "check_mode": True, "diff": True},
        hr("change", maps=changed, name_prefix=prefix),
        hr("bad input", maps=[{"source": "$http_x", "variable": "$uri", "entries": {"a": "b"}}],
           name_prefix=prefix + "-bad", parent_refs=[{"name": "Kubegate"}]),
        {"name": "filter", "ansible.builtin.set_fact": {
            "routes": "{{ maps | kubegate.multicluster.http_routes(namespace='demo', parent_refs=parents, "
                      "name_prefix=prefix) }}"},
         "vars": {"maps": maps, "parents": PARENTS, "prefix": prefix}},
    ]
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks))
    try:
        check = run.result("check create", "cluster-b")
        assert check["changed"] and check["dry_run"], check
        assert check["diff"][0]["before"] == "" and '"X-Version"' in check["diff"][0]["after"]
        create = run.result("create", "cluster-b")
        assert create["changed"] and create["applied"][0]["name"] == "demo/" + name
        assert run.result("again", "cluster-b")["changed"] is False
        assert run.result("check again", "cluster-b")["changed"] is False
        check_change = run.result("check change", "cluster-b")
        assert check_change["changed"] and '"v2"' in check_change["diff"][0]["before"]
        assert '"v3"' in check_change["diff"][0]["after"]
        assert run.result("change", "cluster-b")["changed"]
        # what the server holds: the changed rules, validated and defaulted by the CRD
        live = lab.get_json("cluster-b", "get", "httproute", "-n", "demo", name)
        rules = live["spec"]["rules"]
        assert [r["name"] for r in rules] == ["exact-1", "default"]
        assert rules[0]["matches"][0]["headers"] == [{"name": "X-Version", "type": "Exact", "value": "v3"}]
        assert rules[0]["matches"][0]["path"] == {"type": "PathPrefix", "value": "/"}
        assert rules[0]["backendRefs"][0]["port"] == 443 and rules[1]["backendRefs"][0]["port"] == 80
        assert live["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubegate"
        fields = lab.get_json("cluster-b", "get", "httproute", "-n", "demo", name, "--show-managed-fields")
        managers = [m["manager"] for m in fields["metadata"]["managedFields"]]
        assert managers == ["kubegate"], managers
        bad = run.result("bad input", "cluster-b")
        assert bad["failed"] and "Nothing was sent" in bad["msg"] and len(bad["problems"]) == 2, bad
        assert any("$uri" in p for p in bad["problems"]) and any("parent_refs[0]" in p for p in bad["problems"])
        assert lab.kubectl("cluster-b", "get", "httproute", "-n", "demo", prefix + "-bad-uri", check=False).returncode
        filtered = run.result("filter", "cluster-b")["ansible_facts"]["routes"]
        assert filtered == run.result("create", "cluster-b")["routes"]
        assert no_traceback(run.output)
    finally:
        lab.kubectl("cluster-b", "delete", "httproute", "-n", "demo", name, "--ignore-not-found")


def test_migrate_playbook_check_then_apply(lab, tmp_path):
    """The lab inventory's acme rules on cluster-b: --check --diff predicts the route and creates nothing; the real
    run creates it; a second run changes nothing. The per-rule report lists the case difference of each exact key."""
    route = "kubegate-backend"
    lab.kubectl("cluster-b", "delete", "httproute", "-n", "demo", route, "--ignore-not-found")
    check = run_playbook(tmp_path, PLAYBOOK.read_text(), "-l", "cluster-b", "--check", "--diff")
    assert check.rc == 0, check.output[-3000:]
    applied = check.result("Apply the HTTPRoutes (server-side apply; check mode sends dryRun=All)", "cluster-b")
    assert applied["changed"] and applied["dry_run"]
    assert lab.kubectl("cluster-b", "get", "httproute", "-n", "demo", route, check=False).returncode != 0
    report = check.result("Per-rule report (emitted, differences from nginx, what to do)", "cluster-b")["msg"]
    assert any(line.startswith("    differs (case):") and '"v1"' in line for line in report), report
    assert report[-1] == "1 route(s), 4 rule(s) with differences, 0 not emitted"
    for expect_changed in (True, False):
        run = run_playbook(tmp_path, PLAYBOOK.read_text(), "-l", "cluster-b")
        assert run.rc == 0, run.output[-3000:]
        assert ("changed=1" if expect_changed else "changed=0") in run.stdout
    live = lab.get_json("cluster-b", "get", "httproute", "-n", "demo", route)
    assert [r["name"] for r in live["spec"]["rules"]] == ["exact-1", "exact-2", "regex-1", "default"]
    assert live["spec"]["parentRefs"][0]["name"] == "kubegate"
    assert no_traceback(check.output + run.output)

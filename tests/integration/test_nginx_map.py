"""kubegate.multicluster.nginx_map (and the filter sharing its renderer) against the lab: apply, idempotence, check
and diff mode, the saved previous content and restore, and rejected input that changes nothing."""
from __future__ import annotations

import uuid

from kgplay import conn_token, no_traceback, run_playbook

MAPS = [{"source": "$http_x_version", "variable": "$kg_test_backend", "default": "stable",
         "proxy_set_header": "X-Kubegate-Backend", "entries": [{"key": "v2", "value": "canary"}]}]


def nm(name, **args):
    return {"name": name, "kubegate.multicluster.nginx_map": {"namespace": "demo", **args}, "ignore_errors": True}


def test_apply_idempotence_check_diff_and_restore(lab, tmp_path):
    cm = "kg-map-" + uuid.uuid4().hex[:6]
    changed_maps = [{**MAPS[0], "entries": [{"key": "v2", "value": "canary-2"}]}]
    tasks = [
        nm("apply", configmap=cm, maps=MAPS, location_snippet_key="routing.location"),
        nm("apply again", configmap=cm, maps=MAPS, location_snippet_key="routing.location"),
        {**nm("check change", configmap=cm, maps=changed_maps, location_snippet_key="routing.location"),
         "check_mode": True, "diff": True},
        nm("change", configmap=cm, maps=changed_maps, location_snippet_key="routing.location"),
        nm("restore", configmap=cm, restore=True, location_snippet_key="routing.location"),
        {"name": "filter", "ansible.builtin.set_fact": {"rendered": "{{ maps | kubegate.multicluster.nginx_map }}"},
         "vars": {"maps": MAPS}},
        nm("nothing to restore", configmap=cm + "-none", restore=True),
        nm("both", configmap=cm, restore=True, maps=MAPS),
        nm("invalid", configmap=cm + "-bad", maps=[{"source": "$http_x", "variable": "$uri",
                                                    "entries": {"a\n}": "b\n", "include": "/etc/passwd"}}]),
        nm("missing nginx", configmap=cm + "-bad", maps=MAPS, nginx_check="always", nginx_binary="/nonexistent/nginx"),
    ]
    play = [{"name": "maps", "hosts": "cluster-b", "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": conn_token(lab, "cluster-b")}, "tasks": tasks}]
    run = run_playbook(tmp_path, play)
    apply = run.result("apply", "cluster-b")
    assert apply["changed"] and apply["nginx_checked"] is True and apply["previous_sha256"] is None
    assert 'map "$http_x_version" $kg_test_backend {' in apply["rendered"]
    assert apply["location_snippet"].endswith("proxy_set_header X-Kubegate-Backend $kg_test_backend;\n")
    assert apply["checks"] == [{"headers": {"X-Version": "v2"}, "response_header": "X-Kubegate-Backend",
                                "expect": "canary", "key": "v2"},
                               {"headers": {}, "response_header": "X-Kubegate-Backend", "expect": "stable",
                                "key": None}]
    assert run.result("apply again", "cluster-b")["changed"] is False
    check = run.result("check change", "cluster-b")
    assert check["changed"] and check["dry_run"] and '"canary-2"' in check["diff"]["after"]
    assert '"canary"' in check["diff"]["before"]
    change = run.result("change", "cluster-b")
    assert change["changed"] and change["previous_sha256"] == apply["sha256"]
    restore = run.result("restore", "cluster-b")
    assert restore["changed"] and restore["sha256"] == apply["sha256"]
    data = lab.get_json("cluster-b", "get", "configmap", "-n", "demo", cm)["data"]
    assert data["kubegate-map.conf"] == apply["rendered"]
    assert run.result("filter", "cluster-b")["ansible_facts"]["rendered"] == apply["rendered"]
    assert "nothing to restore" in run.result("nothing to restore", "cluster-b")["msg"]
    assert "mutually exclusive" in run.result("both", "cluster-b")["msg"]
    invalid = run.result("invalid", "cluster-b")
    assert invalid["failed"] and len(invalid["problems"]) >= 3
    assert lab.kubectl("cluster-b", "get", "configmap", "-n", "demo", cm + "-bad", check=False).returncode != 0
    assert "nginx not found" in run.result("missing nginx", "cluster-b")["msg"]
    assert no_traceback(run.output)
    lab.kubectl("cluster-b", "delete", "configmap", "-n", "demo", cm, cm + "-previous")

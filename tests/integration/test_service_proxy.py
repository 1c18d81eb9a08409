"""kubegate.multicluster.service_proxy against the lab's real echo service (http and https ports)."""
from __future__ import annotations

import time
import uuid

from kgplay import conn_token, run_playbook


def sp(name, **args):
    return {"name": name, "kubegate.multicluster.service_proxy": args, "ignore_errors": True}


def test_both_schemes_headers_query_and_escaping(lab, tmp_path):
    svc = "kg-empty-" + uuid.uuid4().hex[:6]
    lab.kubectl("cluster-a", "create", "service", "clusterip", svc, "-n", "demo", "--tcp=80:8080")
    # the apiserver answers 404 (endpoints not found) until the endpoints controller has written the empty Endpoints
    # object, and 503 (no endpoints available) after: wait for it, this test is about the 503
    deadline = time.monotonic() + 30
    while lab.kubectl("cluster-a", "get", "endpoints", svc, "-n", "demo", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the endpoints controller did not create the Endpoints of " + svc
        time.sleep(0.2)
    tasks = [
        sp("http", namespace="demo", service="echo", port="http", path="/a b/c%2Fd", query={"x": ["1", "2"], "y": "ü"},
           headers={"X-Version": "v2"}),
        sp("https", namespace="demo", service="echo", scheme="https", port="https", path="/secure"),
        sp("by number", namespace="demo", service="echo", port="80", path="/n"),
        sp("post", namespace="demo", service="echo", port="http", path="/p", method="POST", body={"k": "v"}),
        sp("no endpoints", namespace="demo", service=svc, path="/"),
        sp("unknown service", namespace="demo", service="nope", path="/"),
        sp("unknown port", namespace="demo", service="echo", port="nope", path="/"),
        sp("backend status not accepted", namespace="demo", service="echo", port="http", path="/status/418"),
        sp("backend status accepted", namespace="demo", service="echo", port="http", path="/status/418",
           status_code=[418]),
    ]
    play = [{"name": "proxy", "hosts": "cluster-a", "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": conn_token(lab, "cluster-a")}, "tasks": tasks}]
    run = run_playbook(tmp_path, play)
    http = run.result("http", "cluster-a")
    assert not http["failed"], http
    echo = http["json"]
    assert echo["cluster"] == "cluster-a" and echo["scheme"] == "http"
    assert echo["path"] == "/a%20b/c/d"  # the space is escaped by kubegate; the apiserver decodes %2F itself
    assert echo["query"] in ("x=1&x=2&y=%C3%BC",), echo["query"]
    assert echo["headers"].get("X-Version") == "v2"
    assert http["changed"] is False
    https = run.result("https", "cluster-a")
    assert https["json"]["scheme"] == "https" and https["json"]["path"] == "/secure"
    assert run.result("by number", "cluster-a")["json"]["path"] == "/n"
    post = run.result("post", "cluster-a")
    assert post["changed"] is True and post["json"]["method"] == "POST" and '"k"' in post["json"]["body"]
    empty = run.result("no endpoints", "cluster-a")
    assert empty["failed"] and empty["status"] == 503 and "no ready endpoints" in empty["msg"]
    unknown = run.result("unknown service", "cluster-a")
    assert unknown["failed"] and unknown["status"] == 404 and 'services "nope" not found' in unknown["msg"]
    port = run.result("unknown port", "cluster-a")
    assert port["failed"] and "has no port 'nope' (ports: http 80, https 443)" in port["msg"]
    teapot = run.result("backend status not accepted", "cluster-a")
    assert teapot["failed"] and teapot["status"] == 418 and "answered HTTP 418" in teapot["msg"]
    assert run.result("backend status accepted", "cluster-a")["status"] == 418
    lab.kubectl("cluster-a", "delete", "service", svc, "-n", "demo")


def test_check_mode_does_not_send_writes(lab, tmp_path):
    tasks = [sp("read", namespace="demo", service="echo", port="http", path="/r"),
             sp("write", namespace="demo", service="echo", port="http", path="/w", method="DELETE")]
    play = [{"name": "proxy", "hosts": "cluster-b", "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": conn_token(lab, "cluster-b")}, "tasks": tasks}]
    run = run_playbook(tmp_path, play, "--check")
    assert run.result("read", "cluster-b")["json"]["path"] == "/r"
    write = run.result("write", "cluster-b")
    assert write["status"] is None and write["changed"] is True and "not sent" in write["msg"]

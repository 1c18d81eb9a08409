"""Bad input: every case fails with a specific message, never a traceback, and changes nothing in the cluster.

All cases run as tasks of one playbook (fast path) and again with the shipped module (KUBEGATE_NO_FASTPATH=1)."""
from __future__ import annotations

import uuid

import pytest

from kgplay import conn_token, no_traceback, run_playbook

BAD = "kg-bad-" + uuid.uuid4().hex[:6]
CM = "/api/v1/namespaces/demo/configmaps"
OBJ = "%s/%s" % (CM, BAD)

# (id, module, args (merged over the cluster-b token connection; None values remove a key), expected message part)
CASES = [
    ("relative path", "api_request", {"path": "api/v1/namespaces"}, "must start with '/'"),
    ("url as path", "api_request", {"path": "https://evil.example/api"}, "not a URL"),
    ("dot-dot segment", "api_request", {"path": "/api/v1/namespaces/../../version"}, "'..' segment"),
    ("encoded dot-dot", "api_request", {"path": "/api/v1/%2e%2e/version"}, "'%2e%2e' segment"),
    ("query in path", "api_request", {"path": CM + "?labelSelector=a"}, "with the query option"),
    ("control char in path", "api_request", {"path": "/api/v1/na\tmespaces"}, "control characters"),
    ("query not a mapping", "api_request", {"path": CM, "query": "a=b"}, "query must be a mapping"),
    ("nested query value", "api_request", {"path": CM, "query": {"a": {"b": 1}}}, "must be a string, number"),
    ("body on GET", "api_request", {"path": CM, "body": {"a": 1}}, "GET request cannot carry a body"),
    ("json-patch body not a list", "api_request",
     {"path": OBJ, "method": "PATCH", "content_type": "json-patch", "body": {"op": "add"}},
     "json-patch needs body to be a list"),
    ("merge-patch body a list", "api_request", {"path": OBJ, "method": "PATCH", "body": [1]},
     "merge-patch needs body to be a mapping"),
    ("body not JSON", "api_request", {"path": CM, "method": "POST", "body": "{not json"}, "not valid JSON"),
    ("text body not a string", "api_request",
     {"path": CM, "method": "POST", "content_type": "text", "body": {"a": 1}}, "text needs body to be a string"),
    ("apply-patch with POST", "api_request",
     {"path": CM, "method": "POST", "content_type": "apply-patch", "body": {"metadata": {"name": BAD}}},
     "apply-patch (server-side apply) needs method PATCH"),
    ("force without apply", "api_request",
     {"path": OBJ, "method": "PATCH", "force": True, "body": {"data": {"a": "1"}}}, "force only applies"),
    ("until without watch", "api_request", {"path": CM, "until": "metadata.name"}, "until needs watch: true"),
    ("watch with DELETE", "api_request", {"path": CM, "method": "DELETE", "watch": True}, "watch needs method GET"),
    ("watch on a subresource", "api_request",
     {"path": "/api/v1/namespaces/demo/pods/x/log", "watch": True}, "watch needs a resource path"),
    ("bad JMESPath", "api_request", {"path": CM, "watch": True, "until": "data.[["}, "not a valid JMESPath"),
    ("authorization header", "api_request", {"path": CM, "headers": {"Authorization": "Bearer x"}},
     "header Authorization cannot be set"),
    ("impersonation header", "api_request", {"path": CM, "headers": {"Impersonate-User": "admin"}},
     "header Impersonate-User cannot be set"),
    ("header injection", "api_request", {"path": CM, "headers": {"X-A": "1\r\nX-B: 2"}}, "line break"),
    ("unknown method", "api_request", {"path": CM, "method": "BREW"}, "value of method must be one of"),
    ("unknown option", "api_request", {"path": CM, "colour": "red"}, "Unsupported parameters"),
    ("max_body_bytes zero", "api_request", {"path": CM, "max_body_bytes": 0}, "max_body_bytes must be at least 1"),
    ("negative timeout", "api_request", {"path": CM, "timeout": -1}, "timeout must be at least 0.1"),
    ("host not a URL", "api_request", {"path": "/version", "host": "127.0.0.12:6443"}, "is not an apiserver URL"),
    ("host with credentials", "api_request", {"path": "/version", "host": "https://u:p@127.0.0.12:6443"},
     "must not contain credentials"),
    ("unreachable host", "api_request", {"path": "/version", "host": "https://127.0.0.1:1", "retries": 1},
     "cannot reach the apiserver at 127.0.0.1:1"),
    ("missing CA file", "api_request", {"path": "/version", "ca_cert": "/nonexistent/ca.crt"},
     "CA certificate (ca_cert) /nonexistent/ca.crt does not exist"),
    ("CA not PEM", "api_request", {"path": "/version", "ca_cert": "/etc/hostname"}, "is not a PEM certificate"),
    ("wrong token", "api_request", {"path": "/version", "api_key": "wrong-token-" + BAD},
     "rejected the credentials (401 Unauthorized)"),
    ("client_key without client_cert", "api_request", {"path": "/version", "client_key": "/etc/hostname"},
     "client_key is set without client_cert"),
    ("groups without user", "api_request", {"path": "/version", "impersonate_groups": ["g"]},
     "impersonate_groups needs impersonate_user"),
    ("tls_server_name on http", "api_request",
     {"path": "/version", "host": "http://127.0.0.1:8001", "tls_server_name": "x", "api_key": None, "ca_cert": None},
     "only applies to https"),
    ("unsupported proxy", "api_request", {"path": "/version", "proxy": "socks5://127.0.0.1:1080"}, "is not supported"),
    ("unknown context", "api_request",
     {"path": "/version", "host": None, "api_key": None, "ca_cert": None, "kubeconfig": "{{ kubegate_kubeconfig }}",
      "context": "cluster-z"}, "context 'cluster-z' not found in kubeconfig"),
    ("missing kubeconfig", "api_request",
     {"path": "/version", "host": None, "api_key": None, "ca_cert": None, "kubeconfig": "/nonexistent/kubeconfig"},
     "kubeconfig file not found: /nonexistent/kubeconfig"),
    ("not found", "api_request", {"path": "/api/v1/namespaces/" + BAD}, "not found (404)"),
    ("invalid object", "api_request",
     {"path": CM, "method": "POST", "body": {"metadata": {"name": "Bad_Name"}}}, "rejected the object as invalid (422)"),
    ("service name with slash", "service_proxy", {"namespace": "demo", "service": "echo/x"},
     "is not a valid Kubernetes name"),
    ("service port with colon", "service_proxy", {"namespace": "demo", "service": "echo", "port": "a:b"},
     "must be a port number or a port name"),
    ("service path dot-dot", "service_proxy", {"namespace": "demo", "service": "echo", "path": "/a/../../../api"},
     "'..' segment"),
]


def build_play(lab):
    # results are looked up by task name: two cases with one name would check one case twice and the other never
    assert len({c[0] for c in CASES}) == len(CASES), "case ids must be unique"
    base = conn_token(lab, "cluster-b")
    tasks = []
    for case_id, module, args, _ in CASES:
        merged = dict(base)
        merged.update(args)
        merged = {k: v for k, v in merged.items() if v is not None}
        tasks.append({"name": case_id, "kubegate.multicluster." + module: merged, "ignore_errors": True})
    return [{"name": "bad input", "hosts": "cluster-b", "gather_facts": False, "tasks": tasks}]


@pytest.fixture(scope="module", params=["0", "1"], ids=["controller", "module"])
def bad_run(lab, tmp_path_factory, request):
    run = run_playbook(tmp_path_factory.mktemp("bad"), build_play(lab), env={"KUBEGATE_NO_FASTPATH": request.param})
    yield run
    assert lab.kubectl("cluster-b", "get", "configmap", "-n", "demo", BAD, check=False).returncode != 0
    assert lab.kubectl("cluster-b", "get", "configmap", "-n", "demo", "Bad_Name", check=False).returncode != 0


@pytest.mark.parametrize("case_id,module,args,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_a_specific_error(bad_run, case_id, module, args, expected):
    res = bad_run.result(case_id, "cluster-b")
    assert res["failed"], res
    assert expected in res["msg"], res["msg"]
    assert "Traceback" not in res["msg"] and "unexpected error" not in res["msg"]
    assert res.get("changed") is False


def test_no_traceback_in_output(bad_run):
    assert no_traceback(bad_run.output)
    assert bad_run.rc == 0  # every failure was ignored, the play itself completed

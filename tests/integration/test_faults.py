"""Real faults, proven retries. Why: a retry policy is only believable when the failures are the apiserver's own and
the test can see what the server did.

- 429: API Priority and Fairness on cluster-b. A dedicated ServiceAccount is matched by a FlowSchema whose
  PriorityLevelConfiguration gets no seats (nominalConcurrencyShares 0, no borrowing, limitResponse Reject), so the
  apiserver rejects its every request with 429 + Retry-After; the test gives the level seats while the task retries.
  GET and HEAD are retried and succeed (the answer's X-Kubernetes-PF-FlowSchema-UID proves that flow schema served
  it); a POST is sent exactly once (APF's rejected-request counter moves by one) and, once allowed, creates exactly one
  object.
- 503: the apiserver's service proxy for a Service without endpoints; the Service gets endpoints while GET retries.
- Connection faults: a TCP forward (kgplay.FaultForward) in front of cluster-b goes away and comes back, resets
  connections during the TLS handshake, or resets a connection after the apiserver received the request (its answer
  is lost): idempotent calls recover within the retry budget, a POST is not repeated (exactly one object exists) and
  fails with a message saying so.
- Every retry and give-up is printed at -v (`kubegate: ...; retry N/M in Xs`, `...; giving up ...`), by the controller
  fast path as it happens and by the module path after the task.

All objects are created per test and removed afterwards; nothing of the lab is stopped."""
from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import time
import uuid

import pytest

from kgplay import FaultForward, ServiceAccounts, conn_token, no_traceback, run_playbook, wait_for

CM = "/api/v1/namespaces/demo/configmaps"
NONE = {"labelSelector": "kg-fault=none"}      # reads list nothing (keeps answers small)
B = "https://127.0.0.12:6443"


def task(name, method, path, **args):
    return {"name": name, "kubegate.multicluster.api_request": {"method": method, "path": path, **args},
            "ignore_errors": True}


def play(conn, *tasks):
    return [{"name": "faults", "hosts": "cluster-b", "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": conn}, "tasks": list(tasks)}]


def notes(run, fragment=""):
    """The kubegate notes printed at -v that contain `fragment`."""
    return [line.strip() for line in run.output.splitlines() if "kubegate: " in line and fragment in line]


def labelled(lab, label):
    out = lab.get_json("cluster-b", "get", "configmaps", "-n", "demo", "-l", label)
    return [i["metadata"]["name"] for i in out["items"]]


@pytest.fixture
def label(lab):
    """A label value for the ConfigMaps a test POSTs; whatever carries it is deleted afterwards, pass or fail."""
    value = uuid.uuid4().hex[:8]
    yield value
    lab.kubectl("cluster-b", "delete", "configmap", "-n", "demo", "-l", "kg-fault=" + value, check=False)


def generated_cm(label_value):
    return {"metadata": {"generateName": "kg-fault-", "labels": {"kg-fault": label_value}}, "data": {"a": "1"}}


# ------------------------------------------------------------------------------------------------------------ 429 (APF)
class Throttle:
    """A ServiceAccount that APF on cluster-b throttles for real: its FlowSchema leads to a PriorityLevelConfiguration
    with no seats of its own (nominalConcurrencyShares 0, nothing borrowed, limitResponse Reject), where APF still
    dispatches a request while none of the level's is executing. `tight()` keeps one request of that identity
    executing — a LIST of ~8 MB of ballast ConfigMaps whose reader does not read, so the apiserver's handler blocks
    writing it — and every other request of the identity is rejected with 429 + Retry-After; `open()` drops it."""

    BALLAST = 9     # ConfigMaps of ~900 kB: more than the kernel buffers between the apiserver and the stalled reader

    def __init__(self, lab):
        self.lab = lab
        self.accounts = ServiceAccounts(lab, "cluster-b")
        self.name = "kg-apf-" + uuid.uuid4().hex[:6]
        self.token, (self.user, _) = self.accounts.token(self.name)
        sa = self.user.rsplit(":", 1)[1]
        lab.kubectl("cluster-b", "create", "rolebinding", "-n", "demo", self.name, "--clusterrole=edit",
                    "--serviceaccount=demo:" + sa)
        # HEAD on a non-resource path is RBAC verb "head" (nobody but admins has it by default)
        lab.kubectl("cluster-b", "create", "clusterrole", self.name, "--verb=head", "--non-resource-url=/openapi/v2")
        lab.kubectl("cluster-b", "create", "clusterrolebinding", self.name, "--clusterrole=" + self.name,
                    "--serviceaccount=demo:" + sa)
        rule = {"subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": sa, "namespace": "demo"}}],
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"],
                                   "clusterScope": True}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}
        objs = [{"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
                 "metadata": {"name": self.name},
                 "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 0, "lendablePercent": 0,
                                                         "borrowingLimitPercent": 0,
                                                         "limitResponse": {"type": "Reject"}}}},
                {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": self.name},
                 "spec": {"priorityLevelConfiguration": {"name": self.name}, "matchingPrecedence": 500,
                          "distinguisherMethod": {"type": "ByUser"}, "rules": [rule]}}]
        objs += [{"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "%s-ballast-%d" % (self.name, i), "namespace": "demo",
                               "labels": {"kg-apf-ballast": self.name}},
                  "data": {"ballast": "x" * 900000}} for i in range(self.BALLAST)]
        lab.kubectl("cluster-b", "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                        "items": objs}))
        self.uid = lab.get_json("cluster-b", "get", "flowschema", self.name)["metadata"]["uid"]
        c = lab.clusters["cluster-b"]
        self.conn = {"host": c["server"], "ca_cert": c["ca_file"], "api_key": self.token}
        self.ctx = ssl.create_default_context(cafile=c["ca_file"])
        self.held = None

    def probe(self, method="GET", path=CM + "?labelSelector=kg-fault%3Dnone"):
        conn = http.client.HTTPSConnection("127.0.0.12", 6443, context=self.ctx, timeout=10)
        try:
            conn.request(method, path, headers={"Authorization": "Bearer " + self.token})
            resp = conn.getresponse()
            resp.read()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders())
        finally:
            conn.close()

    def tight(self):
        if self.held is None:
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)    # a reader that does not keep up
            raw.connect(("127.0.0.12", 6443))
            self.held = self.ctx.wrap_socket(raw, server_hostname="127.0.0.12")
            self.held.sendall(("GET %s?labelSelector=kg-apf-ballast%%3D%s HTTP/1.1\r\nHost: 127.0.0.12\r\n"
                               "Authorization: Bearer %s\r\n\r\n" % (CM, self.name, self.token)).encode())
        assert wait_for(lambda: self.probe()[0] == 429, timeout=30), "APF does not reject %s" % self.user

    def open(self):
        if self.held is not None:
            self.held.close()
            self.held = None
        assert wait_for(lambda: self.probe()[0] == 200, timeout=30), "APF still rejects %s" % self.user

    def rejected(self):
        """APF's count of requests it rejected for this flow schema (all reasons)."""
        metrics = self.lab.kubectl("cluster-b", "get", "--raw", "/metrics").stdout
        total = 0.0
        for line in metrics.splitlines():
            if line.startswith("apiserver_flowcontrol_rejected_requests_total{") and \
                    'flow_schema="%s"' % self.name in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def close(self):
        if self.held is not None:
            self.held.close()
        self.lab.kubectl("cluster-b", "delete", "flowschema,prioritylevelconfiguration,clusterrole,clusterrolebinding",
                         self.name,
                         "--ignore-not-found", check=False)
        self.lab.kubectl("cluster-b", "delete", "configmap", "-n", "demo", "-l",
                         "kg-apf-ballast=" + self.name, check=False)
        self.lab.kubectl("cluster-b", "delete", "rolebinding", "-n", "demo", self.name, "--ignore-not-found",
                         check=False)
        self.accounts.close()


@pytest.fixture(scope="module")
def throttle(lab):
    t = Throttle(lab)
    yield t
    t.close()


def open_on_first_retry(throttle):
    """on_line: give the level seats as soon as the task reports its first retry after a 429."""
    state = {"opened": False}

    def on_line(line):
        if not state["opened"] and "kubegate: " in line and "got 429" in line and "retry 1/" in line:
            state["opened"] = True
            throttle.open()
    return on_line


def test_apf_rejects_with_retry_after(throttle):
    throttle.tight()
    status, headers = throttle.probe()
    assert status == 429 and float(headers["retry-after"]) > 0, headers
    assert headers["x-kubernetes-pf-flowschema-uid"] == throttle.uid


@pytest.mark.parametrize("method,path,query", [("GET", CM, NONE), ("HEAD", "/openapi/v2", None)], ids=["GET", "HEAD"])
def test_apf_429_idempotent_calls_are_retried_and_succeed(throttle, tmp_path, method, path, query):
    throttle.tight()
    before = throttle.rejected()
    run = run_playbook(tmp_path, play(throttle.conn, task("read", method, path, query=query, retries=10)), "-v",
                       on_line=open_on_first_retry(throttle))
    res = run.result("read", "cluster-b")
    assert not res["failed"] and res["status"] == 200, res.get("msg")
    # served by the dedicated flow schema, after the apiserver really rejected it at least once
    assert res["headers"]["x-kubernetes-pf-flowschema-uid"] == throttle.uid
    assert throttle.rejected() - before >= 1
    retry = notes(run, "%s %s got 429 Too Many Requests (Retry-After: " % (method, path))
    assert retry and re.search(r"; retry 1/10 in \d+\.\ds$", retry[0]), run.output[-3000:]
    assert B in retry[0] and not notes(run, "giving up")


def test_apf_429_post_is_sent_once_and_creates_exactly_one_object(lab, throttle, tmp_path, label):
    create = task("create", "POST", CM, body=generated_cm(label), retries=10)
    throttle.tight()
    before = throttle.rejected()
    started = time.monotonic()
    run = run_playbook(tmp_path, play(throttle.conn, create), "-v")
    res = run.result("create", "cluster-b")
    assert res["failed"] and res["status"] == 429, res
    assert "too many requests (429) for POST %s" % CM in res["msg"]
    assert throttle.rejected() - before == 1                     # the apiserver saw it once: no retry
    assert notes(run, "POST %s got 429 Too Many Requests" % CM)[0].endswith(
        "POST is not idempotent, so it is never retried")
    assert not notes(run, "retry 1/") and time.monotonic() - started < 60
    assert labelled(lab, "kg-fault=" + label) == []
    throttle.open()
    run = run_playbook(tmp_path, play(throttle.conn, create), "-v")
    assert run.result("create", "cluster-b")["status"] == 201
    made = labelled(lab, "kg-fault=" + label)
    assert len(made) == 1, made


def test_apf_429_give_up_is_visible_through_the_module_too(throttle, tmp_path):
    throttle.tight()
    before = throttle.rejected()
    run = run_playbook(tmp_path, play(throttle.conn, task("read", "GET", CM, query=NONE, retries=1)), "-v",
                       env={"KUBEGATE_NO_FASTPATH": "1"})
    res = run.result("read", "cluster-b")
    assert res["failed"] and res["status"] == 429 and "still throttled after retries" in res["msg"], res
    assert throttle.rejected() - before == 2, run.output      # the first attempt and one retry, nothing else
    retry = notes(run, "GET %s got 429 Too Many Requests (Retry-After: " % CM)
    assert retry and "; retry 1/1 in " in retry[0], run.output[-3000:]
    assert notes(run, "giving up after 1 retry (retries option)")
    assert "_kubegate_notes" not in run.output
    assert no_traceback(run.output)


# ------------------------------------------------------------------------------------------------------------------ 503
@pytest.fixture
def endpointless(lab):
    """A Service like demo/echo whose selector matches nothing: the apiserver's proxy answers 503."""
    name = "kg-flaky-" + uuid.uuid4().hex[:6]
    svc = lab.get_json("cluster-b", "get", "service", "-n", "demo", "echo")
    spec = {"selector": {"app": "kg-nothing"}, "ports": [{k: p[k] for k in ("name", "port", "targetPort", "protocol")}
                                                         for p in svc["spec"]["ports"]]}
    lab.kubectl("cluster-b", "apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "demo"}, "spec": spec}))
    yield name, svc["spec"]["selector"]
    lab.kubectl("cluster-b", "delete", "service", "-n", "demo", name, "--ignore-not-found", check=False)


def test_503_get_recovers_when_the_service_gets_endpoints_and_post_is_not_retried(lab, tmp_path, endpointless):
    name, selector = endpointless
    path = "/api/v1/namespaces/demo/services/%s:http/proxy/kg-fault" % name
    conn = conn_token(lab, "cluster-b")
    run = run_playbook(tmp_path, play(conn, task("post", "POST", path, body={"a": 1}, retries=5)), "-v")
    post = run.result("post", "cluster-b")
    assert post["failed"] and post["status"] == 503 and "no ready endpoints" in post["msg"], post
    assert notes(run, "POST %s got 503" % path)[0].endswith("POST is not idempotent, so it is never retried")
    assert not notes(run, "retry 1/")
    state = {"fixed": False}

    def on_line(line):
        if not state["fixed"] and "kubegate: " in line and "got 503" in line and "retry 1/" in line:
            state["fixed"] = True
            lab.kubectl("cluster-b", "patch", "service", "-n", "demo", name, "--type=merge", "-p",
                        json.dumps({"spec": {"selector": selector}}))
    run = run_playbook(tmp_path, play(conn, task("get", "GET", path, retries=8)), "-v", on_line=on_line)
    res = run.result("get", "cluster-b")
    assert not res["failed"] and res["status"] == 200, res.get("msg")
    assert res["json"]["cluster"] == "cluster-b" and res["json"]["path"].endswith("/kg-fault")
    assert state["fixed"] and notes(run, "GET %s got 503 Service Unavailable; retry 1/8" % path)


# ---------------------------------------------------------------------------------------------- connection faults
@pytest.fixture
def flaky(lab):
    fwd = FaultForward("127.0.0.5", ("127.0.0.12", 6443))
    conn = {**conn_token(lab, "cluster-b"), "host": "https://127.0.0.5:%d" % fwd.port, "tls_server_name": "cluster-b"}
    yield fwd, conn
    fwd.close()


def test_apiserver_away_and_back_get_recovers(tmp_path, flaky):
    fwd, conn = flaky
    fwd.go_away()
    state = {"back": False}

    def on_line(line):
        if not state["back"] and "could not connect (connection refused); retry 1/" in line:
            state["back"] = True
            fwd.come_back()
    run = run_playbook(tmp_path, play(conn, task("get", "GET", CM, query=NONE, retries=6)), "-v", on_line=on_line)
    res = run.result("get", "cluster-b")
    assert not res["failed"] and res["status"] == 200 and "items" in res["json"], res.get("msg")
    assert state["back"] and fwd.requests == 1, (fwd.requests, notes(run))


def test_resets_during_the_tls_handshake_are_retried_within_the_budget(tmp_path, flaky):
    fwd, conn = flaky
    fwd.reset_handshakes = 2
    run = run_playbook(tmp_path, play(conn, task("get", "GET", CM, query=NONE, retries=3)), "-v")
    res = run.result("get", "cluster-b")
    assert not res["failed"] and res["status"] == 200, res.get("msg")
    assert len(notes(run, "could not connect (connection reset during the TLS handshake); retry")) == 2
    assert fwd.reset_handshakes == 0 and fwd.requests == 1
    # beyond the budget: a clear failure and a visible give-up
    fwd.reset_handshakes = 10
    run = run_playbook(tmp_path, play(conn, task("get", "GET", CM, query=NONE, retries=2)), "-v")
    res = run.result("get", "cluster-b")
    assert res["failed"] and "cannot reach the apiserver at 127.0.0.5:%d" % fwd.port in res["msg"], res
    assert "connection reset" in res["msg"]
    assert notes(run, "giving up after 2 retries (retries option)")
    fwd.reset_handshakes = 0


def test_lost_answer_get_is_retried_post_is_not_and_exists_once(lab, tmp_path, flaky, label):
    fwd, conn = flaky
    fwd.reset_after_request = 1
    run = run_playbook(tmp_path, play(conn, task("get", "GET", CM, query=NONE, retries=3)), "-v")
    res = run.result("get", "cluster-b")
    assert not res["failed"] and res["status"] == 200, res.get("msg")
    assert notes(run, "GET %s lost the connection (" % CM) and fwd.requests == 2
    fwd.reset_after_request = 1
    run = run_playbook(tmp_path, play(conn, task("create", "POST", CM, body=generated_cm(label), retries=3)), "-v")
    res = run.result("create", "cluster-b")
    assert res["failed"] and "broke during POST %s" % CM in res["msg"], (fwd.requests, run.output[-3000:])
    assert "not retried because POST is not idempotent: check on the cluster whether the change was applied" \
        in res["msg"]
    assert notes(run, "POST %s lost the connection" % CM)[0].endswith("POST is not idempotent, so it is never retried")
    assert fwd.requests == 3                                   # the POST reached the apiserver once...
    made = labelled(lab, "kg-fault=" + label)
    assert len(made) == 1, made                                # ...which created exactly one object
    assert no_traceback(run.output)

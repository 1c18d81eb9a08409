"""roles/gateway (playbooks/gateway.yml): the pass-through gateway as a real nginx instance on the controller, in
front of the lab's three clusters (cluster-c through its tunnel service kubegate-tunnel@gw-c, installed by the
ssh_tunnel role on the real systemd tunnel host, through the edge host)."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import secrets
import shutil
import ssl
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from kgplay import no_traceback, run_playbook, token, wait_for
from kgtest import REPO

sys.path.insert(0, str(REPO / "lab"))
from kglab.gateway import LabGateway  # noqa: E402

NS = "kg-gateway-test"
PLAYBOOK = (REPO / "playbooks" / "gateway.yml").read_text()


class Gateway:
    """One running lab gateway plus everything needed to call it and to re-run the role."""

    def __init__(self, lab, tmp, cluster_c_url):
        self.lab = lab
        self.tmp = tmp
        self.nginx = LabGateway("gateway-test-%d" % os.getpid()).prepare()
        self.tokens = {name: secrets.token_urlsafe(32) for name in ("acme-ci", "alice", "bob")}
        self.carol_cert = self.nginx.issue_caller_cert("carol")
        self.cluster_tokens = {c: token(lab, c) for c in ("cluster-a", "cluster-b", "cluster-c")}
        self.callers = [
            {"name": "acme-ci", "tenants": ["acme"], "token": self.tokens["acme-ci"]},
            {"name": "alice", "tenants": ["acme"], "token": self.tokens["alice"],
             "impersonate": {"user": "alice", "groups": ["kg-gw-devs", "kg-gw-oncall"]}},
            {"name": "bob", "tenants": ["globex"], "token": self.tokens["bob"]},
            {"name": "carol", "tenants": ["acme"], "client_cert": True},
        ]
        self.cluster_c_url = cluster_c_url
        self.runs = []

    def inventory(self, callers=None, overrides=None, extra_hosts=None, **gateway_vars):
        clusters = {"kg_extra": dict(extra_hosts or {})}
        for name, c in self.lab.clusters.items():
            hv = {"kubegate_tenant": c["tenant"], "kubegate_host": c["server"], "kubegate_ca_cert": c["ca_file"],
                  "kubegate_tls_server_name": name, "kubegate_gateway_token": self.cluster_tokens[name]}
            if name == "cluster-c":
                hv["kubegate_gateway_server"] = self.cluster_c_url
            for key, value in (overrides or {}).get(name, {}).items():
                if value is None:
                    hv.pop(key, None)
                else:
                    hv[key] = value
            clusters.setdefault(c["tenant"], {})[name] = hv
        gw = dict(self.nginx.role_vars(), gateway_callers=self.callers if callers is None else callers)
        gw.update(gateway_vars)
        inv = {"all": {"vars": {"ansible_connection": "local",
                                "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                       "children": {"kubegate_gateway": {"hosts": {"gateway-lab": gw}},
                                    **{t: {"hosts": hosts} for t, hosts in clusters.items() if hosts}}}}
        path = self.tmp / ("inventory-%d.yml" % len(self.runs))
        path.write_text(yaml.safe_dump(inv))
        path.chmod(0o600)
        return path

    def play(self, *args, env=None, **inventory_args):
        run = run_playbook(self.tmp, PLAYBOOK, *args, inventory=self.inventory(**inventory_args),
                           playbook_name="gateway.yml", env=env)
        self.runs.append(run)
        return run

    # ---- requests --------------------------------------------------------------------------------------------
    def context(self, cert=None):
        ctx = ssl.create_default_context(cafile=self.nginx.ca_file)
        if cert:
            ctx.load_cert_chain(*cert)
        return ctx

    def conn(self, cert=None, timeout=30):
        return http.client.HTTPSConnection(self.nginx.host, self.nginx.port, context=self.context(cert),
                                           timeout=timeout)

    def request(self, method, path, caller=None, body=None, headers=None, cert=None, auth=None):
        h = dict(headers or {})
        if caller:
            h["Authorization"] = "Bearer " + self.tokens[caller]
        if auth is not None:
            h["Authorization"] = auth
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        conn = self.conn(cert)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, data, dict(resp.getheaders())
        finally:
            conn.close()

    def json(self, method, path, caller="acme-ci", **kw):
        status, data, _ = self.request(method, path, caller, **kw)
        return status, json.loads(data) if data else None

    def kubeconfig(self, tenant, cluster, caller):
        path = self.tmp / ("kubeconfig-%s-%s-%s" % (tenant, cluster, caller))
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "gw",
            "clusters": [{"name": "gw", "cluster": {
                "server": "%s/tenants/%s/clusters/%s" % (self.nginx.url, tenant, cluster),
                "certificate-authority": self.nginx.ca_file}}],
            "users": [{"name": caller, "user": {"token": self.tokens[caller]}}],
            "contexts": [{"name": "gw", "context": {"cluster": "gw", "user": caller}}]}))
        path.chmod(0o600)
        return path

    def kubectl(self, tenant, cluster, caller, *args, timeout=60):
        env = dict(os.environ, KUBECONFIG="/nonexistent", HOME=str(self.tmp))
        return subprocess.run([self.lab.kubectl_bin, "--kubeconfig", str(self.kubeconfig(tenant, cluster, caller)),
                               *args], capture_output=True, text=True, timeout=timeout, env=env)

    def served_config(self):
        out = subprocess.run(["curl", "-s", "--unix-socket", str(self.nginx.health_socket),
                              "http://localhost/kubegate-gateway/config"], capture_output=True, text=True)
        return out.stdout.strip()

    def audit(self, until=None):
        """The audit log's lines; with `until`, wait (nginx writes a line after the response) until one matches."""
        def lines():
            return [json.loads(line) for line in self.nginx.audit_log.read_text().splitlines() if line.strip()]
        if until is None:
            return lines()
        found = wait_for(lambda: [a for a in lines() if until(a)], timeout=10)
        assert found, "no audit line matched"
        return found

    def files(self):
        """{path: sha256} of everything the role manages."""
        out = {}
        for base in (self.nginx.conf_dir, self.nginx.data_dir):
            for p in sorted(base.rglob("*")):
                if p.is_file():
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        return out


@pytest.fixture(scope="module")
def gw(lab, cluster_c_tunnel_service, tmp_path_factory):
    g = Gateway(lab, tmp_path_factory.mktemp("gateway"), cluster_c_tunnel_service)
    g.nginx.start()
    for c in ("cluster-a", "cluster-b"):
        lab.kubectl(c, "create", "namespace", NS, check=False)
    try:
        first = g.play()
        assert first.rc == 0, first.output[-5000:]
        yield g
    finally:
        g.nginx.stop()
        for c in ("cluster-a", "cluster-b"):
            lab.kubectl(c, "delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)
        shutil.rmtree(g.nginx.dir, ignore_errors=True)


def base(tenant, cluster):
    return "/tenants/%s/clusters/%s" % (tenant, cluster)


# ---- the pass-through itself --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cluster", ["cluster-a", "cluster-b"])
def test_get_post_patch_delete_keep_method_body_and_query(gw, lab, cluster):
    b = base("acme", cluster)
    status, version = gw.json("GET", b + "/version")
    assert status == 200 and version["gitVersion"] == lab.get_json(cluster, "version")["serverVersion"]["gitVersion"]
    name = "kg-gw-" + uuid.uuid4().hex[:8]
    cms = b + "/api/v1/namespaces/%s/configmaps" % NS
    payload = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"kg-gw": name}},
               "data": {"text": "line 1\nline 2 ü", "json": '{"a": [1, 2]}'}}
    status, created = gw.json("POST", cms, body=payload)
    assert status == 201 and created["data"] == payload["data"]
    # read back directly from the cluster: the body arrived unchanged
    direct = lab.get_json(cluster, "get", "configmap", "-n", NS, name)
    assert direct["data"] == payload["data"]
    # the query string is kept (label selector, field selector with an encoded '=')
    status, listed = gw.json("GET", cms + "?labelSelector=kg-gw%3D" + name + "&fieldSelector=metadata.name%3D" + name)
    assert status == 200 and [i["metadata"]["name"] for i in listed["items"]] == [name]
    status, patched = gw.json("PATCH", cms + "/" + name, body=json.dumps({"data": {"text": "patched"}}),
                              headers={"Content-Type": "application/merge-patch+json"})
    assert status == 200 and patched["data"]["text"] == "patched" and patched["data"]["json"] == '{"a": [1, 2]}'
    assert lab.get_json(cluster, "get", "configmap", "-n", NS, name)["data"]["text"] == "patched"
    status, _ = gw.json("DELETE", cms + "/" + name)
    assert status == 200
    status, gone = gw.json("GET", cms + "/" + name)
    assert status == 404 and gone["reason"] == "NotFound" and gone["details"]["name"] == name
    # nothing redirected, and the audit log has every step with the cluster's own status codes
    def mine(a):
        return a["cluster"] == cluster and a["caller"] == "acme-ci" and (
            name in a["path"] or (a["path"].endswith("/configmaps") and a["method"] == "POST"))
    expected = {("POST", 201), ("PATCH", 200), ("DELETE", 200), ("GET", 404)}
    assert wait_for(lambda: {(a["method"], a["status"]) for a in gw.audit() if mine(a)} >= expected, timeout=10)


def test_watch_streams_events_without_ending(gw, lab):
    b = base("acme", "cluster-a")
    cms = b + "/api/v1/namespaces/%s/configmaps" % NS
    status, listed = gw.json("GET", cms)
    assert status == 200
    rv = listed["metadata"]["resourceVersion"]
    conn = gw.conn(timeout=60)
    conn.request("GET", cms + "?watch=1&resourceVersion=" + rv,
                 headers={"Authorization": "Bearer " + gw.tokens["acme-ci"]})
    resp = conn.getresponse()
    assert resp.status == 200
    events = queue.Queue()

    def reader():
        try:
            for line in resp:
                events.put(json.loads(line))
        except (OSError, ValueError):
            pass
        events.put(None)
    threading.Thread(target=reader, daemon=True).start()
    name = "kg-gw-watch-" + uuid.uuid4().hex[:6]
    lab.kubectl("cluster-a", "create", "configmap", name, "-n", NS, "--from-literal=k=v")
    seen = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ev = events.get(timeout=max(0.1, deadline - time.monotonic()))
        assert ev is not None, "the watch ended before the event arrived"
        if ev["object"]["metadata"]["name"] == name:
            seen = ev
            break
    assert seen and seen["type"] == "ADDED"
    # still streaming: a second change arrives on the same response
    lab.kubectl("cluster-a", "delete", "configmap", name, "-n", NS)
    ev = events.get(timeout=30)
    while ev is not None and ev["object"]["metadata"]["name"] != name:
        ev = events.get(timeout=30)
    assert ev is not None and ev["type"] == "DELETED"
    assert not resp.isclosed()
    conn.close()


def test_kubectl_get_and_exec_with_the_gateway_as_server(gw, lab):
    pods = lab.ingress_pods("cluster-b")
    got = gw.kubectl("acme", "cluster-b", "acme-ci", "get", "pods", "-n", "ingress-nginx", "-o", "name")
    assert got.returncode == 0, got.stderr
    assert sorted(line.split("/", 1)[1] for line in got.stdout.split()) == pods
    ex = gw.kubectl("acme", "cluster-b", "acme-ci", "exec", "-n", "ingress-nginx", pods[0], "--",
                    "sh", "-c", "echo kg-gw-exec-out; echo kg-gw-exec-err >&2; exit 3")
    assert ex.returncode == 3, ex.stderr
    assert ex.stdout.strip() == "kg-gw-exec-out" and "kg-gw-exec-err" in ex.stderr
    # the exec was a websocket upgrade through the gateway (101), not a fallback
    assert gw.audit(until=lambda a: a["cluster"] == "cluster-b" and a["status"] == 101 and "/exec" in a["path"])


def test_service_proxy_through_the_gateway(gw):
    b = base("acme", "cluster-a") + "/api/v1/namespaces/demo/services/echo:http/proxy"
    status, echo = gw.json("POST", b + "/kg/path?x=1&y=%C3%BC", body={"hello": "gateway"})
    assert status == 200, echo
    assert echo["cluster"] == "cluster-a" and echo["method"] == "POST" and echo["path"] == "/kg/path"
    assert echo["query"] == "x=1&y=%C3%BC" and json.loads(echo["body"]) == {"hello": "gateway"}
    # the backend sees neither the caller's token nor the cluster's
    blob = json.dumps(echo)
    assert gw.tokens["acme-ci"] not in blob and gw.cluster_tokens["cluster-a"] not in blob
    status, echo = gw.json("GET", base("acme", "cluster-b") + "/api/v1/namespaces/demo/services/https:echo:https/proxy/s")
    assert status == 200 and echo["cluster"] == "cluster-b" and echo["scheme"] == "https"


def test_cluster_c_through_its_tunnel_service_with_tls_verified(gw, lab):
    status, version = gw.json("GET", base("globex", "cluster-c") + "/version", caller="bob")
    assert status == 200
    assert version["gitVersion"] == lab.get_json("cluster-c", "version")["serverVersion"]["gitVersion"]
    got = gw.kubectl("globex", "cluster-c", "bob", "get", "namespace", "demo", "-o", "name")
    assert got.returncode == 0 and got.stdout.strip() == "namespace/demo", got.stderr


def test_upstream_tls_is_verified(gw, lab):
    """With the wrong CA (or the wrong server name) for a cluster, the gateway refuses to talk to it: 502."""
    before = gw.served_config()
    wrong = gw.play(overrides={"cluster-b": {"kubegate_ca_cert": lab.clusters["cluster-a"]["ca_file"]},
                               "cluster-c": {"kubegate_tls_server_name": "not-cluster-c"}})
    try:
        assert wrong.rc == 0, wrong.output[-3000:]
        assert gw.served_config() != before
        assert gw.request("GET", base("acme", "cluster-b") + "/version", "acme-ci")[0] == 502
        assert gw.request("GET", base("globex", "cluster-c") + "/version", "bob")[0] == 502
        assert gw.request("GET", base("acme", "cluster-a") + "/version", "acme-ci")[0] == 200
        error_log = (gw.nginx.dir / "logs" / "error.log").read_text()
        assert "upstream SSL certificate verify error" in error_log or "certificate verify failed" in error_log
    finally:
        back = gw.play()
        assert back.rc == 0, back.output[-3000:]
    assert gw.served_config() == before
    assert gw.request("GET", base("acme", "cluster-b") + "/version", "acme-ci")[0] == 200


# ---- who may call what ----------------------------------------------------------------------------------------------
def test_missing_or_wrong_caller_credential_is_401(gw, lab):
    path = base("acme", "cluster-a") + "/version"
    c = lab.clusters["cluster-a"]
    cases = {
        "missing": {},
        "wrong token": {"auth": "Bearer " + secrets.token_urlsafe(32)},
        "a cluster token": {"auth": "Bearer " + gw.cluster_tokens["cluster-a"]},
        "basic": {"auth": "Basic YWxpY2U6c2VjcmV0"},
        "token of another caller with garbage": {"auth": "Bearer " + gw.tokens["alice"] + "x"},
        "wrong token with a valid certificate": {"auth": "Bearer nope-nope-nope-nope", "cert": gw.carol_cert},
        "certificate from another CA": {"cert": (c["client_cert_file"], c["client_key_file"])},
    }
    for label, kw in cases.items():
        status, data, _ = gw.request("GET", path, **kw)
        assert status == 401, label
        assert json.loads(data)["reason"] == "Unauthorized", label
    # no enumeration without a credential either: unknown places answer 401 too
    assert gw.request("GET", "/tenants/nope/clusters/nope/version")[0] == 401
    assert gw.request("GET", "/")[0] == 401
    # the right credentials work: token (any case of the scheme) and client certificate
    assert gw.request("GET", path, auth="bearer " + gw.tokens["acme-ci"])[0] == 200
    status, data, _ = gw.request("GET", path, cert=gw.carol_cert)
    assert status == 200 and json.loads(data)["gitVersion"]
    assert gw.audit(until=lambda a: a["caller"] == "carol" and a["status"] == 200)


def test_cross_tenant_and_unknown_are_the_same_404(gw):
    def answer(path, **kw):
        status, data, headers = gw.request("GET", path, **kw)
        headers.pop("Date", None)
        return status, data, headers
    reference = answer("/tenants/nope/clusters/nope/version", caller="bob")
    assert reference[0] == 404
    for path in [base("acme", "cluster-a") + "/version",                 # another tenant's cluster
                 base("acme", "cluster-b"),                              # ... its bare prefix (no redirect)
                 base("globex", "cluster-a") + "/version",               # a cluster under the wrong tenant
                 base("globex", "nope") + "/version",                    # unknown cluster of bob's tenant
                 "/tenants/globex/clusters/%63luster-c/version",         # encoded name
                 base("globex", "cluster-c") + "/../../../acme/clusters/cluster-a/version",  # dot segments
                 "/api/v1/namespaces"]:
        assert answer(path, caller="bob") == reference, path
    for path in [base("globex", "cluster-c") + "/version", "/tenants/nope/clusters/nope/version"]:
        assert answer(path, caller="acme-ci") == reference, path
    # bob's own cluster works, and the bare prefix is proxied to the apiserver root (no redirect)
    assert gw.request("GET", base("globex", "cluster-c") + "/version", "bob")[0] == 200
    status, data, _ = gw.request("GET", base("globex", "cluster-c") + "?x=1", "bob")
    assert status == 200 and "/version" in json.loads(data)["paths"]


def test_impersonation_the_cluster_sees_the_caller(gw, lab):
    who = gw.kubectl("acme", "cluster-a", "alice", "auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    user = json.loads(who.stdout)["status"]["userInfo"]
    assert user["username"] == "alice" and {"kg-gw-devs", "kg-gw-oncall"} <= set(user["groups"])
    assert "extra" not in user
    # the member cluster's RBAC applies to alice, not to the gateway's credential
    denied = gw.kubectl("acme", "cluster-a", "alice", "get", "secrets", "-n", "kube-system")
    assert denied.returncode != 0 and 'User "alice" cannot list resource "secrets"' in denied.stderr
    # a caller cannot choose whom to impersonate: Impersonate-User/Group/Uid are refused ...
    selfreview = base("acme", "cluster-a") + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    for header in ("Impersonate-User", "Impersonate-Group", "Impersonate-Uid"):
        status, data = gw.json("POST", selfreview, caller="alice", body=body, headers={header: "system:admin"})
        assert status == 403 and "Impersonate-* headers are not accepted" in data["message"], header
    # ... and any other header (Impersonate-Extra-*, X-Remote-*) never reaches the cluster
    sneaky = {"Impersonate-Extra-Scopes": "all", "X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}
    for caller, expected in (("alice", "alice"), ("acme-ci", "system:serviceaccount:kube-system:kubegate-lab-admin")):
        status, data = gw.json("POST", selfreview, caller=caller, body=body, headers=sneaky)
        assert status == 201, data
        info = data["status"]["userInfo"]
        assert info["username"] == expected and "system:masters" not in info.get("groups", [])
        # (a ServiceAccount token carries its own credential-id extra; nothing the caller sent is there)
        assert not [k for k in info.get("extra", {}) if "scopes" in k.lower()], info


# ---- secrets, audit, updates ----------------------------------------------------------------------------------------
def test_tokens_never_reach_responses_logs_or_diffs(gw):
    secrets_all = list(gw.tokens.values()) + list(gw.cluster_tokens.values())
    seen = []
    for caller, path in [("acme-ci", base("acme", "cluster-a") + "/version"),
                         ("acme-ci", base("acme", "cluster-a") + "/api/v1/namespaces/nope/configmaps/x"),
                         ("acme-ci", base("acme", "cluster-a") + "/api/v1/namespaces/demo/services/echo:http/proxy/h"),
                         ("bob", base("acme", "cluster-a") + "/version"), (None, "/x")]:
        status, data, headers = gw.request("GET", path, caller)
        seen.append(data.decode() + json.dumps(headers))
    blob = "\n".join(seen)
    assert not [s for s in secrets_all if s in blob]
    gw.audit(until=lambda a: a["path"] == "/x" and a["status"] == 401)
    audit_text = gw.nginx.audit_log.read_text()
    assert not [s for s in secrets_all if s in audit_text]
    for line in gw.audit():
        assert {"time", "caller", "tenant", "cluster", "method", "path", "status", "bytes", "duration"} <= set(line)
        assert "Bearer" not in json.dumps(line)
    error_log = (gw.nginx.dir / "logs" / "error.log").read_text()
    assert not [s for s in secrets_all if s in error_log]
    site = (gw.nginx.conf_dir / "kubegate-gateway.conf").read_text()
    assert not [s for s in secrets_all if s in site]
    assert stat.S_IMODE((gw.nginx.data_dir / "secrets.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE(gw.nginx.data_dir.stat().st_mode) == 0o700
    # a check-mode diff run with a new caller, at full verbosity, shows the site change but no secret
    new_token = secrets.token_urlsafe(32)
    run = gw.play("--check", "--diff", "-vvvv",
                  callers=gw.callers + [{"name": "dave", "tenants": ["acme"], "token": new_token}])
    assert run.rc == 0, run.output[-3000:]
    assert '"dave:acme" 1;' in run.output
    assert not [s for s in secrets_all + [new_token] if s in run.output]
    assert no_traceback(run.output)


def test_idempotent_and_check_mode_changes_nothing(gw):
    files, served = gw.files(), gw.served_config()
    again = gw.play()
    assert again.rc == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
    assert gw.files() == files
    check = gw.play("--check", "--diff", callers=gw.callers[:2])
    assert check.rc == 0, check.output[-3000:]
    assert "changed=" in check.stdout and "changed=0" not in check.stdout
    assert '-    "bob:globex" 1;' in check.stdout
    assert gw.files() == files and gw.served_config() == served


def test_failing_nginx_t_keeps_the_previous_gateway_serving(gw, tmp_path, lab):
    files, served = gw.files(), gw.served_config()
    bad_ca = tmp_path / "not-a-ca.crt"
    bad_ca.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    new_token = secrets.token_urlsafe(32)
    run = gw.play(overrides={"cluster-b": {"kubegate_ca_cert": str(bad_ca)}},
                  callers=gw.callers + [{"name": "erin", "tenants": ["acme"], "token": new_token}])
    assert run.rc != 0
    assert "nginx -t rejected the new gateway configuration" in run.output and "not-a-ca" not in run.output
    assert "The gateway configuration was NOT updated" in run.output and "nginx was not reloaded" in run.output
    assert no_traceback(run.output) and new_token not in run.output
    # the previous files are back (no leftovers, no backups) and nginx still serves the previous configuration
    assert gw.files() == files and gw.served_config() == served
    assert not list(gw.nginx.conf_dir.glob("*~")) and not list(gw.nginx.data_dir.rglob("*~"))
    assert gw.request("GET", base("acme", "cluster-b") + "/version", "acme-ci")[0] == 200
    assert gw.request("GET", base("acme", "cluster-a") + "/version", auth="Bearer " + new_token)[0] == 401
    # and a reload now still works with what is on disk
    subprocess.run(gw.nginx.reload_command(), check=True, capture_output=True)
    assert wait_for(lambda: gw.request("GET", base("acme", "cluster-b") + "/version", "acme-ci")[0] == 200)


def test_bad_input_fails_clearly_and_changes_nothing(gw, lab):
    files = gw.files()
    run = gw.play(callers=[{"name": "Bad Name", "tenants": ["acme"], "token": "short"},
                           {"name": "frank", "tenants": "acme"}],
                  overrides={"cluster-c": {"kubegate_gateway_server": "http://127.0.0.1:1"},
                             "cluster-a": {"kubegate_gateway_token": "bad token with spaces 0123456789"}},
                  gateway_forward_headers=["Accept", "Impersonate-Extra-Scopes"])
    assert run.rc != 0 and no_traceback(run.output)
    out = run.output
    for expected in ['gateway-lab: gateway_callers[0]: caller name "Bad Name" must be',
                     "caller frank (gateway_callers[1]): tenants must be a non-empty list",
                     'cluster-c: kubegate_gateway_server "http://127.0.0.1:1" must be https://HOST[:PORT]',
                     "cluster-a: the bearer token (kubegate_gateway_token) has characters",
                     'gateway-lab: gateway_forward_headers: "Impersonate-Extra-Scopes" cannot be forwarded']:
        assert expected in out, expected
    assert "bad token with spaces" not in out
    # the lab inventory's cluster-c (kubegate_jump, no tunnel address) is refused with what to do
    run = gw.play(overrides={"cluster-c": {"kubegate_jump": {"host": "198.18.2.2"}, "kubegate_gateway_server": None}})
    assert run.rc != 0 and "cluster-c: reached through kubegate_jump" in run.output
    assert gw.files() == files


# ---- every inventory value that reaches an nginx file is checked (issue 11) -----------------------------------------
def assert_unchanged_and_serving(gw, files, served):
    """Nothing was written, nginx still serves the previous configuration, and a real request still works."""
    assert gw.files() == files
    assert gw.served_config() == served
    status, data, _ = gw.request("GET", base("acme", "cluster-a") + "/version", "acme-ci")
    assert status == 200 and json.loads(data)["gitVersion"]


def test_upstream_tls_verification_cannot_be_switched_off_through_a_server_name(gw):
    """The issue's reproduction: this value used to pass nginx -t and be served, turning verification off."""
    files, served = gw.files(), gw.served_config()
    run = gw.play(overrides={"cluster-a": {"kubegate_tls_server_name": "cluster-a; proxy_ssl_verify off"}})
    assert run.rc != 0 and no_traceback(run.output)
    assert "nothing was changed" in run.output
    assert 'cluster-a: kubegate_tls_server_name "cluster-a; proxy_ssl_verify off" must be the DNS name' in run.output
    assert "proxy_ssl_verify off" not in (gw.nginx.conf_dir / "kubegate-gateway.conf").read_text()
    assert_unchanged_and_serving(gw, files, served)


LONG = "a" * 300
# (kind, variable, value): kind "cluster" puts the value on an extra cluster host, "gateway" on the gateway host,
# "caller" into one caller's entry. Hosts and values are spread over two runs (a gateway variable holds one value).
HOSTILE = [
    ("cluster", "kubegate_tls_server_name", "cluster-a; proxy_ssl_verify off"),
    ("cluster", "kubegate_tls_server_name", "cluster-a\n    proxy_ssl_verify off"),
    ("cluster", "kubegate_tls_server_name", "$host"),
    ("cluster", "kubegate_tls_server_name", "cluster-a#"),
    ("cluster", "kubegate_tls_server_name", "clüster-a"),
    ("cluster", "kubegate_tls_server_name", LONG),
    ("cluster", "kubegate_gateway_tls_server_name", '"cluster-a"'),
    ("cluster", "kubegate_gateway_tls_server_name", "cluster-a}"),
    ("cluster", "kubegate_tenant", "acme; ssl_engine evil"),
    ("cluster", "kubegate_tenant", "acme}"),
    ("cluster", "kubegate_tenant", "acme tenant"),
    ("cluster", "kubegate_tenant", "äcme"),
    ("cluster", "kubegate_host", "https://127.0.0.1:6443;"),
    ("cluster", "kubegate_host", "https://127.0.0.1:6443/ { }"),
    ("cluster", "kubegate_host", "https://evil$host:443"),
    ("cluster", "kubegate_host", "https://127.0.0.1:99999"),
    ("cluster", "kubegate_host", "https://127.0.0.1:6443#x"),
    ("cluster", "kubegate_gateway_server", "https://'127.0.0.1':6443"),
    ("cluster", "kubegate_gateway_server", "https://127.0.0.1\n:6443"),
    ("cluster", "kubegate_ca_cert", "/tmp/ca.crt; ssl_engine evil"),
    ("cluster", "kubegate_ca_cert", "/tmp/{ca}.crt"),
    ("cluster", "kubegate_gateway_ca_cert", "/tmp/ca .crt"),
    ("gateway", "gateway_server_name", "_; ssl_engine evil"),
    ("gateway", "gateway_server_name", "~^(?<x>.*)$"),
    ("gateway", "gateway_tls_cert", "/etc/ssl/gw.crt;\nssl_engine evil"),
    ("gateway", "gateway_tls_key", "/etc/ssl/private/k ey"),
    ("gateway", "gateway_caller_ca", '/etc/ssl/"ca".crt'),
    ("gateway", "gateway_audit_log", "/var/log/a.log kubegate_gateway_audit; access_log /tmp/x"),
    ("gateway", "gateway_audit_log", "/var/log/ä.log"),
    ("gateway", "gateway_data_dir", "/etc/nginx/kg#x"),
    ("gateway", "gateway_conf_dir", "/etc/nginx/conf.d/../../tmp"),
    ("gateway", "gateway_health_socket", "/run/x.sock; listen 0.0.0.0:80"),
    ("gateway", "gateway_health_socket", "/run/" + LONG + ".sock"),
    ("gateway", "gateway_site_name", "../evil"),
    ("gateway", "gateway_site_name", "site name"),
    ("gateway", "gateway_client_max_body_size", "4m; ssl_engine evil"),
    ("gateway", "gateway_main_conf_dir", "/etc/nginx/$main"),
    ("gateway", "gateway_listen[0]", "127.0.0.1:8443 ssl; ssl_engine evil"),
    ("gateway", "gateway_listen[1]", "127.0.0.1:$port"),
    ("gateway", "gateway_listen[2]", "[::1:8443"),
    ("gateway", "gateway_forward_headers", "X-A; b"),
    ("gateway", "gateway_forward_headers", "X-Evil\nInjected: 1"),
    ("gateway", "gateway_forward_headers", "X-Ünï"),
    ("caller", "name", "ci; x"),
    ("caller", "name", "ci\n"),
    ("caller", "name", "c" * 100),
    ("caller", "tenants", "acme;"),
    ("caller", "token", 'tok"en with a quote 0123456789'),
    ("caller", "impersonate.user", 'system:admin"; proxy_set_header X y'),
    ("caller", "impersonate.user", "álice"),
    ("caller", "impersonate.groups", "g{1}"),
    ("caller", "impersonate.groups", "devs #"),
]


def hostile_run(gw, lab, cases):
    """One role run with these hostile values; returns the run and, per case, the text its message must start with."""
    a = lab.clusters["cluster-a"]
    valid = {"kubegate_tenant": "hostile", "kubegate_host": a["server"], "kubegate_ca_cert": a["ca_file"],
             "kubegate_tls_server_name": "cluster-a", "kubegate_gateway_token": gw.cluster_tokens["cluster-a"]}
    extra, gateway_vars, callers, expected = {}, {}, list(gw.callers), []
    listen = [None, None, None]
    for i, (kind, var, value) in enumerate(cases):
        if kind == "cluster":
            host = "hostile-%02d" % i
            extra[host] = dict(valid, **{var: value})
            expected.append("%s: %s" % (host, var))
        elif var.startswith("gateway_listen["):
            listen[int(var[-2])] = value
            expected.append("gateway-lab: " + var)
        elif var == "gateway_forward_headers":
            gateway_vars.setdefault(var, ["Accept"]).append(value)
            expected.append("gateway-lab: gateway_forward_headers: ")
        elif kind == "gateway":
            assert var not in gateway_vars, var
            gateway_vars[var] = value
            expected.append("gateway-lab: " + var)
        else:
            caller = {"name": "hostile-%02d" % i, "tenants": ["acme"], "token": secrets.token_urlsafe(24)}
            if var == "tenants":
                caller["tenants"] = [value]
            elif var.startswith("impersonate."):
                caller["impersonate"] = {"user": "hostile", "groups": []}
                if var.endswith("user"):
                    caller["impersonate"]["user"] = value
                else:
                    caller["impersonate"]["groups"] = [value]
            else:
                caller[var] = value
            expected.append("gateway_callers[%d]" % len(callers))
            callers.append(caller)
    if any(listen):
        gateway_vars["gateway_listen"] = [gw.nginx.role_vars()["gateway_listen"][0] if v is None else v
                                          for v in listen if v is not None]
        # the listen entries keep their index only when all three are present
        assert len(gateway_vars["gateway_listen"]) == 3
    return gw.play(callers=callers, extra_hosts=extra, **gateway_vars), expected


@pytest.mark.parametrize("part", [0, 1])
def test_hostile_inventory_values_are_refused_and_change_nothing(gw, lab, part):
    files, served = gw.files(), gw.served_config()
    gateway_cases = [c for c in HOSTILE if c[0] == "gateway" and not c[1].startswith("gateway_listen")
                     and c[1] != "gateway_forward_headers"]
    first, second, seen = [], [], set()
    for case in gateway_cases:  # a gateway variable holds one value per run
        (second if case[1] in seen else first).append(case)
        seen.add(case[1])
    cases = [c for c in HOSTILE if c not in gateway_cases] + first if part == 0 else second
    run, expected = hostile_run(gw, lab, cases)
    out = run.output
    assert run.rc != 0 and no_traceback(out), out[-3000:]
    assert "The gateway cannot be configured on gateway-lab; nothing was changed" in out
    missing = [(case, want) for case, want in zip(cases, expected) if want not in out]
    assert not missing, missing
    # each refused value is shown escaped (never a raw newline that could fake another message), tokens never
    assert "ssl_engine evil\n" not in out
    assert_unchanged_and_serving(gw, files, served)


def test_the_hostile_table_covers_every_kind_of_character():
    values = [v for _, _, v in HOSTILE]
    assert len(values) >= 30
    for needle in (";", "{", "}", '"', "'", "\n", "$", "#", " "):
        assert [v for v in values if needle in v], needle
    assert [v for v in values if len(v) > 255] and [v for v in values if not v.isascii()]


# ---- revocation, limits, websocket subprotocols ----------------------------------------------------------------------
def open_watch(gw, caller, cluster="cluster-a", tenant="acme", token=None):
    """A watch on NS's configmaps through the gateway; returns (status, response, conn, queue that gets None at EOF)."""
    conn = gw.conn(timeout=120)
    conn.request("GET", base(tenant, cluster) + "/api/v1/namespaces/%s/configmaps?watch=1" % NS,
                 headers={"Authorization": "Bearer " + (token or gw.tokens[caller])})
    resp = conn.getresponse()
    ended = queue.Queue()
    if resp.status == 200:
        def reader():
            try:
                while resp.read1(65536):
                    pass
            except (OSError, ValueError, http.client.HTTPException):
                pass
            ended.put(time.monotonic())
        threading.Thread(target=reader, daemon=True).start()
    return resp.status, resp, conn, ended


def test_removed_caller_loses_open_streams_within_the_bound(gw, lab):
    bound = 3
    dave = secrets.token_urlsafe(32)
    gw.tokens["dave"] = dave
    with_dave = gw.callers + [{"name": "dave", "tenants": ["acme"], "token": dave}]
    try:
        run = gw.play(callers=with_dave, gateway_worker_shutdown_timeout=bound)
        assert run.rc == 0, run.output[-3000:]
        status, resp, conn, watch_ended = open_watch(gw, "dave")
        assert status == 200
        pod = lab.ingress_pods("cluster-b")[0]
        exe = subprocess.Popen([lab.kubectl_bin, "--kubeconfig", str(gw.kubeconfig("acme", "cluster-b", "dave")),
                                "exec", "-n", "ingress-nginx", pod, "--", "sh", "-c", "echo kg-ready; sleep 90"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, KUBECONFIG="/nonexistent", HOME=str(gw.tmp)))
        try:
            assert exe.stdout.readline().strip() == "kg-ready"
            time.sleep(1)
            assert exe.poll() is None and watch_ended.empty()
            # dave is removed; the role reloads nginx
            run = gw.play(callers=gw.callers, gateway_worker_shutdown_timeout=bound)
            assert run.rc == 0, run.output[-3000:]
            reloaded = time.monotonic()
            # new requests: 401 at once
            assert gw.request("GET", base("acme", "cluster-a") + "/version", "dave")[0] == 401
            # both open streams end within the bound (plus slack for a loaded machine)
            ended = watch_ended.get(timeout=bound + 10)
            assert ended - reloaded <= bound + 10
            exe.wait(timeout=max(1, bound + 10 - (time.monotonic() - reloaded)))
            assert exe.returncode != 0
            main = (gw.nginx.main_conf_dir / "kubegate-gateway-main.conf").read_text()
            assert "worker_shutdown_timeout %ds;" % bound in main
        finally:
            if exe.poll() is None:
                exe.kill()
                exe.wait()
            conn.close()
    finally:
        gw.tokens.pop("dave", None)
        back = gw.play()
        assert back.rc == 0, back.output[-3000:]


def globex_b(gw, lab, name="globex-b"):
    """cluster-b's apiserver once more, as a cluster of tenant globex (bob's), independent of cluster-c's tunnel."""
    b = lab.clusters["cluster-b"]
    return {name: {"kubegate_tenant": "globex", "kubegate_host": b["server"], "kubegate_ca_cert": b["ca_file"],
                   "kubegate_tls_server_name": "cluster-b", "kubegate_gateway_token": gw.cluster_tokens["cluster-b"]}}


def test_per_caller_limits_one_tenant_cannot_starve_another(gw, lab):
    limits = {"gateway_caller_connections": 4, "gateway_caller_rate": 10, "gateway_caller_burst": 10,
              "extra_hosts": globex_b(gw, lab)}
    watches = []
    try:
        run = gw.play(**limits)
        assert run.rc == 0, run.output[-3000:]
        # the noisy caller (tenant acme) opens far more watches than its limit: 4 stream, the rest get 429
        for _ in range(12):
            status, resp, conn, _ = open_watch(gw, "acme-ci")
            body = resp.read() if status != 200 else b""
            watches.append((status, resp, conn, body))
        statuses = [w[0] for w in watches]
        assert statuses.count(200) == 4 and statuses.count(429) == 8, statuses
        refused = json.loads(next(w[3] for w in watches if w[0] == 429))
        assert refused["kind"] == "Status" and refused["code"] == 429 and refused["reason"] == "TooManyRequests"
        # ... and hammers it with requests (bounded: 4 threads x 50) while the quiet tenant's caller keeps working
        noisy = queue.Queue()

        def hammer():
            c = gw.conn()
            for _ in range(50):
                try:
                    c.request("GET", base("acme", "cluster-a") + "/version",
                              headers={"Authorization": "Bearer " + gw.tokens["acme-ci"]})
                    r = c.getresponse()
                    r.read()
                    noisy.put(r.status)
                except (OSError, http.client.HTTPException):
                    c.close()
                    c = gw.conn()
                    noisy.put(0)
            c.close()
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for th in threads:
            th.start()
        quiet = []
        for _ in range(20):
            quiet.append(gw.request("GET", base("globex", "globex-b") + "/version", "bob")[0])
            time.sleep(0.1)
        for th in threads:
            th.join(timeout=120)
        noisy_statuses = [noisy.get() for _ in range(noisy.qsize())]
        assert quiet == [200] * 20
        # (its 4 watches hold all its connection slots: every further request is refused at once)
        assert noisy_statuses.count(429) >= 150, noisy_statuses
        assert gw.audit(until=lambda a: a["caller"] == "acme-ci" and a["status"] == 429)
    finally:
        for _, resp, conn, _ in watches:
            conn.close()
        back = gw.play()
        assert back.rc == 0, back.output[-3000:]
    # back to the defaults: the same watches are all accepted again
    again = [open_watch(gw, "acme-ci") for _ in range(6)]
    try:
        assert [w[0] for w in again] == [200] * 6
    finally:
        for w in again:
            w[2].close()


def test_repeated_bad_credentials_are_slowed_down(gw):
    try:
        run = gw.play(gateway_bad_credential_rate=30, gateway_bad_credential_burst=4)
        assert run.rc == 0, run.output[-3000:]
        path = base("acme", "cluster-a") + "/version"
        took = []
        for _ in range(6):
            t0 = time.monotonic()
            status, data, _ = gw.request("GET", path, auth="Bearer " + secrets.token_urlsafe(32))
            took.append(time.monotonic() - t0)
            assert status == 401 and json.loads(data)["reason"] == "Unauthorized"
        # 1 + burst/2 answered at once, then one every 2 s (30 a minute)
        assert max(took[:2]) < 1 and min(took[-2:]) >= 1.5, took
        # a caller with a valid token is not slowed down meanwhile
        t0 = time.monotonic()
        assert gw.request("GET", path, "acme-ci")[0] == 200 and time.monotonic() - t0 < 1
        # a flood beyond the burst is refused with 429 (a Status body)
        results = queue.Queue()
        flood = [threading.Thread(target=lambda: results.put(gw.request("GET", path, auth="Bearer nope-nope-nope-nope")))
                 for _ in range(10)]
        for th in flood:
            th.start()
        for th in flood:
            th.join(timeout=60)
        answers = [results.get() for _ in range(results.qsize())]
        assert [a for a in answers if a[0] == 429]
        assert all(json.loads(a[1])["code"] == a[0] for a in answers)
    finally:
        time.sleep(2)
        back = gw.play()
        assert back.rc == 0, back.output[-3000:]


def test_websocket_subprotocols_cannot_carry_a_credential(gw, lab):
    selfreview = base("acme", "cluster-a") + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    import base64
    own = base64.urlsafe_b64encode(gw.cluster_tokens["cluster-a"].encode()).decode().rstrip("=")
    for protocols in ("base64url.bearer.authorization.k8s.io." + own,
                      "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io." + own,
                      "v4.channel.k8s.io,evil", "v5.channel.k8s.io; x"):
        status, data = gw.json("POST", selfreview, caller="alice", body=body,
                               headers={"Sec-WebSocket-Protocol": protocols})
        assert status == 400 and data["reason"] == "BadRequest", (protocols, status, data)
        assert "Sec-WebSocket-Protocol" in data["message"]
    # the request never reached the apiserver
    assert gw.audit(until=lambda a: a["caller"] == "alice" and a["status"] == 400 and a["upstream_status"] == "")
    # the Kubernetes channel protocols pass, and the apiserver sees alice (not the credential in the protocol)
    status, data = gw.json("POST", selfreview, caller="alice", body=body,
                           headers={"Sec-WebSocket-Protocol": "v5.channel.k8s.io, v4.channel.k8s.io"})
    assert status == 201 and data["status"]["userInfo"]["username"] == "alice"
    # a real websocket exec still works (kubectl offers only channel protocols)
    pod = lab.ingress_pods("cluster-b")[0]
    ex = gw.kubectl("acme", "cluster-b", "acme-ci", "exec", "-n", "ingress-nginx", pod, "--", "echo", "kg-ws-ok")
    assert ex.returncode == 0 and ex.stdout.strip() == "kg-ws-ok", ex.stderr


def test_audit_records_how_the_caller_authenticated_and_whom_it_impersonates(gw, lab):
    marker = uuid.uuid4().hex[:8]
    path = base("acme", "cluster-a") + "/version?" + marker
    assert gw.request("GET", base("acme", "cluster-a") + "/version", "alice")[0] == 200
    assert gw.request("GET", base("acme", "cluster-a") + "/api?" + marker, cert=gw.carol_cert)[0] == 200
    token_line = gw.audit(until=lambda a: a["caller"] == "alice" and a["path"].endswith("/version"))[-1]
    assert token_line["auth"] == "token" and token_line["cert_serial"] == ""
    assert token_line["impersonate_user"] == "alice" and token_line["impersonate_groups"] == "kg-gw-devs,kg-gw-oncall"
    cert_line = gw.audit(until=lambda a: a["caller"] == "carol" and a["path"].endswith("/api"))[-1]
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", gw.carol_cert[0]], capture_output=True,
                            text=True, check=True).stdout.strip().split("=", 1)[1]
    assert cert_line["auth"] == "certificate" and cert_line["cert_serial"].upper() == serial.upper()
    assert cert_line["impersonate_user"] == ""
    assert path  # the query is not logged by default
    plain = gw.audit(until=lambda a: a["caller"] == "acme-ci" and a["auth"] == "token")
    assert plain[-1]["impersonate_user"] == ""


# ---- updates that fail after nginx -t, interrupted runs --------------------------------------------------------------
def test_failed_reload_puts_the_previous_files_back_and_reloads_them(gw, lab):
    try:
        files, served = gw.files(), gw.served_config()
        new_ca = gw.nginx.data_dir / "ca" / "globex--globex-b.crt"
        assert not new_ca.exists()
        import socket as socketlib
        blocker = socketlib.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        busy = "127.0.0.1:%d" % blocker.getsockname()[1]
        erin = secrets.token_urlsafe(32)
        try:
            # nginx -t passes (it does not bind), the reload cannot bind the new listen address
            # (and it adds a cluster, so a file that did not exist before is written too)
            run = gw.play(gateway_listen=gw.nginx.role_vars()["gateway_listen"] + [busy], extra_hosts=globex_b(gw, lab),
                          callers=gw.callers + [{"name": "erin", "tenants": ["acme"], "token": erin}])
        finally:
            blocker.close()
        out = run.output
        assert run.rc != 0 and no_traceback(out) and erin not in out
        assert "does not serve the new gateway configuration" in out
        assert "The previous files were put back and nginx was reloaded with them and serves the previous" in out
        error_log = (gw.nginx.dir / "logs" / "error.log").read_text()
        assert "Address already in use" in error_log
        # every file as before (the CA of cluster-c, new in the failed update, is gone again), no backup left
        assert gw.files() == files and not new_ca.exists()
        assert not [p for p in gw.nginx.dir.rglob("*~")]
        assert gw.served_config() == served
        assert gw.request("GET", base("acme", "cluster-a") + "/version", auth="Bearer " + erin)[0] == 401
        assert gw.request("GET", base("acme", "cluster-a") + "/version", "acme-ci")[0] == 200
        assert gw.request("GET", base("globex", "globex-b") + "/version", "bob")[0] == 404
    finally:
        back = gw.play()
        assert back.rc == 0, back.output[-3000:]
    # the same update without the busy address goes through
    ok = gw.play(extra_hosts=globex_b(gw, lab))
    try:
        assert ok.rc == 0, ok.output[-3000:]
        assert new_ca.exists() and gw.request("GET", base("globex", "globex-b") + "/version", "bob")[0] == 200
    finally:
        back = gw.play()
        assert back.rc == 0, back.output[-3000:]
    assert not new_ca.exists()


def test_an_interrupted_run_leaves_no_secret_backup(gw, tmp_path):
    files, served = gw.files(), gw.served_config()
    snapshot, reached = tmp_path / "during-nginx-t.txt", tmp_path / "reached"
    hold = tmp_path / "nginx-t-and-hold.sh"
    # the test command records every file of the data directory while the run is in flight, then hangs there
    hold.write_text("#!/bin/sh\nfind %s -type f -printf '%%m %%p\\n' > %s\ntouch %s\nexec sleep 120\n"
                    % (gw.nginx.dir, snapshot, reached))
    hold.chmod(0o700)
    inventory = gw.inventory(callers=gw.callers + [{"name": "frank", "tenants": ["acme"],
                                                    "token": secrets.token_urlsafe(32)}],
                             gateway_test_command=[str(hold)])
    playbook = tmp_path / "gateway.yml"
    playbook.write_text(PLAYBOOK)
    from kgtest import repo_env
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "ansible-playbook"), str(playbook), "-i", str(inventory)],
                            cwd=str(REPO), env=repo_env(ANSIBLE_NOCOLOR="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(reached.exists, timeout=120), "the run never reached nginx -t"
    finally:
        os.killpg(proc.pid, 9)  # the operator's laptop went away
        proc.wait()
    during = [line.split(" ", 1) for line in snapshot.read_text().splitlines()]
    secret_backups = [p for m, p in during if "~" in p and ("secrets.conf" in p or p.endswith(".key~") or ".key." in p)]
    assert not secret_backups, during
    assert all(m == "600" for m, p in during if "secrets.conf" in p or "/client/" in p), during
    left = [str(p) for p in gw.nginx.dir.rglob("*~")]
    assert not [p for p in left if "secrets.conf" in p or "/client/" in p], left
    # nginx still serves the previous configuration; the next run cleans up and applies a tested configuration
    assert gw.served_config() == served
    run = gw.play()
    assert run.rc == 0, run.output[-3000:]
    assert not list(gw.nginx.dir.rglob("*~"))
    assert gw.files() == files and gw.served_config() == served

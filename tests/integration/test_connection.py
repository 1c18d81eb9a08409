"""The connection layer against the real lab: every auth path, TLS through a forward with tls_server_name,
impersonation allowed and denied by RBAC, and one playbook fanned out over all lab clusters.

The lab's apiservers authenticate every request (anonymous only on the health paths), and each auth path asserts WHO
the apiserver saw (a SelfSubjectReview through the module, kgplay.whoami_task) — mostly dedicated ServiceAccounts, so
the exact credential is proven — and that a wrong or missing credential fails with the module's clear 401."""
from __future__ import annotations

import json
import re
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kgtest import REPO, repo_env

from kgplay import (ADMIN_SA, HERE, PLAYBOOK_BIN, PlayRun, ServiceAccounts, assert_seen_as, assert_unauthorized,
                    cert_identity, conn_token, lab_inventory, no_traceback, run_playbook, sa_identity, token,
                    whoami_task)

VERSION = {"name": "version", "kubegate.multicluster.api_request": {"path": "/version"}, "register": "r",
           "ignore_errors": True}


def one(tmp_path, conn, *args, env=None, tasks=None, hosts="cluster-b", play_env=None, **kw):
    play = {"name": "conn", "hosts": hosts, "gather_facts": False, "tasks": tasks or [VERSION]}
    if conn is not None:
        play["module_defaults"] = {"group/kubegate.multicluster.cluster": conn}
    if play_env:
        play["environment"] = play_env
    return run_playbook(tmp_path, [play], *args, env=env, **kw)


ADMIN = sa_identity(*ADMIN_SA)
WHOAMI = whoami_task()
B = "127.0.0.12:6443"       # how messages name cluster-b when it is given by address


def ok_version(run, host="cluster-b"):
    res = run.result("version", host)
    assert not res["failed"], res.get("msg")
    assert res["status"] == 200 and res["json"]["gitVersion"].startswith("v1.")
    return res


@pytest.fixture(scope="module")
def clean_env(tmp_path_factory):
    """No KUBECONFIG, an empty HOME: only what a test gives is used."""
    home = tmp_path_factory.mktemp("home")
    return {"HOME": str(home), "KUBECONFIG": "", "K8S_AUTH_HOST": "", "K8S_AUTH_API_KEY": "", "K8S_AUTH_KUBECONFIG": ""}


@pytest.fixture(scope="module")
def accounts(lab):
    """Dedicated ServiceAccounts on cluster-b (deleted afterwards)."""
    sas = ServiceAccounts(lab, "cluster-b")
    yield sas
    sas.close()


@pytest.mark.parametrize("fastpath", ["0", "1"], ids=["controller", "module"])
def test_bearer_token(lab, tmp_path, clean_env, fastpath):
    env = {**clean_env, "KUBEGATE_NO_FASTPATH": fastpath}
    c = lab.clusters["cluster-b"]
    assert_seen_as(one(tmp_path, conn_token(lab, "cluster-b"), env=env, tasks=[WHOAMI]), "cluster-b", ADMIN)
    wrong = one(tmp_path, {**conn_token(lab, "cluster-b"), "api_key": "kg-wrong-token"}, env=env, tasks=[WHOAMI])
    assert_unauthorized(wrong, "cluster-b", B, "a bearer token")
    missing = one(tmp_path, {"host": c["server"], "ca_cert": c["ca_file"]}, env=env, tasks=[WHOAMI])
    msg = assert_unauthorized(missing, "cluster-b", B, "no credential at all")
    assert "set api_key" in msg and "client_cert/client_key" in msg


@pytest.mark.parametrize("fastpath", ["0", "1"], ids=["controller", "module"])
def test_client_certificate(lab, tmp_path, clean_env, fastpath):
    env = {**clean_env, "KUBEGATE_NO_FASTPATH": fastpath}
    c = lab.clusters["cluster-b"]
    conn = {"host": c["server"], "ca_cert": c["ca_file"], "client_cert": c["client_cert_file"],
            "client_key": c["client_key_file"]}
    run = one(tmp_path, conn, env=env, tasks=[WHOAMI])
    info = assert_seen_as(run, "cluster-b", cert_identity(c["client_cert_file"]))
    assert "system:masters" in info["groups"]
    # cluster-a's admin certificate is signed by another CA: cluster-b authenticates nobody with it
    a = lab.clusters["cluster-a"]
    foreign = one(tmp_path, {**conn, "client_cert": a["client_cert_file"], "client_key": a["client_key_file"]}, env=env,
                  tasks=[WHOAMI])
    assert_unauthorized(foreign, "cluster-b", B, "the client certificate %s" % a["client_cert_file"])


def kubeconfig(path, contexts, current=None, server=None, ca_file=None):
    """A kubeconfig with one cluster and one context+user per `contexts` entry ({context: user dict})."""
    import base64
    clusters = [{"name": "b", "cluster": {"server": server,
                                          "certificate-authority-data": base64.b64encode(
                                              Path(ca_file).read_bytes()).decode()}}] if server else []
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", **({"current-context": current} if current else {}),
        "clusters": clusters,
        "users": [{"name": "u-" + name, "user": user} for name, user in contexts.items()],
        "contexts": [{"name": name, "context": {"cluster": "b", "user": "u-" + name}} for name in contexts]}))
    return path


@pytest.mark.parametrize("fastpath", ["0", "1"], ids=["controller", "module"])
def test_kubeconfig_context_and_kubeconfig_env_list(lab, tmp_path, clean_env, fastpath, accounts):
    env = {**clean_env, "KUBEGATE_NO_FASTPATH": fastpath}
    # the lab kubeconfig's context cluster-a (its admin client certificate), whatever the inventory host is called
    run = one(tmp_path, {"kubeconfig": lab.desc["kubeconfig"], "context": "cluster-a"}, env=env, tasks=[WHOAMI])
    assert_seen_as(run, "cluster-b", cert_identity(lab.clusters["cluster-a"]["client_cert_file"]))
    # the selected context's user is the one sent, not the current-context's
    c = lab.clusters["cluster-b"]
    ops, ops_id = accounts.token("kg-ctx-ops")
    dev, dev_id = accounts.token("kg-ctx-dev")
    kc = kubeconfig(tmp_path / "two.yaml", {"ops": {"token": ops}, "dev": {"token": dev}, "none": {},
                                            "stale": {"token": "kg-wrong-token"}},
                    current="ops", server=c["server"], ca_file=c["ca_file"])
    tasks = [whoami_task("current"), whoami_task("dev", context="dev"), whoami_task("none", context="none"),
             whoami_task("stale", context="stale")]
    run = one(tmp_path, {"kubeconfig": str(kc)}, env=env, tasks=tasks)
    assert_seen_as(run, "cluster-b", ops_id, task="current")
    assert_seen_as(run, "cluster-b", dev_id, task="dev")
    assert_unauthorized(run, "cluster-b", "cluster none (https://%s)" % B, "no credential at all", task="none")
    assert_unauthorized(run, "cluster-b", "cluster stale (https://%s)" % B, "a bearer token", task="stale")
    # KUBECONFIG as a list: the first file defining a name wins, current-context from the first file that sets it. The
    # first file overrides the lab kubeconfig's user cluster-b-admin (a client certificate) with a token.
    over, over_id = accounts.token("kg-kclist")
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "cluster-b",
                                     "clusters": [], "contexts": [],
                                     "users": [{"name": "cluster-b-admin", "user": {"token": over}}]}))
    env["KUBECONFIG"] = "%s:%s" % (first, lab.desc["kubeconfig"])
    assert_seen_as(one(tmp_path, None, env=env, tasks=[WHOAMI]), "cluster-b", over_id)
    first.write_text(first.read_text().replace(over, "kg-wrong-token"))
    assert_unauthorized(one(tmp_path, None, env=env, tasks=[WHOAMI]), "cluster-b", "cluster cluster-b (https://%s)" % B,
                        "a bearer token")


def test_k8s_auth_environment_as_awx_injects_it(lab, tmp_path, clean_env, accounts):
    c = lab.clusters["cluster-b"]
    awx_token, awx_id = accounts.token("kg-awx-env")
    play_token, play_id = accounts.token("kg-play-env")
    awx = {"K8S_AUTH_HOST": c["server"], "K8S_AUTH_API_KEY": awx_token,
           "K8S_AUTH_SSL_CA_CERT": c["ca_file"], "K8S_AUTH_VERIFY_SSL": "true"}
    for fastpath in ("0", "1"):
        env = {**clean_env, "KUBEGATE_NO_FASTPATH": fastpath}
        assert_seen_as(one(tmp_path, None, env={**env, **awx}, tasks=[WHOAMI]), "cluster-b", awx_id)
        # the same through the play's environment keyword (it wins over the process environment), and explicit
        # options still win over the environment
        run = one(tmp_path, {"host": c["server"]}, env={**env, **awx}, tasks=[WHOAMI],
                  play_env={**awx, "K8S_AUTH_API_KEY": play_token, "K8S_AUTH_HOST": "https://127.0.0.1:1"})
        assert_seen_as(run, "cluster-b", play_id)
        wrong = one(tmp_path, None, env={**env, **awx, "K8S_AUTH_API_KEY": "kg-wrong-token"}, tasks=[WHOAMI])
        assert_unauthorized(wrong, "cluster-b", B, "a bearer token")
        wrong = one(tmp_path, None, env=env, tasks=[WHOAMI], play_env={**awx, "K8S_AUTH_API_KEY": "kg-wrong-token"})
        assert_unauthorized(wrong, "cluster-b", B, "a bearer token")
        assert "kg-wrong-token" not in wrong.output and play_token not in run.output


def test_exec_plugin_and_auth_provider_kubeconfig_users(lab, tmp_path, clean_env, accounts):
    c = lab.clusters["cluster-b"]
    exec_token, exec_id = accounts.token("kg-exec")
    oidc_token, oidc_id = accounts.token("kg-oidc")
    counter = tmp_path / "calls"

    def plugin(name, tok):
        path = tmp_path / name
        path.write_text("#!/bin/sh\necho x >> %s\ncat <<EOF\n%s\nEOF\n" % (counter, json.dumps(
            {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {"token": tok}})))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(path),
                         "interactiveMode": "Never"}}
    kc = kubeconfig(tmp_path / "kc.yaml", {
        "exec": plugin("credential-plugin", exec_token), "exec-stale": plugin("stale-plugin", "kg-wrong-token"),
        "oidc": {"auth-provider": {"name": "oidc", "config": {"id-token": oidc_token, "client-id": "x"}}}},
        current="exec", server=c["server"], ca_file=c["ca_file"])
    for fastpath in ("0", "1"):
        counter.write_text("")
        tasks = [WHOAMI, whoami_task("oidc", context="oidc"), whoami_task("stale", context="exec-stale")]
        run = one(tmp_path, {"kubeconfig": str(kc)}, env={**clean_env, "KUBEGATE_NO_FASTPATH": fastpath}, tasks=tasks)
        assert_seen_as(run, "cluster-b", exec_id)
        assert counter.read_text().count("x") >= 2   # the plugin ran (for exec and exec-stale)
        assert_seen_as(run, "cluster-b", oidc_id, task="oidc")
        msg = assert_unauthorized(run, "cluster-b", "cluster exec-stale",
                                  "the token/certificate from the kubeconfig exec plugin", task="stale")
        assert str(tmp_path / "stale-plugin") in msg


def test_in_cluster_service_account_rereads_a_rotated_token(lab, tmp_path, accounts):
    """Simulated in-cluster run: service account files bind-mounted at the real path in a private mount namespace,
    KUBERNETES_SERVICE_HOST/PORT set as in a pod."""
    c = lab.clusters["cluster-b"]
    pod_token, pod_id = accounts.token("kg-in-cluster")
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "ca.crt").write_text(Path(c["ca_file"]).read_text())
    (sa / "namespace").write_text("demo")
    (sa / "token").write_text("not-a-valid-token")
    good = tmp_path / "good-token"
    good.write_text(pod_token)
    tasks = [whoami_task("before rotation"),
             {"name": "rotate", "ansible.builtin.command": "cp %s /run/secrets/kubernetes.io/serviceaccount/token" % good,
              "changed_when": True},
             WHOAMI]
    pb = tmp_path / "play.yml"
    pb.write_text(yaml.safe_dump([{"name": "in-cluster", "hosts": "cluster-b", "gather_facts": False,
                                   "tasks": tasks}]))
    results = tmp_path / "results.jsonl"
    script = ("set -e; mount --make-rprivate /; mount -t tmpfs kg-run /run; "
              "mkdir -p /run/secrets/kubernetes.io/serviceaccount; cp -a %s/. /run/secrets/kubernetes.io/serviceaccount/; "
              "exec %s %s" % (sa, PLAYBOOK_BIN, pb))
    env = repo_env(KG_RESULTS_FILE=str(results), ANSIBLE_CALLBACK_PLUGINS=str(HERE / "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="kg_results", HOME=str(tmp_path), KUBECONFIG="",
                   KUBERNETES_SERVICE_HOST=c["server"].split("//")[1].split(":")[0], KUBERNETES_SERVICE_PORT="6443")
    for k in [k for k in env if k.startswith("K8S_AUTH_")]:
        del env[k]
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=str(REPO), env=env, capture_output=True,
                          text=True, timeout=120)
    run = PlayRun(proc, [json.loads(line) for line in results.read_text().splitlines()])
    msg = assert_unauthorized(run, "cluster-b", "cluster in-cluster (https://%s)" % B,
                              "the bearer token read from /var/run/secrets/kubernetes.io/serviceaccount/token",
                              task="before rotation")
    assert_seen_as(run, "cluster-b", pod_id)
    assert "not-a-valid-token" not in proc.stdout and pod_token not in proc.stdout and "not-a-valid-token" not in msg


def test_plain_http_kubectl_proxy_gets_no_credentials(lab, tmp_path, clean_env):
    c = lab.clusters["cluster-b"]
    proxy = subprocess.Popen([lab.kubectl_bin, "--kubeconfig", c["admin_kubeconfig"], "proxy", "--port=0",
                              "--address=127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proxy.stdout.readline()
        port = re.search(r":(\d+)", line).group(1)
        run = one(tmp_path, {"host": "http://127.0.0.1:%s" % port}, env=clean_env,
                  tasks=[VERSION, WHOAMI, {"name": "cm", "kubegate.multicluster.api_request":
                                           {"path": "/api/v1/namespaces/demo/configmaps"}, "register": "cm"}])
        ok_version(run)
        # the proxy authenticated with its own kubeconfig's identity (the admin client certificate)
        assert_seen_as(run, "cluster-b", cert_identity(c["client_cert_file"]))
        assert "items" in run.result("cm", "cluster-b")["json"]
        assert not run.result("version", "cluster-b").get("warnings")
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def test_tls_server_name_through_a_tcp_forward(lab, tmp_path, clean_env, forward):
    c = lab.clusters["cluster-b"]
    fwd = forward("127.0.0.5", ("127.0.0.12", 6443))
    base = {"host": "https://127.0.0.5:%d" % fwd.port, "ca_cert": c["ca_file"], "api_key": token(lab, "cluster-b")}
    run = one(tmp_path, base, env=clean_env)
    res = run.result("version", "cluster-b")
    assert res["failed"] and "TLS verification failed" in res["msg"] and "'127.0.0.5'" in res["msg"]
    assert "cluster-b" in res["msg"] and "tls_server_name" in res["msg"] and c["ca_file"] in res["msg"]
    run = one(tmp_path, {**base, "tls_server_name": "cluster-b"}, env=clean_env, tasks=[VERSION, WHOAMI])
    ok_version(run)
    assert_seen_as(run, "cluster-b", ADMIN)
    wrong = one(tmp_path, {**base, "tls_server_name": "cluster-x"}, env=clean_env).result("version", "cluster-b")
    assert wrong["failed"] and "'cluster-x'" in wrong["msg"] and "valid for" in wrong["msg"]
    # wrong CA for the name: cluster-a's CA does not sign cluster-b's certificate
    other = one(tmp_path, {**base, "tls_server_name": "cluster-b", "ca_cert": lab.clusters["cluster-a"]["ca_file"]},
                env=clean_env).result("version", "cluster-b")
    assert other["failed"] and "TLS verification failed" in other["msg"]
    insecure = one(tmp_path, {**base, "validate_certs": False}, env=clean_env)
    res = ok_version(insecure)
    assert any("verification is disabled" in w for w in res.get("warnings", []))
    assert "verification is disabled" in insecure.output


@pytest.fixture(scope="module")
def rbac(lab):
    """A viewer identity for impersonation, and a least-privilege service account that may not impersonate."""
    suffix = uuid.uuid4().hex[:6]
    user = "kg-viewer-" + suffix
    sa = "kg-limited-" + suffix
    lab.kubectl("cluster-b", "create", "rolebinding", "-n", "demo", user, "--clusterrole=view", "--user=" + user)
    lab.kubectl("cluster-b", "create", "serviceaccount", "-n", "demo", sa)
    lab.kubectl("cluster-b", "create", "rolebinding", "-n", "demo", sa, "--clusterrole=view",
                "--serviceaccount=demo:" + sa)
    sa_token = lab.kubectl("cluster-b", "create", "token", "-n", "demo", sa, "--duration=1h").stdout.strip()
    yield {"user": user, "sa": sa, "token": sa_token}
    lab.kubectl("cluster-b", "delete", "rolebinding", "-n", "demo", user, sa, check=False)
    lab.kubectl("cluster-b", "delete", "serviceaccount", "-n", "demo", sa, check=False)


def test_impersonation_allowed_and_denied_by_rbac(lab, tmp_path, clean_env, rbac):
    tasks = [{"name": "demo cms", "kubegate.multicluster.api_request": {"path": "/api/v1/namespaces/demo/configmaps"},
              "ignore_errors": True},
             {"name": "kube-system cms", "kubegate.multicluster.api_request":
              {"path": "/api/v1/namespaces/kube-system/configmaps"}, "ignore_errors": True},
             {"name": "write", "kubegate.multicluster.api_request":
              {"path": "/api/v1/namespaces/demo/configmaps", "method": "POST",
               "body": {"metadata": {"name": "kg-never"}}}, "ignore_errors": True}]
    conn = {**conn_token(lab, "cluster-b"), "impersonate_user": rbac["user"], "impersonate_groups": ["kg-team"]}
    run = one(tmp_path, conn, env=clean_env, tasks=[WHOAMI] + tasks)
    # the apiserver saw the impersonated user and group, not the admin token's identity
    info = assert_seen_as(run, "cluster-b", (rbac["user"], ["kg-team", "system:authenticated"]))
    assert not any(g.startswith("system:serviceaccounts") for g in info["groups"]), info
    assert run.result("demo cms", "cluster-b")["status"] == 200
    denied = run.result("kube-system cms", "cluster-b")
    assert denied["failed"] and denied["status"] == 403
    assert rbac["user"] in denied["msg"] and 'cannot list resource "configmaps"' in denied["msg"]
    write = run.result("write", "cluster-b")
    assert write["failed"] and write["status"] == 403 and "create" in write["msg"]
    assert lab.kubectl("cluster-b", "get", "configmap", "-n", "demo", "kg-never", check=False).returncode != 0
    # a least-privilege identity may not impersonate at all
    c = lab.clusters["cluster-b"]
    limited = {"host": c["server"], "ca_cert": c["ca_file"], "api_key": rbac["token"]}
    run = one(tmp_path, {**limited, "impersonate_user": "system:admin"}, env=clean_env, tasks=tasks[:1])
    res = run.result("demo cms", "cluster-b")
    assert res["failed"] and res["status"] == 403 and "impersonate" in res["msg"]
    assert rbac["token"] not in run.output
    # a wrong token is refused before any impersonation, and the message says whom it tried to impersonate
    wrong = one(tmp_path, {**conn, "api_key": "kg-wrong-token"}, env=clean_env, tasks=[WHOAMI])
    assert_unauthorized(wrong, "cluster-b", B, "a bearer token (api_key, or the kubeconfig user's token), "
                                               "impersonating " + rbac["user"])


def test_one_playbook_fans_out_over_all_lab_clusters(lab, tmp_path, clean_env, cluster_c_forward):
    hosts = {}
    for name, c in lab.clusters.items():
        hosts[name] = {"kg_host": c["server"], "kg_ca": c["ca_file"], "kg_token_file": c["admin_token_file"]}
    hosts["cluster-c"]["kg_host"] = cluster_c_forward
    hosts["cluster-c"]["kg_tls_server_name"] = "cluster-c"
    inventory = lab_inventory(tmp_path, hosts)
    play = [{"name": "fan-out", "hosts": "all", "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": {
                 "host": "{{ kg_host }}", "ca_cert": "{{ kg_ca }}", "api_key": "{{ lookup('file', kg_token_file) }}",
                 "tls_server_name": "{{ kg_tls_server_name | default(omit) }}"}},
             "tasks": [dict(VERSION), WHOAMI,
                       {"name": "echo", "kubegate.multicluster.service_proxy":
                        {"namespace": "demo", "service": "echo", "port": "http", "path": "/fan-out"}}]}]
    started = time.monotonic()
    run = run_playbook(tmp_path, play, inventory=inventory, env=clean_env)
    for name in lab.clusters:
        ok_version(run, name)
        assert_seen_as(run, name, ADMIN)     # cluster-c through the ssh forward as well
        assert run.result("echo", name)["json"]["cluster"] == name
    assert time.monotonic() - started < 60
    # -l selects clusters like users do
    run = run_playbook(tmp_path, play, "-l", "cluster-c", inventory=inventory, env=clean_env)
    assert {r["host"] for r in run.records} == {"cluster-c"}
    assert no_traceback(run.output)


def test_http_connect_proxy_and_no_proxy(lab, tmp_path, clean_env, connect_proxy):
    conn = {**conn_token(lab, "cluster-b"), "proxy": connect_proxy.url}
    ok_version(one(tmp_path, conn, env=clean_env))
    assert "127.0.0.12:6443" in connect_proxy.targets
    connect_proxy.targets.clear()
    ok_version(one(tmp_path, {**conn, "no_proxy": "example.org,127.0.0.12"}, env=clean_env))
    assert connect_proxy.targets == []
    res = one(tmp_path, {**conn, "proxy": "http://127.0.0.1:9"}, env=clean_env).result("version", "cluster-b")
    assert res["failed"] and "via proxy http://127.0.0.1:9" in res["msg"] and "refused" in res["msg"]

"""The connection layer against the real lab: every auth path, TLS through a forward with tls_server_name,
impersonation allowed and denied by RBAC, and one playbook fanned out over all lab clusters."""
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

from kgplay import conn_token, lab_inventory, no_traceback, run_playbook, token

VERSION = {"name": "version", "kubegate.multicluster.api_request": {"path": "/version"}, "register": "r",
           "ignore_errors": True}


def one(tmp_path, conn, *args, env=None, tasks=None, hosts="cluster-b", play_env=None, **kw):
    play = {"name": "conn", "hosts": hosts, "gather_facts": False, "tasks": tasks or [VERSION]}
    if conn is not None:
        play["module_defaults"] = {"group/kubegate.multicluster.cluster": conn}
    if play_env:
        play["environment"] = play_env
    return run_playbook(tmp_path, [play], *args, env=env, **kw)


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


@pytest.mark.parametrize("fastpath", ["0", "1"], ids=["controller", "module"])
def test_bearer_token(lab, tmp_path, clean_env, fastpath):
    ok_version(one(tmp_path, conn_token(lab, "cluster-b"), env={**clean_env, "KUBEGATE_NO_FASTPATH": fastpath}))


@pytest.mark.parametrize("fastpath", ["0", "1"], ids=["controller", "module"])
def test_client_certificate(lab, tmp_path, clean_env, fastpath):
    c = lab.clusters["cluster-b"]
    conn = {"host": c["server"], "ca_cert": c["ca_file"], "client_cert": c["client_cert_file"],
            "client_key": c["client_key_file"]}
    ok_version(one(tmp_path, conn, env={**clean_env, "KUBEGATE_NO_FASTPATH": fastpath}))


@pytest.mark.parametrize("fastpath", ["0", "1"], ids=["controller", "module"])
def test_kubeconfig_context_and_kubeconfig_env_list(lab, tmp_path, clean_env, fastpath):
    env = {**clean_env, "KUBEGATE_NO_FASTPATH": fastpath}
    run = one(tmp_path, {"kubeconfig": lab.desc["kubeconfig"], "context": "cluster-a"}, env=env, hosts="cluster-b")
    ok_version(run)
    # KUBECONFIG as a list: the first file defining a name wins; current-context from the first file that sets it.
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "cluster-b",
                                     "clusters": [], "users": [], "contexts": []}))
    env["KUBECONFIG"] = "%s:%s" % (first, lab.desc["kubeconfig"])
    ok_version(one(tmp_path, None, env=env))


def test_k8s_auth_environment_as_awx_injects_it(lab, tmp_path, clean_env):
    c = lab.clusters["cluster-b"]
    awx = {"K8S_AUTH_HOST": c["server"], "K8S_AUTH_API_KEY": token(lab, "cluster-b"),
           "K8S_AUTH_SSL_CA_CERT": c["ca_file"], "K8S_AUTH_VERIFY_SSL": "true"}
    ok_version(one(tmp_path, None, env={**clean_env, **awx}))
    # the same through the play's environment keyword, and explicit options still win over the environment
    run = one(tmp_path, {"host": c["server"]}, env=clean_env,
              play_env={**awx, "K8S_AUTH_HOST": "https://127.0.0.1:1"})
    ok_version(run)


def test_exec_plugin_and_auth_provider_kubeconfig_users(lab, tmp_path, clean_env):
    c = lab.clusters["cluster-b"]
    plugin = tmp_path / "credential-plugin"
    counter = tmp_path / "calls"
    plugin.write_text("#!/bin/sh\necho x >> %s\ncat <<EOF\n%s\nEOF\n" % (counter, json.dumps(
        {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
         "status": {"token": token(lab, "cluster-b")}})))
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    ca = Path(c["ca_file"]).read_text()
    import base64
    kc = {"apiVersion": "v1", "kind": "Config", "current-context": "exec",
          "clusters": [{"name": "b", "cluster": {"server": c["server"],
                                                 "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
          "users": [{"name": "exec", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                       "command": str(plugin), "interactiveMode": "Never"}}},
                    {"name": "oidc", "user": {"auth-provider": {"name": "oidc", "config": {
                        "id-token": token(lab, "cluster-b"), "client-id": "x"}}}}],
          "contexts": [{"name": "exec", "context": {"cluster": "b", "user": "exec"}},
                       {"name": "oidc", "context": {"cluster": "b", "user": "oidc"}}]}
    path = tmp_path / "kc.yaml"
    path.write_text(yaml.safe_dump(kc))
    ok_version(one(tmp_path, {"kubeconfig": str(path)}, env=clean_env))
    assert counter.read_text().count("x") >= 1
    ok_version(one(tmp_path, {"kubeconfig": str(path), "context": "oidc"}, env=clean_env))


def test_in_cluster_service_account_rereads_a_rotated_token(lab, tmp_path):
    """Simulated in-cluster run: service account files bind-mounted at the real path in a private mount namespace."""
    c = lab.clusters["cluster-b"]
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "ca.crt").write_text(Path(c["ca_file"]).read_text())
    (sa / "namespace").write_text("demo")
    (sa / "token").write_text("not-a-valid-token")
    good = tmp_path / "good-token"
    good.write_text(token(lab, "cluster-b"))
    tasks = [{"name": "before rotation", "kubegate.multicluster.api_request": {"path": "/version"},
              "ignore_errors": True},
             {"name": "rotate", "ansible.builtin.command": "cp %s /run/secrets/kubernetes.io/serviceaccount/token" % good,
              "changed_when": True},
             dict(VERSION)]
    pb = tmp_path / "play.yml"
    pb.write_text(yaml.safe_dump([{"name": "in-cluster", "hosts": "cluster-b", "gather_facts": False,
                                   "tasks": tasks}]))
    results = tmp_path / "results.jsonl"
    script = ("set -e; mount --make-rprivate /; mount -t tmpfs kg-run /run; "
              "mkdir -p /run/secrets/kubernetes.io/serviceaccount; cp -a %s/. /run/secrets/kubernetes.io/serviceaccount/; "
              "exec %s %s" % (sa, Path(lab.desc["kubeconfig"]).parents[1] / ".venv/bin/ansible-playbook", pb))
    from kgplay import HERE
    from kgtest import REPO, repo_env
    env = repo_env(KG_RESULTS_FILE=str(results), ANSIBLE_CALLBACK_PLUGINS=str(HERE / "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="kg_results", HOME=str(tmp_path), KUBECONFIG="",
                   KUBERNETES_SERVICE_HOST=c["server"].split("//")[1].split(":")[0], KUBERNETES_SERVICE_PORT="6443")
    for k in [k for k in env if k.startswith("K8S_AUTH_")]:
        del env[k]
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=str(REPO), env=env, capture_output=True,
                          text=True, timeout=120)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    by = {r["task"]: r for r in records}
    assert by["before rotation"]["status"] == "failed", proc.stdout[-2000:]
    assert "401" in by["before rotation"]["result"]["msg"] and "in-cluster" in by["before rotation"]["result"]["msg"]
    assert by["version"]["status"] == "ok", proc.stdout[-3000:] + proc.stderr[-2000:]
    assert by["version"]["result"]["json"]["gitVersion"].startswith("v1.")
    assert "not-a-valid-token" not in proc.stdout


def test_plain_http_kubectl_proxy_gets_no_credentials(lab, tmp_path, clean_env):
    c = lab.clusters["cluster-b"]
    proxy = subprocess.Popen([lab.kubectl_bin, "--kubeconfig", c["admin_kubeconfig"], "proxy", "--port=0",
                              "--address=127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proxy.stdout.readline()
        port = re.search(r":(\d+)", line).group(1)
        run = one(tmp_path, {"host": "http://127.0.0.1:%s" % port}, env=clean_env,
                  tasks=[VERSION, {"name": "cm", "kubegate.multicluster.api_request":
                                   {"path": "/api/v1/namespaces/demo/configmaps"}, "register": "cm"}])
        ok_version(run)
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
    ok_version(one(tmp_path, {**base, "tls_server_name": "cluster-b"}, env=clean_env))
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
    run = one(tmp_path, conn, env=clean_env, tasks=tasks)
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
             "tasks": [dict(VERSION),
                       {"name": "echo", "kubegate.multicluster.service_proxy":
                        {"namespace": "demo", "service": "echo", "port": "http", "path": "/fan-out"}}]}]
    started = time.monotonic()
    run = run_playbook(tmp_path, play, inventory=inventory, env=clean_env)
    for name in lab.clusters:
        ok_version(run, name)
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

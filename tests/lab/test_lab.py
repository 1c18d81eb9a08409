"""The lab's own tests: every cluster is a real control plane with the fixtures later tests rely on."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from kgtest import REPO


def test_readyz(lab, cluster):
    assert lab.kubectl(cluster, "get", "--raw", "/readyz").stdout.strip() == "ok"


def test_version_is_pinned_release(lab, cluster):
    version = json.loads(lab.kubectl(cluster, "get", "--raw", "/version").stdout)
    assert version["gitVersion"].startswith("v1.") and version["gitVersion"] != "v0.0.0-master+$Format:%H$"


def test_nodes_ready(lab, cluster):
    nodes = lab.get_json(cluster, "get", "nodes")["items"]
    assert len(nodes) >= 2
    for node in nodes:
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions.get("Ready") == "True", node["metadata"]["name"]
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_ingress_pods_running(lab, cluster):
    assert len(lab.ingress_pods(cluster)) == 2


def test_exec_reaches_the_pods_own_nginx(lab, cluster):
    for pod in lab.ingress_pods(cluster):
        proc = lab.kubectl(cluster, "exec", "-n", "ingress-nginx", pod, "--", "nginx", "-t")
        # `nginx -t` names the pod's own config file: each pod has its own nginx.
        assert f"/pods/{pod}/nginx.conf test is successful" in proc.stderr
        version = lab.kubectl(cluster, "exec", "-n", "ingress-nginx", pod, "--", "nginx", "-v")
        assert version.stderr.startswith("nginx version: nginx/")


def test_pod_proxy_reaches_each_ingress_pods_nginx_on_its_pod_ip(lab, cluster):
    for pod in lab.ingress_pods(cluster):
        body = lab.kubectl(cluster, "get", "--raw", f"/api/v1/namespaces/ingress-nginx/pods/{pod}:80/proxy/").stdout
        assert body.strip() == f"pod={pod} cluster={cluster}"


def test_exec_with_stdin_sees_end_of_input(lab, cluster):
    pod = lab.ingress_pods(cluster)[0]
    proc = lab.kubectl(cluster, "exec", "-i", "-n", "ingress-nginx", pod, "--", "wc", "-c", input="x" * 100000,
                       timeout=30)
    assert proc.stdout.strip() == "100000"


def test_exec_reports_non_zero_exit_code(lab, cluster):
    pod = lab.ingress_pods(cluster)[0]
    proc = lab.kubectl(cluster, "exec", "-n", "ingress-nginx", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 7",
                       check=False)
    assert proc.returncode == 7
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr


def test_exec_reload_signals_the_running_master(lab, cluster):
    pod = lab.ingress_pods(cluster)[0]
    before = lab.kubectl(cluster, "exec", "-n", "ingress-nginx", pod, "--", "cat", "nginx.pid").stdout.strip()
    lab.kubectl(cluster, "exec", "-n", "ingress-nginx", pod, "--", "nginx", "-s", "reload")
    log = lab.kubectl(cluster, "exec", "-n", "ingress-nginx", pod, "--", "sh", "-c",
                      "sleep 0.5; tail -n 20 logs/error.log").stdout
    assert "signal process started" in log or "reconfiguring" in log
    assert lab.kubectl(cluster, "exec", "-n", "ingress-nginx", pod, "--", "cat", "nginx.pid").stdout.strip() == before


def test_configmap_volume_sync_reaches_both_pods(lab, cluster):
    content = f"# lab sync test {uuid.uuid4()}\n"
    manifest = lab.kubectl(cluster, "create", "configmap", "kubegate-nginx-map", "-n", "ingress-nginx",
                           "--from-literal=zz-lab-test.conf=" + content, "--dry-run=client", "-o", "yaml").stdout
    lab.kubectl(cluster, "apply", "-f", "-", input=manifest)
    want = hashlib.sha256(content.encode()).hexdigest()
    try:
        pods = lab.ingress_pods(cluster)
        deadline = time.monotonic() + lab.desc["sync_delay"] + 15
        seen = {}
        while time.monotonic() < deadline and len(seen) < len(pods):
            for pod in pods:
                out = lab.kubectl(cluster, "exec", "-n", "ingress-nginx", pod, "--", "sh", "-c",
                                  "sha256sum conf.d/zz-lab-test.conf 2>/dev/null || true").stdout
                if out.split()[:1] == [want]:
                    seen[pod] = True
            time.sleep(0.5)
        assert sorted(seen) == pods, f"not every pod saw the ConfigMap update: {seen}"
    finally:
        lab.kubectl(cluster, "delete", "configmap", "kubegate-nginx-map", "-n", "ingress-nginx", "--ignore-not-found")


@pytest.mark.parametrize("service_ref,scheme", [("echo:http", "http"), ("https:echo:https", "https")])
def test_service_proxy_reaches_the_real_backend(lab, cluster, service_ref, scheme):
    raw = lab.kubectl(cluster, "get", "--raw", f"/api/v1/namespaces/demo/services/{service_ref}/proxy/probe?q=1").stdout
    body = json.loads(raw)
    assert body["cluster"] == cluster
    assert body["scheme"] == scheme
    assert body["path"] == "/probe" and body["query"] == "q=1"


def test_aggregated_api_is_available_and_authorizes_the_caller(lab):
    c = "cluster-a"
    apisvc = lab.get_json(c, "get", "apiservice", "v1alpha1.wardle.example.com")
    assert {x["type"]: x["status"] for x in apisvc["status"]["conditions"]}["Available"] == "True"
    # Admin (system:masters) reaches the extension apiserver through kube-apiserver.
    listing = json.loads(lab.kubectl(c, "get", "--raw", "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders").stdout)
    assert listing["kind"] == "FlunderList"
    # A caller without RBAC is refused, by name: the identity travels with the request.
    user = f"lab-tester-{uuid.uuid4().hex[:6]}"
    denied = lab.kubectl(c, "get", "--raw", "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders",
                         as_user=user, check=False)
    assert denied.returncode != 0 and f'User "{user}" cannot list resource "flunders"' in denied.stderr
    # Granting that user access in the cluster's RBAC lets the extension apiserver authorize the forwarded identity.
    lab.kubectl(c, "create", "role", f"{user}-flunders", "-n", "default", "--verb=list,get",
                "--resource=flunders.wardle.example.com")
    lab.kubectl(c, "create", "rolebinding", f"{user}-flunders", "-n", "default", f"--role={user}-flunders", f"--user={user}")
    try:
        deadline = time.monotonic() + 15
        while True:
            ok = lab.kubectl(c, "get", "--raw", "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders",
                             as_user=user, check=False)
            if ok.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the extension apiserver caches authorization decisions briefly
        assert ok.returncode == 0, ok.stderr
    finally:
        lab.kubectl(c, "delete", "rolebinding,role", f"{user}-flunders", "-n", "default", "--ignore-not-found")


def test_cluster_c_is_unreachable_from_the_platform(lab):
    host, port = lab.clusters["cluster-c"]["server"].removeprefix("https://").split(":")
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=3).close()


def test_cluster_c_is_reachable_from_edge_with_verified_tls(lab):
    c = lab.clusters["cluster-c"]
    proc = subprocess.run(["ip", "netns", "exec", "kglab-edge", "curl", "-sS", "--max-time", "5", "--cacert", c["ca_file"],
                           c["server"] + "/readyz"], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_edge_sshd_forwards_to_cluster_c_with_key_auth_only(lab):
    e, c = lab.desc["edge"], lab.clusters["cluster-c"]
    common = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={e['known_hosts']}",
              "-o", "ConnectTimeout=5"]
    port = _free_port()
    tunnel = subprocess.Popen(["ssh", "-i", e["key_file"], "-o", "IdentitiesOnly=yes", "-o", "ExitOnForwardFailure=yes",
                               *common, "-N", "-L", f"127.0.0.1:{port}:198.18.3.2:6443", f"{e['user']}@{e['host']}"],
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert tunnel.poll() is None, tunnel.stderr.read()
                time.sleep(0.1)
        # TLS verified through the forward: the cluster CA, and the server name the certificate carries.
        proc = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", c["ca_file"],
                               "--connect-to", f"cluster-c:6443:127.0.0.1:{port}", "https://cluster-c:6443/readyz"],
                              capture_output=True, text=True)
        assert proc.stdout.strip() == "ok", proc.stderr
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=10)
    password = subprocess.run(["ssh", "-o", "PubkeyAuthentication=no", *common, f"{e['user']}@{e['host']}", "true"],
                              capture_output=True, text=True, timeout=20)
    assert password.returncode != 0 and "Permission denied" in password.stderr


# ---- lifecycle (kept last: it takes the lab down and brings it back) ------------------------------------------------
LABCTL = [sys.executable, str(REPO / "lab" / "labctl.py")]


def test_zz_lifecycle_down_leaves_nothing_and_problems_are_reported_before_starting(lab):
    down = subprocess.run(LABCTL + ["down"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "LEFT BEHIND" not in down.stdout
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "kglab-" not in namespaces
    assert subprocess.run(["pgrep", "-f", str(REPO / ".lab")], capture_output=True).returncode == 1
    assert "198.18." not in subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    assert not (REPO / ".lab").exists()

    # A port the lab needs is taken: reported by name before anything starts.
    blocker = socket.socket()
    blocker.bind(("127.0.0.12", 2379))
    blocker.listen(1)
    try:
        busy = subprocess.run(LABCTL + ["up"], capture_output=True, text=True, timeout=120)
    finally:
        blocker.close()
    assert busy.returncode == 1
    assert "cluster-b etcd: 127.0.0.12:2379 is already in use" in busy.stdout
    assert not list((REPO / ".lab").glob("*/pids/*.pid"))

    # A missing tool: reported before anything starts.
    env = dict(os.environ, PATH="/nonexistent")
    missing = subprocess.run(LABCTL + ["up"], capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode == 1 and "missing tools:" in missing.stdout and "make deps" in missing.stdout

    up = subprocess.run(LABCTL + ["up"], capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert (REPO / ".lab" / "ready").exists()

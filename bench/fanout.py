"""Fan-out benchmark: `nginx -s reload` in every ingress pod of many inventory clusters.

The lab's three clusters are scaled to 3 ingress pods each and repeated as inventory aliases (6, 24, 96 hosts;
cluster-c through an ssh forward via the edge host, as an operator reaches it). Compared at the same forks:
  kubegate        one kubegate.multicluster.pod_exec task (label selector) per host
  kubernetes.core kubernetes.core.k8s_info (pods by label) + kubernetes.core.k8s_exec per pod, per host
  floor           one Python process doing the same exec calls concurrently (the connection layer's exec, threads)
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_VENV = REPO / ".venv-bench"
SELECTOR = "app.kubernetes.io/name=ingress-nginx"
FORKS = 24


def scale(lab: dict, replicas: int) -> None:
    for name, c in lab["clusters"].items():
        argv = (["ip", "netns", "exec", c["netns"]] if c["netns"] else []) + [
            lab["kubectl"], "--kubeconfig", c["admin_kubeconfig"], "-n", "ingress-nginx", "scale",
            "deployment/ingress-nginx-controller", "--replicas=%d" % replicas]
        subprocess.run(argv, check=True, capture_output=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready = True
        for name, c in lab["clusters"].items():
            argv = (["ip", "netns", "exec", c["netns"]] if c["netns"] else []) + [
                lab["kubectl"], "--kubeconfig", c["admin_kubeconfig"], "-n", "ingress-nginx", "get", "pods", "-l",
                SELECTOR, "-o", "json"]
            pods = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)["items"]
            running = [p for p in pods if p["status"].get("phase") == "Running" and
                       not p["metadata"].get("deletionTimestamp")]
            ready = ready and len(running) == replicas and len(pods) == replicas
        if ready:
            time.sleep(2)  # the lab agent starts each pod's nginx right after it turns Running
            return
        time.sleep(1)
    raise RuntimeError("ingress pods did not reach %d replicas" % replicas)


class SshForward:
    def __init__(self, lab: dict):
        edge, c = lab["edge"], lab["clusters"]["cluster-c"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        target = c["server"].split("://", 1)[1]
        self.proc = subprocess.Popen(
            ["ssh", "-N", "-i", edge["key_file"], "-o", "UserKnownHostsFile=" + edge["known_hosts"],
             "-o", "StrictHostKeyChecking=yes", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
             "-p", str(edge["port"]), "-L", "127.0.0.1:%d:%s" % (self.port, target),
             "%s@%s" % (edge["user"], edge["host"])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("ssh forward to cluster-c did not come up")

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def endpoints(lab: dict, forward: SshForward) -> dict:
    out = {}
    for name, c in lab["clusters"].items():
        out[name] = {"host": c["server"] if not c["netns"] else "https://127.0.0.1:%d" % forward.port,
                     "ca_cert": c["ca_file"], "token_file": c["admin_token_file"],
                     "tls_server_name": name}
    return out


def inventory(eps: dict, count: int, path: Path) -> None:
    names = sorted(eps)
    hosts = {}
    for i in range(count):
        real = names[i % len(names)]
        e = eps[real]
        hosts["bench-%03d-%s" % (i, real)] = {"kg_host": e["host"], "kg_ca": e["ca_cert"],
                                              "kg_token_file": e["token_file"], "kg_tls": e["tls_server_name"]}
    path.write_text(json.dumps({"all": {"vars": {"ansible_connection": "local",
                                                 "ansible_python_interpreter": str(BENCH_VENV / "bin" / "python")},
                                        "hosts": hosts}}))


CONN = {"host": "{{ kg_host }}", "ca_cert": "{{ kg_ca }}", "api_key": "{{ lookup('ansible.builtin.file', kg_token_file) }}"}

KUBEGATE_PLAY = [{"name": "reload (kubegate)", "hosts": "all", "gather_facts": False, "tasks": [
    {"name": "reload", "kubegate.multicluster.pod_exec": dict(
        CONN, tls_server_name="{{ kg_tls }}", namespace="ingress-nginx", label_selector=SELECTOR,
        command=["nginx", "-s", "reload"])}]}]

# kubernetes.core has no TLS server name option: it verifies the CA, and cluster-c's serving certificate carries
# 127.0.0.1 among its SANs, so the forward verifies there too.
K8S_PLAY = [{"name": "reload (kubernetes.core)", "hosts": "all", "gather_facts": False, "tasks": [
    {"name": "pods", "kubernetes.core.k8s_info": dict(CONN, kind="Pod", namespace="ingress-nginx",
                                                       label_selectors=[SELECTOR]), "register": "pods"},
    {"name": "reload", "kubernetes.core.k8s_exec": dict(CONN, namespace="ingress-nginx", pod="{{ item }}",
                                                        command="nginx -s reload"),
     "loop": "{{ pods.resources | map(attribute='metadata.name') | list }}"}]}]


def run_play(play: list, inv: Path, timeout: float = 900) -> float:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORKS=str(FORKS),
               ANSIBLE_COLLECTIONS_PATH=f"{REPO / 'collections'}:{BENCH_VENV}/lib/python3.11/site-packages")
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=REPO / "bench", delete=False) as f:
        f.write(json.dumps(play))
        path = f.name
    try:
        t0 = time.perf_counter()
        proc = subprocess.run([str(BENCH_VENV / "bin" / "ansible-playbook"), "-i", str(inv), path], env=env,
                              capture_output=True, text=True, timeout=timeout)
        elapsed = time.perf_counter() - t0
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError("fan-out playbook failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-2000:]))
    return elapsed


def floor(eps: dict, count: int) -> float:
    """The same exec calls from one process, all hosts concurrently (FORKS at a time), pods concurrently within."""
    sys.path.insert(0, str(REPO / "collections"))
    from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import podexec
    from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.runner import Context, connect
    names = sorted(eps)

    def one(i):
        e = eps[names[i % len(names)]]
        params = {"host": e["host"], "ca_cert": e["ca_cert"], "api_key": Path(e["token_file"]).read_text().strip(),
                  "tls_server_name": e["tls_server_name"]}
        client = connect(params, Context())
        pods = podexec.select_pods(client, "ingress-nginx", label_selector=SELECTOR, fail=RuntimeError)
        results, _ = podexec.run_in_pods(client, pods, ["nginx", "-s", "reload"])
        if any(r["rc"] != 0 for r in results):
            raise RuntimeError("floor: reload failed: %s" % results)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=FORKS) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - t0


def fanout(lab: dict, sizes=(6, 24, 96), compare_at=24) -> dict:
    scale(lab, 3)
    forward = SshForward(lab)
    out = {"forks": FORKS, "pods_per_cluster": 3, "wall_s": {}}
    try:
        eps = endpoints(lab, forward)
        with tempfile.TemporaryDirectory() as tmp:
            for n in sizes:
                inv = Path(tmp) / ("inv-%d.json" % n)
                inventory(eps, n, inv)
                row = {"kubegate": round(run_play(KUBEGATE_PLAY, inv), 2), "floor": round(floor(eps, n), 2)}
                if n == compare_at:
                    row["kubernetes.core"] = round(run_play(K8S_PLAY, inv), 2)
                out["wall_s"][str(n)] = row
        row = out["wall_s"][str(compare_at)]
        out["at_%d_hosts" % compare_at] = {
            "kubernetes.core_over_kubegate": round(row["kubernetes.core"] / row["kubegate"], 2),
            "kubegate_over_floor": round(row["kubegate"] / row["floor"], 2)}
    finally:
        forward.close()
        scale(lab, 2)
    return out

"""Fan-out benchmark: `nginx -s reload` in every ingress pod of many inventory clusters.

The lab's three clusters are scaled to 3 ingress pods each and repeated as inventory aliases (6, 24, 96 hosts;
cluster-c through an ssh forward via the edge host, as an operator reaches it). Compared at the same forks (and
the same concurrency for the single-process variants):
  kubegate         one kubegate.multicluster.pod_exec task (label selector), run per host by Ansible's workers
  kubegate_fanout  the same task once (run_once) with fanout: "{{ ansible_play_hosts }}": every host's call from the
                   controller process, fanout_concurrency = forks
  kubernetes.core  kubernetes.core.k8s_info (pods by label) + kubernetes.core.k8s_exec per pod, per host
  floor            a minimal Python script doing the same exec calls concurrently (the connection layer's exec in a
                   thread pool of `forks`), reading the same inventory file
Every variant is timed the same way: wall time of a fresh process (`ansible-playbook ...` or `python floor.py ...`)
from outside, so interpreter start, imports and reading the inventory count for the floor as for the playbooks.
The cheap variants are measured `rounds` times, interleaved, and the median kept; kubernetes.core once.

Run only this part (results merged into bench/results/latest.json): `python bench/run.py --only fanout`.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
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

# The same task, once, for every host of the play from the controller (kubegate's fan-out mode).
FANOUT_PLAY = [{"name": "reload (kubegate fan-out)", "hosts": "all", "gather_facts": False, "tasks": [
    {"name": "reload", "run_once": True, "kubegate.multicluster.pod_exec": dict(
        KUBEGATE_PLAY[0]["tasks"][0]["kubegate.multicluster.pod_exec"], fanout="{{ ansible_play_hosts }}",
        fanout_concurrency=FORKS)}]}]

FLOOR_TIMING = ("every variant is the wall time of a fresh process timed from outside (ansible-playbook, or "
                "`python bench/fanout.py floor INVENTORY` for the floor), so interpreter start, imports and reading the "
                "inventory count for the floor too; concurrency %d (= forks) for the floor and kubegate_fanout" % FORKS)


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


def floor_main(inventory_path: str) -> None:
    """The floor, as its own process: read the inventory, then every host's exec calls from one thread pool."""
    sys.path.insert(0, str(REPO / "collections"))
    from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import podexec
    from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.runner import Context, connect
    hosts = json.loads(Path(inventory_path).read_text())["all"]["hosts"]

    def one(h):
        params = {"host": h["kg_host"], "ca_cert": h["kg_ca"], "api_key": Path(h["kg_token_file"]).read_text().strip(),
                  "tls_server_name": h["kg_tls"]}
        client = connect(params, Context())
        pods = podexec.select_pods(client, "ingress-nginx", label_selector=SELECTOR, fail=RuntimeError)
        results, _ = podexec.run_in_pods(client, pods, ["nginx", "-s", "reload"])
        if any(r["rc"] != 0 for r in results):
            raise RuntimeError("floor: reload failed: %s" % results)
        return len(results)
    with ThreadPoolExecutor(max_workers=FORKS) as pool:
        execs = sum(pool.map(one, hosts.values()))
    print(json.dumps({"hosts": len(hosts), "execs": execs}))


def floor(inv: Path) -> float:
    """Wall time of the floor process (see floor_main), timed from outside like the playbooks."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(BENCH_VENV / "bin" / "python"), str(Path(__file__).resolve()), "floor", str(inv)],
                          capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError("floor failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:]))
    return elapsed


VARIANTS = ("kubegate", "kubegate_fanout", "floor", "kubernetes.core")


def fanout(lab: dict, sizes=(6, 24, 96), compare_at=24, rounds=3, variants=VARIANTS) -> dict:
    scale(lab, 3)
    forward = SshForward(lab)
    out = {"forks": FORKS, "pods_per_cluster": 3, "rounds": rounds, "timing": FLOOR_TIMING, "wall_s": {},
           "samples_s": {}, "ratios": {}}
    try:
        eps = endpoints(lab, forward)
        with tempfile.TemporaryDirectory() as tmp:
            for n in sizes:
                inv = Path(tmp) / ("inv-%d.json" % n)
                inventory(eps, n, inv)
                cheap = {"kubegate": lambda: run_play(KUBEGATE_PLAY, inv),
                         "kubegate_fanout": lambda: run_play(FANOUT_PLAY, inv),
                         "floor": lambda: floor(inv)}
                cheap = dict((k, v) for k, v in cheap.items() if k in variants)
                samples = dict((k, []) for k in cheap)
                for _ in range(rounds):
                    for name, measure in cheap.items():  # interleaved, so load spikes spread over the variants
                        samples[name].append(measure())
                row = dict((k, round(statistics.median(v), 2)) for k, v in samples.items())
                out["samples_s"][str(n)] = dict((k, [round(x, 2) for x in v]) for k, v in samples.items())
                if n == compare_at and "kubernetes.core" in variants:
                    row["kubernetes.core"] = round(run_play(K8S_PLAY, inv), 2)
                out["wall_s"][str(n)] = row
                ratios = {}
                if "floor" in row:
                    for name in ("kubegate", "kubegate_fanout"):
                        if name in row:
                            ratios[name + "_over_floor"] = round(row[name] / row["floor"], 2)
                if "kubernetes.core" in row:
                    for name in ("kubegate", "kubegate_fanout"):
                        if name in row:
                            ratios["kubernetes.core_over_" + name] = round(row["kubernetes.core"] / row[name], 2)
                out["ratios"][str(n)] = ratios
                print("fanout %d hosts: %s %s" % (n, json.dumps(row), json.dumps(ratios)), file=sys.stderr, flush=True)
    finally:
        forward.close()
        scale(lab, 2)
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "floor":
        floor_main(sys.argv[2])
    else:
        sys.exit("usage: fanout.py floor INVENTORY.json   (the benchmark itself runs from bench/run.py --only fanout)")

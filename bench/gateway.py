"""Gateway benchmark: what the pass-through gateway (role gateway, a real nginx) adds to a request.

latency: median (and p90) of sequential `GET /version` on one keep-alive connection, directly to cluster-b's apiserver
  (its admin token) and through the gateway (a caller token), both on loopback; added = gateway - direct.
throughput: requests/second of `GET /version` through the gateway with several client processes on keep-alive
  connections for a fixed time (nginx with 2 worker processes; the clients, nginx and the apiserver share the
  machine's cores, so this is a floor for what nginx alone could do).
The gateway is a dedicated nginx instance (lab/kglab/gateway.py) configured by playbooks/gateway.yml.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lab"))

CLUSTER = "cluster-b"


def _conn(host, port, cafile):
    return http.client.HTTPSConnection(host, port, context=ssl.create_default_context(cafile=cafile), timeout=30)


def _samples(host, port, cafile, path, auth, n, warmup=50):
    conn = _conn(host, port, cafile)
    headers = {"Authorization": auth}
    out = []
    for i in range(n + warmup):
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError("GET %s answered %d" % (path, resp.status))
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    conn.close()
    return out


def _load(args):
    host, port, cafile, path, auth, seconds = args
    conn = _conn(host, port, cafile)
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn.request("GET", path, headers={"Authorization": auth})
        resp = conn.getresponse()
        resp.read()
        if resp.status == 200:
            done += 1
    conn.close()
    return done


def _ms(values, q=None):
    if q is None:
        return round(statistics.median(values) * 1000, 3)
    return round(sorted(values)[int(len(values) * q) - 1] * 1000, 3)


def gateway_bench(desc: dict, requests: int = 2000, seconds: float = 10, clients: int = 4) -> dict:
    from kglab.gateway import LabGateway
    c = desc["clusters"][CLUSTER]
    cluster_token = Path(c["admin_token_file"]).read_text().strip()
    caller_token = secrets.token_urlsafe(32)
    gw = LabGateway("gateway-bench", workers=2).prepare()
    tmp = Path(tempfile.mkdtemp(prefix="kg-gw-bench-"))
    try:
        gw.start()
        inv = {"all": {"vars": {"ansible_connection": "local",
                                "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                       "children": {
                           "kubegate_gateway": {"hosts": {"gateway-bench": dict(gw.role_vars(), gateway_callers=[
                               {"name": "bench", "tenants": [c["tenant"]], "token": caller_token}])}},
                           c["tenant"]: {"hosts": {CLUSTER: {
                               "kubegate_tenant": c["tenant"], "kubegate_host": c["server"],
                               "kubegate_ca_cert": c["ca_file"], "kubegate_tls_server_name": CLUSTER,
                               "kubegate_gateway_token": cluster_token}}}}}}
        (tmp / "inventory.json").write_text(json.dumps(inv))
        (tmp / "inventory.json").chmod(0o600)
        proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(tmp / "inventory.json"),
                               str(REPO / "playbooks" / "gateway.yml")], capture_output=True, text=True,
                              env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")))
        if proc.returncode != 0:
            raise RuntimeError("gateway playbook failed:\n" + proc.stdout[-3000:])
        host, port = c["server"].split("://", 1)[1].rsplit(":", 1)
        direct = (host, int(port), c["ca_file"], "/version", "Bearer " + cluster_token)
        through = (gw.host, gw.port, gw.ca_file, "/tenants/%s/clusters/%s/version" % (c["tenant"], CLUSTER),
                   "Bearer " + caller_token)
        # interleave rounds so that load from elsewhere hits both sides alike
        d, g = [], []
        for _ in range(4):
            d += _samples(*direct, n=requests // 4)
            g += _samples(*through, n=requests // 4)
        with multiprocessing.Pool(clients) as pool:
            t0 = time.perf_counter()
            done_gw = sum(pool.map(_load, [through + (seconds,)] * clients))
            rps_gw = done_gw / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            done_direct = sum(pool.map(_load, [direct + (seconds,)] * clients))
            rps_direct = done_direct / (time.perf_counter() - t0)
        return {
            "cluster": CLUSTER, "requests": len(d), "machine_cpus": os.cpu_count(), "nginx_worker_processes": 2,
            "median_ms_direct": _ms(d), "median_ms_gateway": _ms(g), "added_ms_median": round(_ms(g) - _ms(d), 3),
            "p90_ms_direct": _ms(d, 0.9), "p90_ms_gateway": _ms(g, 0.9), "goal_added_ms": 2.0,
            "rps_gateway": round(rps_gw), "rps_direct": round(rps_direct), "load_clients": clients,
            "load_seconds": seconds,
            "note": "loopback; keep-alive on both sides; clients, nginx and kube-apiserver share the same cores",
        }
    finally:
        gw.stop()
        shutil.rmtree(gw.dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(gateway_bench(json.loads((REPO / ".lab" / "lab.json").read_text())), indent=1))

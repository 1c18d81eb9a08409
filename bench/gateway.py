"""Gateway benchmark: what the pass-through gateway (role gateway, a real nginx) adds to a request.

latency: median (and p90) of sequential `GET /version` on one keep-alive connection, directly to cluster-b's apiserver
  (its admin token) and through the gateway (a caller token), both on loopback; added = gateway - direct.
throughput: requests/second of `GET /version` through the gateway with several client processes on keep-alive
  connections for a fixed time (nginx with 2 worker processes; the clients, nginx and the apiserver share the
  machine's cores, so this is a floor for what nginx alone could do).
fairness: per-tenant fairness under the role's default per-caller limits. A noisy caller (tenant acme) opens more
  watches than gateway_caller_connections allows and hammers `GET /version` from several processes for a fixed time;
  meanwhile a quiet caller of another tenant (the same apiserver, behind the gateway as tenant `quiet`) sends
  sequential requests. Recorded: the noisy load (watches asked/accepted, requests sent, answered 200/429) and the quiet
  caller's p50/p99 and errors, with and without the noise.
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


def _load_statuses(args):
    """Like _load, but counts every answer by status (the noisy caller of the fairness run)."""
    host, port, cafile, path, auth, seconds = args
    conn = _conn(host, port, cafile)
    counts, deadline = {}, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        try:
            conn.request("GET", path, headers={"Authorization": auth})
            resp = conn.getresponse()
            resp.read()
            counts[resp.status] = counts.get(resp.status, 0) + 1
        except (OSError, http.client.HTTPException):
            counts[0] = counts.get(0, 0) + 1
            conn.close()
            conn = _conn(host, port, cafile)
    conn.close()
    return counts


def _timed(host, port, cafile, path, auth, n, pause=0.02):
    """n sequential requests on one keep-alive connection: (latencies of the 200s, number of other answers)."""
    conn = _conn(host, port, cafile)
    out, errors = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": auth})
        resp = conn.getresponse()
        resp.read()
        if resp.status == 200:
            out.append(time.perf_counter() - t0)
        else:
            errors += 1
        time.sleep(pause)
    conn.close()
    return out, errors


def _open_watches(host, port, cafile, path, auth, n):
    """n watches (each its own connection); returns (connections, statuses)."""
    conns, statuses = [], []
    for _ in range(n):
        conn = _conn(host, port, cafile)
        conn.request("GET", path, headers={"Authorization": auth})
        resp = conn.getresponse()
        statuses.append(resp.status)
        if resp.status != 200:
            resp.read()
        conns.append(conn)
    return conns, statuses


def _ms(values, q=None):
    if q is None:
        return round(statistics.median(values) * 1000, 3)
    return round(sorted(values)[int(len(values) * q) - 1] * 1000, 3)


def _play(inventory_path: Path):
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory_path),
                           str(REPO / "playbooks" / "gateway.yml")], capture_output=True, text=True,
                          env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")))
    if proc.returncode != 0:
        raise RuntimeError("gateway playbook failed:\n" + proc.stdout[-3000:])


def gateway_bench(desc: dict, requests: int = 2000, seconds: float = 10, clients: int = 4,
                  fair_seconds: float = 10, fair_clients: int = 4, fair_watches: int = 150) -> dict:
    from kglab.gateway import LabGateway
    c = desc["clusters"][CLUSTER]
    cluster_token = Path(c["admin_token_file"]).read_text().strip()
    caller_token = secrets.token_urlsafe(32)
    noisy_token, quiet_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    gw = LabGateway("gateway-bench", workers=2).prepare()
    tmp = Path(tempfile.mkdtemp(prefix="kg-gw-bench-"))
    try:
        gw.start()
        cluster_vars = {"kubegate_host": c["server"], "kubegate_ca_cert": c["ca_file"],
                        "kubegate_tls_server_name": CLUSTER, "kubegate_gateway_token": cluster_token}
        callers = [{"name": "bench", "tenants": [c["tenant"]], "token": caller_token},
                   {"name": "noisy", "tenants": [c["tenant"]], "token": noisy_token},
                   {"name": "quiet", "tenants": ["quiet"], "token": quiet_token}]

        def inventory(**limits):
            inv = {"all": {"vars": {"ansible_connection": "local",
                                    "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                           "children": {
                               "kubegate_gateway": {"hosts": {"gateway-bench": dict(gw.role_vars(),
                                                                                    gateway_callers=callers, **limits)}},
                               c["tenant"]: {"hosts": {CLUSTER: dict(cluster_vars, kubegate_tenant=c["tenant"])}},
                               # the same apiserver once more, as another tenant's cluster (the quiet tenant)
                               "quiet": {"hosts": {"bench-quiet": dict(cluster_vars, kubegate_tenant="quiet")}}}}}
            path = tmp / "inventory.json"
            path.write_text(json.dumps(inv))
            path.chmod(0o600)
            return path
        # latency and throughput of the pass-through itself: per-caller limits out of the way
        _play(inventory(gateway_caller_rate=100000, gateway_caller_burst=100000))
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
        fairness = _fairness(gw, c, noisy_token, quiet_token, inventory, fair_seconds, fair_clients, fair_watches)
        return {
            "fairness": fairness,
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


def _fairness(gw, c, noisy_token, quiet_token, inventory, seconds, clients, watches) -> dict:
    """The quiet tenant's latency alone and under the noisy tenant's load, with the role's default limits."""
    _play(inventory())
    noisy_base = "/tenants/%s/clusters/%s" % (c["tenant"], CLUSTER)
    noisy = (gw.host, gw.port, gw.ca_file, noisy_base + "/version", "Bearer " + noisy_token)
    quiet = (gw.host, gw.port, gw.ca_file, "/tenants/quiet/clusters/bench-quiet/version", "Bearer " + quiet_token)
    watch_path = noisy_base + "/api/v1/namespaces/default/configmaps?watch=1"
    alone, alone_errors = _timed(*quiet, n=300)
    conns, watch_statuses = _open_watches(gw.host, gw.port, gw.ca_file, watch_path, "Bearer " + noisy_token, watches)
    try:
        with multiprocessing.Pool(clients) as pool:
            t0 = time.perf_counter()
            pending = pool.map_async(_load_statuses, [noisy + (seconds,)] * clients)
            loaded, loaded_errors = [], 0
            while time.perf_counter() - t0 < seconds:
                lat, err = _timed(*quiet, n=20)
                loaded += lat
                loaded_errors += err
            counts = {}
            for part in pending.get(timeout=seconds + 60):
                for status, n in part.items():
                    counts[str(status)] = counts.get(str(status), 0) + n
            elapsed = time.perf_counter() - t0
    finally:
        for conn in conns:
            conn.close()
    return {
        "limits": "role defaults: gateway_caller_rate 50/s, gateway_caller_burst 100, gateway_caller_connections 100",
        "noisy_watches_asked": watches, "noisy_watches_accepted": watch_statuses.count(200),
        "noisy_watches_refused_429": watch_statuses.count(429),
        "noisy_load_processes": clients, "noisy_load_seconds": seconds,
        "noisy_requests_sent": sum(counts.values()), "noisy_requests_per_second": round(sum(counts.values()) / elapsed),
        "noisy_answers": counts,
        "quiet_requests_alone": len(alone) + alone_errors, "quiet_errors_alone": alone_errors,
        "quiet_p50_ms_alone": _ms(alone), "quiet_p99_ms_alone": _ms(alone, 0.99),
        "quiet_requests_under_load": len(loaded) + loaded_errors, "quiet_errors_under_load": loaded_errors,
        "quiet_p50_ms_under_load": _ms(loaded), "quiet_p99_ms_under_load": _ms(loaded, 0.99),
    }


if __name__ == "__main__":
    print(json.dumps(gateway_bench(json.loads((REPO / ".lab" / "lab.json").read_text())), indent=1))

#!/usr/bin/env python3
"""`make bench`: measurements against the running lab, written to bench/results/latest.json.

Sections (`--only` takes section names -- per_task, fanout, gateway -- and/or per-task variant names; without --only
every section runs):
fanout_reload (`--only fanout`): `nginx -s reload` in every ingress pod over 6/24/96 inventory clusters, per-host
  kubegate vs kubegate fan-out vs kubernetes.core vs a single-process floor (see bench/fanout.py).
per_task (`--only per_task`, or variant names): median seconds per task for N sequential `GET /version` tasks (the
  same token and CA everywhere), for kubegate.multicluster.api_request, ansible.builtin.uri, kubernetes.core.k8s_info (one object) and `kubectl get --raw`.
  Per-task time = (time of a playbook with N+1 tasks - time of the same playbook with 1 task) / N, so interpreter start,
  inventory and playbook parsing are not counted; each variant is run `--rounds` times and the median kept.
gateway: latency of `GET /version` direct vs through the pass-through gateway, requests/second through it, and
  per-tenant fairness (the quiet tenant's p50/p99 under a noisy tenant's load, `gateway.fairness`; see bench/gateway.py).
  `--only gateway` runs just this section.
Each run replaces only the sections it measured in latest.json; the others are kept.
All Ansible variants run with the same ansible-core (the bench virtualenv, which also carries kubernetes.core from
PyPI's `ansible` package).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / ".lab"
BENCH_VENV = REPO / ".venv-bench"
RESULTS = REPO / "bench" / "results"


def lab_desc() -> dict:
    if not (LAB / "ready").exists():
        sys.exit("bench: the lab is not up (run `make lab`)")
    return json.loads((LAB / "lab.json").read_text())


def playbook(tasks: list[dict], n: int) -> str:
    play = {"name": "bench", "hosts": "bench", "gather_facts": False, "tasks": tasks * n}
    return json.dumps([play])


def task_variants(c: dict) -> dict:
    token_lookup = "{{ lookup('ansible.builtin.file', '%s') }}" % c["admin_token_file"]
    return {
        "kubegate.api_request": {"name": "version", "kubegate.multicluster.api_request": {
            "host": c["server"], "api_key": token_lookup, "ca_cert": c["ca_file"], "path": "/version"}},
        "ansible.builtin.uri": {"name": "version", "ansible.builtin.uri": {
            "url": c["server"] + "/version", "ca_path": c["ca_file"], "return_content": True,
            "headers": {"Authorization": "Bearer " + token_lookup}}},
        "kubernetes.core.k8s_info": {"name": "version", "kubernetes.core.k8s_info": {
            "host": c["server"], "api_key": token_lookup, "ca_cert": c["ca_file"],
            "kind": "Namespace", "name": "default"}},
    }


def run_playbook(text: str, env: dict) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=REPO / "bench", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        t0 = time.perf_counter()
        proc = subprocess.run([str(BENCH_VENV / "bin" / "ansible-playbook"), "-i", "bench,", path],
                              env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError(f"bench playbook failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def per_task(c: dict, n: int, rounds: int, only: list[str] | None) -> dict:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=f"{REPO / 'collections'}:{BENCH_VENV}/lib/python3.11/site-packages",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_LOCALHOST_WARNING="False")
    env["ANSIBLE_PYTHON_INTERPRETER"] = str(BENCH_VENV / "bin" / "python")
    results = {}
    for name, task in task_variants(c).items():
        if only and name not in only:
            continue
        local = dict(task)
        samples = []
        for _ in range(rounds):
            base = run_playbook(playbook([dict(local, **{"vars": {"ansible_connection": "local"}})], 1), env)
            full = run_playbook(playbook([dict(local, **{"vars": {"ansible_connection": "local"}})], n + 1), env)
            samples.append((full - base) / n)
        results[name] = {"median_s_per_task": round(statistics.median(samples), 4), "samples": [round(s, 4) for s in samples]}
    if not only or "kubectl" in only:
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                subprocess.run([lab_desc()["kubectl"], "--kubeconfig", c["admin_kubeconfig"], "get", "--raw", "/version"],
                               check=True, capture_output=True)
            samples.append((time.perf_counter() - t0) / n)
        results["kubectl get --raw"] = {"median_s_per_task": round(statistics.median(samples), 4),
                                        "samples": [round(s, 4) for s in samples]}
    return results


SECTIONS = ("per_task", "fanout", "gateway")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="sections (per_task, fanout, gateway) and/or per-task variant names "
                    "(kubegate.api_request, ansible.builtin.uri, kubernetes.core.k8s_info, kubectl)")
    ap.add_argument("--no-fanout", action="store_true", help="skip the fan-out benchmark (bench/fanout.py)")
    ap.add_argument("--fanout-sizes", type=int, nargs="*", default=[6, 24, 96])
    ap.add_argument("--fanout-rounds", type=int, default=3, help="samples per cheap fan-out variant (median kept)")
    ap.add_argument("--fanout-variants", nargs="*", default=None,
                    help="fan-out variants to run (default all: kubegate kubegate_fanout floor kubernetes.core)")
    args = ap.parse_args()
    only = list(args.only or [])
    sections = [x for x in only if x in SECTIONS]
    variants = [x for x in only if x not in SECTIONS]
    run_per_task = not only or "per_task" in sections or bool(variants)
    run_fanout = (not only or "fanout" in sections) and not args.no_fanout
    run_gateway = not only or "gateway" in sections
    desc = lab_desc()
    c = desc["clusters"]["cluster-b"]
    latest = RESULTS / "latest.json"
    out = json.loads(latest.read_text()) if latest.exists() else {}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if "per_task_get_version" in out and "per_task_when" not in out:
        out["per_task_when"] = out.get("when")  # results kept from an earlier run keep their date
    out.update({"when": now, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}})
    if run_per_task:
        out.update({"cluster": "cluster-b", "tasks": args.tasks, "rounds": args.rounds, "per_task_when": now})
        out["per_task_get_version"] = per_task(c, args.tasks, args.rounds, variants or None)
        pt = out["per_task_get_version"]
        if "kubegate.api_request" in pt:
            ours = pt["kubegate.api_request"]["median_s_per_task"]
            out["ratios"] = {k: round(ours / v["median_s_per_task"], 3) for k, v in pt.items()
                             if k != "kubegate.api_request"}
    if run_fanout:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fanout import VARIANTS, fanout
        out["fanout_reload"] = fanout(desc, sizes=tuple(args.fanout_sizes), rounds=args.fanout_rounds,
                                      variants=tuple(args.fanout_variants or VARIANTS))
        out["fanout_reload"]["when"] = now
    if run_gateway:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from gateway import gateway_bench
        out["gateway"] = dict(gateway_bench(desc), when=now)
    RESULTS.mkdir(parents=True, exist_ok=True)
    latest.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()

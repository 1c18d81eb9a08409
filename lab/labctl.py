#!/usr/bin/env python3
"""kubegate lab lifecycle: `labctl.py up | down | status`.

up    — (re)creates the network namespaces and starts three clusters in parallel; idempotent: a healthy lab is kept.
down  — stops every lab process (test hosts included), removes namespaces, interfaces and state; reports anything it
        could not remove.
status — one line per cluster.
hosts-up   — boots the systemd test hosts (kg-tunnel, kg-jump; systemd-nspawn) next to a running lab; idempotent.
hosts-down — stops them and removes their state (.lab/hosts).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kglab import edge, hosts, netns, procs  # noqa: E402
from kglab.cluster import BIN, REPO, SPECS, STATE, Cluster, binary  # noqa: E402
from kglab.procs import LabError  # noqa: E402

REQUIRED_TOOLS = ("ip", "curl", "ssh-keygen", "/usr/sbin/sshd", "/usr/sbin/nginx", "ss")
SYNC_DELAY = float(os.environ.get("KUBEGATE_LAB_SYNC_DELAY", "3"))


def say(msg: str):
    print(f"[lab] {msg}", flush=True)


def clusters() -> list[Cluster]:
    return [Cluster(s, SYNC_DELAY) for s in SPECS]


def healthy() -> bool:
    if not (STATE / "ready").exists():
        return False
    for c in clusters():
        for pidfile in c.pidfiles():
            pid = procs.read_pid(pidfile)
            if not pid or not procs.pid_alive(pid):
                return False
        try:
            if not c._readyz():
                return False
        except (LabError, OSError, subprocess.SubprocessError):
            return False
    return True


def preflight_tools():
    """Checked before anything is stopped or started."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces); run it as root")
    missing = [t for t in REQUIRED_TOOLS if not shutil.which(t)]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)}; run `make deps` (installs Debian packages)")
    for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "sample-apiserver"):
        binary(b)


def preflight_ports():
    """Checked after an old lab is stopped and before anything new starts."""
    for c in clusters():
        c.preflight()


def repair() -> bool:
    """A lab that was up but lost daemons (a fault test killed one): restart just those, keeping certificates,
    objects and the systemd test hosts. False when that is not enough and the lab must be rebuilt."""
    if not (STATE / "ready").exists() or not (STATE / "lab.json").exists():
        return False
    try:
        restarted = {c.name: c.repair() for c in clusters()}
    except (LabError, OSError, subprocess.SubprocessError) as e:
        say(f"repair not possible ({e}); rebuilding the lab")
        return False
    if not healthy():
        return False
    done = [f"{name}: {', '.join(parts)}" for name, parts in restarted.items() if parts]
    say("lab repaired, restarted " + "; ".join(done) if done else "lab healthy")
    return True


def up(args):
    if healthy() and not args.force:
        say(f"lab already up ({STATE}); `make lab-down` to stop it")
        return 0
    if not args.force and repair():
        return 0
    t0 = time.monotonic()
    preflight_tools()
    down(quiet=True)
    preflight_ports()
    STATE.mkdir(parents=True, exist_ok=True)
    netns.up()
    edge.up()
    cs = clusters()
    failures = []
    with concurrent.futures.ThreadPoolExecutor(len(cs)) as pool:
        futures = {pool.submit(c.up): c for c in cs}
        for fut in concurrent.futures.as_completed(futures):
            c = futures[fut]
            try:
                fut.result()
                say(f"{c.name}: ready at {c.server}" + (f" (netns {c.spec.netns})" if c.spec.netns else ""))
            except LabError as e:
                failures.append(f"{c.name}: {e}")
    if failures:
        for f in failures:
            say(f"FAILED {f}")
        say("the lab is NOT up; logs are under .lab/<cluster>/logs; `make lab-down` cleans up")
        return 1
    write_outputs(cs)
    (STATE / "ready").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    say(f"lab up in {time.monotonic() - t0:.1f}s — kubeconfig: {STATE / 'kubeconfig'}, inventory: inventories/lab")
    return 0


def write_outputs(cs: list[Cluster]):
    desc = {"clusters": {c.name: c.describe() for c in cs}, "edge": edge.describe(),
            "kubeconfig": str(STATE / "kubeconfig"), "kubectl": str(BIN / "kubectl"), "sync_delay": SYNC_DELAY,
            "netns": list(netns.NAMESPACES)}
    (STATE / "lab.json").write_text(json.dumps(desc, indent=1, sort_keys=True))
    # One kubeconfig with a context per cluster, credentials embedded (admin client certificates).
    merged = {"apiVersion": "v1", "kind": "Config", "current-context": cs[0].name,
              "clusters": [], "users": [], "contexts": []}
    import base64
    for c in cs:
        b64 = lambda p: base64.b64encode(Path(p).read_bytes()).decode()  # noqa: E731
        merged["clusters"].append({"name": c.name, "cluster": {"server": c.server,
                                                               "certificate-authority-data": b64(c.pki_dir / "ca.crt")}})
        merged["users"].append({"name": f"{c.name}-admin", "user": {
            "client-certificate-data": b64(c.pki_dir / "admin.crt"), "client-key-data": b64(c.pki_dir / "admin.key")}})
        merged["contexts"].append({"name": c.name, "context": {"cluster": c.name, "user": f"{c.name}-admin"}})
    path = STATE / "kubeconfig"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(merged, f, indent=1)
    write_inventory(cs)


def write_inventory(cs: list[Cluster]):
    inv = REPO / "inventories" / "lab"
    inv.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Generated by `make lab` (lab/labctl.py) — do not edit; git-ignored.",
        "# Each cluster is an inventory host reached through its apiserver only (ansible_connection: local).",
        "# cluster-c sits in a restricted network: reachable through the edge host (see kubegate_jump).",
        "all:",
        "  vars:",
        "    ansible_connection: local",
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"',
        f"    kubegate_kubeconfig: {STATE / 'kubeconfig'}",
        f"    kubegate_lab_dir: {STATE}",
        "  children:",
    ]
    for tenant in sorted({c.spec.tenant for c in cs}):
        lines += [f"    {tenant}:", "      hosts:"]
        for c in (c for c in cs if c.spec.tenant == tenant):
            d = c.describe()
            lines += [f"        {c.name}:",
                      f"          kubegate_tenant: {tenant}",
                      f"          kubegate_context: {c.name}",
                      f"          kubegate_host: {c.server}",
                      f"          kubegate_ca_cert: {d['ca_file']}",
                      f"          kubegate_tls_server_name: {c.name}",
                      f"          kubegate_access: {'restricted' if c.spec.netns else 'direct'}"]
            if c.spec.netns:
                e = edge.describe()
                lines += ["          kubegate_jump:"] + [f"            {k}: {v}" for k, v in e.items() if k != "netns"]
    (inv / "hosts.yml").write_text("\n".join(lines) + "\n")


def down(args=None, quiet: bool = False):
    # The systemd test hosts first (kg-jump lives in a lab namespace), then agents (they stop their pods' nginx), then everything else at once.
    stopped = [f"host {n}" for n in hosts.down(quiet=True)]
    stopped += procs.stop_all([c.agent_pids for c in clusters()])
    stopped += procs.stop_all([c.pids for c in clusters()] + [edge.DIR / "pids"])
    # Any pod nginx the agents could not stop (e.g. an agent killed hard): find them by their pid files.
    for pidfile in STATE.glob("*/pods/*/nginx.pid"):
        pid = procs.read_pid(pidfile)
        if pid and procs.pid_alive(pid):
            procs.stop_pid(pid)
            stopped.append(f"nginx {pidfile.parent.name}")
    netns.down()
    edge.cleanup()
    (STATE / "ready").unlink(missing_ok=True)
    if STATE.exists():
        shutil.rmtree(STATE, ignore_errors=True)
    left = netns.leftovers()
    stray = subprocess.run(["pgrep", "-af", str(STATE)], capture_output=True, text=True).stdout.strip()
    if stray:
        left.append(f"processes: {stray}")
    if not quiet:
        say(f"lab down: stopped {len(stopped)} processes" + ("" if not left else f"; LEFT BEHIND: {left}"))
    return 1 if left else 0


def lab_memory_mib() -> float:
    """Resident memory of every lab process and its descendants (pod nginx included)."""
    roots = set()
    for c in clusters():
        roots |= {procs.read_pid(p) for p in c.pidfiles()}
    roots |= {procs.read_pid(p) for p in (edge.DIR / "pids").glob("*.pid")}
    roots |= {procs.read_pid(p) for p in STATE.glob("*/pods/*/nginx.pid")}
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    seen, todo = set(), [p for p in roots if p]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    total = 0
    for pid in seen:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def status(args):
    if not (STATE / "lab.json").exists():
        say("lab is down")
        return 1
    ok = True
    for c in clusters():
        alive = all(procs.pid_alive(procs.read_pid(p) or 0) for p in c.pidfiles())
        ready = c._readyz() if alive else False
        ok &= ready
        say(f"{c.name}: {'ready' if ready else 'NOT ready'} at {c.server}")
    say(f"memory (RSS of all lab processes): {lab_memory_mib():.0f} MiB")
    return 0 if ok else 1


def hosts_up(args):
    if os.geteuid() != 0:
        raise LabError("the test hosts need root (systemd-nspawn); run it as root")
    missing = [t for t in ("systemd-nspawn", "nsenter", "debootstrap", "ssh", "ssh-keygen") if not shutil.which(t)]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)}; run `make deps` (installs Debian packages)")
    hosts.up()
    return 0


def hosts_down(args):
    hosts.down()
    left = hosts.running()
    if left:
        say(f"hosts down: LEFT BEHIND: {left}")
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up")
    p_up.add_argument("--force", action="store_true", help="restart even if the lab looks healthy")
    sub.add_parser("down")
    sub.add_parser("status")
    sub.add_parser("hosts-up", help="boot the systemd test hosts (needs the lab up); no-op when they are healthy")
    sub.add_parser("hosts-down", help="stop the systemd test hosts and remove their state")
    args = ap.parse_args()
    try:
        return {"up": up, "down": down, "status": status, "hosts-up": hosts_up, "hosts-down": hosts_down}[args.cmd](args)
    except LabError as e:
        say(f"ERROR: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted; run `make lab-down` to clean up")
        return 130


if __name__ == "__main__":
    sys.exit(main())

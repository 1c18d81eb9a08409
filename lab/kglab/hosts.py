"""Real systemd test hosts for role tests and Molecule: Debian bookworm (lab/rootfs.sh, cached) booted with
`systemd-nspawn --boot` (systemd as PID 1), reached by Ansible over ssh with a generated key and pinned host keys.

  kg-tunnel  the platform's tunnel host: shares the ROOT network namespace (reaches cluster-a/b and the edge at
             198.18.2.2; services it binds on loopback are visible to the controller); sshd on 127.0.0.1:2201
  kg-jump    a jump host in network namespace kglab-edge (reaches cluster-c's apiserver 198.18.3.2:6443);
             sshd on 198.18.2.2:2222 (the lab's own edge sshd on :22 is left alone)

Each host boots from a fresh copy of the cached root filesystem (.lab/hosts/<name>/rootfs), so `hosts-down` then
`hosts-up` gives pristine machines. Outputs: .lab/hosts/hosts.json and the Ansible inventory
.lab/hosts/inventory/hosts.yml (groups kglab_hosts, tunnel_hosts, jump_hosts).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import procs
from .cluster import BIN, LAB_DIR, STATE
from .procs import LabError

DIR = STATE.resolve() / "hosts"        # resolved: worktrees share one lab through a .lab symlink
KEY = DIR / "id_ed25519"                 # root's login key on every test host (controller side)
KNOWN_HOSTS = DIR / "known_hosts"        # pinned host keys of every test host
INVENTORY = DIR / "inventory" / "hosts.yml"
DESCRIPTION = DIR / "hosts.json"
ROOTFS_SH = LAB_DIR / "rootfs.sh"
BOOT_TIMEOUT = float(os.environ.get("KGLAB_HOSTS_BOOT_TIMEOUT", "90"))


@dataclass(frozen=True)
class HostSpec:
    name: str
    netns: str | None        # None: the root network namespace
    ssh_host: str
    ssh_port: int
    groups: tuple[str, ...]


HOSTS = {
    "kg-tunnel": HostSpec("kg-tunnel", None, "127.0.0.1", 2201, ("tunnel_hosts",)),
    "kg-jump": HostSpec("kg-jump", "kglab-edge", "198.18.2.2", 2222, ("jump_hosts",)),
}


def say(msg: str):
    print(f"[hosts] {msg}", flush=True)


def _hdir(name: str) -> Path:
    return DIR / name


def _rootfs(name: str) -> Path:
    return _hdir(name) / "rootfs"


def _pidfile(name: str) -> Path:
    return _hdir(name) / "pids" / "nspawn.pid"


def _log(name: str) -> Path:
    return _hdir(name) / "logs" / "nspawn.log"


class _Lock:
    """Serialises hosts-up / hosts-down (several tests or helpers may call them)."""

    def __enter__(self):
        STATE.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(STATE / ".hosts.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# ---- processes -------------------------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(stat.parent.name))
    return out


def _nspid(pid: int) -> list[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def nspawn_pid(name: str) -> int | None:
    pid = procs.read_pid(_pidfile(name))
    return pid if pid and procs.pid_alive(pid) else None


def init_pid(name: str) -> int | None:
    """The host pid of the container's PID 1 (systemd): the descendant of systemd-nspawn that is pid 1 inside."""
    root = nspawn_pid(name)
    if not root:
        return None
    kids = _children()
    todo = list(kids.get(root, []))
    while todo:
        pid = todo.pop(0)
        ns = _nspid(pid)
        if len(ns) >= 2 and ns[-1] == 1:
            return pid
        todo += kids.get(pid, [])
    return None


def run_in(name: str, argv: list[str], *, input: str | None = None, timeout: float = 60,
           check: bool = False) -> subprocess.CompletedProcess:
    """Run argv inside host `name` (all namespaces of its PID 1, a clean environment), like `machinectl shell`."""
    pid = init_pid(name)
    if not pid:
        raise LabError(f"{name}: not running (run `lab/labctl.py hosts-up`)")
    full = ["nsenter", "-t", str(pid), "-a", "--", "/usr/bin/env", "-i",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root",
            "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"] + list(argv)
    proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{name}: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def system_state(name: str) -> str:
    try:
        return run_in(name, ["systemctl", "is-system-running"], timeout=20).stdout.strip() or "unknown"
    except (LabError, subprocess.SubprocessError, OSError):
        return "down"


def _ssh_open(spec: HostSpec, timeout: float = 2) -> bool:
    try:
        with socket.create_connection((spec.ssh_host, spec.ssh_port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def ssh_argv(name: str) -> list[str]:
    """ssh to a test host as root with the generated key and the pinned host key (append the remote command)."""
    spec = HOSTS[name]
    return ["ssh", "-F", "/dev/null", "-i", str(KEY), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "ConnectTimeout=5",
            "-p", str(spec.ssh_port), f"root@{spec.ssh_host}"]


def healthy(name: str) -> bool:
    spec = HOSTS[name]
    if not (_rootfs(name) / ".kglab-host").exists() or not KEY.exists():
        return False
    if spec.netns and not Path(f"/run/netns/{spec.netns}").exists():
        return False
    if system_state(name) not in ("running", "degraded"):
        return False
    return subprocess.run(ssh_argv(name) + ["true"], capture_output=True, timeout=20).returncode == 0


# ---- lifecycle ------------------------------------------------------------------------------------------------------
def _keygen(path: Path, comment: str):
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)


def _build_rootfs() -> Path:
    proc = subprocess.run(["bash", str(ROOTFS_SH)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"root filesystem build failed: {proc.stderr.strip()[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _prepare(spec: HostSpec, image: Path):
    hdir, root = _hdir(spec.name), _rootfs(spec.name)
    if root.exists():
        shutil.rmtree(root)
    hdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(image), str(root)], check=True)
    hostkey = hdir / "ssh_host_ed25519_key"
    _keygen(hostkey, f"root@{spec.name}")
    etc = root / "etc"
    (etc / "hostname").write_text(spec.name + "\n")
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {spec.name}\n::1 localhost ip6-localhost\n")
    for suffix in ("", ".pub"):
        shutil.copy2(str(hostkey) + suffix, etc / "ssh" / ("ssh_host_ed25519_key" + suffix))
    (etc / "ssh" / "ssh_host_ed25519_key").chmod(0o600)
    (etc / "ssh" / "sshd_config.d" / "kglab.conf").write_text(
        f"# kubegate lab test host {spec.name}\n"
        f"ListenAddress {spec.ssh_host}:{spec.ssh_port}\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UseDNS no\nX11Forwarding no\n")
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text((Path(str(KEY) + ".pub")).read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    # sshd starts only once its address exists (kg-jump's is configured by the lab in kglab-edge).
    (root / ".kglab-host").write_text(json.dumps({"name": spec.name, "image": str(image)}) + "\n")


def _start(spec: HostSpec):
    argv = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit", "-M", spec.name,
            "-D", str(_rootfs(spec.name).resolve()), "--console=read-only", "--kill-signal=SIGRTMIN+3"]
    if spec.netns:
        argv.append(f"--network-namespace-path=/run/netns/{spec.netns}")
    if BIN.is_dir():
        argv.append(f"--bind-ro={BIN}:/opt/kglab/bin")   # the lab's kubectl etc., read-only, for roles that need it
    procs.start("nspawn", argv, logdir=_log(spec.name).parent, piddir=_pidfile(spec.name).parent)


def _wait_booted(spec: HostSpec):
    log = _log(spec.name)
    pid = nspawn_pid(spec.name)

    def booted():
        state = system_state(spec.name)
        return state if state in ("running", "degraded") else None
    state = procs.wait_until(f"{spec.name}: boot (systemctl is-system-running)", booted, BOOT_TIMEOUT, log,
                             interval=0.5, pid=pid)
    procs.wait_until(f"{spec.name}: sshd on {spec.ssh_host}:{spec.ssh_port}", lambda: _ssh_open(spec), 30, log,
                     interval=0.3, pid=pid)
    if state == "degraded":
        failed = run_in(spec.name, ["systemctl", "--failed", "--no-legend", "--plain"]).stdout.strip()
        say(f"{spec.name}: degraded (failed units: {failed or 'none listed'})")
    return state


def _stop(name: str, timeout: float = 20) -> bool:
    """Power the host off (SIGTERM to systemd-nspawn = clean shutdown), kill what is left. True if it was running."""
    pid, init = nspawn_pid(name), init_pid(name)
    if not pid and not init:
        _pidfile(name).unlink(missing_ok=True)
        return False
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and procs.pid_alive(pid):
            time.sleep(0.1)
    for p in (init, pid):        # SIGKILL to the container's PID 1 ends its whole PID namespace
        if p and procs.pid_alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(p and procs.pid_alive(p) for p in (pid, init)):
        time.sleep(0.1)
    _pidfile(name).unlink(missing_ok=True)
    return True


def _write_outputs():
    hosts = {}
    for name, spec in HOSTS.items():
        pub = (_hdir(name) / "ssh_host_ed25519_key.pub")
        if not pub.exists():
            continue
        keytype, key = pub.read_text().split()[:2]
        hosts[name] = {"ssh_host": spec.ssh_host, "ssh_port": spec.ssh_port, "user": "root", "key_file": str(KEY),
                       "known_hosts": str(KNOWN_HOSTS), "host_key": f"{keytype} {key}", "netns": spec.netns,
                       "groups": list(spec.groups), "rootfs": str(_rootfs(name))}
    KNOWN_HOSTS.write_text("".join(f"[{h['ssh_host']}]:{h['ssh_port']} {h['host_key']}\n" for h in hosts.values()))
    DESCRIPTION.write_text(json.dumps({"hosts": hosts, "inventory": str(INVENTORY)}, indent=1, sort_keys=True) + "\n")
    common = f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={KNOWN_HOSTS} -o IdentitiesOnly=yes"
    lines = ["# Generated by `lab/labctl.py hosts-up` — the lab's systemd test hosts (systemd-nspawn), reached over ssh.",
             "all:", "  children:", "    kglab_hosts:", "      vars:", "        ansible_connection: ssh",
             "        ansible_user: root", f"        ansible_ssh_private_key_file: {KEY}",
             f'        ansible_ssh_common_args: "{common}"', "        ansible_python_interpreter: /usr/bin/python3",
             "      hosts:"]
    for name, h in hosts.items():
        lines += [f"        {name}:", f"          ansible_host: {h['ssh_host']}", f"          ansible_port: {h['ssh_port']}",
                  f"          kglab_host_key: {h['host_key']}", f"          kglab_netns: {h['netns'] or 'null'}"]
    groups: dict[str, list[str]] = {}
    for name, h in hosts.items():
        for g in h["groups"]:
            groups.setdefault(g, []).append(name)
    for g, names in sorted(groups.items()):
        lines += [f"    {g}:", "      hosts:"] + [f"        {n}:" for n in names]
    INVENTORY.parent.mkdir(parents=True, exist_ok=True)
    INVENTORY.write_text("\n".join(lines) + "\n")


def up(names: list[str] | None = None) -> dict:
    if not (STATE / "ready").exists():
        raise LabError("the lab is not up (the test hosts live next to its clusters): run `make lab` first")
    names = names or list(HOSTS)
    with _Lock():
        DIR.mkdir(parents=True, exist_ok=True)
        _keygen(KEY, "kglab-hosts-root")
        todo = [n for n in names if not healthy(n)]
        if not todo:
            _write_outputs()
            say(f"hosts already up: {', '.join(names)}")
            return json.loads(DESCRIPTION.read_text())
        t0 = time.monotonic()
        image = _build_rootfs()
        for name in todo:
            _stop(name)
            _prepare(HOSTS[name], image)
        _write_outputs()
        for name in todo:
            _start(HOSTS[name])
        for name in todo:
            state = _wait_booted(HOSTS[name])
            say(f"{name}: {state}, ssh root@{HOSTS[name].ssh_host}:{HOSTS[name].ssh_port}")
        for name in todo:
            proc = subprocess.run(ssh_argv(name) + ["python3 -c 'print(\"ok\")'"], capture_output=True, text=True,
                                  timeout=30)
            if proc.stdout.strip() != "ok":
                raise LabError(f"{name}: ssh login with the pinned host key failed: {proc.stderr.strip()}")
        say(f"hosts up in {time.monotonic() - t0:.1f}s; inventory: {INVENTORY}")
        return json.loads(DESCRIPTION.read_text())


def running() -> list[str]:
    return [n for n in HOSTS if nspawn_pid(n) or init_pid(n)]


def down(quiet: bool = False) -> list[str]:
    """Stop every test host and remove their state (.lab/hosts). Returns the names that were running."""
    if not DIR.exists():
        return []
    with _Lock():
        stopped = [n for n in HOSTS if _stop(n)]
        shutil.rmtree(DIR, ignore_errors=True)
    if not quiet:
        say(f"hosts down: stopped {', '.join(stopped) or 'none'}")
    return stopped

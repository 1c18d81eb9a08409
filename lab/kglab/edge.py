"""The restricted network's jump host: a real OpenSSH sshd in namespace kglab-edge (198.18.2.2:22), key-only, for a
dedicated user. Produces a client key and a pinned known_hosts file for the tests and roles."""
from __future__ import annotations

import pwd
import shutil
import subprocess
from pathlib import Path

from . import procs
from .cluster import STATE

EDGE_IP = "198.18.2.2"
USER = "kglab-tunnel"
DIR = STATE / "edge"
# sshd's StrictModes checks every directory above an authorized_keys file: none may be group/world-writable. A checkout
# under /tmp (or any such directory) would make key login fail, so the keys live in a root-owned place of their own.
KEYS_DIR = Path("/run/kglab-edge/authorized_keys")


def ensure_user():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", USER], check=True, capture_output=True)
    # '*' = no password can ever match, but the account is not "locked" ('!'), which sshd would refuse for keys too.
    subprocess.run(["usermod", "-p", "*", USER], check=True, capture_output=True)


def up():
    DIR.mkdir(parents=True, exist_ok=True)
    ensure_user()
    for key in (DIR / "ssh_host_ed25519_key", DIR / "id_ed25519"):
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key.name, "-f", str(key)], check=True)
    host_pub = (DIR / "ssh_host_ed25519_key.pub").read_text().split()
    (DIR / "known_hosts").write_text(f"{EDGE_IP} {host_pub[0]} {host_pub[1]}\n")
    keys_dir = KEYS_DIR
    keys_dir.mkdir(parents=True, exist_ok=True)
    (keys_dir / USER).write_text((DIR / "id_ed25519.pub").read_text())
    for p in (DIR, keys_dir.parent, keys_dir):
        p.chmod(0o755)
    (keys_dir / USER).chmod(0o644)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    (DIR / "sshd_config").write_text(f"""# kubegate lab: the edge host's sshd (network namespace kglab-edge)
ListenAddress {EDGE_IP}:22
HostKey {DIR}/ssh_host_ed25519_key
PidFile {DIR}/sshd.pid
AuthorizedKeysFile {keys_dir}/%u
AllowUsers {USER}
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding local
GatewayPorts no
X11Forwarding no
AllowAgentForwarding no
PermitTunnel no
UsePAM no
ClientAliveInterval 15
""")
    subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(DIR / "sshd_config")], check=True, capture_output=True)
    pid = procs.start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(DIR / "sshd_config")],
                      logdir=DIR / "logs", piddir=DIR / "pids", netns="kglab-edge")

    def listening():
        out = subprocess.run(["ip", "netns", "exec", "kglab-edge", "ss", "-Hltn", f"sport = :22"],
                             capture_output=True, text=True).stdout
        return EDGE_IP in out
    procs.wait_until("edge sshd", listening, 15, DIR / "logs" / "sshd.log", pid=pid)


def describe() -> dict:
    return {"host": EDGE_IP, "port": 22, "user": USER, "key_file": str(DIR / "id_ed25519"),
            "known_hosts": str(DIR / "known_hosts"), "netns": "kglab-edge"}


def cleanup():
    """Remove what up() put outside the lab's state directory."""
    shutil.rmtree(KEYS_DIR.parent, ignore_errors=True)

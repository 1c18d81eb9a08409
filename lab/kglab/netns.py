"""Network namespaces of the lab (all addresses in 198.18.0.0/16, the benchmarking range, guarded in the root
namespace by an `unreachable` route so nothing the lab does can leave the machine).

  root ──veth── kglab-svc      198.18.1.1 ↔ 198.18.1.2 (echo of cluster-a), 198.18.1.3 (echo of cluster-b)
  root ──veth── kglab-edge     198.18.2.1 ↔ 198.18.2.2 (sshd)
  kglab-edge ──veth── kglab-central   198.18.3.1 ↔ 198.18.3.2 (cluster-c's apiserver); no forwarding, no route from root

Pod IPs (kwok allocates them from 198.18.10-12.0/24) are added by the lab agent as /32 addresses on `lo` (of the root
namespace, or of kglab-central for cluster-c) so each ingress pod's nginx really listens on its pod IP, port 80, and the
apiserver's pod and service proxies reach it like a real pod (the address is not in 127/8, so the apiserver accepts it).
"""
from __future__ import annotations

import subprocess

GUARD = "198.18.0.0/16"
NAMESPACES = ("kglab-svc", "kglab-edge", "kglab-central")

# (namespace A or None for root, interface in A, address in A, namespace B, interface in B, address in B)
LINKS = (
    (None, "kgl-svc0", "198.18.1.1/24", "kglab-svc", "eth0", ["198.18.1.2/24", "198.18.1.3/24"]),
    (None, "kgl-edge0", "198.18.2.1/24", "kglab-edge", "eth0", ["198.18.2.2/24"]),
    ("kglab-edge", "eth1", "198.18.3.1/24", "kglab-central", "eth0", ["198.18.3.2/24"]),
)


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["ip"] + (["-n", netns] if netns else []) + list(args)
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def existing() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def up() -> None:
    down()
    _ip("route", "replace", "unreachable", GUARD)
    for ns in NAMESPACES:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        _ip("link", "set", "lo", "up", netns=ns)
    for ns_a, if_a, addr_a, ns_b, if_b, addrs_b in LINKS:
        tmp_b = f"{if_a}p"
        _ip("link", "add", if_a, "type", "veth", "peer", "name", tmp_b, netns=ns_a)
        _ip("link", "set", tmp_b, "netns", ns_b, netns=ns_a)
        _ip("link", "set", tmp_b, "name", if_b, netns=ns_b)
        _ip("addr", "add", addr_a, "dev", if_a, netns=ns_a)
        for addr in addrs_b:
            _ip("addr", "add", addr, "dev", if_b, netns=ns_b)
        _ip("link", "set", if_a, "up", netns=ns_a)
        _ip("link", "set", if_b, "up", netns=ns_b)
    # edge must never route between platform and central (the field's restriction): forwarding stays off.
    subprocess.run(["ip", "netns", "exec", "kglab-edge", "sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True)


def down() -> None:
    for ns in NAMESPACES:
        if ns in existing():
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
    for _, if_a, *_ in LINKS[:2]:
        _ip("link", "del", if_a, check=False)
    for addr in lab_addresses_on_lo():
        _ip("addr", "del", addr, "dev", "lo", check=False)
    _ip("route", "del", "unreachable", GUARD, check=False)


def lab_addresses_on_lo() -> list[str]:
    out = _ip("-4", "-o", "addr", "show", "dev", "lo", check=False).stdout
    return [f.split()[3] for f in out.splitlines() if " 198.18." in f]


def leftovers() -> list[str]:
    found = [f"network namespace {ns}" for ns in NAMESPACES if ns in existing()]
    found += [f"address {a} on lo" for a in lab_addresses_on_lo()]
    for if_a in [link[1] for link in LINKS[:2]]:
        if _ip("link", "show", if_a, check=False).returncode == 0:
            found.append(f"interface {if_a}")
    return found

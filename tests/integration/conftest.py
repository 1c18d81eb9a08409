"""Integration fixtures: TCP forwards, the ssh forward to the restricted cluster-c, and cluster-c through the
ssh_tunnel role's service on the real systemd tunnel host."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kgplay import ConnectProxy, TcpForward, run_playbook
from kgtest import LAB, REPO


@pytest.fixture
def forward():
    made = []

    def make(listen_host, target):
        fwd = TcpForward(listen_host, target)
        made.append(fwd)
        return fwd
    yield make
    for fwd in made:
        fwd.close()


class _EdgeForward:
    """cluster-c lives in a restricted network: an ssh -L forward through the lab's edge host (as an operator would),
    on one local port for the whole session. Tests that stop or restart lab parts can end the ssh process; `url()`
    brings it back on the same port, so a later test never inherits a dead forward from an earlier one."""

    def __init__(self, lab):
        edge = lab.desc["edge"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        target = lab.clusters["cluster-c"]["server"].split("://", 1)[1]
        self.argv = ["ssh", "-N", "-i", edge["key_file"], "-o", "UserKnownHostsFile=" + edge["known_hosts"],
                     "-o", "StrictHostKeyChecking=yes", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
                     "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2",
                     "-p", str(edge["port"]), "-L", "127.0.0.1:%d:%s" % (self.port, target),
                     "%s@%s" % (edge["user"], edge["host"])]
        self.proc = None

    def url(self) -> str:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        return "https://127.0.0.1:%d" % self.port

    def _start(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("ssh forward to cluster-c failed: %s" % self.proc.stderr.read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        self.proc.kill()
        pytest.fail("ssh forward to cluster-c did not come up")

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def _edge_forward(lab):
    fwd = _EdgeForward(lab)
    yield fwd
    fwd.close()


@pytest.fixture
def cluster_c_forward(_edge_forward):
    """The URL of cluster-c's apiserver through the edge forward (alive when the test starts)."""
    return _edge_forward.url()


@pytest.fixture
def connect_proxy():
    proxy = ConnectProxy()
    yield proxy
    proxy.close()


GATEWAY_TUNNEL = "gw-c"
GATEWAY_TUNNEL_PORT = 16447


@pytest.fixture(scope="module")
def cluster_c_tunnel_service(lab, tmp_path_factory):
    """cluster-c through kubegate-tunnel@gw-c, installed by the ssh_tunnel role on kg-tunnel (systemd-nspawn sharing the
    root network namespace, so its loopback port is the controller's) through the lab's edge sshd. Yields the local
    end's URL; removes the unit afterwards and powers the hosts off again if this fixture booted them."""
    sys.path.insert(0, str(REPO / "lab"))
    from kglab import hosts  # noqa: E402  (the lab's own module)
    labctl = [str(REPO / ".venv" / "bin" / "python"), str(REPO / "lab" / "labctl.py")]
    was_up = hosts.healthy("kg-tunnel")
    if not was_up:
        proc = subprocess.run(labctl + ["hosts-up"], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    edge, c = lab.desc["edge"], lab.clusters["cluster-c"]
    api_host, api_port = c["server"].split("://", 1)[1].rsplit(":", 1)
    tunnel = {"name": GATEWAY_TUNNEL, "inventory_host": "none", "tls_server_name": "cluster-c", "ca_cert": c["ca_file"],
              "apiserver_host": api_host, "apiserver_port": int(api_port), "local_port": GATEWAY_TUNNEL_PORT,
              "jump_host": edge["host"], "jump_port": edge["port"], "jump_user": edge["user"],
              "jump_host_keys": [" ".join(Path(edge["known_hosts"]).read_text().split()[1:3])],
              "private_key": "{{ lookup('ansible.builtin.file', '%s') }}" % edge["key_file"]}
    play = [{"name": "tunnel", "hosts": "kg-tunnel", "gather_facts": False,
             "roles": [{"role": "ssh_tunnel", "vars": {"ssh_tunnel_clusters": [tunnel]}}]}]

    def remove():
        hosts.run_in("kg-tunnel", ["sh", "-c", "systemctl disable --now kubegate-tunnel@%s.service >/dev/null 2>&1; "
                                               "rm -f /etc/kubegate/tunnels/%s.*; true" % (GATEWAY_TUNNEL, GATEWAY_TUNNEL)])
    try:
        run = run_playbook(tmp_path_factory.mktemp("gw-tunnel"), play, inventory=LAB / "hosts" / "inventory" / "hosts.yml")
        assert run.rc == 0, run.output[-5000:]
        yield "https://127.0.0.1:%d" % GATEWAY_TUNNEL_PORT
    finally:
        remove()
        if not was_up:
            subprocess.run(labctl + ["hosts-down"], capture_output=True, text=True, timeout=300)

"""Integration fixtures: TCP forwards and the ssh forward to the restricted cluster-c."""
from __future__ import annotations

import socket
import subprocess
import time

import pytest

from kgplay import ConnectProxy, TcpForward


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


@pytest.fixture(scope="session")
def cluster_c_forward(lab):
    """cluster-c lives in a restricted network: an ssh -L forward through the lab's edge host (as an operator would)."""
    edge = lab.desc["edge"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = lab.clusters["cluster-c"]
    target = c["server"].split("://", 1)[1]
    proc = subprocess.Popen(["ssh", "-N", "-i", edge["key_file"], "-o", "UserKnownHostsFile=" + edge["known_hosts"],
                             "-o", "StrictHostKeyChecking=yes", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
                             "-p", str(edge["port"]), "-L", "127.0.0.1:%d:%s" % (port, target),
                             "%s@%s" % (edge["user"], edge["host"])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("ssh forward to cluster-c failed: %s" % proc.stderr.read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("ssh forward to cluster-c did not come up")
    yield "https://127.0.0.1:%d" % port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def connect_proxy():
    proxy = ConnectProxy()
    yield proxy
    proxy.close()

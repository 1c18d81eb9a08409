"""The `tunnel` connection option: a tunnel service that does not get through is reported as "tunnel down" with the
unit to check (real loopback sockets, no apiserver needed)."""
from __future__ import annotations

import socket
import threading

import pytest

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import config, transport
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.errors import KubegateError

DESC = "kubegate-tunnel@cluster-c on kg-tunnel"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster(port, **extra):
    params = {"host": "https://127.0.0.1:%d" % port, "api_key": "secret-token-value", "tls_server_name": "cluster-c",
              "retries": 0, "connect_timeout": 3, "timeout": 3}
    params.update(extra)
    return config.resolve(params, env={})


def fail(cl):
    with pytest.raises(KubegateError) as err:
        transport.request(cl, "GET", "/readyz")
    return err.value


def test_nothing_listening_is_tunnel_down_with_the_unit_to_check():
    port = free_port()
    err = fail(cluster(port, tunnel=DESC))
    assert ("tunnel down: %s — connection refused (the tunnel's local end is not listening) at 127.0.0.1:%d"
            % (DESC, port)) in err.msg
    assert "check the unit with systemctl status kubegate-tunnel@cluster-c on kg-tunnel" in err.msg
    assert "journalctl -u kubegate-tunnel@cluster-c" in err.msg
    assert err.details["tunnel_down"] is True and err.details["unreachable"] is True
    assert "secret-token-value" not in err.msg


class ClosingServer(object):
    """Accepts connections and closes them at once: a tunnel whose far end is down (ssh -L does exactly this)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self):
        self.sock.close()


def test_tunnel_that_closes_the_connection_is_tunnel_down_not_a_tls_error():
    server = ClosingServer()
    try:
        err = fail(cluster(server.port, tunnel=DESC))
    finally:
        server.close()
    assert "tunnel down: %s — the tunnel accepted the connection but" % DESC in err.msg
    assert "systemctl status kubegate-tunnel@cluster-c on kg-tunnel" in err.msg
    assert "TLS verification failed" not in err.msg


def test_without_the_option_the_error_stays_generic():
    port = free_port()
    err = fail(cluster(port))
    assert "tunnel down" not in err.msg
    assert "cannot reach the apiserver at 127.0.0.1:%d" % port in err.msg


@pytest.mark.parametrize("description,hint", [
    ("kubegate-tunnel@cluster-c on kg-tunnel", "systemctl status kubegate-tunnel@cluster-c on kg-tunnel"),
    ("ssh forward prod.service", "systemctl status prod.service"),
    ("kubegate-tunnel@prod-eu-1.service", "systemctl status kubegate-tunnel@prod-eu-1.service"),
    ("a tunnel somewhere", "check the tunnel service that should listen there"),
])
def test_hint_names_the_unit_when_the_description_has_one(description, hint):
    assert hint in transport.tunnel_hint(description)


def test_tunnel_cannot_be_combined_with_ssh_jump(tmp_path):
    key = tmp_path / "k"
    key.write_text("k")
    with pytest.raises(KubegateError) as err:
        cluster(1, tunnel=DESC, ssh_jump={"host": "h", "user": "u", "key_file": str(key), "known_hosts": str(key)})
    assert "tunnel and ssh_jump cannot be combined" in err.value.msg


def test_tunnel_must_be_text():
    with pytest.raises(KubegateError) as err:
        cluster(1, tunnel={"unit": "x"})
    assert "tunnel must be a text" in err.value.msg

# -*- coding: utf-8 -*-
"""Filter kubegate.multicluster.kubectl_proxy_plan (the kubectl_proxy role's logic) and the warn action's docs."""
from __future__ import annotations

import base64
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.kubegate.multicluster.plugins.filter import kubectl_proxy as plugin
from ansible_collections.kubegate.multicluster.plugins.plugin_utils import _kubectl_proxy as kp

FILTER_DIR = Path(plugin.__file__).parent
COLLECTIONS_ROOT = FILTER_DIR.parents[4]

CA = "-----BEGIN CERTIFICATE-----\nMIIBcaCA\n-----END CERTIFICATE-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBclient\n-----END CERTIFICATE-----"
KEY = "-----BEGIN EC PRIVATE KEY-----\nSECRETKEYMATERIAL\n-----END EC PRIVATE KEY-----"
TOKEN = "eyJhbGciOi.SECRET-TOKEN-VALUE.sig"


def cluster(**kw):
    base = {"name": "cluster-a", "server": "https://127.0.0.11:6443", "ca_cert": CA, "token": TOKEN, "port": 18001}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def plan(clusters, **kw):
    kw.setdefault("inventory_hosts", ["cluster-a", "cluster-b", "cluster-c"])
    return plugin.kubectl_proxy_plan(clusters, **kw)


def no_secret(result):
    text = json.dumps({k: v for k, v in result.items() if k != "kubeconfigs"})
    for secret in (TOKEN, "SECRETKEYMATERIAL", base64.b64encode(TOKEN.encode()).decode()):
        assert secret not in text


def test_default_plan_keeps_upstream_filters_and_binds_loopback():
    result = plan([cluster()])
    assert result["problems"] == [] and result["warnings"] == []
    entry, = result["clusters"]
    assert entry["args"] == ["--address=127.0.0.1", "--port=18001"]
    assert not any(a.startswith(("--accept-hosts", "--reject-paths", "--disable-filter", "--accept-paths"))
                   for a in entry["args"])
    assert entry["unit"] == "kubegate-kubectl-proxy@cluster-a.service"
    assert entry["endpoint"] == "http://127.0.0.1:18001"
    assert entry["check_url"] == "http://127.0.0.1:18001/version" and entry["check_host"] == ""
    assert entry["kubeconfig_path"] == "/etc/kubegate-kubectl-proxy/cluster-a.kubeconfig"
    assert entry["env"].splitlines()[-1] == "KUBEGATE_KUBECTL_PROXY_ARGS='--address=127.0.0.1 --port=18001'"
    no_secret(result)


def test_kubeconfig_token_ca_and_tls_server_name():
    result = plan([cluster(name="cluster-c", server="https://127.0.0.1:16443/", tls_server_name="cluster-c")])
    config = json.loads(result["kubeconfigs"]["cluster-c"])
    assert config["current-context"] == "cluster-c"
    assert config["clusters"][0]["cluster"] == {
        "server": "https://127.0.0.1:16443", "tls-server-name": "cluster-c",
        "certificate-authority-data": base64.b64encode(CA.encode()).decode()}
    assert config["users"][0]["user"] == {"token": TOKEN}
    assert "insecure-skip-tls-verify" not in result["kubeconfigs"]["cluster-c"]
    # deterministic (idempotent file content)
    assert plan([cluster(name="cluster-c", server="https://127.0.0.1:16443/", tls_server_name="cluster-c")]) == result


def test_kubeconfig_with_client_certificate():
    result = plan([cluster(token=None, client_cert=CERT, client_key=KEY)])
    assert result["problems"] == []
    user = json.loads(result["kubeconfigs"]["cluster-a"])["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]).decode() == CERT + "\n"
    assert base64.b64decode(user["client-key-data"]).decode() == KEY + "\n"
    no_secret(result)


def test_unix_socket():
    result = plan([cluster(port=None, unix_socket=True)])
    entry, = result["clusters"]
    assert entry["args"] == ["--unix-socket=/run/kubegate-kubectl-proxy/cluster-a/proxy.sock"]
    assert entry["endpoint"] == "" and entry["socket_path"] == "/run/kubegate-kubectl-proxy/cluster-a/proxy.sock"
    assert entry["check_url"] == "http://localhost/version"


@pytest.mark.parametrize("kw, message", [
    ({"token": None}, "cluster cluster-a (kubectl_proxy_clusters[0]): missing credentials: set token, or client_cert "
                      "and client_key"),
    ({"client_cert": CERT}, "give either token or client_cert/client_key, not both"),
    ({"token": None, "client_cert": CERT}, "client_cert and client_key must be given together"),
    ({"token": None, "client_cert": CERT, "client_key": "garbage SECRETKEYMATERIAL"},
     "client_key is not a PEM private key (value not shown)"),
    ({"token": "two words SECRET"}, "token must be a single-line bearer token (value not shown)"),
    ({"ca_cert": None}, "ca_cert is missing"),
    ({"ca_cert": "/etc/ca.crt"}, "ca_cert is not a PEM certificate (expected the certificate text, not a file name)"),
    ({"server": "http://127.0.0.11:6443"}, "server must be the apiserver URL as seen from the proxy host, https://"),
    ({"server": None}, "server must be the apiserver URL"),
    ({"port": None}, "set port (the proxy listens on 127.0.0.1:PORT) or unix_socket: true"),
    ({"unix_socket": True}, "port and unix_socket are exclusive"),
    ({"port": 70000}, "port must be a number from 1 to 65535, got 70000"),
    ({"port": "http"}, "port must be a number from 1 to 65535, got 'http'"),
    ({"tls_server_name": "bad name"}, "tls_server_name must be a host name"),
    ({"state": "started"}, "state must be present or absent, got 'started'"),
    ({"tokn": "x"}, "unknown key(s) tokn"),
    ({"name": "../etc"}, "name must be the cluster's inventory host name"),
])
def test_bad_cluster_entries(kw, message):
    result = plan([cluster(**kw)])
    assert any(message in p for p in result["problems"]), result["problems"]
    no_secret(result)
    assert "SECRET" not in " ".join(result["problems"])


def test_unknown_cluster_duplicate_name_and_port_clash():
    result = plan([cluster(), cluster(name="cluster-x", port=18002), cluster(name="cluster-b"),
                   cluster(name="cluster-a", port=18009)])
    assert result["problems"] == [
        "cluster cluster-x is not a host of the inventory: the role publishes its connection settings (kubegate_host) "
        "to the cluster's inventory host. Use the inventory name of the cluster, or set kubectl_proxy_publish: false",
        "port clash: clusters cluster-a and cluster-b both use port 18001; give every cluster its own port",
        "cluster cluster-a is listed twice (kubectl_proxy_clusters[0] and [3])",
    ]
    assert plan([cluster(name="cluster-x")], publish=False)["problems"] == []


def test_not_a_list_and_not_a_mapping():
    assert plan("cluster-a")["problems"] == ["kubectl_proxy_clusters must be a list of clusters, got str"]
    assert plan(["cluster-a"])["problems"][0].startswith("kubectl_proxy_clusters[0] must be a mapping")
    assert plan(None)["problems"] == [] and plan(None)["clusters"] == []


def test_absent_cluster_needs_no_settings():
    result = plan([{"name": "cluster-old", "state": "absent"}])
    assert result["problems"] == []
    assert result["clusters"] == [{"name": "cluster-old", "state": "absent",
                                   "unit": "kubegate-kubectl-proxy@cluster-old.service",
                                   "kubeconfig_path": "/etc/kubegate-kubectl-proxy/cluster-old.kubeconfig",
                                   "env_path": "/etc/kubegate-kubectl-proxy/cluster-old.env"}]


def test_dangerous_address_warns_and_binds():
    result = plan([cluster()], dangerous_address="0.0.0.0")
    entry, = result["clusters"]
    assert entry["args"] == ["--address=0.0.0.0", "--port=18001"]
    assert entry["check_url"] == "http://127.0.0.1:18001/version"
    assert len(result["warnings"]) == 1 and result["warnings"][0].startswith("kubectl_proxy_dangerous_address=0.0.0.0:")
    specific = plan([cluster()], dangerous_address="198.18.0.1")["clusters"][0]
    assert specific["endpoint"] == "http://198.18.0.1:18001" and specific["check_host"] == "localhost"
    # loopback is not an exposure: no warning
    assert plan([cluster()], dangerous_address="127.0.0.2")["warnings"] == []
    assert plan([cluster()], dangerous_address="everywhere")["problems"] == [
        "kubectl_proxy_dangerous_address must be an IP address to bind (for example 0.0.0.0), got 'everywhere'"]


def test_dangerous_accept_hosts_and_allow_exec():
    result = plan([cluster()], dangerous_accept_hosts="^*$", dangerous_allow_exec=True)
    entry, = result["clusters"]
    assert entry["args"] == ["--address=127.0.0.1", "--port=18001", "--accept-hosts=^*$",
                             "--reject-paths=^/api/.*/pods/.*/attach"]
    assert [w.split("=")[0] for w in result["warnings"]] == ["kubectl_proxy_dangerous_accept_hosts",
                                                             "kubectl_proxy_dangerous_allow_exec"]
    assert "--accept-hosts=^localhost$,^example\\.com$" in plan(
        [cluster()], dangerous_accept_hosts="^localhost$,^example\\.com$")["clusters"][0]["args"]
    assert plan([cluster()], dangerous_accept_hosts="^a$ ^b$")["problems"][0].startswith(
        "kubectl_proxy_dangerous_accept_hosts must be comma-separated regular expressions without whitespace")
    assert plan([cluster()], dangerous_allow_exec="false")["warnings"] == []


def test_no_warnings_when_nothing_is_present():
    assert plan([{"name": "cluster-a", "state": "absent"}], dangerous_allow_exec=True)["warnings"] == []


def test_unsafe_paths_are_refused():
    assert plan([cluster()], kubectl_path="kubectl")["problems"] == [
        "kubectl_proxy_kubectl_path must be an absolute path of letters, digits, '.', '_', '-' and '/', got 'kubectl'"]
    assert plan([cluster()], config_dir="/etc/kube gate")["problems"][0].startswith("kubectl_proxy_config_dir must")


# /proc/net/tcp: 127.0.0.1:18001 LISTEN, 0.0.0.0:22 LISTEN, 127.0.0.1:18003 ESTABLISHED
PROC_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4651 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1 0 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:4653 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
"""
# /proc/net/tcp6: [::]:18004 LISTEN, [::1]:18005 LISTEN
PROC_TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:4654 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000001000000:4655 00000000000000000000000000000000:0000 0A 00000000:00000000
"""


def test_listening_sockets_parse_proc_net_tcp():
    assert kp.listening_sockets([PROC_TCP, PROC_TCP6]) == [("127.0.0.1", 18001), ("0.0.0.0", 22), ("::", 18004),
                                                           ("::1", 18005)]


def test_port_in_use_on_the_host():
    state = {"listening": [PROC_TCP, PROC_TCP6], "active": {}, "installed_args": {}}
    result = plan([cluster(), cluster(name="cluster-b", port=18004), cluster(name="cluster-c", port=18003)],
                  host_state=state)
    assert result["problems"] == [
        "port clash: port 18001 for cluster cluster-a is already in use on this host (listening: 127.0.0.1:18001) by "
        "another program or another cluster's proxy; choose a free port",
        "port clash: port 18004 for cluster cluster-b is already in use on this host (listening: [::]:18004) by "
        "another program or another cluster's proxy; choose a free port",
    ]
    # the same cluster's running proxy on that port is not a clash (second run)
    ours = dict(state, active={"cluster-a": "active"},
                installed_args={"cluster-a": "X='--address=127.0.0.1 --port=18001'\n"})
    assert plan([cluster()], host_state=ours)["problems"] == []
    # ... but not when it is stopped, or it is another cluster's
    assert plan([cluster()], host_state=dict(ours, active={"cluster-a": "inactive"}))["problems"]
    assert plan([cluster(name="cluster-b")], host_state=ours)["problems"]


def test_filter_registered_and_documented():
    assert plugin.FilterModule().filters() == {"kubectl_proxy_plan": plugin.kubectl_proxy_plan}
    docs = yaml.safe_load((FILTER_DIR / "kubectl_proxy_plan.yml").read_text(encoding="utf-8"))
    doc = docs["DOCUMENTATION"]
    params = inspect.signature(plugin.kubectl_proxy_plan).parameters
    assert ["_input"] + list(params)[1:] == list(doc["options"])
    for name, param in list(params.items())[1:]:
        assert doc["options"][name].get("default") == param.default
    assert "kubegate.multicluster.kubectl_proxy_plan" in docs["EXAMPLES"]


def test_ansible_doc_renders_filter_and_warn_module():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_ROOT), ANSIBLE_NOCOLOR="1")
    for kind, name in (("filter", "kubectl_proxy_plan"), ("module", "warn")):
        proc = subprocess.run([sys.executable, "-m", "ansible.cli.doc", "-t", kind, "--json",
                               "kubegate.multicluster." + name], capture_output=True, text=True, env=env, timeout=60,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["kubegate.multicluster." + name]["doc"]["options"]

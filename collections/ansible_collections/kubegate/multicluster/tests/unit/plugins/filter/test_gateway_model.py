# -*- coding: utf-8 -*-
"""Filter kubegate.multicluster.gateway_model (the gateway role's allow-lists): what is accepted, what is refused and
what the messages say. The lab test (tests/integration/test_gateway.py) proves the role stops on these problems."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.kubegate.multicluster.plugins.filter import gateway_model as plugin
from ansible_collections.kubegate.multicluster.plugins.plugin_utils import _gateway as g

ROLE = Path(plugin.__file__).resolve().parents[6] / "roles" / "gateway"
TOKEN = "cluster-token-SECRET-0123456789"
CALLER_TOKEN = "caller-token-SECRET-0123456789"


def settings(**kw):
    s = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    s.update(gateway_tls_cert="/etc/ssl/gw.crt", gateway_tls_key="/etc/ssl/gw.key",
             gateway_callers=[{"name": "acme-ci", "tenants": ["acme"], "token": CALLER_TOKEN}])
    s.update(kw)
    return s


def cluster(**kw):
    hv = {"kubegate_tenant": "acme", "kubegate_host": "https://10.0.0.1:6443", "kubegate_ca_cert": "/srv/ca.crt",
          "kubegate_token": TOKEN, "group_names": ["acme"]}
    hv.update(kw)
    return {k: v for k, v in hv.items() if v is not None}


def run(hosts=None, **kw):
    hosts = hosts or {"cluster-a": cluster()}
    return plugin.gateway_model(sorted(hosts), hosts, settings(**kw), gateway_host="gw1", gateway_hosts=["gw1"])


def test_valid_inventory_gives_the_model():
    m = run({"cluster-a": cluster(kubegate_tls_server_name="api.example.com"),
             "cluster-b": cluster(kubegate_gateway_server="https://[::1]:16443", kubegate_tls_server_name="10.0.0.2")})
    assert m["problems"] == []
    a, b = m["clusters"]
    assert (a["address"], a["tls_server_name"], a["id"]) == ("10.0.0.1:6443", "api.example.com", "acme--cluster-a")
    assert (b["address"], b["tls_server_name"]) == ("[::1]:16443", "10.0.0.2")
    assert m["cluster_tokens"] == [["acme/cluster-a", TOKEN], ["acme/cluster-b", TOKEN]]
    assert m["settings"]["listen"] == ["127.0.0.1:8443"] and m["settings"]["caller_rate"] == 50
    assert m["settings"]["worker_shutdown_timeout"] == 60


def test_filter_is_registered_and_documented():
    assert plugin.FilterModule().filters()["gateway_model"] is plugin.gateway_model
    doc = yaml.safe_load((Path(plugin.__file__).with_suffix(".yml")).read_text())
    assert doc["DOCUMENTATION"]["name"] == "gateway_model"


def test_defaults_and_argument_specs_agree():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) == set(specs)
    for name, value in defaults.items():
        assert specs[name].get("default") == value, name
    assert set(g.INTEGERS) <= set(defaults)


HOSTILE_CLUSTER = [
    ("kubegate_tls_server_name", "cluster-a; proxy_ssl_verify off"),
    ("kubegate_tls_server_name", "a\nb"),
    ("kubegate_tls_server_name", "$host"),
    ("kubegate_tls_server_name", "clüster"),
    ("kubegate_tls_server_name", "a" * 300),
    ("kubegate_gateway_tls_server_name", "a}"),
    ("kubegate_tenant", "acme;"),
    ("kubegate_tenant", "acme x"),
    ("kubegate_host", "https://10.0.0.1:6443;"),
    ("kubegate_host", "https://10.0.0.1:6443/x"),
    ("kubegate_host", "https://a$b:1"),
    ("kubegate_host", "https://10.0.0.1:0"),
    ("kubegate_host", "https://u@10.0.0.1"),
    ("kubegate_host", "http://10.0.0.1"),
    ("kubegate_host", "https://::1:443"),
    ("kubegate_gateway_server", "https://10.0.0.1:6443?x=1"),
    ("kubegate_ca_cert", "/srv/ca.crt; x"),
    ("kubegate_ca_cert", "relative.crt"),
    ("kubegate_client_cert", "/srv/c rt"),
]


@pytest.mark.parametrize("var, value", HOSTILE_CLUSTER)
def test_hostile_cluster_values_are_refused_with_host_and_variable(var, value):
    extra = {"kubegate_client_key": "/srv/k.key"} if var == "kubegate_client_cert" else {}
    m = run({"cluster-a": cluster(**{var: value}, **extra)})
    assert m["clusters"] == [] and len(m["problems"]) == 1, m["problems"]
    assert m["problems"][0].startswith("cluster-a: %s " % var), m["problems"]
    assert "\n" not in m["problems"][0]


HOSTILE_GATEWAY = [
    ("gateway_listen", ["127.0.0.1:8443 ssl; ssl_engine x"]),
    ("gateway_listen", ["127.0.0.1:70000"]),
    ("gateway_listen", ["[::1:443"]),
    ("gateway_listen", "127.0.0.1:443"),
    ("gateway_listen", []),
    ("gateway_server_name", "~^x$"),
    ("gateway_server_name", "_;"),
    ("gateway_tls_cert", "/a b"),
    ("gateway_tls_key", ""),
    ("gateway_caller_ca", "/a/'b'"),
    ("gateway_conf_dir", "/etc/../tmp"),
    ("gateway_data_dir", "relative"),
    ("gateway_audit_log", "/var/log/ä"),
    ("gateway_health_socket", "/run/" + "s" * 120),
    ("gateway_main_conf_dir", "/etc/nginx/#"),
    ("gateway_site_name", "../x"),
    ("gateway_client_max_body_size", "4m;"),
    ("gateway_read_timeout", "10; x"),
    ("gateway_connect_timeout", 500),
    ("gateway_worker_shutdown_timeout", 0),
    ("gateway_caller_rate", "1r/s"),
    ("gateway_caller_burst", -1),
    ("gateway_caller_connections", True),
    ("gateway_bad_credential_rate", 1.5),
    ("gateway_forward_headers", ["X-A;"]),
    ("gateway_forward_headers", ["Authorization"]),
    ("gateway_forward_headers", ["X-Remote-User"]),
    ("gateway_audit_log_query", "maybe"),
    ("gateway_file_owner", "root;x"),
]


@pytest.mark.parametrize("var, value", HOSTILE_GATEWAY)
def test_hostile_gateway_values_are_refused_naming_the_gateway_host(var, value):
    m = run(**{var: value})
    assert len(m["problems"]) == 1, m["problems"]
    assert m["problems"][0].startswith("gw1: %s" % var), m["problems"]


HOSTILE_CALLERS = [
    {"name": "ci; x", "tenants": ["acme"], "token": CALLER_TOKEN},
    {"name": "Ci", "tenants": ["acme"], "token": CALLER_TOKEN},
    {"name": "ci", "tenants": ["acme;"], "token": CALLER_TOKEN},
    {"name": "ci", "tenants": "acme", "token": CALLER_TOKEN},
    {"name": "ci", "tenants": ["acme"], "token": 'a"b c 0123456789012'},
    {"name": "ci", "tenants": ["acme"], "token": "short"},
    {"name": "ci", "tenants": ["acme"]},
    {"name": "ci", "tenants": ["acme"], "client_cert": True},  # no gateway_caller_ca
    {"name": "ci", "tenants": ["acme"], "token": CALLER_TOKEN, "impersonate": {"user": "a\"b"}},
    {"name": "ci", "tenants": ["acme"], "token": CALLER_TOKEN, "impersonate": {"user": "a", "groups": ["g $x"]}},
    {"name": "ci", "tenants": ["acme"], "token": CALLER_TOKEN, "impersonate": {"user": "a", "groups": "g"}},
    {"name": "ci", "tenants": ["acme"], "token": CALLER_TOKEN, "impersonate": "sometimes"},
    {"name": "ci", "tenants": ["acme"], "token": CALLER_TOKEN, "tenant": ["acme"]},
]


@pytest.mark.parametrize("caller", HOSTILE_CALLERS, ids=range(len(HOSTILE_CALLERS)))
def test_hostile_callers_are_refused_and_tokens_never_shown(caller):
    m = run(gateway_callers=[caller])
    assert len(m["problems"]) >= 1
    for p in m["problems"]:
        assert p.startswith("gw1: ") and "gateway_callers[0]" in p
        assert CALLER_TOKEN not in p and "a\"b c" not in p


def test_messages_escape_and_shorten_values():
    m = run({"cluster-a": cluster(kubegate_tls_server_name="x\n" + "y" * 200)})
    (p,) = m["problems"]
    assert "\\n" in p and "\n" not in p and "(202 characters)" in p and "y" * 100 not in p


def test_jump_without_tunnel_and_missing_credentials_say_what_to_do():
    m = run({"cluster-a": cluster(kubegate_jump={"host": "edge"}),
             "cluster-b": cluster(kubegate_token=None, kubegate_ca_cert=None)})
    text = " ".join(m["problems"])
    assert "role ssh_tunnel" in text and "gateway_exclude_clusters" in text
    assert "cluster-b: no CA certificate" in text and "cluster-b: no credential for the gateway" in text


def test_tokens_of_callers_and_clusters_stay_out_of_everything_but_the_token_lists():
    m = run(gateway_callers=[{"name": "acme-ci", "tenants": ["acme"], "token": CALLER_TOKEN, "impersonate": True}])
    assert m["caller_tokens"] == [["acme-ci", CALLER_TOKEN]]
    rest = {k: v for k, v in m.items() if k not in ("caller_tokens", "cluster_tokens")}
    assert CALLER_TOKEN not in repr(rest) and TOKEN not in repr(rest)
    assert m["callers"][0]["impersonate_user"] == "acme-ci" and m["max_groups"] == 0

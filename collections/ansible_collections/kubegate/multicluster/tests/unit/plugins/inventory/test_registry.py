"""The cluster registry and kubeconfig contexts -> host records (plugin_utils/_registry.py, no Ansible inventory)."""
from __future__ import annotations

import json

import pytest
import yaml

from ansible_collections.kubegate.multicluster.plugins.module_utils._nginx_map import validate as validate_maps
from ansible_collections.kubegate.multicluster.plugins.plugin_utils import _registry
from ansible_collections.kubegate.multicluster.plugins.plugin_utils._registry import RegistryError


def parse(data, base_dir="/reg", **kw):
    kw.setdefault("load_file", lambda p: yaml.safe_load(open(p)))
    kw.setdefault("validate_maps", validate_maps)
    return _registry.parse_registry(data, "reg.yml", base_dir, **kw)


def one(cluster, tenant="acme", **tenant_extra):
    tdata = dict(tenant_extra, clusters={"c1": cluster})
    records = parse({"tenants": {tenant: tdata}})
    assert len(records) == 1
    return records[0]


def error(data, **kw):
    with pytest.raises(RegistryError) as err:
        parse(data, **kw)
    return str(err.value)


def test_direct_cluster_gets_the_connection_variables():
    r = one({"apiserver": "https://10.0.0.1:6443/", "ca_file": "pki/ca.crt", "tls_server_name": "c1",
             "token_var": "vault_c1_token", "region": "eu-west-1"})
    assert (r["tenant"], r["cluster"], r["region"], r["access"]) == ("acme", "c1", "eu-west-1", "direct")
    assert r["hostvars"] == {
        "kubegate_apiserver": "https://10.0.0.1:6443", "kubegate_host": "https://10.0.0.1:6443",
        "kubegate_ca_cert": "/reg/pki/ca.crt", "kubegate_tls_server_name": "c1", "kubegate_token": "{{ vault_c1_token }}",
        "kubegate_tenant": "acme", "kubegate_cluster": "c1", "kubegate_access": "direct", "kubegate_region": "eu-west-1"}


def test_generated_templates_go_through_the_template_callable():
    marked = []

    def template(text):
        marked.append(text)
        return text
    parse({"tenants": {"acme": {"clusters": {"c1": {"apiserver": "https://h", "token_file": "t/c1.vault"}}}}},
          template=template)
    assert marked == ["{{ lookup('ansible.builtin.unvault', %s) | trim }}" % json.dumps("/reg/t/c1.vault")]


def test_tunnel_points_at_the_local_end_and_verifies_the_apiserver_name():
    r = one({"apiserver": "https://198.18.3.2:6443", "access": "tunnel",
             "tunnel": {"jump_host": "198.18.2.2", "jump_user": "kglab-tunnel", "local_port": 16443,
                        "key_file": "keys/edge", "known_hosts": "/etc/kh"}})
    hv = r["hostvars"]
    assert hv["kubegate_host"] == "https://127.0.0.1:16443"
    assert hv["kubegate_apiserver"] == "https://198.18.3.2:6443"
    assert hv["kubegate_tls_server_name"] == "198.18.3.2"
    assert hv["kubegate_tunnel"] == {"jump_host": "198.18.2.2", "jump_port": 22, "jump_user": "kglab-tunnel",
                                     "local_address": "127.0.0.1", "local_port": 16443, "apiserver": "198.18.3.2:6443",
                                     "key_file": "/reg/keys/edge", "known_hosts": "/etc/kh"}
    explicit = one({"apiserver": "https://10.1.1.1", "access": "tunnel", "tls_server_name": "api.internal",
                    "tunnel": {"jump_host": "j", "jump_user": "u", "local_port": "7443", "local_address": "::1"}})
    assert explicit["hostvars"]["kubegate_tls_server_name"] == "api.internal"
    assert explicit["hostvars"]["kubegate_host"] == "https://[::1]:7443"
    assert explicit["hostvars"]["kubegate_tunnel"]["apiserver"] == "10.1.1.1:443"


def test_jump_and_proxy_access():
    jump = one({"apiserver": "https://198.18.3.2:6443", "access": "jump",
                "jump": {"host": "198.18.2.2", "user": "u", "key_file": "k", "known_hosts": "kh", "port": 2222}})
    assert jump["hostvars"]["kubegate_jump"] == {"host": "198.18.2.2", "user": "u", "key_file": "/reg/k",
                                                 "known_hosts": "/reg/kh", "port": 2222}
    assert jump["hostvars"]["kubegate_host"] == "https://198.18.3.2:6443"
    proxy = one({"apiserver": "https://10.0.0.1:6443", "access": "proxy", "proxy": {"port": 8001}})
    assert proxy["hostvars"]["kubegate_host"] == "http://127.0.0.1:8001"
    assert proxy["hostvars"]["kubegate_kubectl_proxy"] == {"address": "127.0.0.1", "port": 8001}


def test_inheritance_defaults_tenant_cluster():
    records = parse({
        "defaults": {"access": "jump", "jump": {"host": "j", "user": "u", "key_file": "/k", "known_hosts": "/kh"},
                     "vars": {"kubegate_timeout": 10, "kubegate_retries": 1}},
        "tenants": {"acme": {"region": "eu", "jump": {"port": 2200}, "vars": {"kubegate_timeout": 20},
                             "clusters": {"a": {"apiserver": "https://a"},
                                          "b": {"apiserver": "https://b", "region": "us", "access": "direct",
                                                "vars": {"kubegate_retries": 5}}}}}})
    a, b = records
    assert a["region"] == "eu" and a["access"] == "jump"
    assert a["hostvars"]["kubegate_jump"] == {"host": "j", "user": "u", "key_file": "/k", "known_hosts": "/kh",
                                              "port": 2200}
    assert (a["hostvars"]["kubegate_timeout"], a["hostvars"]["kubegate_retries"]) == (20, 1)
    assert b["region"] == "us" and b["access"] == "direct" and "kubegate_jump" not in b["hostvars"]
    assert (b["hostvars"]["kubegate_timeout"], b["hostvars"]["kubegate_retries"]) == (20, 5)


def test_client_certificate():
    hv = one({"apiserver": "https://h", "client_cert": "pki/c.crt", "client_key": "/k/c.key"})["hostvars"]
    assert (hv["kubegate_client_cert"], hv["kubegate_client_key"]) == ("/reg/pki/c.crt", "/k/c.key")
    with pytest.raises(RegistryError) as err:
        one({"apiserver": "https://h", "client_cert": "c.crt"})
    assert "client_key: give both client_cert and client_key" in str(err.value)


def test_templates_and_kubeconfig_contexts_pass_through():
    r = one({"context": "prod", "kubeconfig": ["kc/a", "/abs/b"], "ca_file": "{{ pki }}/ca.crt",
             "token": "{{ vault_tok }}"})
    hv = r["hostvars"]
    assert hv["kubegate_context"] == "prod" and hv["kubegate_kubeconfig"] == ["/reg/kc/a", "/abs/b"]
    assert hv["kubegate_ca_cert"] == "{{ pki }}/ca.crt" and hv["kubegate_token"] == "{{ vault_tok }}"
    assert "kubegate_host" not in hv and "kubegate_apiserver" not in hv


def test_vaulted_token_is_passed_through_unread():
    class EncryptedString(object):
        def __str__(self):
            raise AssertionError("decrypted")
    token = EncryptedString()
    assert one({"apiserver": "https://h", "token": token})["hostvars"]["kubegate_token"] is token


def test_routing_inline_and_from_a_file(tmp_path):
    maps = [{"source": "$http_x_version", "variable": "$backend", "default": "stable",
             "entries": [{"key": "v1", "value": "stable"}]}]
    assert one({"apiserver": "https://h"}, routing=maps)["hostvars"]["kubegate_routing_maps"] == maps
    (tmp_path / "acme.yml").write_text(yaml.safe_dump({"kubegate_routing_maps": maps}))
    records = parse({"tenants": {"acme": {"routing": "acme.yml", "clusters": {"c": {"apiserver": "https://h"}}}}},
                    base_dir=str(tmp_path))
    assert records[0]["hostvars"]["kubegate_routing_maps"] == maps


@pytest.mark.parametrize("data,expected", [
    ([], "registry: must be a mapping with a `tenants` key, got a list"),
    ({"tenant": {}}, "registry: unknown key tenant; allowed: tenants, defaults, version"),
    ({"tenants": {}}, "tenants: must be a non-empty mapping"),
    ({"tenants": {"acme-corp": {"clusters": {"a": {"apiserver": "https://h"}}}}},
     "tenant 'acme-corp': invalid tenant name: tenant names become inventory group names"),
    ({"tenants": {"acme": {"clusters": None}}}, "tenant 'acme': clusters: must be a non-empty mapping"),
    ({"tenants": {"acme": {"clusters": {"a b": {}}}}}, "tenant 'acme', cluster 'a b': invalid cluster name"),
    ({"tenants": {"acme": {"clusters": {"a": {}}}}},
     "tenant 'acme', cluster 'a': needs `apiserver` (https://HOST[:PORT]) or a kubeconfig `context`"),
    ({"tenants": {"acme": {"clusters": {"a": {"apiserver": "10.0.0.1:6443"}}}}},
     "tenant 'acme', cluster 'a': apiserver: '10.0.0.1:6443' must be an https:// URL"),
    ({"tenants": {"acme": {"clusters": {"a": {"apiserver": "https://h", "acces": "jump"}}}}},
     "tenant 'acme', cluster 'a': unknown key acces; allowed: apiserver,"),
    ({"tenants": {"acme": {"clusters": {"a": {"apiserver": "https://h", "access": "ssh"}}}}},
     "tenant 'acme', cluster 'a': access: must be one of direct, tunnel, jump, proxy, got 'ssh'"),
    ({"tenants": {"acme": {"clusters": {"a": {"apiserver": "https://h", "access": "jump", "jump": {"host": "j"}}}}}},
     "cluster 'a': jump: missing user, key_file, known_hosts"),
    ({"tenants": {"acme": {"clusters": {"a": {"apiserver": "https://h", "access": "tunnel",
                                              "tunnel": {"jump_host": "j", "jump_user": "u", "local_port": 99999}}}}}},
     "cluster 'a': tunnel.local_port: must be an integer 1..65535, got 99999"),
    ({"tenants": {"acme": {"clusters": {"a": {"apiserver": "https://h", "access": "proxy"}}}}},
     "cluster 'a': proxy: missing port"),
    ({"tenants": {"acme": {"clusters": {"a": {"apiserver": "https://h", "token": "s3cr3t-t0ken"}}}}},
     "cluster 'a': token: a plain-text token in the registry would show"),
    ({"tenants": {"acme": {"clusters": {"a": {"apiserver": "https://h", "token_var": "x", "token_file": "f"}}}}},
     "give only one of token, token_var and token_file (got token_var, token_file)"),
    ({"tenants": {"acme": {"clusters": {"a": {"apiserver": "https://h", "token_var": "vault-a"}}}}},
     "token_var: 'vault-a' is not a variable name"),
    ({"tenants": {"acme": {"clusters": {"a": {"apiserver": "https://h", "vars": {"kubegate_tenant": "x"}}}}}},
     "vars: kubegate_tenant is set by the plugin"),
    ({"tenants": {"acme": {"routing": [{"source": "http_x", "variable": "$v", "entries": {}}],
                           "clusters": {"a": {"apiserver": "https://h"}}}}},
     "cluster 'a': routing: invalid nginx maps: "),
    ({"tenants": {"acme": {"routing": "missing.yml", "clusters": {"a": {"apiserver": "https://h"}}}}},
     "routing: file /reg/missing.yml not found"),
    ({"version": 2, "tenants": {}}, "version: unsupported registry version 2"),
])
def test_malformed_registry_names_the_place_and_the_fix(data, expected):
    message = error(data)
    assert message.startswith("reg.yml")
    assert expected in message
    assert "s3cr3t" not in message


def test_host_names_collide_only_across_tenants():
    records = parse({"tenants": {
        "acme": {"clusters": {"shared": {"apiserver": "https://a"}, "a1": {"apiserver": "https://a1"}}},
        "globex": {"clusters": {"shared": {"apiserver": "https://g"}}}}})
    assert _registry.assign_names(records) == ["shared"]
    assert sorted(r["name"] for r in records) == ["a1", "acme-shared", "globex-shared"]
    assert [r["hostvars"]["kubegate_cluster"] for r in records if r["name"].endswith("shared")] == ["shared", "shared"]
    _registry.assign_names(records, "tenant_cluster")
    assert sorted(r["name"] for r in records) == ["acme-a1", "acme-shared", "globex-shared"]


def test_same_cluster_twice_in_a_tenant_is_an_error():
    records = parse({"tenants": {"acme": {"clusters": {"a": {"apiserver": "https://a"}}}}})
    records += [dict(records[0], origin="kc.kubegate.yml (kubeconfig, context a)")]
    with pytest.raises(RegistryError) as err:
        _registry.assign_names(records)
    assert "cluster 'a' of tenant 'acme' is defined twice" in str(err.value)
    assert "kc.kubegate.yml (kubeconfig, context a)" in str(err.value)


def test_group_names_are_safe():
    assert _registry.group_name("region_", "eu-west-1") == "region_eu_west_1"
    assert _registry.group_name("", "acme") == "acme"


# ----------------------------------------------------------------------------------------------- kubeconfig contexts

KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "a", "cluster": {"server": "https://10.0.0.1:6443"}},
                 {"name": "b", "cluster": {"server": "https://10.0.0.2:6443"}},
                 {"name": "noserver", "cluster": {}}],
    "users": [{"name": "u", "user": {"token": "s3cr3t-t0ken"}}],
    "contexts": [{"name": "acme-prod", "context": {"cluster": "a", "user": "u"}},
                 {"name": "globex-edge", "context": {"cluster": "b", "user": "u"}},
                 {"name": "minikube", "context": {"cluster": "b", "user": "u"}},
                 {"name": "broken", "context": {"cluster": "noserver", "user": "u"}}],
}


@pytest.fixture
def kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(KUBECONFIG))
    return str(path)


def kc_records(entry, kubeconfig, strict=False):
    warnings = []
    (field, entry), = _registry.kubeconfig_sources(entry, "src.kubegate.yml")
    paths = _registry.kubeconfig_paths(entry, field, _registry.Where("src.kubegate.yml"), "/", {})
    contexts = _registry.summarise_kubeconfigs(paths, lambda p: yaml.safe_load(open(p)))
    assert "s3cr3t" not in json.dumps(contexts)
    return _registry.kubeconfig_records(entry, field, "src.kubegate.yml", paths, contexts, warnings.append,
                                        strict), warnings


def test_kubeconfig_contexts_with_a_tenant_pattern(kubeconfig):
    records, warnings = kc_records({"path": kubeconfig, "tenant_pattern": r"^(?P<tenant>[a-z]+)-(?P<cluster>.+)$",
                                    "contexts": ["acme-.*", "globex-edge", "minikube"], "region_map": {"acme-prod": "eu"}},
                                   kubeconfig)
    by_name = dict((r["cluster"], r) for r in records)
    assert sorted(by_name) == ["edge", "prod"]
    prod = by_name["prod"]["hostvars"]
    assert prod == {"kubegate_kubeconfig": kubeconfig, "kubegate_context": "acme-prod",
                    "kubegate_apiserver": "https://10.0.0.1:6443", "kubegate_tenant": "acme",
                    "kubegate_cluster": "prod", "kubegate_access": "direct", "kubegate_region": "eu"}
    assert by_name["edge"]["tenant"] == "globex" and by_name["edge"]["region"] is None
    assert len(warnings) == 1 and "no tenant for context 'minikube'" in warnings[0] and "skipped" in warnings[0]


def test_kubeconfig_tenant_map_and_default(kubeconfig):
    records, warnings = kc_records({"path": kubeconfig, "tenant_map": {"minikube": "lab"}, "tenant": "acme",
                                    "region": "dc1"}, kubeconfig)
    got = sorted((r["cluster"], r["tenant"], r["region"]) for r in records)
    assert got == [("acme-prod", "acme", "dc1"), ("globex-edge", "acme", "dc1"), ("minikube", "lab", "dc1")]
    assert any("context 'broken' names cluster 'noserver', which has no server" in w for w in warnings)


def test_kubeconfig_from_the_environment_is_not_pinned(kubeconfig):
    """Contexts found through $KUBECONFIG name only the context: the file is read again when each task runs (AWX gives
    an inventory update a temporary credential file that is gone when the job runs)."""
    entry = {"tenant": "acme", "contexts": ["acme-prod"]}
    (field, entry), = _registry.kubeconfig_sources(entry, "src.kubegate.yml")
    paths = _registry.kubeconfig_paths(entry, field, _registry.Where("src.kubegate.yml"), "/", {"KUBECONFIG": kubeconfig})
    assert paths == [kubeconfig]
    contexts = _registry.summarise_kubeconfigs(paths, lambda p: yaml.safe_load(open(p)))
    records = _registry.kubeconfig_records(entry, field, "src.kubegate.yml", paths, contexts, [].append)
    hv = records[0]["hostvars"]
    assert hv["kubegate_context"] == "acme-prod" and "kubegate_kubeconfig" not in hv


def test_kubeconfig_strict_refuses_unassigned_contexts(kubeconfig):
    with pytest.raises(RegistryError) as err:
        kc_records({"path": kubeconfig, "tenant_pattern": r"^(?P<tenant>acme)-"}, kubeconfig, strict=True)
    assert "no tenant for context" in str(err.value) and "tenant_map" in str(err.value)


@pytest.mark.parametrize("entry,expected", [
    ({"path": "/nonexistent/kc"}, "kubeconfig.path: kubeconfig /nonexistent/kc not found"),
    ({"pth": "x"}, "kubeconfig: unknown key pth"),
    ({"path": "KC", "tenant_pattern": "^(?P<team>.+)$"}, "needs a named group (?P<tenant>...)"),
    ({"path": "KC", "tenant_pattern": "("}, "tenant_pattern: not a valid regular expression"),
    ({"path": "KC", "contexts": "acme"}, "contexts: must be a list"),
])
def test_kubeconfig_source_errors(entry, expected, kubeconfig):
    if entry.get("path") == "KC":
        entry = dict(entry, path=kubeconfig)
    with pytest.raises(RegistryError) as err:
        kc_records(entry, kubeconfig)
    assert expected in str(err.value)


def test_unreadable_kubeconfig_is_a_clear_error(tmp_path):
    bad = tmp_path / "kc"
    bad.write_text("clusters: {oops")
    with pytest.raises(RegistryError) as err:
        _registry.summarise_kubeconfigs([str(bad)], lambda p: yaml.safe_load(open(p)))
    assert str(err.value).startswith("kubeconfig %s cannot be read" % bad)


def test_tunnel_and_proxy_data_published_for_a_cluster_still_reached_another_way():
    r = one({"apiserver": "https://198.18.3.2:6443", "access": "jump",
             "jump": {"host": "198.18.2.2", "user": "u", "key_file": "/k", "known_hosts": "/kh"},
             "tunnel": {"jump_host": "198.18.2.2", "jump_user": "u", "local_port": 16443},
             "proxy": {"port": 18001}})
    hv = r["hostvars"]
    assert hv["kubegate_host"] == "https://198.18.3.2:6443" and "kubegate_tls_server_name" not in hv
    assert hv["kubegate_tunnel"]["apiserver"] == "198.18.3.2:6443" and hv["kubegate_tunnel"]["local_port"] == 16443
    assert hv["kubegate_kubectl_proxy"] == {"address": "127.0.0.1", "port": 18001}
    # inherited (tenant-wide) tunnel settings alone publish nothing for a direct cluster
    inherited = one({"apiserver": "https://h"}, tunnel={"jump_host": "j", "jump_user": "u"})
    assert "kubegate_tunnel" not in inherited["hostvars"]

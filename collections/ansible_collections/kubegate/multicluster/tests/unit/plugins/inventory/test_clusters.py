"""The kubegate.multicluster.clusters inventory plugin on real Ansible inventory objects (no cluster needed)."""
from __future__ import annotations

import json

import pytest
import yaml

from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret
from ansible.plugins.loader import inventory_loader
from ansible.template import is_trusted_as_template

VAULT_PASSWORD = b"kg-unit-vault-password"


@pytest.fixture
def plugin():
    found = inventory_loader.get("kubegate.multicluster.clusters")
    assert found is not None
    return found


def parse(plugin, path, cache=False):
    loader = DataLoader()
    loader.set_vault_secrets([("default", VaultSecret(VAULT_PASSWORD))])
    inventory = InventoryData()
    plugin.parse(inventory, loader, str(path), cache=cache)
    return inventory


def write(tmp_path, config, name="clusters.kubegate.yml"):
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


REGISTRY = {"tenants": {
    "acme": {"region": "eu-west", "clusters": {
        "cluster-a": {"apiserver": "https://127.0.0.11:6443", "ca_file": "pki/a.crt", "token_var": "vault_a"},
        "cluster-b": {"apiserver": "https://127.0.0.12:6443", "access": "tunnel",
                      "tunnel": {"jump_host": "j", "jump_user": "u", "local_port": 16443}}}},
    "globex": {"clusters": {
        "cluster-c": {"apiserver": "https://198.18.3.2:6443", "region": "eu-central", "access": "jump",
                      "jump": {"host": "198.18.2.2", "user": "t", "key_file": "k", "known_hosts": "kh"}}}}}}


def test_verify_file_wants_the_kubegate_suffix(plugin, tmp_path):
    good = write(tmp_path, {"plugin": "kubegate.multicluster.clusters"})
    other = write(tmp_path, {"plugin": "kubegate.multicluster.clusters"}, name="hosts.yml")
    assert plugin.verify_file(str(good)) and not plugin.verify_file(str(other))
    assert plugin.verify_file(str(write(tmp_path, {}, name="x.kubegate.yaml")))


def test_hosts_groups_and_variables(plugin, tmp_path):
    inv = parse(plugin, write(tmp_path, {"plugin": "kubegate.multicluster.clusters", "registry": REGISTRY}))
    assert sorted(inv.hosts) == ["cluster-a", "cluster-b", "cluster-c"]
    members = dict((g, sorted(h.name for h in inv.groups[g].get_hosts())) for g in inv.groups)
    assert members["acme"] == ["cluster-a", "cluster-b"] and members["globex"] == ["cluster-c"]
    assert members["region_eu_west"] == ["cluster-a", "cluster-b"] and members["region_eu_central"] == ["cluster-c"]
    assert members["access_direct"] == ["cluster-a"] and members["access_tunnel"] == ["cluster-b"]
    assert members["access_jump"] == ["cluster-c"]
    a = inv.get_host("cluster-a").get_vars()
    assert a["ansible_connection"] == "local" and a["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    assert a["kubegate_host"] == "https://127.0.0.11:6443" and a["kubegate_ca_cert"] == str(tmp_path / "pki/a.crt")
    assert a["kubegate_token"] == "{{ vault_a }}"
    # registry values and generated templates are trusted (rendered at play time), like a YAML inventory's values
    assert is_trusted_as_template(a["kubegate_token"]) and is_trusted_as_template(a["ansible_python_interpreter"])
    assert is_trusted_as_template(a["kubegate_host"])
    b = inv.get_host("cluster-b").get_vars()
    assert b["kubegate_host"] == "https://127.0.0.1:16443" and b["kubegate_tls_server_name"] == "127.0.0.12"
    c = inv.get_host("cluster-c").get_vars()
    assert c["kubegate_jump"]["known_hosts"] == str(tmp_path / "kh") and c["kubegate_tenant"] == "globex"


def test_registry_file_with_a_vaulted_token(plugin, tmp_path):
    secret = "s3cr3t-t0ken-value"
    vaulted = VaultLib([("default", VaultSecret(VAULT_PASSWORD))]).encrypt(secret).decode()
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "registry.yml").write_text(
        "tenants:\n  acme:\n    clusters:\n      a:\n        apiserver: https://10.0.0.1\n        ca_file: ca.crt\n"
        "        token: !vault |\n" + "".join("          %s\n" % line for line in vaulted.splitlines()))
    inv = parse(plugin, write(tmp_path, {"plugin": "kubegate.multicluster.clusters", "registry": "reg/registry.yml"}))
    hv = inv.get_host("a").get_vars()
    assert hv["kubegate_ca_cert"] == str(tmp_path / "reg" / "ca.crt")   # relative to the registry file
    assert type(hv["kubegate_token"]).__name__ == "EncryptedString"
    assert "s3cr3t" not in repr(hv["kubegate_token"])


def test_constructed_options(plugin, tmp_path):
    inv = parse(plugin, write(tmp_path, {
        "plugin": "kubegate.multicluster.clusters", "registry": REGISTRY, "tenant_group_prefix": "tenant_",
        "compose": {"kubegate_timeout": "5 if kubegate_access == 'jump' else 2"},
        "keyed_groups": [{"key": "kubegate_access", "prefix": "via"}],
        "groups": {"restricted": "kubegate_access != 'direct'"}}))
    assert "tenant_acme" in inv.groups and "acme" not in inv.groups
    assert sorted(h.name for h in inv.groups["restricted"].get_hosts()) == ["cluster-b", "cluster-c"]
    assert [h.name for h in inv.groups["via_jump"].get_hosts()] == ["cluster-c"]
    assert inv.get_host("cluster-c").get_vars()["kubegate_timeout"] == 5
    assert inv.get_host("cluster-a").get_vars()["kubegate_timeout"] == 2


def test_kubeconfig_contexts_and_cache(plugin, tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text(json.dumps({"clusters": [{"name": "x", "cluster": {"server": "https://10.9.0.1:6443"}}],
                              "users": [{"name": "u", "user": {"token": "s3cr3t-t0ken-value"}}],
                              "contexts": [{"name": "acme-prod", "context": {"cluster": "x", "user": "u"}},
                                           {"name": "globex-prod", "context": {"cluster": "x", "user": "u"}}]}))
    path = write(tmp_path, {"plugin": "kubegate.multicluster.clusters", "cache": True,
                            "cache_plugin": "ansible.builtin.memory",
                            "kubeconfig": {"path": "kubeconfig", "tenant_pattern": "^(?P<tenant>[a-z]+)-"},
                            "registry": {"tenants": {"acme": {"clusters": {"edge": {"apiserver": "https://e"}}}}}})
    inv = parse(plugin, path)
    assert sorted(inv.hosts) == ["acme-prod", "edge", "globex-prod"]
    hv = inv.get_host("globex-prod").get_vars()
    assert (hv["kubegate_kubeconfig"], hv["kubegate_context"], hv["kubegate_tenant"]) == (str(kc), "globex-prod",
                                                                                          "globex")
    # what was read from the kubeconfig file is data, never a template
    assert not is_trusted_as_template(hv["kubegate_apiserver"]) and not is_trusted_as_template(hv["kubegate_context"])
    cached = plugin._cache[plugin.get_cache_key(str(path))]
    assert "s3cr3t" not in json.dumps(cached) and "https://10.9.0.1:6443" in json.dumps(cached)
    again = parse(plugin, path, cache=True)
    assert sorted(again.hosts) == sorted(inv.hosts)


def test_same_cluster_name_in_two_tenants(plugin, tmp_path):
    inv = parse(plugin, write(tmp_path, {"plugin": "kubegate.multicluster.clusters", "registry": {"tenants": {
        "acme": {"clusters": {"prod": {"apiserver": "https://a"}}},
        "globex": {"clusters": {"prod": {"apiserver": "https://g"}}}}}}))
    assert sorted(inv.hosts) == ["acme-prod", "globex-prod"]
    assert inv.get_host("acme-prod").get_vars()["kubegate_cluster"] == "prod"


@pytest.mark.parametrize("config,expected", [
    ({"plugin": "kubegate.multicluster.clusters"}, "give `registry` (inline or a path) and/or `kubeconfig`"),
    ({"plugin": "kubegate.multicluster.clusters", "registry": "nope.yml"}, "registry file"),
    ({"plugin": "kubegate.multicluster.clusters", "registry": {"tenants": {"acme": {"clusters": {
        "a": {"apiserver": "https://a", "access": "tunnel"}}}}}}, "tenant 'acme', cluster 'a': tunnel: missing"),
    ({"plugin": "kubegate.multicluster.clusters", "host_naming": "fqdn", "registry": REGISTRY}, "host_naming"),
])
def test_errors_are_parser_errors_with_the_source(plugin, tmp_path, config, expected):
    path = write(tmp_path, config)
    with pytest.raises(AnsibleParserError) as err:
        parse(plugin, path)
    assert str(path) in str(err.value) and expected in str(err.value)

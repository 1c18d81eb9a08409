"""The kubegate.multicluster.clusters inventory plugin through the real CLI (ansible-inventory --graph/--list,
ansible-doc) with the project's ansible.cfg, and its hosts used by a playbook against the lab."""
from __future__ import annotations

import json
import subprocess

import yaml

from kgplay import no_traceback, run_playbook
from kgtest import REPO, repo_env
from tenantinv import EXAMPLE_VAULT_PASSWORD, VAULT_PASS_SCRIPT, tool


def inventory(*args, env=None, cwd=REPO):
    return subprocess.run([tool("ansible-inventory")] + list(args), capture_output=True, text=True, cwd=str(cwd),
                          env=env or repo_env(ANSIBLE_NOCOLOR="1"), timeout=120)


def plain(value):
    """--list marks values that are not trusted templates (here: what was read from a kubeconfig) as unsafe."""
    if isinstance(value, dict):
        return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else dict(
            (k, plain(v)) for k, v in value.items())
    return value


def write_source(tmp_path, config, name="clusters.kubegate.yml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_example_tenant_inventories_show_their_tenants():
    acme = inventory("-i", "inventories/acme", "--graph")
    assert acme.returncode == 0 and "WARNING" not in acme.stderr, acme.stderr
    assert acme.stdout.splitlines()[:5] == ["@all:", "  |--@ungrouped:", "  |--@acme:", "  |  |--cluster-a",
                                            "  |  |--cluster-b"]
    assert "@region_eu_west:" in acme.stdout and "@access_direct:" in acme.stdout
    globex = inventory("-i", "inventories/globex", "--graph")
    assert globex.returncode == 0 and "WARNING" not in globex.stderr, globex.stderr
    assert "@globex:\n  |  |--cluster-c" in globex.stdout
    assert "@access_jump:\n  |  |--cluster-c" in globex.stdout and "@region_eu_central:" in globex.stdout
    both = inventory("-i", "inventories/acme", "-i", "inventories/globex", "--graph", "--vault-password-file",
                     str(VAULT_PASS_SCRIPT), env=repo_env(KUBEGATE_VAULT_PASSWORD=EXAMPLE_VAULT_PASSWORD))
    assert both.returncode == 0 and "@acme:" in both.stdout and "@globex:" in both.stdout


def test_plugin_host_variables_in_list_output_keep_secrets_encrypted():
    out = inventory("-i", "inventories/globex", "--list")
    assert out.returncode == 0, out.stderr
    hv = json.loads(out.stdout)["_meta"]["hostvars"]["cluster-c"]
    assert hv["ansible_connection"] == "local"
    assert hv["kubegate_host"] == hv["kubegate_apiserver"] == "https://198.18.3.2:6443"
    assert hv["kubegate_ca_cert"] == str(REPO / "inventories/globex/files/cluster-c/ca.crt")
    assert hv["kubegate_tls_server_name"] == "cluster-c" and hv["kubegate_access"] == "jump"
    assert hv["kubegate_jump"] == {"host": "198.18.2.2", "port": 22, "user": "kglab-tunnel",
                                   "key_file": "~/.ssh/kubegate-globex-edge",
                                   "known_hosts": str(REPO / "inventories/globex/files/edge_known_hosts")}
    assert hv["kubegate_tunnel"]["apiserver"] == "198.18.3.2:6443" and hv["kubegate_tunnel"]["local_port"] == 16443
    assert hv["kubegate_routing_maps"][0]["source"] == "$http_x_tenant_tier"     # group_vars/globex.yml
    assert "$ANSIBLE_VAULT" in json.dumps(hv["kubegate_token"])                   # host_vars, still encrypted
    assert "example-token" not in out.stdout


def test_registry_file_kubeconfig_contexts_and_collisions(lab, tmp_path):
    (tmp_path / "registry.yml").write_text(yaml.safe_dump({"tenants": {
        "globex": {"region": "eu-central", "clusters": {
            "cluster-a": {"apiserver": lab.clusters["cluster-a"]["server"], "ca_file": lab.clusters["cluster-a"]["ca_file"],
                          "token_file": lab.clusters["cluster-a"]["admin_token_file"]}}}}}))
    source = write_source(tmp_path, {
        "plugin": "kubegate.multicluster.clusters", "registry": "registry.yml",
        "kubeconfig": {"path": lab.desc["kubeconfig"], "contexts": ["cluster-a", "cluster-b"],
                       "tenant_map": {"cluster-a": "acme", "cluster-b": "acme"}, "region": "lab"},
        "keyed_groups": [{"key": "kubegate_tenant", "prefix": "t"}]})
    out = inventory("-i", str(source), "--graph")
    assert out.returncode == 0, out.stderr
    # cluster-a exists in both tenants -> <tenant>-cluster-a, with a warning; cluster-b keeps its name
    assert "@acme:\n  |  |--acme-cluster-a\n  |  |--cluster-b" in out.stdout, out.stdout
    assert "@globex:\n  |  |--globex-cluster-a" in out.stdout
    assert "@t_acme:" in out.stdout and "@region_lab:" in out.stdout and "@region_eu_central:" in out.stdout
    assert "used by more than one tenant" in out.stderr
    listed = json.loads(inventory("-i", str(source), "--list").stdout)["_meta"]["hostvars"]
    cluster_b = plain(listed["cluster-b"])
    assert listed["cluster-b"]["kubegate_context"] == {"__ansible_unsafe": "cluster-b"}   # data, never templated
    assert cluster_b["kubegate_context"] == "cluster-b" and cluster_b["kubegate_kubeconfig"] == lab.desc["kubeconfig"]
    assert cluster_b["kubegate_apiserver"] == lab.clusters["cluster-b"]["server"]
    assert (cluster_b["kubegate_tenant"], cluster_b["kubegate_region"]) == ("acme", "lab")
    assert "lookup('ansible.builtin.unvault'" in listed["globex-cluster-a"]["kubegate_token"]
    admin_token = open(lab.clusters["cluster-a"]["admin_token_file"]).read().strip()
    assert admin_token not in json.dumps(listed)
    # the hosts work: kubeconfig contexts and the registry's token file, through one module_defaults mapping
    play = [{"name": "version", "hosts": "all", "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": {
                 "kubeconfig": "{{ kubegate_kubeconfig | default(omit) }}",
                 "context": "{{ kubegate_context | default(omit) }}", "host": "{{ kubegate_host | default(omit) }}",
                 "ca_cert": "{{ kubegate_ca_cert | default(omit) }}", "api_key": "{{ kubegate_token | default(omit) }}"}},
             "tasks": [{"name": "whoami", "kubegate.multicluster.api_request": {
                 "method": "POST", "path": "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                 "body": {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}}}]}]
    run = run_playbook(tmp_path, play, env={"KUBECONFIG": "/nonexistent"}, inventory=source)
    assert run.rc == 0, run.output[-3000:]
    users = dict((h, run.result("whoami", h)["json"]["status"]["userInfo"]["username"])
                 for h in ("acme-cluster-a", "cluster-b", "globex-cluster-a"))
    assert users["acme-cluster-a"] == users["cluster-b"] == "kubegate-lab-admin"       # kubeconfig client certs
    assert users["globex-cluster-a"] == "system:serviceaccount:kube-system:kubegate-lab-admin"   # token file
    assert admin_token not in run.output and no_traceback(run.output)


def test_malformed_registry_is_a_clear_error(tmp_path):
    source = write_source(tmp_path, {"plugin": "kubegate.multicluster.clusters", "registry": {"tenants": {
        "acme": {"clusters": {"cluster-a": {"apiserver": "https://10.0.0.1:6443", "access": "tunnel",
                                            "tunnel": {"jump_host": "10.0.0.2"}}}}}}})
    out = inventory("-i", str(source), "--graph", env=repo_env(ANSIBLE_NOCOLOR="1",
                                                              ANSIBLE_INVENTORY_UNPARSED_FAILED="1"))
    assert out.returncode != 0
    assert ("%s: tenant 'acme', cluster 'cluster-a': tunnel: missing jump_user, local_port" % source) in out.stderr
    assert no_traceback(out.stderr)
    plain = write_source(tmp_path, {"plugin": "kubegate.multicluster.clusters", "registry": {"tenants": {
        "acme": {"clusters": {"a": {"apiserver": "https://h", "token": "s3cr3t-plain-token"}}}}}}, name="p.kubegate.yml")
    out = inventory("-i", str(plain), "--list")
    assert "token: a plain-text token in the registry would show" in out.stderr
    assert "s3cr3t-plain-token" not in out.stdout + out.stderr


def test_ansible_doc():
    out = subprocess.run([tool("ansible-doc"), "-t", "inventory", "kubegate.multicluster.clusters"],
                         capture_output=True, text=True, cwd=str(REPO), env=repo_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    for word in ("registry", "kubeconfig", "host_naming", "tenant_group_prefix", "keyed_groups", "cache_plugin"):
        assert word in out.stdout

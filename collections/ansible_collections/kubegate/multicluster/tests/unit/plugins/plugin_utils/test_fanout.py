"""Controller fan-out (plugin_utils/_fanout.py): input checks, option layering, the pool, failure aggregation, and
per-host option resolution through real Ansible objects (inventory, variable manager, playbook, action plugin) with the
module's runner replaced -- no network."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from unittest import mock

import pytest

from ansible.errors import AnsibleActionFail

from ansible_collections.kubegate.multicluster.plugins.plugin_utils import _fanout
from ansible_collections.kubegate.multicluster.plugins.plugin_utils._fanout import (
    FanoutInputError, HostError, aggregate, check_concurrency, check_hosts, check_run_once, layer_args,
    module_defaults_layer, run_calls)

COLLECTIONS = Path(__file__).resolve().parents[7]  # .../collections (holds ansible_collections/kubegate/multicluster)
KNOWN = {"cluster-a", "cluster-b", "cluster-c"}


# ---------------------------------------------------------------------------------------------------------------- input

def test_check_hosts_keeps_order_and_drops_repeats():
    assert check_hosts(["cluster-b", "cluster-a", "cluster-b"], KNOWN.__contains__) == ["cluster-b", "cluster-a"]
    assert check_hosts([], KNOWN.__contains__) == []


@pytest.mark.parametrize("value,message", [
    ("cluster-a", "fanout must be a list of inventory hostnames"),
    ("all", "got 'all'"),
    ({"cluster-a": 1}, "got dict"),
    (None, "got NoneType"),
    (3, "got int"),
    (["cluster-a", 3], "fanout items must be inventory hostnames (non-empty strings); got 3"),
    (["cluster-a", ""], "got ''"),
    (["cluster-a", "nope"], "fanout lists a host not in the inventory: nope."),
    (["x", "cluster-a", "y"], "fanout lists 2 hosts not in the inventory: x, y."),
])
def test_check_hosts_refuses_bad_input_clearly(value, message):
    with pytest.raises(FanoutInputError) as err:
        check_hosts(value, KNOWN.__contains__)
    assert message in str(err.value)


def test_check_concurrency():
    assert check_concurrency(None) == 32
    assert check_concurrency(5) == 5 and check_concurrency("24") == 24
    for bad, message in ((0, "at least 1, got 0"), (-2, "at least 1"), ("many", "whole number"), (True, "whole number")):
        with pytest.raises(FanoutInputError) as err:
            check_concurrency(bad)
        assert message in str(err.value)


def test_check_run_once():
    check_run_once(True, ["a", "b"])
    check_run_once(False, ["only-one"])  # a one-host play (e.g. localhost) needs no run_once
    with pytest.raises(FanoutInputError) as err:
        check_run_once(False, ["a", "b", "c"])
    assert "fanout needs run_once: true" in str(err.value) and "3 hosts" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------- layering

def test_module_defaults_layer_follows_ansible_precedence():
    defaults = [{"group/kubegate.multicluster.cluster": {"host": "g1", "timeout": 5}},
                {"group/kubegate.multicluster.cluster": {"host": "g2"},
                 "kubegate.multicluster.pod_exec": {"timeout": 9},
                 "kubegate.multicluster.api_request": {"timeout": 1},
                 "group/other.collection.x": {"host": "nope"}}]
    layers = module_defaults_layer(defaults, "kubegate.multicluster.pod_exec", ["kubegate.multicluster.cluster"])
    # later module_defaults entries replace earlier ones per key (as ansible-core merges the list), action on top
    assert layers == [{"host": "g2"}, {"timeout": 9}]
    assert module_defaults_layer(None, "kubegate.multicluster.pod_exec", []) == []


class Omitted(Exception):
    pass


def fake_template(values):
    """A template function: strings "{{ NAME }}" look NAME up in values; "OMIT" is omitted; "BOOM" fails."""
    def template(value):
        if isinstance(value, dict):
            return dict((k, template(v)) for k, v in value.items())
        if value == "OMIT":
            raise Omitted()
        if value == "BOOM":
            raise ValueError("'undefined_thing' is undefined")
        if isinstance(value, str) and value.startswith("{{ "):
            return values[value[3:-3]]
        return value
    return template


def test_layer_args_top_layer_wins_and_omit_drops_the_option():
    layers = [{"host": "{{ kg_host }}", "timeout": 5, "api_key": "{{ token }}"},  # module_defaults
              None,                                                              # no args splat
              {"path": "/version", "api_key": "OMIT"}]                           # task args
    args = layer_args(layers, fake_template({"kg_host": "https://a:6443", "token": "t"}), omitted=Omitted)
    # api_key is omitted in the top layer: it is dropped, not taken from module_defaults (ansible-core's rule)
    assert args == {"host": "https://a:6443", "timeout": 5, "path": "/version"}


def test_layer_args_templates_an_args_splat_per_host():
    layers = [{"timeout": 5}, "{{ splat }}", {"path": "/x"}]
    args = layer_args(layers, fake_template({"splat": {"timeout": 7, "host": "h"}}), omitted=Omitted)
    assert args == {"timeout": 7, "host": "h", "path": "/x"}
    with pytest.raises(HostError) as err:
        layer_args(["{{ splat }}"], fake_template({"splat": ["not", "a", "mapping"]}), omitted=Omitted)
    assert "must resolve to a mapping" in str(err.value)


def test_layer_args_names_the_option_that_does_not_template():
    with pytest.raises(HostError) as err:
        layer_args([{"host": "BOOM"}], fake_template({}), omitted=Omitted)
    assert "option host could not be templated" in str(err.value) and "undefined_thing" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------- pool

def test_run_calls_runs_concurrently_and_isolates_failures():
    barrier = threading.Barrier(2, timeout=10)  # two calls must be in flight together, or this times out

    def call(prepared):
        barrier.wait()
        if prepared == "explode":
            raise RuntimeError("kaboom")
        return {"changed": prepared == "change", "value": prepared}

    calls = [("a", "change"), ("b", "same"), ("c", HostError("option host could not be templated: x")),
             ("d", "explode"), ("e", "same")]
    results = run_calls(calls, call, concurrency=2)
    assert list(results) == ["a", "b", "c", "d", "e"]  # listed order, whatever the completion order
    assert results["a"] == {"changed": True, "value": "change"}
    assert results["c"] == {"failed": True, "changed": False, "msg": "option host could not be templated: x"}
    assert results["d"]["failed"] and "RuntimeError: kaboom" in results["d"]["msg"]
    assert results["e"]["value"] == "same"


def test_aggregate_names_every_failed_host_and_its_error():
    out = aggregate({
        "cluster-a": {"changed": True, "warnings": ["validate_certs is false"], "diff": {"before": "1", "after": "2"}},
        "cluster-b": {"changed": False, "failed": True, "msg": "cluster b: cannot reach the apiserver", "unreachable": True},
        "cluster-c": {"changed": False, "warnings": ["validate_certs is false"], "diff": [{"before": "x", "after": "x",
                                                                                          "before_header": "cm"}]},
    })
    assert out["failed"] is True and out["changed"] is True
    assert out["failed_hosts"] == ["cluster-b"]
    assert out["fanout_summary"] == {"hosts": 3, "ok": 2, "failed": 1, "changed": 1}
    assert out["msg"].startswith("fanout: 1 of 3 host(s) failed: cluster-b: cluster b: cannot reach the apiserver")
    assert "unreachable" not in out  # only the failed host's own result says so, never the host running the task
    assert out["results_by_host"]["cluster-b"]["unreachable"] is True
    assert out["warnings"] == ["validate_certs is false (hosts: cluster-a, cluster-c)"]
    assert "warnings" not in out["results_by_host"]["cluster-a"]
    assert [d["before_header"] for d in out["diff"]] == ["cluster-a (before)", "cluster-c: cm"]


def test_aggregate_success_and_many_failures():
    ok = aggregate({"a": {"changed": False}, "b": {"changed": False}})
    assert "failed" not in ok and ok["failed_hosts"] == [] and ok["msg"] == "fanout: 2 host(s) ok, 0 changed"
    assert "warnings" not in ok
    assert aggregate({})["warnings"] == ["fanout lists no hosts: nothing ran"]
    many = aggregate(dict(("h%02d" % i, {"failed": True, "msg": "down %d" % i}) for i in range(25)))
    assert many["msg"].startswith("fanout: 25 of 25 host(s) failed: h00: down 0; h01: down 1")
    assert "h19: down 19" in many["msg"] and "also failed: h20, h21, h22, h23, h24" in many["msg"]


# ---------------------------------------------------------------------------------------------------------------- Ansible

INVENTORY = """
all:
  vars:
    ansible_connection: local
    kg_timeout: 11
  children:
    acme:
      vars: {kg_ns: acme-ns}
      hosts:
        cluster-a: {kubegate_host: "https://a.example:6443", kubegate_token: tok-aaaa}
        cluster-b: {kubegate_host: "https://b.example:6443", kubegate_token: tok-bbbb, kg_ns: b-own-ns}
    globex:
      vars: {kg_ns: globex-ns}
      hosts:
        cluster-c: {kubegate_token: tok-cccc}
        over-ssh: {ansible_connection: ssh, kubegate_host: "https://d.example:6443"}
        broken-token: {kubegate_token: "{{ no_such_variable }}"}
        broken-timeout: {kubegate_token: tok-x, kg_timeout: soon}
"""

PLAY = """
- hosts: acme:globex:!over-ssh:!broken-*
  gather_facts: false
  vars:
    kg_path_prefix: /api/v1/namespaces
  module_defaults:
    group/kubegate.multicluster.cluster:
      host: "{{ kubegate_host | default('https://fallback.example:6443') }}"
      api_key: "{{ kubegate_token }}"
      timeout: "{{ kg_timeout }}"
      tls_server_name: "{{ kubegate_tls_server_name | default(omit) }}"
  tasks:
    - name: fan out
      kubegate.multicluster.api_request:
        path: "{{ kg_path_prefix }}/{{ kg_ns }}"
        fanout: "{{ fanout_hosts | default(ansible_play_hosts) }}"
        fanout_concurrency: 2
      run_once: true
"""


@pytest.fixture(scope="module")
def ansible_objects(tmp_path_factory):
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook import Playbook
    from ansible.plugins.loader import init_plugin_loader
    from ansible.vars.manager import VariableManager

    from ansible.utils.collection_loader import AnsibleCollectionConfig
    if AnsibleCollectionConfig.collection_finder is None:  # pytest-ansible may have set it up already
        init_plugin_loader([str(COLLECTIONS)])
    tmp = tmp_path_factory.mktemp("fanout")
    (tmp / "inventory.yml").write_text(INVENTORY)
    (tmp / "play.yml").write_text(PLAY)
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(tmp / "inventory.yml")])
    variables = VariableManager(loader=loader, inventory=inventory)
    play = Playbook.load(str(tmp / "play.yml"), variable_manager=variables, loader=loader).get_plays()[0]
    task = [t for b in play.compile() for t in b.block if t.name == "fan out"][0]
    return loader, inventory, variables, play, task


def run_task(ansible_objects, runner, extra_vars=None):
    """Template the task for the first play host as the task executor does, then run the real action plugin."""
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import action_loader
    from ansible.template import Templar

    loader, inventory, variables, play, task = ansible_objects
    hosts = [h.name for h in inventory.get_hosts(play.hosts)]
    task_vars = variables.get_vars(play=play, host=inventory.get_host(hosts[0]), task=task)
    task_vars.update(extra_vars or {})
    templar = Templar(loader=loader, variables=task_vars)
    running = task.copy()
    running.post_validate(templar=templar._engine)
    action = action_loader.get(running.resolved_action, task=running, connection=mock.Mock(transport="local"),
                               play_context=PlayContext(), loader=loader, templar=templar, shared_loader_obj=None)
    with mock.patch.object(type(action), "runner", staticmethod(runner)):
        return action.run(task_vars=task_vars)


def test_each_host_gets_its_own_templated_options(ansible_objects):
    seen = {}

    def runner(params, ctx):
        seen[params["host"]] = params
        return {"changed": False, "path": params["path"], "host": params["host"], "timeout": params["timeout"]}

    result = run_task(ansible_objects, runner)
    assert not result.get("failed"), result
    by_host = result["results_by_host"]
    assert list(by_host) == ["cluster-a", "cluster-b", "cluster-c"]
    # inventory host vars, group vars (host var wins over its group), play vars and module_defaults, per host
    assert by_host["cluster-a"]["path"] == "/api/v1/namespaces/acme-ns"
    assert by_host["cluster-b"]["path"] == "/api/v1/namespaces/b-own-ns"
    assert by_host["cluster-c"]["path"] == "/api/v1/namespaces/globex-ns"
    assert [by_host[h]["host"] for h in by_host] == ["https://a.example:6443", "https://b.example:6443",
                                                     "https://fallback.example:6443"]
    assert seen["https://b.example:6443"]["api_key"] == "tok-bbbb"
    # types come from the argument spec, as without fan-out; omit drops the option
    assert by_host["cluster-a"]["timeout"] == 11.0 and seen["https://a.example:6443"]["tls_server_name"] is None
    # the running host's validated arguments are the invocation, with the secret hidden
    assert result["invocation"]["module_args"]["api_key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert result["fanout_summary"] == {"hosts": 3, "ok": 3, "failed": 0, "changed": 0}


def test_one_host_failing_fails_the_task_naming_it_and_hides_secrets(ansible_objects):
    def runner(params, ctx):
        if params["host"].startswith("https://b."):
            ctx.secrets.add(params["api_key"])
            # a (hypothetical) error that would echo a credential: fan-out must hide it like the single-host path
            raise _kubegate_error("cluster b: forbidden for token %s" % params["api_key"])
        return {"changed": True}

    result = run_task(ansible_objects, runner)
    assert result["failed"] is True and result["changed"] is True
    assert result["failed_hosts"] == ["cluster-b"]
    assert result["msg"].startswith("fanout: 1 of 3 host(s) failed: cluster-b: cluster b: forbidden for token")
    assert "tok-bbbb" not in json.dumps(result)
    assert result["results_by_host"]["cluster-a"] == {"changed": True}


def test_a_host_whose_options_do_not_template_or_validate_fails_alone(ansible_objects):
    calls = []

    def runner(params, ctx):
        calls.append(params["api_key"])
        return {"changed": False}

    result = run_task(ansible_objects, runner,
                      extra_vars={"fanout_hosts": ["cluster-a", "broken-token", "broken-timeout"]})
    assert result["failed_hosts"] == ["broken-token", "broken-timeout"]
    assert "option api_key could not be templated" in result["results_by_host"]["broken-token"]["msg"]
    assert "no_such_variable" in result["msg"]
    assert "invalid options for this host" in result["results_by_host"]["broken-timeout"]["msg"]
    assert "timeout" in result["results_by_host"]["broken-timeout"]["msg"]
    assert result["results_by_host"]["cluster-a"] == {"changed": False}
    assert calls == ["tok-aaaa"]  # the broken hosts never ran


@pytest.mark.parametrize("hosts,message", [
    (["cluster-a", "over-ssh"], "these hosts use a connection that is not local, so their tasks would run elsewhere: "
                                "over-ssh (ssh)"),
    (["cluster-a", "no-such-cluster"], "fanout lists a host not in the inventory: no-such-cluster"),
    ("cluster-a", "fanout must be a list of inventory hostnames"),
])
def test_bad_fanout_input_fails_before_anything_runs(ansible_objects, hosts, message):
    calls = []

    def runner(params, ctx):
        calls.append(params)
        return {"changed": False}

    with pytest.raises(AnsibleActionFail) as err:
        run_task(ansible_objects, runner, extra_vars={"fanout_hosts": hosts})
    assert message in str(err.value)
    assert calls == []


def test_the_module_refuses_fanout():
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.module import run_module

    def runner(params, ctx):
        raise AssertionError("must not run")

    with patch_module_args({"path": "/version", "fanout": ["cluster-a"]}):
        with pytest.raises(SystemExit):
            with mock.patch("sys.stdout") as stdout:
                run_module("api_request", runner)
    printed = "".join(call.args[0] for call in stdout.write.call_args_list)
    out = json.loads(printed)
    assert out["failed"] is True and out["msg"].startswith("fanout runs only on the controller")
    assert "KUBEGATE_NO_FASTPATH" in out["msg"]


def _kubegate_error(message):
    from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.errors import KubegateError
    return KubegateError(message)


def test_module_defaults_layer_is_what_the_task_sees(ansible_objects):
    """The raw layers fan-out reads are the untemplated module_defaults and task args of the playbook."""
    loader, inventory, variables, play, task = ansible_objects
    view = _fanout._TaskView(mock.Mock(_task=task), {"hostvars": None})
    layers = view.raw_layers()
    assert layers[0]["host"] == "{{ kubegate_host | default('https://fallback.example:6443') }}"
    assert layers[-1]["path"] == "{{ kg_path_prefix }}/{{ kg_ns }}"


def test_hosts_reaching_the_same_cluster_share_its_tls_context(tmp_path):
    """Fan-out runs every host's call in one process: the connection layer's caches (TLS context here; keep-alive
    connections and ssh forwards are keyed the same way) serve every host whose options resolve to the same cluster."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import transport
    from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.config import resolve

    def ca(path, name):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    ca_b, ca_c = ca(tmp_path / "b.crt", "cluster-b"), ca(tmp_path / "c.crt", "cluster-c")
    # two inventory aliases of cluster-b (different tokens), and cluster-c
    alias1 = resolve({"host": "https://127.0.0.12:6443", "ca_cert": ca_b, "api_key": "t1"}, env={})
    alias2 = resolve({"host": "https://127.0.0.12:6443", "ca_cert": ca_b, "api_key": "t2"}, env={})
    other = resolve({"host": "https://198.18.3.2:6443", "ca_cert": ca_c, "api_key": "t3"}, env={})
    assert transport.ssl_context(alias1) is transport.ssl_context(alias2)
    assert transport.ssl_context(other) is not transport.ssl_context(alias1)
    assert alias1.key() == alias2.key() != other.key()  # the pool and ssh forward key

"""playbooks/health.yml against the lab through the example tenant inventories (filled in with the lab's CAs and
tokens): all healthy (also in check mode), an unavailable APIService named in the table, an unreachable cluster
reported as such without stopping the others."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from kgplay import no_traceback, run_playbook, wait_for
from kgtest import CLUSTERS, REPO
from tenantinv import EXAMPLE_VAULT_PASSWORD, VAULT_PASS_SCRIPT, fill_tenant, set_host_var, tenant_env, tool

HEALTH = (REPO / "playbooks" / "health.yml").read_text()
BOGUS_APISERVICE = "v1.kg-health-test.kubegate.test"
INGRESS_SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx",
                 "labels": {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}},
    "spec": {"selector": {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
             "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
}


@pytest.fixture(scope="module")
def ingress_service(lab):
    """The controller Service lab/kglab/manifests.py creates; made here only on a lab started before it existed (and
    removed again afterwards)."""
    created = []
    for cluster in CLUSTERS:
        if lab.kubectl(cluster, "get", "service", "-n", "ingress-nginx", "ingress-nginx-controller",
                       check=False).returncode != 0:
            lab.kubectl(cluster, "apply", "-f", "-", input=json.dumps(INGRESS_SERVICE))
            created.append(cluster)
    for cluster in CLUSTERS:
        def endpoints(cluster=cluster):
            out = lab.get_json(cluster, "get", "endpointslices", "-n", "ingress-nginx",
                               "-l", "kubernetes.io/service-name=ingress-nginx-controller")
            return any(ep.get("addresses") for s in out["items"] for ep in s.get("endpoints") or [])
        assert wait_for(endpoints, timeout=60), "no endpoints for ingress-nginx-controller in %s" % cluster
    yield
    for cluster in created:
        lab.kubectl(cluster, "delete", "service", "-n", "ingress-nginx", "ingress-nginx-controller",
                    "--ignore-not-found")


@pytest.fixture
def tenants(lab, tmp_path, ingress_service):
    home = tmp_path / "home"
    home.mkdir()
    env = tenant_env(home)
    invs = dict((t, fill_tenant(lab, t, tmp_path / "inv", home, env)) for t in ("acme", "globex"))
    return invs, env


def health(tmp_path, invs, env, *args):
    argv = []
    for inv in invs:
        argv += ["-i", str(inv)]
    return run_playbook(tmp_path, HEALTH, *argv, "--vault-password-file", str(VAULT_PASS_SCRIPT), *args, env=env,
                        playbook_name="health.yml", timeout=300)


def table(run):
    lines = run.result("Health table")["msg"].splitlines()
    rows = {}
    for line in lines[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 6:
            rows[cells[0]] = dict(zip(["cluster", "tenant", "readyz", "apiservices", "ingress", "status"], cells))
    return lines, rows


def test_all_clusters_healthy_through_the_tenant_inventories(lab, tmp_path, tenants):
    invs, env = tenants
    for check in ([], ["--check"]):
        run = health(tmp_path, invs.values(), env, *check)
        assert run.rc == 0, run.output[-4000:]
        lines, rows = table(run)
        assert lines[0].split() == ["CLUSTER", "TENANT", "READYZ", "APISERVICES", "INGRESS", "STATUS"]
        assert sorted(rows) == CLUSTERS, lines
        for cluster, row in rows.items():
            assert row["tenant"] == lab.clusters[cluster]["tenant"]
            assert (row["readyz"], row["status"]) == ("ok", "healthy"), lines
            assert row["ingress"] == "service ok, pods 2/2 ok", lines
            available, total = row["apiservices"].split("/")
            assert available == total and int(total) > 10, lines
        live = lab.get_json("cluster-a", "get", "apiservices")["items"]
        assert rows["cluster-a"]["apiservices"] == "%d/%d" % (len(live), len(live))
        assert any(a["metadata"]["name"] == "v1alpha1.wardle.example.com" for a in live)
        assert lines[-1] == "3/3 cluster(s) healthy"
        assert "changed=0" in run.stdout and no_traceback(run.output)
        assert EXAMPLE_VAULT_PASSWORD not in run.output
    print("\n".join(lines))


def test_unavailable_apiservice_is_named(lab, tmp_path, tenants):
    invs, env = tenants
    bogus = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": BOGUS_APISERVICE},
             "spec": {"group": "kg-health-test.kubegate.test", "version": "v1", "groupPriorityMinimum": 10,
                      "versionPriority": 10, "insecureSkipTLSVerify": True,
                      "service": {"name": "kg-health-missing", "namespace": "default", "port": 443}}}
    lab.kubectl("cluster-b", "apply", "-f", "-", input=json.dumps(bogus))
    try:
        run = health(tmp_path, [invs["acme"]], env, "-vvvv")
    finally:
        lab.kubectl("cluster-b", "delete", "apiservice", BOGUS_APISERVICE, "--ignore-not-found")
    assert run.rc == 2, run.output[-4000:]
    lines, rows = table(run)
    b = rows["cluster-b"]
    available, total = b["apiservices"].split(" ")[0].split("/")
    assert int(available) == int(total) - 1 and b["apiservices"].endswith("unavailable: " + BOGUS_APISERVICE)
    assert b["status"] == "UNHEALTHY" and b["readyz"] == "ok"
    assert rows["cluster-a"]["status"] == "healthy"
    assert any(line.startswith("cluster-b: APIService %s: " % BOGUS_APISERVICE) for line in lines), lines
    # the play fails for cluster-b only, after the table
    assert run.status("Fail for the unhealthy clusters", "cluster-b") == "failed"
    assert run.status("Fail for the unhealthy clusters", "cluster-a") != "failed"
    assert no_traceback(run.output)
    for cluster in ("cluster-a", "cluster-b"):      # tokens never in the output, even at -vvvv
        token = open(lab.clusters[cluster]["admin_token_file"]).read().strip()
        assert token not in run.output
    print("\n".join(lines))


def test_unreachable_cluster_is_reported_without_stopping_the_others(lab, tmp_path, tenants):
    invs, env = tenants
    set_host_var(invs["acme"], "acme", "cluster-b", "kubegate_host", "https://127.0.0.12:1")
    set_host_var(invs["globex"], "globex", "cluster-c", "apiserver", "https://198.18.3.2:1")
    run = health(tmp_path, invs.values(), env)
    assert run.rc == 2, run.output[-4000:]
    lines, rows = table(run)
    assert rows["cluster-b"]["readyz"] == "UNREACHABLE" and rows["cluster-b"]["status"] == "UNHEALTHY"
    assert rows["cluster-c"]["readyz"] == "UNREACHABLE" and rows["cluster-c"]["status"] == "UNHEALTHY"
    assert rows["cluster-a"]["status"] == "healthy"
    notes = "\n".join(lines)
    assert "cluster-b: readyz: " in notes and "cannot reach the apiserver at 127.0.0.12:1" in notes
    assert "cluster-c: readyz: " in notes and "198.18.3.2:1" in notes
    assert lines[-1] == "1/3 cluster(s) healthy"
    assert "unreachable=0" in run.stdout and no_traceback(run.output)


def test_tenant_inventories_graph_with_the_lab_secrets(lab, tmp_path, tenants):
    invs, env = tenants
    for tenant, hosts in (("acme", ["cluster-a", "cluster-b"]), ("globex", ["cluster-c"])):
        proc = subprocess.run([tool("ansible-inventory"), "-i", str(invs[tenant]), "--graph"], capture_output=True,
                              text=True, env=env, cwd=str(REPO), timeout=120)
        assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
        assert "@%s:" % tenant in proc.stdout and all("|--%s" % h in proc.stdout for h in hosts), proc.stdout


def test_health_through_a_registry_with_client_certificates(lab, tmp_path, ingress_service):
    """The plugin's kubegate_client_cert/kubegate_client_key reach the modules through health.yml's module_defaults."""
    c = lab.clusters["cluster-b"]
    source = tmp_path / "certs.kubegate.yml"
    source.write_text(yaml.safe_dump({"plugin": "kubegate.multicluster.clusters", "registry": {"tenants": {"acme": {
        "clusters": {"cluster-b": {"apiserver": c["server"], "ca_file": c["ca_file"], "tls_server_name": "cluster-b",
                                   "client_cert": c["client_cert_file"], "client_key": c["client_key_file"]}}}}}}))
    run = run_playbook(tmp_path, HEALTH, env={"KUBECONFIG": "/nonexistent", "HOME": str(tmp_path)}, inventory=source,
                       playbook_name="health.yml")
    assert run.rc == 0, run.output[-4000:]
    lines, rows = table(run)
    assert rows["cluster-b"]["status"] == "healthy" and rows["cluster-b"]["tenant"] == "acme", lines

"""Every playbook maps the inventory's connection variables onto the cluster modules the same way
(playbooks/vars/kubegate.yml): proven against cluster-b described by a client certificate only (no token, no
kubeconfig; the lab's apiservers refuse anonymous requests), and with impersonation on top of that certificate.

Why: a playbook that forgets kubegate_client_cert/kubegate_client_key (or impersonation) sends a request without the
credential the inventory names; these runs fail with 401 (or as the wrong user) if any playbook does.
"""
from __future__ import annotations

import json
import shutil
import uuid

import pytest
import yaml

from kgplay import no_traceback, run_playbook
from kgtest import REPO, repo_env

SSR = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
CERT_USER = "kubegate-lab-admin"  # CN of the lab's admin client certificate (O=system:masters)

# (id, playbook path relative to the project, extra arguments, cluster). cluster-access really applies (its check
# mode cannot dry-run objects in a namespace it has yet to create): on cluster-a, where test_cluster_access applies
# the same identity.
PLAYBOOKS = [
    ("root-reload-ingress", "reload-ingress.yml", ["--check"], "cluster-b"),
    ("reload-ingress", "playbooks/reload-ingress.yml", ["--check"], "cluster-b"),
    ("health", "playbooks/health.yml", [], "cluster-b"),
    ("drift-check", "playbooks/drift-check.yml", [], "cluster-b"),
    ("cluster-access", "playbooks/cluster-access.yml", [], "cluster-a"),
]


def cert_only_inventory(lab, path, cluster="cluster-b", **extra):
    """The cluster with host, CA, TLS name and the admin client certificate - nothing else to authenticate with."""
    c = lab.clusters[cluster]
    host = {"kubegate_tenant": "acme", "kubegate_host": c["server"], "kubegate_ca_cert": c["ca_file"],
            "kubegate_tls_server_name": cluster, "kubegate_client_cert": c["client_cert_file"],
            "kubegate_client_key": c["client_key_file"]}
    host.update(extra)
    path.mkdir(parents=True)
    (path / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "children": {"acme": {"hosts": {cluster: host}}}}}))
    shutil.copytree(REPO / "inventories" / "lab" / "group_vars", path / "group_vars")
    return path


def no_other_credential(tmp_path):
    """No kubeconfig, no K8S_AUTH_* from the test run: the inventory's certificate is the only credential."""
    env = {"KUBECONFIG": "/nonexistent", "HOME": str(tmp_path), "KUBEGATE_REPORTS_DIR": str(tmp_path / "reports")}
    env.update({k: "" for k in repo_env() if k.startswith("K8S_AUTH_")})
    return env


def whoami(lab, tmp_path, inventory):
    play = [{"name": "whoami", "hosts": "all", "gather_facts": False,
             "vars_files": [str(REPO / "playbooks" / "vars" / "kubegate.yml")],
             "module_defaults": {"group/kubegate.multicluster.cluster": "{{ kubegate_module_defaults }}"},
             "tasks": [{"name": "review", "kubegate.multicluster.api_request": {
                 "method": "POST", "path": "/apis/authentication.k8s.io/v1/selfsubjectreviews", "body": SSR}}]}]
    run = run_playbook(tmp_path, play, inventory=inventory, env=no_other_credential(tmp_path))
    return run, run.result("review", "cluster-b")


def test_the_shared_mapping_authenticates_with_the_inventory_certificate_and_impersonates(lab, tmp_path):
    run, review = whoami(lab, tmp_path, cert_only_inventory(lab, tmp_path / "inv"))
    assert run.rc == 0, run.output[-3000:]
    user = review["json"]["status"]["userInfo"]
    assert user["username"] == CERT_USER and "system:masters" in user["groups"]
    imp = "kg-imp-" + uuid.uuid4().hex[:6]
    inv = cert_only_inventory(lab, tmp_path / "inv-imp", kubegate_impersonate_user=imp,
                              kubegate_impersonate_groups=["kg-imp-group"])
    run, review = whoami(lab, tmp_path, inv)
    assert run.rc == 0, run.output[-3000:]
    user = review["json"]["status"]["userInfo"]
    assert user["username"] == imp and "kg-imp-group" in user["groups"] and "system:masters" not in user["groups"]
    # without the certificate the same inventory is refused: nothing else authenticates these requests
    bare = tmp_path / "inv-bare"
    cert_only_inventory(lab, bare)
    data = yaml.safe_load((bare / "hosts.yml").read_text())
    for key in ("kubegate_client_cert", "kubegate_client_key"):
        del data["all"]["children"]["acme"]["hosts"]["cluster-b"][key]
    (bare / "hosts.yml").write_text(yaml.safe_dump(data))
    run, review = whoami(lab, tmp_path, bare)
    assert run.rc != 0 and review["failed"] and review.get("status") == 401, review
    assert no_traceback(run.output)


def playbook(tmp_path, path, args, inventory):
    """The project's own playbook file (not a copy), with the test inventory."""
    from kgplay import PLAYBOOK_BIN, HERE
    import subprocess
    import time
    results = tmp_path / ("results-%d.jsonl" % time.monotonic_ns())
    env = repo_env(KG_RESULTS_FILE=str(results), ANSIBLE_CALLBACK_PLUGINS=str(HERE / "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="kg_results", ANSIBLE_NOCOLOR="1")
    env.update(no_other_credential(tmp_path))
    argv = [PLAYBOOK_BIN, str(REPO / path), "-i", str(inventory)] + list(args)
    if path.endswith("cluster-access.yml"):
        argv += ["-e", "cluster_access_vars_dir=%s" % (tmp_path / "host_vars")]
    if path.endswith("drift-check.yml"):
        argv += ["-e", "drift_check_reports_dir=%s" % (tmp_path / "reports")]
    proc = subprocess.run(argv, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=600)
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    return proc, records


def failures(records):
    return [r for r in records if r["status"] in ("failed", "unreachable")]


@pytest.mark.parametrize("path,args,cluster", [p[1:] for p in PLAYBOOKS], ids=[p[0] for p in PLAYBOOKS])
def test_each_playbook_reaches_a_cluster_that_only_accepts_a_client_certificate(lab, tmp_path, path, args, cluster):
    proc, records = playbook(tmp_path, path, args, cert_only_inventory(lab, tmp_path / "inv", cluster))
    out = proc.stdout + proc.stderr
    cluster_calls = [r for r in records if r["host"] == cluster and r["status"] != "skipped"]
    assert cluster_calls, out[-3000:]
    if path.endswith("drift-check.yml"):  # drift exits non-zero for drift; what matters: every check was answered
        report = json.loads(next((tmp_path / "reports").glob("*/drift.json")).read_text())
        status = report["tenants"]["acme"]["cluster-b"]["status"]
        assert status in ("in_sync", "drifted"), json.dumps(report)[:3000]
        assert "401" not in json.dumps(report)
    else:
        assert proc.returncode == 0 and not failures(records), out[-4000:]
    assert "Unauthorized" not in out and no_traceback(out)


@pytest.mark.parametrize("path,args,cluster", [p[1:] for p in PLAYBOOKS], ids=[p[0] for p in PLAYBOOKS])
def test_each_playbook_impersonates_the_inventory_user(lab, tmp_path, path, args, cluster):
    """Impersonating a user without any RBAC on top of the certificate: the apiserver refuses the playbook's first
    cluster request as that user (403 naming it), so the impersonation variables reached the modules."""
    imp = "kg-nobody-" + uuid.uuid4().hex[:6]
    inv = cert_only_inventory(lab, tmp_path / "inv", cluster, kubegate_impersonate_user=imp)
    proc, records = playbook(tmp_path, path, args, inv)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert ('User "%s"' % imp) in out or ('"%s"' % imp) in out, out[-4000:]
    assert no_traceback(out)

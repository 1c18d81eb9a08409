"""AWX-shaped jobs through ansible-runner against the lab: the "kubegate clusters" credential type's injectors
(awx/credential-type.yml) rendered with the lab's tokens and CAs, a survey's extra vars, a limit, the project checkout
and a tenant inventory that names only kubeconfig contexts — so the clusters are reachable only through what the
credential injected. Checks the job events, stats and artifacts, and that no token leaks into any of them."""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
import yaml

import awxjob
from kgplay import no_traceback, token
from kgtest import REPO

RELOAD = "playbooks/reload-ingress.yml"
RELOAD_TASKS = [
    "Render, validate and apply the routing maps",
    "Wait until every controller pod sees the new maps",
    "Test the configuration in every controller pod",
    "Reload nginx pod by pod",
    "Prove the routing in every pod (a request per rule, through the apiserver's pod proxy)",
    "Summary",
]
# survey answers as AWX passes them (multiplechoice answers are strings)
SURVEY = {"kubegate_reload_batch_size": 1, "kubegate_force_reload": "false", "kubegate_sync_timeout": 60}
AWX_META = {"awx_job_id": 1, "awx_job_template_name": "kubegate reload ingress", "awx_user_name": "operator"}


@pytest.fixture(autouse=True)
def job_environment(monkeypatch, tmp_path):
    """The job sees only what the job defines: no kubeconfig or K8S_AUTH_* of the machine running the tests."""
    for name in list(os.environ):
        if name == "KUBECONFIG" or name.startswith(("K8S_AUTH_", "KUBEGATE_", "ANSIBLE_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", "%s:%s" % (REPO / ".venv" / "bin", os.environ.get("PATH", "")))


def lab_kubeconfig(lab) -> str:
    """The credential's input: one context per lab cluster, a bearer token each and the CA embedded."""
    kc = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    for name, c in lab.clusters.items():
        ca = base64.b64encode(Path(c["ca_file"]).read_bytes()).decode()
        kc["clusters"].append({"name": name, "cluster": {"server": c["server"], "certificate-authority-data": ca}})
        kc["users"].append({"name": "kubegate-" + name, "user": {"token": token(lab, name)}})
        kc["contexts"].append({"name": name, "context": {"cluster": name, "user": "kubegate-" + name}})
    return yaml.safe_dump(kc)


def tenant_inventory(lab) -> dict:
    """A tenant inventory as AWX would import it from the project: clusters by context name, nothing secret."""
    edge = lab.desc["edge"]
    groups = {}
    for name, c in lab.clusters.items():
        host = {"kubegate_tenant": c["tenant"], "kubegate_context": name}
        if c["netns"]:
            host["kubegate_jump"] = {
                "host": edge["host"], "port": edge["port"], "user": edge["user"],
                "key_file": "{{ lookup('ansible.builtin.env', 'KUBEGATE_JUMP_KEY_FILE') }}",
                "known_hosts": "{{ lookup('ansible.builtin.env', 'KUBEGATE_JUMP_KNOWN_HOSTS') }}"}
        groups.setdefault(c["tenant"], {"hosts": {}})["hosts"][name] = host
    return {"all": {"vars": {"ansible_connection": "local",
                             "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                    "children": groups}}


def lab_group_vars() -> dict[str, dict]:
    """The routing rules and controller settings of the lab inventory (committed group_vars)."""
    return {p.stem: yaml.safe_load(p.read_text()) for p in (REPO / "inventories" / "lab" / "group_vars").glob("*.yml")}


def secrets(lab) -> list[str]:
    return [token(lab, name) for name in lab.clusters]


@pytest.fixture
def clusters_credential(lab, tmp_path):
    """The 'kubegate clusters' credential's inputs, filled from the lab (tokens, CAs, the edge host's key)."""
    edge = lab.desc["edge"]
    return {"kubeconfig": lab_kubeconfig(lab),
            "jump_ssh_key": Path(edge["key_file"]).read_text(),
            "jump_known_hosts": Path(edge["known_hosts"]).read_text()}


def test_injectors_write_files_and_put_only_paths_in_the_environment(lab, tmp_path, clusters_credential):
    pdd = tmp_path / "pdd"
    cred = awxjob.inject(awxjob.credential_type(), clusters_credential, pdd)
    assert set(cred.env) == {"KUBECONFIG", "KUBEGATE_JUMP_KEY_FILE", "KUBEGATE_JUMP_KNOWN_HOSTS"}
    assert cred.extra_vars == {}
    for path in cred.files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.parent == pdd / "env"
    assert yaml.safe_load(Path(cred.env["KUBECONFIG"]).read_text()) == yaml.safe_load(clusters_credential["kubeconfig"])
    assert Path(cred.env["KUBEGATE_JUMP_KEY_FILE"]).read_text() == clusters_credential["jump_ssh_key"]
    assert Path(cred.env["KUBEGATE_JUMP_KNOWN_HOSTS"]).read_text() == clusters_credential["jump_known_hosts"]
    assert not any(s in json.dumps(cred.env) for s in secrets(lab))
    # without the optional jump host fields, the jump variables are empty rather than naming empty files
    bare = awxjob.inject(awxjob.credential_type(), {"kubeconfig": clusters_credential["kubeconfig"]}, tmp_path / "p2")
    assert bare.env["KUBEGATE_JUMP_KEY_FILE"] == "" and bare.env["KUBEGATE_JUMP_KNOWN_HOSTS"] == ""


def test_reload_job_on_cluster_b_with_the_clusters_credential(lab, tmp_path, clusters_credential):
    # start from no maps at all, so the job rolls out for real
    lab.kubectl("cluster-b", "delete", "configmap", "-n", "ingress-nginx", "kubegate-nginx-map",
                "kubegate-nginx-map-previous", "--ignore-not-found")
    pdd_root = tmp_path
    cred = awxjob.inject(awxjob.credential_type(), clusters_credential, pdd_root / "awx_job")
    pdd = awxjob.private_data_dir(pdd_root, inventory=tenant_inventory(lab), group_vars=lab_group_vars(),
                                  credentials=[cred], extravars={**SURVEY, **AWX_META},
                                  cmdline="--limit cluster-b --diff --forks 25")
    job = awxjob.run(pdd, RELOAD)
    assert job.status == "successful" and job.rc == 0, job.stdout[-4000:]
    assert (job.artifacts / "status").read_text() == "successful"
    assert (job.artifacts / "rc").read_text() == "0"
    # job events: every reload step ran and succeeded on cluster-b, nothing else was touched
    ok = job.ok_tasks("cluster-b")
    assert [t for t in RELOAD_TASKS if t not in ok] == [], ok
    assert job.host_events("runner_on_failed") == [] and job.host_events("runner_on_unreachable") == []
    assert job.hosts_seen() == {"cluster-b"}
    pods = lab.ingress_pods("cluster-b")
    reload = job.task_result("Reload nginx pod by pod", "cluster-b")
    assert [r["pod"] for r in reload["results"]] == pods and all(r["rc"] == 0 for r in reload["results"])
    summary = job.task_result("Summary", "cluster-b")["msg"]
    # checks per pod: v1, v2, the regex ~^v3- (a sample derived from it), no header
    assert "reloaded %d pod(s)" % len(pods) in summary and "%d routing check(s) passed" % (4 * len(pods)) in summary
    stats = [e for e in job.events if e["event"] == "playbook_on_stats"]
    assert len(stats) == 1
    assert job.stats["ok"]["cluster-b"] >= len(RELOAD_TASKS)
    assert job.stats["failures"] == {} and job.stats["dark"] == {}
    assert job.task_result("Render, validate and apply the routing maps", "cluster-b")["changed"] is True
    # the survey answers and the limit reached ansible-playbook the way AWX passes them
    assert (job.artifacts / "command").exists()
    command = json.loads((job.artifacts / "command").read_text())
    assert "@%s" % (pdd / "env" / "extravars") in command["command"] and "cluster-b" in command["command"]
    assert command["env"]["KUBECONFIG"] == cred.env["KUBECONFIG"]
    # the lab's acme rules are what cluster-b now serves
    cm = lab.get_json("cluster-b", "get", "configmap", "-n", "ingress-nginx", "kubegate-nginx-map")
    assert '"v2" "canary";' in cm["data"]["kubegate-map.conf"]
    # no token anywhere: stdout, events, artifacts (including runner's record of the environment), env files
    needles = secrets(lab)
    assert not any(s in job.stdout for s in needles)
    assert not any(s in job.events_text() for s in needles)
    assert job.files_containing(needles, exclude=cred.files) == []
    # ...except the credential's own 0600 file, which AWX deletes with the private data directory
    assert job.files_containing(needles) == [str(Path(cred.env["KUBECONFIG"]).relative_to(pdd))]
    assert no_traceback(job.stdout)
    # relaunch with the survey's "reload even if unchanged": nothing to apply, every pod reloaded again
    forced_cred = awxjob.inject(awxjob.credential_type(), clusters_credential, tmp_path / "again" / "awx_job")
    forced_pdd = awxjob.private_data_dir(tmp_path / "again", inventory=tenant_inventory(lab),
                                         group_vars=lab_group_vars(), credentials=[forced_cred],
                                         extravars={**SURVEY, "kubegate_force_reload": "true", **AWX_META},
                                         cmdline="--limit cluster-b")
    forced = awxjob.run(forced_pdd, RELOAD)
    assert forced.status == "successful", forced.stdout[-3000:]
    assert forced.task_result("Render, validate and apply the routing maps", "cluster-b")["changed"] is False
    assert [r["pod"] for r in forced.task_result("Reload nginx pod by pod", "cluster-b")["results"]] == pods
    summary = forced.task_result("Summary", "cluster-b")["msg"]
    assert "maps unchanged" in summary and "reload forced" in summary and "reloaded %d pod(s)" % len(pods) in summary


def test_the_same_job_without_the_credential_fails_with_a_clear_error(lab, tmp_path):
    """The inventory carries no credentials: without the injected kubeconfig there is nothing to connect with."""
    pdd = awxjob.private_data_dir(tmp_path, inventory=tenant_inventory(lab), group_vars=lab_group_vars(),
                                  extravars={**SURVEY, **AWX_META}, cmdline="--limit cluster-b")
    job = awxjob.run(pdd, RELOAD)
    assert job.status == "failed" and job.rc != 0
    failed = job.host_events("runner_on_failed", "cluster-b")
    # on the fan-out path the apply runs once for every cluster; the cluster it failed for is stopped by the next task
    # with the apply's own message
    assert [e["event_data"]["task"] for e in failed] == ["Stop the clusters whose maps were refused"]
    msg = failed[0]["event_data"]["res"]["msg"]
    assert "context 'cluster-b' was given but no kubeconfig was found" in msg, msg
    assert no_traceback(job.stdout)


def test_check_mode_job_on_the_restricted_cluster_through_the_injected_jump_key(lab, tmp_path, clusters_credential):
    """cluster-c is reachable only through the edge host: the jump key and known_hosts come from the credential."""
    cred = awxjob.inject(awxjob.credential_type(), clusters_credential, tmp_path / "awx_job")
    pdd = awxjob.private_data_dir(tmp_path, inventory=tenant_inventory(lab), group_vars=lab_group_vars(),
                                  credentials=[cred], extravars=AWX_META,
                                  cmdline="--limit cluster-c --check --diff")
    job = awxjob.run(pdd, RELOAD)
    assert job.status == "successful" and job.rc == 0, job.stdout[-4000:]
    render = job.task_result("Render, validate and apply the routing maps", "cluster-c")
    assert render["sha256"] and "Summary" in job.ok_tasks("cluster-c")
    assert job.hosts_seen() == {"cluster-c"}
    # check mode: the reload block is skipped, nothing was exec'd in a pod
    assert "Reload nginx pod by pod" not in job.ok_tasks("cluster-c")
    needles = secrets(lab) + [line for line in clusters_credential["jump_ssh_key"].splitlines()
                              if line and not line.startswith("-----")]
    assert job.files_containing(needles, exclude=cred.files) == []
    assert not any(s in job.events_text() for s in needles)


def test_single_cluster_job_with_the_builtin_kubernetes_credential(lab, tmp_path):
    """AWX's own Kubernetes bearer-token credential (K8S_AUTH_*), no inventory connection variables at all."""
    c = lab.clusters["cluster-b"]
    pdd_root = tmp_path
    cred = awxjob.inject_kubernetes_bearer_token(c["server"], token(lab, "cluster-b"), Path(c["ca_file"]).read_text(),
                                                 pdd_root / "awx_job")
    inventory = {"all": {"vars": {"ansible_connection": "local",
                                  "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                         "children": {"acme": {"hosts": {"cluster-b": {"kubegate_tenant": "acme"}}}}}}
    pdd = awxjob.private_data_dir(pdd_root, inventory=inventory, group_vars=lab_group_vars(), credentials=[cred],
                                  extravars=AWX_META, cmdline="--check --diff")
    job = awxjob.run(pdd, RELOAD)
    assert job.status == "successful" and job.rc == 0, job.stdout[-4000:]
    render = job.task_result("Render, validate and apply the routing maps", "cluster-b")
    assert render["sha256"]
    assert "TLS certificate verification is disabled" not in job.stdout   # verified against the injected CA
    needles = [token(lab, "cluster-b")]
    assert not any(s in job.stdout for s in needles)
    assert not any(s in job.events_text() for s in needles)
    # the built-in credential puts the token itself into the job environment: runner's own record of the
    # environment (artifacts/<id>/command) holds it — one reason to prefer the file-based kubegate credential type
    assert job.files_containing(needles, exclude=cred.files) == ["artifacts/1/command", "env/envvars"]


def _job(lab, tmp_path, name, credential_inputs, playbook, cmdline, extravars=None):
    root = tmp_path / name
    cred = awxjob.inject(awxjob.credential_type(), credential_inputs, root / "awx_job")
    pdd = awxjob.private_data_dir(root, inventory=tenant_inventory(lab), group_vars=lab_group_vars(),
                                  credentials=[cred], extravars={**AWX_META, **(extravars or {})}, cmdline=cmdline)
    return awxjob.run(pdd, playbook), cred


def test_drift_check_job_in_check_and_diff_mode(lab, tmp_path, clusters_credential):
    """The drift check job template (check + diff) on cluster-b: successful while in sync; after an out-of-band edit
    of the map ConfigMap the job fails with the KUBEGATE_DRIFT marker naming the drift (what a schedule alerts on)."""
    reload, _ = _job(lab, tmp_path, "reload", clusters_credential, RELOAD, "--limit cluster-b", SURVEY)
    assert reload.status == "successful", reload.stdout[-3000:]
    try:
        job, cred = _job(lab, tmp_path, "drift", clusters_credential, "playbooks/drift-check.yml",
                         "--limit cluster-b --check --diff")
        assert job.status == "successful" and job.rc == 0, job.stdout[-4000:]
        assert job.hosts_seen() == {"cluster-b"}
        summary = job.task_result("Drift summary", "cluster-b")["msg"]
        assert summary[0].startswith("drift: in_sync (exit code 0)") and "0 drifted, 0 unreachable" in summary[0]
        reports = sorted((job.pdd / "project" / "reports").glob("*/drift.json"))
        assert len(reports) == 1
        assert json.loads(reports[0].read_text())["tenants"]["acme"]["cluster-b"]["status"] == "in_sync"
        assert job.files_containing(secrets(lab), exclude=cred.files) == []
        # out-of-band change in cluster-b: someone edits the live map
        cm = lab.get_json("cluster-b", "get", "configmap", "-n", "ingress-nginx", "kubegate-nginx-map")
        edited = cm["data"]["kubegate-map.conf"].replace('"v2" "canary";', '"v2" "stable";')
        assert edited != cm["data"]["kubegate-map.conf"]
        patch = json.dumps({"data": {"kubegate-map.conf": edited}})
        lab.kubectl("cluster-b", "patch", "configmap", "-n", "ingress-nginx", "kubegate-nginx-map", "--type=merge",
                    "-p", patch)
        drifted, drifted_cred = _job(lab, tmp_path, "drift2", clusters_credential, "playbooks/drift-check.yml",
                          "--limit cluster-b --check --diff")
        assert drifted.status == "failed" and drifted.rc != 0
        failed = drifted.host_events("runner_on_failed")
        assert [e["event_data"]["task"] for e in failed] == ["Fail unless everything is in sync"], drifted.stdout[-3000:]
        assert "KUBEGATE_DRIFT status=drifted" in failed[0]["event_data"]["res"]["msg"]
        # the outcome survives the job as its artifacts (set_stats), where AWX shows it
        artifact = drifted.host_events("playbook_on_stats")[0]["event_data"]["artifact_data"]["kubegate_drift"]
        assert artifact["status"] == "drifted" and int(artifact["counts"]["drifted"]) >= 1, artifact
        report = json.loads(sorted((drifted.pdd / "project" / "reports").glob("*/drift.json"))[0].read_text())
        cluster_b = report["tenants"]["acme"]["cluster-b"]
        assert report["status"] == "drifted" and cluster_b["status"] == "drifted"
        assert cluster_b["checks"]["map_configmap"]["status"] == "drifted"
        assert '"v2" "stable";' in cluster_b["checks"]["map_configmap"]["diff"]
        assert drifted.files_containing(secrets(lab), exclude=drifted_cred.files) == []
    finally:
        # back to the lab's desired state (the rules in inventories/lab/group_vars)
        restore, _ = _job(lab, tmp_path, "restore", clusters_credential, RELOAD, "--limit cluster-b", SURVEY)
        assert restore.status == "successful", restore.stdout[-3000:]


def test_health_job_over_the_whole_tenant_inventory(lab, tmp_path, clusters_credential):
    """The health job template without a limit: all three clusters from the one credential, cluster-c through the
    injected jump key; the table lists every cluster. (The ingress Service check is turned off here: it needs the
    lab's ingress-nginx-controller Service, covered by the health playbook's own tests.)"""
    job, cred = _job(lab, tmp_path, "health", clusters_credential, "playbooks/health.yml", "",
                     {"kubegate_ingress_service": ""})
    assert job.status == "successful" and job.rc == 0, job.stdout[-4000:]
    assert job.hosts_seen() == set(lab.clusters)
    for name in lab.clusters:
        assert "Apiserver readiness (/readyz)" in job.ok_tasks(name), name
    table = [e for e in job.host_events("runner_on_ok") if e["event_data"]["task"] == "Health table"]
    assert len(table) == 1
    lines = table[0]["event_data"]["res"]["msg"].splitlines()
    assert lines[-1] == "%d/%d cluster(s) healthy" % (len(lab.clusters), len(lab.clusters)), lines
    assert all(any(line.startswith(name + " ") for line in lines) for name in lab.clusters)
    assert job.stats["failures"] == {} and job.stats["dark"] == {}
    assert job.files_containing(secrets(lab), exclude=cred.files) == []

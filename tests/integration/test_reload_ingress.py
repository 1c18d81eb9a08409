"""playbooks/reload-ingress.yml end to end on the lab: render -> apply -> wait for the pods' files -> nginx -t -> reload
pod by pod -> prove routing with real requests; check mode; idempotence; restore on failure; fan-out over clusters."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from kgplay import lab_inventory, no_traceback, run_playbook
from kgtest import REPO

PLAYBOOK = REPO / "playbooks" / "reload-ingress.yml"
CM = "kubegate-nginx-map"


def maps(version_value, extra=None):
    entries = [{"key": "v1", "value": "stable"}, {"key": "v2", "value": version_value}]
    return [{"source": "$http_x_version", "variable": "$kubegate_backend", "default": "stable",
             "proxy_set_header": "X-Kubegate-Backend", "entries": entries + (extra or [])}]


def routed(lab, cluster, pod, version):
    """The backend a pod routes X-Version to, observed by the echo backend (a real request via the pod proxy)."""
    path = "/api/v1/namespaces/ingress-nginx/pods/%s:80/proxy/kubegate/check" % pod
    c = lab.clusters[cluster]
    import ssl
    import urllib.request
    token = Path(c["admin_token_file"]).read_text().strip()
    if c["netns"]:
        argv = ["get", "--raw", path]  # kubectl cannot send a custom header: only the default route is observable
        return json.loads(lab.kubectl(cluster, *argv).stdout)["headers"].get("X-Kubegate-Backend")
    req = urllib.request.Request(c["server"] + path, headers={"Authorization": "Bearer " + token,
                                                              "X-Version": version})
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=c["ca_file"]), timeout=10) as r:
        return json.loads(r.read())["headers"].get("X-Kubegate-Backend")


def reset(lab, cluster):
    lab.kubectl(cluster, "delete", "configmap", "-n", "ingress-nginx", CM, CM + "-previous", "--ignore-not-found")


# Both ways of running the cluster steps: one fan-out task per step (the default) and per host (kubegate_fanout: false).
MODES = [pytest.param(True, id="fanout"), pytest.param(False, id="per-host")]


def host_result(run, task, host):
    """`host`'s own result of `task` in either mode (None if the host did not run it): a fan-out task reports once, for
    the host that ran it, with every listed host's result in results_by_host (per loop item for a looped task)."""
    found = [r for r in run.records if r["task"] == task]
    for record in found:
        res = record["result"]
        if "results_by_host" in res:
            if host not in res["results_by_host"]:
                return None
            return dict(res["results_by_host"][host], failed=bool(res["results_by_host"][host].get("failed")))
        items = [i for i in res.get("results") or () if isinstance(i, dict) and "results_by_host" in i]
        if items:
            mine = [dict(i["results_by_host"][host], item=i["item"]) for i in items if host in i["results_by_host"]]
            return {"results": mine} if mine else None
    mine = [r for r in found if r["host"] == host and r["status"] != "skipped"]
    if not mine:
        return None
    return dict(mine[-1]["result"], failed=mine[-1]["status"] == "failed")


def check_items(run, host):
    """[(pod, check), ...] the routing-check step sent for `host`, in order (per host: the loop item)."""
    plan = [(pod, check) for pod in host_result(run, "Wait until every controller pod sees the new maps", host)["pods"]
            for check in host_result(run, "Render, validate and apply the routing maps", host)["checks"]]
    return [plan[r["item"]] for r in host_result(run, CHECK_TASK, host)["results"]]


def run_reload(tmp_path, *args, extra_vars=None, cwd=None, inventory=None, fanout=None, env=None):
    argv = list(args)
    if fanout is not None:
        extra_vars = dict(extra_vars or {}, kubegate_fanout=fanout)
    if extra_vars:
        path = tmp_path / ("vars-%s.yml" % uuid.uuid4().hex[:6])
        path.write_text(yaml.safe_dump(extra_vars))
        argv += ["-e", "@%s" % path]
    return run_playbook(tmp_path, PLAYBOOK.read_text(), *argv, cwd=cwd, inventory=inventory,
                        playbook_name="reload-ingress.yml", env=env)


@pytest.mark.parametrize("fanout", MODES)
def test_rollout_check_mode_and_idempotence_on_one_cluster(lab, tmp_path, fanout):
    reset(lab, "cluster-b")
    pods = lab.ingress_pods("cluster-b")
    # check mode first: shows the diff and changes nothing
    check = run_reload(tmp_path, "-l", "cluster-b", "--check", "--diff", fanout=fanout,
                       extra_vars={"kubegate_routing_maps": maps("canary")})
    assert check.rc == 0, check.output[-3000:]
    assert '+    "v2" "canary";' in check.stdout and "would change" in check.stdout
    assert lab.kubectl("cluster-b", "get", "configmap", "-n", "ingress-nginx", CM, check=False).returncode != 0
    # the real rollout, from playbooks/ as users type it
    run = run_reload(tmp_path, "-l", "cluster-b", extra_vars={"kubegate_routing_maps": maps("canary")},
                     cwd=REPO / "playbooks", fanout=fanout)
    assert run.rc == 0, run.output[-4000:]
    assert {r["host"] for r in run.records} == {"cluster-b"}
    assert all(routed(lab, "cluster-b", pod, "v2") == "canary" for pod in pods)
    assert all(routed(lab, "cluster-b", pod, "v1") == "stable" for pod in pods)
    reload = host_result(run, "Reload nginx pod by pod", "cluster-b")
    assert [r["pod"] for r in reload["results"]] == pods and all(r["rc"] == 0 for r in reload["results"])
    checks = host_result(run, CHECK_TASK, "cluster-b")
    assert len(checks["results"]) == len(pods) * 3
    summary = run.result("Summary", "cluster-b")["msg"]
    assert "reloaded 2 pod(s)" in summary and "6 routing check(s) passed" in summary
    # idempotent: nothing to do the second time
    again = run_reload(tmp_path, "-l", "cluster-b", extra_vars={"kubegate_routing_maps": maps("canary")},
                       fanout=fanout)
    assert host_result(again, "Render, validate and apply the routing maps", "cluster-b")["changed"] is False
    assert again.status("Reload nginx pod by pod", "cluster-b") == "skipped"
    assert host_result(again, "Reload nginx pod by pod", "cluster-b") is None
    # a change of one rule rolls out and the previous content is kept for restore
    change = run_reload(tmp_path, "-l", "cluster-b", extra_vars={"kubegate_routing_maps": maps("canary-2")},
                        fanout=fanout)
    assert change.rc == 0, change.output[-3000:]
    assert all(routed(lab, "cluster-b", pod, "v2") == "canary-2" for pod in pods)
    previous = lab.get_json("cluster-b", "get", "configmap", "-n", "ingress-nginx", CM + "-previous")
    assert '"v2" "canary";' in previous["data"]["kubegate-map.conf"]
    assert no_traceback(run.output + again.output + change.output)


@pytest.mark.parametrize("fanout", MODES)
def test_invalid_rules_change_nothing(lab, tmp_path, fanout):
    reset(lab, "cluster-a")
    bad = [{"source": "$http_x_version", "variable": "$host", "entries": [{"key": "a\n}", "value": "x\n} server {"}]}]
    run = run_reload(tmp_path, "-l", "cluster-a", extra_vars={"kubegate_routing_maps": bad}, fanout=fanout)
    assert run.rc != 0
    assert "cluster-a" in run.stdout.split("PLAY RECAP")[-1] and "failed=1" in run.stdout.split("PLAY RECAP")[-1]
    res = host_result(run, "Render, validate and apply the routing maps", "cluster-a")
    assert res["failed"] and len(res["problems"]) >= 3 and "$host" in res["msg"]
    assert lab.kubectl("cluster-a", "get", "configmap", "-n", "ingress-nginx", CM, check=False).returncode != 0
    assert no_traceback(run.output)


CHECK_TASK = "Prove the routing in every pod (a request per rule, through the apiserver's pod proxy)"


@pytest.mark.parametrize("fanout", MODES)
def test_quoted_punctuation_keys_and_regex_rules_are_routed_by_real_nginx(lab, tmp_path, fanout):
    """Keys nginx reads literally when quoted (';', '{', '}', '$', the words hostnames/volatile) and regex rules, each
    proven by the playbook's own routing checks (a derived sample for a plain regex, the declared one for a PCRE-only
    regex) and by direct requests through every pod afterwards."""
    reset(lab, "cluster-b")
    pods = lab.ingress_pods("cluster-b")
    extra = [{"key": "a;b", "value": "semicolon"}, {"key": "{x}", "value": "braces"},
             {"key": "$host", "value": "dollar"}, {"key": "hostnames", "value": "word"},
             {"key": "~^re;g{2}$", "value": "regex-derived"},
             {"key": "~*^beta-(?<build>\\d+)$", "value": "regex-declared", "sample": "BETA-42"}]
    run = run_reload(tmp_path, "-l", "cluster-b", extra_vars={"kubegate_routing_maps": maps("canary", extra)},
                     fanout=fanout)
    assert run.rc == 0, run.output[-4000:]
    checks = host_result(run, CHECK_TASK, "cluster-b")["results"]
    items = check_items(run, "cluster-b")
    sent = sorted({(tuple(sorted(c["headers"].items())), c["expect"]) for _, c in items})
    assert sent == sorted([((("X-Version", "v1"),), "stable"), ((("X-Version", "v2"),), "canary"),
                           ((("X-Version", "a;b"),), "semicolon"), ((("X-Version", "{x}"),), "braces"),
                           ((("X-Version", "$host"),), "dollar"), ((("X-Version", "hostnames"),), "word"),
                           ((("X-Version", "re;gg"),), "regex-derived"),
                           ((("X-Version", "BETA-42"),), "regex-declared"), ((), "stable")])
    # what each pod's nginx returned upstream for each check, as the echo backend saw it
    assert all(r["json"]["headers"]["X-Kubegate-Backend"] == c["expect"] for r, (_, c) in zip(checks, items))
    assert len(checks) == len(pods) * 9
    for pod in pods:
        assert routed(lab, "cluster-b", pod, "a;b") == "semicolon" and routed(lab, "cluster-b", pod, "{X}") == "braces"
        assert routed(lab, "cluster-b", pod, "re;gg") == "regex-derived"
        assert routed(lab, "cluster-b", pod, "beta-7") == "regex-declared"
        assert routed(lab, "cluster-b", pod, "re;g") == "stable"
    assert no_traceback(run.output)


@pytest.mark.parametrize("fanout", MODES)
def test_a_pod_failing_nginx_t_restores_the_previous_maps_on_its_cluster_only(lab, tmp_path, fanout):
    """cluster-a and cluster-b roll out together; one pod of cluster-a fails nginx -t: cluster-a is rolled back and
    reported alone, cluster-b completes."""
    both = ("-l", "cluster-a:cluster-b")
    for name in ("cluster-a", "cluster-b"):
        reset(lab, name)
    pods = lab.ingress_pods("cluster-a")
    good = run_reload(tmp_path, *both, extra_vars={"kubegate_routing_maps": maps("canary")}, fanout=fanout)
    assert good.rc == 0, good.output[-3000:]
    # break one pod: an extra file in its conf.d that nginx -t rejects (as a bad manual edit would)
    broken = Path(lab.clusters["cluster-a"]["pods_dir"]) / pods[1] / "conf.d" / "zz-broken.conf"
    broken.write_text("this is not nginx;\n")
    record_file = tmp_path / "run.json"
    summary_env = {"ANSIBLE_CALLBACKS_ENABLED": "kg_results,kubegate.multicluster.summary",
                   "KUBEGATE_SUMMARY_JSON": str(record_file)}
    awx = {"awx_job_id": 4242, "awx_user_name": "alice"} if fanout else {}  # as AWX passes them (extra vars)
    try:
        run = run_reload(tmp_path, *both, extra_vars=dict(awx, kubegate_routing_maps=maps("canary-new")),
                         fanout=fanout, env=summary_env)
        assert run.rc != 0
        assert host_result(run, "Test the configuration in every controller pod", "cluster-a")["failed"]
        assert host_result(run, "Reload nginx pod by pod", "cluster-a") is None  # no pod reloaded the new config
        assert host_result(run, "Restore the previous maps", "cluster-a")["failed"] is False
        failure = run.result("Report the failed rollout", "cluster-a")["msg"]
        assert 'at "Test the configuration in every controller pod"' in failure and "restored" in failure
        # the reason is nginx's own; the broken pod still fails nginx -t, so it is the one not reloaded
        assert "nginx.conf test failed" in failure and "reloaded in 1 of 2 pod(s)" in failure
        cm = lab.get_json("cluster-a", "get", "configmap", "-n", "ingress-nginx", CM)
        assert '"v2" "canary";' in cm["data"]["kubegate-map.conf"]
        # routing on cluster-a is still (or again) the previous one
        assert all(routed(lab, "cluster-a", pod, "v2") == "canary" for pod in pods)
        # cluster-b went on alone: not restored, new routing in every pod, its summary
        assert host_result(run, "Restore the previous maps", "cluster-b") is None
        assert all(routed(lab, "cluster-b", pod, "v2") == "canary-new" for pod in lab.ingress_pods("cluster-b"))
        assert "6 routing check(s) passed" in run.result("Summary", "cluster-b")["msg"]
        assert run.status("Summary", "cluster-a") is None
        # the summary callback: the same rows in both modes, progress while running, the run record
        record = json.loads(record_file.read_text())
        assert oct(record_file.stat().st_mode & 0o777) == "0o600"
        rows = {r["cluster"]: r for r in record["clusters"]}
        assert rows["cluster-a"]["outcome"] == "failed" and rows["cluster-b"]["outcome"] == "ok"
        assert rows["cluster-a"]["reason"].startswith('Report the failed rollout: Rollout of the routing maps failed '
                                                      'on cluster-a at "Test the configuration in every controller')
        assert rows["cluster-b"]["changed"] == ["Render, validate and apply the routing maps", "Reload nginx pod by pod"]
        assert (rows["cluster-b"]["pods"], rows["cluster-b"]["checks"]) == (2, 6)
        assert rows["cluster-a"]["changed"][0] == "Render, validate and apply the routing maps"
        assert "Restore the previous maps" in rows["cluster-a"]["changed"] and rows["cluster-a"]["checks"] == 0
        assert {r["tenant"] for r in rows.values()} == {lab.clusters["cluster-a"]["tenant"],
                                                        lab.clusters["cluster-b"]["tenant"]}
        assert record["run"]["limit"] == "cluster-a:cluster-b" and record["run"]["playbook"] == "reload-ingress.yml"
        assert record["totals"] == {"clusters": 2, "ok": 1, "failed": 1, "changed": 2}
        import getpass
        if fanout:
            assert (record["run"]["by"], record["run"]["awx_job_id"]) == ("alice", 4242)
        else:
            assert (record["run"]["by"], record["run"]["awx_job_id"]) == (getpass.getuser(), None)
        table = run.stdout.split("KUBEGATE RUN ")[1]
        assert "cluster-b" in table and "failed:\n  cluster-a: Report the failed rollout" in table
        progress = [line for line in run.stdout.splitlines() if line.startswith("kubegate [")]
        assert len(progress) == 2 and progress[-1].startswith("kubegate [2/2]"), progress
        assert run.stdout.index(progress[0]) < run.stdout.index("PLAY RECAP")
    finally:
        broken.unlink(missing_ok=True)
    assert no_traceback(run.output)


@pytest.mark.parametrize("fanout", MODES)
def test_fan_out_over_all_lab_clusters(lab, tmp_path, cluster_c_forward, fanout):
    for name in lab.clusters:
        reset(lab, name)
    hosts = {}
    for name, c in lab.clusters.items():
        hosts[name] = {"kubegate_tenant": c["tenant"], "kubegate_host": c["server"], "kubegate_ca_cert": c["ca_file"],
                       "kubegate_token": "{{ lookup('file', '%s') }}" % c["admin_token_file"],
                       "kubegate_routing_maps": maps("canary-" + name)}
    hosts["cluster-c"]["kubegate_host"] = cluster_c_forward
    hosts["cluster-c"]["kubegate_tls_server_name"] = "cluster-c"
    inventory = lab_inventory(tmp_path, hosts)
    started = time.monotonic()
    run = run_reload(tmp_path, inventory=inventory, fanout=fanout)
    assert run.rc == 0, run.output[-4000:]
    for name in lab.clusters:
        assert "routing check(s) passed" in run.result("Summary", name)["msg"]
        if not lab.clusters[name]["netns"]:
            assert all(routed(lab, name, pod, "v2") == "canary-" + name for pod in lab.ingress_pods(name))
        else:
            assert all(routed(lab, name, pod, "-") == "stable" for pod in lab.ingress_pods(name))
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("fanout", MODES)
def test_an_apiserver_stopped_mid_run_fails_only_its_cluster(lab, tmp_path, fanout):
    """cluster-a's kube-apiserver is killed right after its maps were applied; cluster-b still completes and the
    failure is reported for cluster-a. The lab is rebuilt afterwards, and cluster-a then holds nothing half-applied:
    the complete new maps, the intact rollback copy (saying there were none before) and no pod serving them."""
    for name in ("cluster-a", "cluster-b"):
        reset(lab, name)
    hosts = {}
    killed = "killed-" + uuid.uuid4().hex[:6]      # a value no earlier rollout could have left in cluster-a's pods
    for name in ("cluster-a", "cluster-b"):
        c = lab.clusters[name]
        hosts[name] = {"kubegate_tenant": c["tenant"], "kubegate_host": c["server"], "kubegate_ca_cert": c["ca_file"],
                       "kubegate_token": "{{ lookup('file', '%s') }}" % c["admin_token_file"],
                       "kubegate_routing_maps": maps(killed if name == "cluster-a" else "canary-" + name),
                       "kubegate_sync_timeout": 16,
                       "kubegate_retries": 1, "kubegate_timeout": 5, "kubegate_fanout": fanout}
    inventory = lab_inventory(tmp_path, hosts)
    apiserver = subprocess.run(["pgrep", "-f", "kube-apiserver .*--bind-address=127.0.0.11 "], capture_output=True,
                               text=True).stdout.split()
    assert len(apiserver) == 1, apiserver
    play = tmp_path / "reload-ingress.yml"
    play.write_text(PLAYBOOK.read_text())
    (tmp_path / "vars").symlink_to(REPO / "playbooks" / "vars", target_is_directory=True)  # its vars_files
    from kgplay import HERE
    from kgtest import repo_env
    results = tmp_path / "results.jsonl"
    env = repo_env(KG_RESULTS_FILE=str(results), ANSIBLE_CALLBACK_PLUGINS=str(HERE / "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="kg_results")
    proc = subprocess.Popen([str(REPO / ".venv/bin/ansible-playbook"), "-i", str(inventory), str(play)], cwd=str(REPO),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if lab.kubectl("cluster-a", "get", "configmap", "-n", "ingress-nginx", CM, check=False).returncode == 0:
                break
            time.sleep(0.1)
        os.kill(int(apiserver[0]), signal.SIGKILL)
        output, _ = proc.communicate(timeout=240)
        records = [json.loads(line) for line in results.read_text().splitlines()]
        summary_b = [r for r in records if r["host"] == "cluster-b" and r["task"] == "Summary"]
        assert summary_b and "routing check(s) passed" in summary_b[0]["result"]["msg"], output[-3000:]
        assert all(routed(lab, "cluster-b", pod, "v2") == "canary-cluster-b" for pod in lab.ingress_pods("cluster-b"))
        failed_a = [r for r in records if r["host"] == "cluster-a" and r["status"] == "failed"]
        assert failed_a and "cannot reach the apiserver at 127.0.0.11:6443" in json.dumps(failed_a)
        assert proc.returncode != 0
        assert "cluster-a                  : ok=" in output and "failed=1" in output.split("cluster-a ")[-1]
        assert no_traceback(output)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "lab/labctl.py"), "up"], check=True,
                       capture_output=True, timeout=300)
    # cluster-a afterwards: the ConfigMap holds exactly what nginx_map applied, the rollback copy is intact, and no
    # pod serves the new maps (the rollout never reached a reload), all pods alike
    applied = [r["result"].get("results_by_host", {}).get("cluster-a", r["result"]) for r in records
               if r["task"].startswith("Render, validate and apply") and (fanout or r["host"] == "cluster-a")]
    assert applied and not applied[0].get("failed") and applied[0].get("key"), applied
    cm = lab.get_json("cluster-a", "get", "configmap", "-n", "ingress-nginx", CM)
    text = cm["data"][applied[0]["key"]]
    assert hashlib.sha256(text.encode()).hexdigest() == applied[0]["sha256"] and killed in text
    saved = lab.get_json("cluster-a", "get", "configmap", "-n", "ingress-nginx", CM + "-previous")["metadata"]
    assert saved["annotations"]["kubegate.io/previous-state"] == "absent", saved
    assert saved["annotations"]["kubegate.io/previous-of"] == CM + "@absent", saved
    pods = lab.ingress_pods("cluster-a")
    assert len(pods) == 2, pods

    def served_by(pod):
        import urllib.error
        try:
            return routed(lab, "cluster-a", pod, "v2")
        except urllib.error.HTTPError as e:     # no kubegate routing loaded at all in that pod
            return "HTTP %d" % e.code
    served = {served_by(pod) for pod in pods}
    assert len(served) == 1 and killed not in served, served

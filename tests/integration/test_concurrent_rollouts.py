"""Two rollouts against one cluster at once (AWX and a person) lose nothing: the map ConfigMap and its `-previous` copy
are written with resourceVersion preconditions, so one run wins and the other fails with "changed by someone else
... re-run" (or its rollback refuses to undo the winner's change), and the copy always holds a complete earlier state.

- deterministic: the nginx_map task (its real code, against the real cluster-b apiserver) with a racing writer
  injected right before its first or second write, so each conflict path is exercised for certain;
- real: two `ansible-playbook playbooks/reload-ingress.yml` runs with different rules started at the same moment,
  while a watcher records every state the `-previous` copy goes through.

Every test puts cluster-b's map ConfigMaps back and reloads its pods on that content afterwards.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid

import pytest

from kgplay import HERE, conn_token, lab_inventory, no_traceback, wait_for
from kgtest import REPO, repo_env
from test_drift import files_match_configmap, restore_configmaps, snapshot_configmaps
from test_reload_ingress import PLAYBOOK, maps, routed

sys.path.insert(0, str(REPO / "collections"))
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import maptask  # noqa: E402
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.errors import KubegateError  # noqa: E402
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.runner import Context  # noqa: E402
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.spec import module_spec  # noqa: E402

CLUSTER, NS, CM = "cluster-b", "ingress-nginx", "kubegate-nginx-map"
PREV = CM + "-previous"
KEY, SNIP = "kubegate-map.conf", "kubegate-routing.location"


@pytest.fixture
def cluster_b_maps(lab):
    """cluster-b's map ConfigMaps as they are now, put back afterwards (and the pods reloaded on them)."""
    saved = {k: v for k, v in snapshot_configmaps(lab).items() if k[0] == CLUSTER}
    yield
    restore_configmaps(lab, saved)
    assert wait_for(lambda: files_match_configmap(lab, CLUSTER), timeout=60)
    for pod in lab.ingress_pods(CLUSTER):
        lab.kubectl(CLUSTER, "exec", "-n", NS, pod, "--", "nginx", "-s", "reload")


@pytest.fixture
def private_cm(lab):
    """A map ConfigMap of this test alone (no pod mounts it, no other test writes it): the deterministic races stay
    deterministic on the shared lab. Removed afterwards with its copy."""
    name = "kg-race-" + uuid.uuid4().hex[:6]
    yield name
    lab.kubectl(CLUSTER, "delete", "configmap", "-n", NS, name, name + "-previous", "--ignore-not-found")


def managed(lab, name):
    """The managed keys of a ConfigMap (None when it does not exist)."""
    proc = lab.kubectl(CLUSTER, "get", "configmap", "-n", NS, name, "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout).get("data") or {}
    return {k: data.get(k) for k in (KEY, SNIP) if data.get(k) is not None}


def state(value):
    """The complete managed content kubegate writes for maps(value)."""
    return {KEY: maptask.render(maps(value), 64), SNIP: maptask.render_snippets(maps(value), 64)["location_snippet"]}


class RacingClient:
    """The real client, with `racer` called once right before write number `at` (1 = the first write): the moment
    another writer gets in between this task's read and its write."""

    def __init__(self, client, at, racer):
        self.client, self.at, self.racer, self.writes = client, at, racer, 0

    def __getattr__(self, name):
        return getattr(self.client, name)

    def request(self, method, *args, **kwargs):
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            self.writes += 1
            if self.writes == self.at:
                self.racer()
        return self.client.request(method, *args, **kwargs)


CONNECT = maptask.connect


def run_task(lab, cm, value=None, race_at=None, racer=None, **extra):
    """The nginx_map task's own code (module and action plugin both call run_nginx_map) against cluster-b."""
    params = {k: v.get("default") for k, v in module_spec("nginx_map")["argument_spec"].items()}
    params.update(conn_token(lab, CLUSTER), namespace=NS, configmap=cm, key=KEY, location_snippet_key=SNIP,
                  nginx_check="never", **extra)
    if value is not None:
        params["maps"] = maps(value)
    active = maptask.connect
    maptask.connect = CONNECT if race_at is None else (
        lambda p, ctx: RacingClient(CONNECT(p, ctx), race_at, racer))
    try:
        return maptask.run_nginx_map(params, Context())
    finally:
        maptask.connect = active


def test_a_writer_between_read_and_write_wins_and_the_loser_changes_nothing(lab, private_cm):
    cm = private_cm
    """Another whole run lands between this run's read and its first write (the copy): this run fails, the other
    run's map and its copy (this run's starting point) stay."""
    run_task(lab, cm, "start")
    with pytest.raises(KubegateError) as err:
        run_task(lab, cm, "loser", race_at=1, racer=lambda: run_task(lab, cm, "winner"))
    msg = err.value.msg
    assert "cluster-b" in msg or lab.clusters[CLUSTER]["server"] in msg
    assert "ConfigMap ingress-nginx/%s-previous was changed by someone else" % cm in msg
    assert "re-run" in msg
    assert managed(lab, cm) == state("winner")
    assert managed(lab, cm + "-previous") == state("start")  # complete, and the winner's predecessor


def test_a_writer_between_the_copy_and_the_map_wins_and_the_copy_stays_the_winners(lab, private_cm):
    cm = private_cm
    """The loser already saved its copy when the winner's whole run gets in: the loser's map write fails on the
    resourceVersion precondition; the copy is the winner's (its predecessor), never the loser's."""
    run_task(lab, cm, "start")
    with pytest.raises(KubegateError) as err:
        run_task(lab, cm, "loser", race_at=2, racer=lambda: run_task(lab, cm, "winner"))
    msg = err.value.msg
    assert "ConfigMap ingress-nginx/%s was changed by someone else" % cm in msg and "re-run" in msg
    assert "written again meanwhile, so it was left to that writer" in msg
    assert managed(lab, cm) == state("winner")
    assert managed(lab, cm + "-previous") == state("start")
    # the copy belongs to the live state: restore undoes the winner's change, and nothing else
    assert run_task(lab, cm, restore=True)["changed"] is True
    assert managed(lab, cm) == state("start")


def test_a_hand_edit_between_read_and_write_is_kept_and_the_copy_put_back(lab, private_cm):
    cm = private_cm
    run_task(lab, cm, "start")
    run_task(lab, cm, "second")
    copy_before = lab.get_json(CLUSTER, "get", "configmap", "-n", NS, cm + "-previous")

    def edit():
        lab.kubectl(CLUSTER, "patch", "configmap", "-n", NS, cm, "--type", "merge", "-p",
                    json.dumps({"data": {KEY: state("by-hand")[KEY]}}))
    with pytest.raises(KubegateError) as err:
        run_task(lab, cm, "loser", race_at=2, racer=edit)
    assert "was changed by someone else" in err.value.msg and "was put back as it was" in err.value.msg
    assert managed(lab, cm)[KEY] == state("by-hand")[KEY]
    copy = lab.get_json(CLUSTER, "get", "configmap", "-n", NS, cm + "-previous")
    assert copy["data"] == copy_before["data"] == state("start")
    assert copy["metadata"]["annotations"] == copy_before["metadata"]["annotations"]
    # restoring now would undo the hand edit with a copy that is not its predecessor: refused, nothing changed
    with pytest.raises(KubegateError, match="not the predecessor of the live state"):
        run_task(lab, cm, restore=True)
    assert managed(lab, cm)[KEY] == state("by-hand")[KEY]


def start_reload(tmp_path, lab, name, value):
    c = lab.clusters[CLUSTER]
    run_dir = tmp_path / name
    run_dir.mkdir()
    inventory = lab_inventory(run_dir, {CLUSTER: {
        "kubegate_host": c["server"], "kubegate_ca_cert": c["ca_file"],
        "kubegate_token": "{{ lookup('file', '%s') }}" % c["admin_token_file"], "kubegate_routing_maps": maps(value),
        "kubegate_sync_timeout": 16}})  # a run whose maps were overtaken gives up waiting for them soon
    play = run_dir / "reload-ingress.yml"
    play.write_text(PLAYBOOK.read_text())
    (run_dir / "vars").symlink_to(REPO / "playbooks" / "vars", target_is_directory=True)  # its vars_files
    results = run_dir / "results.jsonl"
    env = repo_env(KG_RESULTS_FILE=str(results), ANSIBLE_CALLBACK_PLUGINS=str(HERE / "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="kg_results", ANSIBLE_NOCOLOR="1")
    proc = subprocess.Popen([str(REPO / ".venv/bin/ansible-playbook"), "-i", str(inventory), str(play)],
                            cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, results


def test_two_real_reload_runs_at_once(lab, cluster_b_maps, tmp_path):
    """Two reload-ingress.yml runs with different rules, started together: every run that fails says someone else
    changed the ConfigMap; the live routing is the rules of a run that succeeded; the copy was a complete state at
    every moment and belongs to the live one (restore would undo exactly the last rollout)."""
    initial = managed(lab, CM)  # whatever the lab held: the copy of "start" holds it
    run_task(lab, CM, "start")
    complete = [initial, state("start"), state("run-a"), state("run-b")]
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(managed(lab, PREV))
            time.sleep(0.1)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    runs = {name: start_reload(tmp_path, lab, name, name) for name in ("run-a", "run-b")}
    outputs = {}
    try:
        for name, (proc, _) in runs.items():
            outputs[name] = proc.communicate(timeout=240)[0]
    finally:
        stop.set()
        watcher.join(timeout=10)
        for proc, _ in runs.values():
            if proc.poll() is None:
                proc.kill()
    for name, text in outputs.items():
        (tmp_path / ("%s.out" % name)).write_text(text)  # both runs' whole output, kept for a failure's analysis
    rcs = {name: proc.returncode for name, (proc, _) in runs.items()}
    winners = [name for name, rc in rcs.items() if rc == 0]
    assert winners, outputs
    for name, rc in rcs.items():
        assert no_traceback(outputs[name])
        if rc != 0:
            assert "was changed by someone else" in outputs[name] and "re-run" in outputs[name], outputs[name][-3000:]
    live = managed(lab, CM)
    shas = {name: maptask.sha256(state(name)[KEY])[:12] for name in ("start", "run-a", "run-b")}
    assert live in [state(w) for w in winners], (rcs, shas, maptask.sha256((live or {}).get(KEY))[:12])
    # the copy: always one complete state, never a mix and never missing once written; now the live one's predecessor
    assert seen and all(s in complete for s in seen), [s for s in seen if s not in complete][:1]
    copy = lab.get_json(CLUSTER, "get", "configmap", "-n", NS, PREV)
    replaced_by = json.loads(copy["metadata"]["annotations"][maptask.REPLACED_BY_ANNOTATION])
    assert replaced_by == maptask.fingerprint({KEY: live[KEY], SNIP: live[SNIP]})
    assert {k: copy["data"].get(k) for k in (KEY, SNIP)} != live
    # every pod serves the live rules
    want = "run-a" if live == state("run-a") else "run-b"
    assert wait_for(lambda: files_match_configmap(lab, CLUSTER), timeout=60)
    assert all(routed(lab, CLUSTER, pod, "v2") == want for pod in lab.ingress_pods(CLUSTER)), (rcs, want)

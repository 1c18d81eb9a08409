"""playbooks/drift-check.yml (+ drift-check.sh) on the real lab: in sync -> 0; an out-of-band ConfigMap edit -> 3 with
the cluster and the diff named; a pod with a stale map file -> 3 naming that pod; changed RBAC -> 3; an unreachable
cluster -> 4 while the others are still checked; --check --diff changes nothing. Every test restores the lab.

The lab is shared: run this file under the lab lock (flock /tmp/kg/lab.lock ... pytest tests/integration/test_drift.py).
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from kgplay import no_traceback, run_playbook, wait_for
from kgtest import REPO, repo_env

WRAPPER = REPO / "playbooks" / "drift-check.sh"
CM = "kubegate-nginx-map"
NS = "ingress-nginx"
MAP_KEY = "kubegate-map.conf"
CHECKS = {"map_configmap", "map_pods", "map_routing", "apiservices"}
EDGE_KEYS = ("host", "port", "user", "key_file", "known_hosts")


def make_inventory(lab, path: Path, overrides=None) -> Path:
    """The lab inventory as `make lab` generates it (admin kubeconfig contexts, cluster-c through the edge ssh jump),
    with the repository's group_vars (the tenants' rules) and per-host overrides."""
    hosts = {}
    for name, c in lab.clusters.items():
        h = {"kubegate_tenant": c["tenant"], "kubegate_context": name, "kubegate_host": c["server"],
             "kubegate_ca_cert": c["ca_file"], "kubegate_tls_server_name": name}
        if c["netns"]:
            h["kubegate_jump"] = {k: lab.desc["edge"][k] for k in EDGE_KEYS}
        h.update((overrides or {}).get(name, {}))
        hosts.setdefault(c["tenant"], {})[name] = h
    path.mkdir(parents=True, exist_ok=True)
    (path / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                 "kubegate_kubeconfig": lab.desc["kubeconfig"]},
        "children": {tenant: {"hosts": hs} for tenant, hs in hosts.items()}}}))
    shutil.copytree(REPO / "inventories" / "lab" / "group_vars", path / "group_vars", dirs_exist_ok=True)
    return path


class Drift:
    def __init__(self, proc, reports: Path):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        runs = sorted(p for p in reports.iterdir() if (p / "drift.json").exists()) if reports.exists() else []
        assert runs, "no report written (rc %s):\n%s" % (self.rc, self.output[-4000:])
        self.dir = runs[-1]
        self.report = json.loads((self.dir / "drift.json").read_text())
        self.junit = ET.parse(self.dir / "junit.xml").getroot()
        self.summary = (self.dir / "summary.md").read_text()

    def check(self, cluster, name):
        tenant = next(t for t, cs in self.report["tenants"].items() if cluster in cs)
        return self.report["tenants"][tenant][cluster]["checks"][name]

    def statuses(self, cluster):
        tenant = next(t for t, cs in self.report["tenants"].items() if cluster in cs)
        return {n: c["status"] for n, c in self.report["tenants"][tenant][cluster]["checks"].items()}


@pytest.fixture
def drift(lab, tmp_path):
    count = [0]

    def run(*args, overrides=None):
        count[0] += 1
        reports = tmp_path / ("reports-%d" % count[0])
        inv = make_inventory(lab, tmp_path / ("inv-%d" % count[0]), overrides)
        env = repo_env(KUBEGATE_REPORTS_DIR=str(reports), ANSIBLE_NOCOLOR="1",
                       ANSIBLE_PLAYBOOK=str(REPO / ".venv" / "bin" / "ansible-playbook"),
                       PYTHON=str(REPO / ".venv" / "bin" / "python"))
        proc = subprocess.run([str(WRAPPER), "-i", str(inv / "hosts.yml")] + list(args), cwd=str(REPO), env=env,
                              capture_output=True, text=True, timeout=300)
        return Drift(proc, reports)
    return run


def snapshot_configmaps(lab):
    saved = {}
    for name in lab.clusters:
        for cm in (CM, CM + "-previous"):
            proc = lab.kubectl(name, "get", "configmap", "-n", NS, cm, "-o", "json", check=False)
            saved[(name, cm)] = json.loads(proc.stdout) if proc.returncode == 0 else None
    return saved


def restore_configmaps(lab, saved):
    for (name, cm), obj in saved.items():
        if obj is None:
            lab.kubectl(name, "delete", "configmap", "-n", NS, cm, "--ignore-not-found")
            continue
        live = lab.kubectl(name, "get", "configmap", "-n", NS, cm, "-o", "json", check=False)
        if live.returncode == 0 and json.loads(live.stdout).get("data") == obj.get("data"):
            continue
        body = {"apiVersion": "v1", "kind": "ConfigMap", "data": obj.get("data") or {},
                "metadata": {k: v for k, v in obj["metadata"].items() if k in ("name", "namespace", "labels",
                                                                                 "annotations")}}
        lab.kubectl(name, "apply", "--server-side", "--force-conflicts", "--field-manager", "kubegate-test-restore",
                    "-f", "-", input=json.dumps(body))
        lab.kubectl(name, "patch", "configmap", "-n", NS, cm, "--type", "json", "-p",
                    json.dumps([{"op": "replace", "path": "/data", "value": obj.get("data") or {}}]))


def pod_files(lab, cluster):
    base = Path(lab.clusters[cluster]["pods_dir"])
    return {pod: base / pod / "conf.d" / MAP_KEY for pod in lab.ingress_pods(cluster)}


def files_match_configmap(lab, cluster):
    cm = lab.kubectl(cluster, "get", "configmap", "-n", NS, CM, "-o", "json", check=False)
    want = json.loads(cm.stdout).get("data", {}).get(MAP_KEY) if cm.returncode == 0 else None
    for f in pod_files(lab, cluster).values():
        have = f.read_text() if f.exists() else None
        if have != want:
            return False
    return True


def map_data(lab, cluster):
    proc = lab.kubectl(cluster, "get", "configmap", "-n", NS, CM, "-o", "json", check=False)
    return json.loads(proc.stdout).get("data") if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def synced_once(lab, tmp_path_factory):
    """Bring every cluster in sync with the repository's rules (the reload playbook, as an operator would), and put
    the lab's map ConfigMaps back as they were afterwards. Yields a function that re-syncs the clusters whose map
    ConfigMap another test of the shared lab changed meanwhile."""
    saved = snapshot_configmaps(lab)
    tmp = tmp_path_factory.mktemp("drift-sync")
    inv = make_inventory(lab, tmp / "inv")
    synced = {}

    def sync(clusters):
        run = run_playbook(tmp, (REPO / "playbooks" / "reload-ingress.yml").read_text(), "-l", ",".join(clusters),
                           "-e", "kubegate_force_reload=true", inventory=inv / "hosts.yml",
                           playbook_name="reload-ingress.yml")
        assert run.rc == 0, run.output[-4000:]
        for name in clusters:
            assert wait_for(lambda: files_match_configmap(lab, name), timeout=60), name
            synced[name] = map_data(lab, name)

    def resync():
        stale = [name for name in lab.clusters if map_data(lab, name) != synced.get(name)]
        if stale:
            sync(stale)
    try:
        sync(list(lab.clusters))
        yield resync
    finally:
        restore_configmaps(lab, saved)
        for name in lab.clusters:
            wait_for(lambda: files_match_configmap(lab, name), timeout=60)


@pytest.fixture
def synced_lab(synced_once):
    """Every cluster in sync at the start of the test (again, if another test of the shared lab changed a map)."""
    synced_once()


def resource_versions(lab):
    out = {}
    for name in lab.clusters:
        for cm in (CM, CM + "-previous"):
            obj = lab.get_json(name, "get", "configmap", "-n", NS, cm)
            out[(name, cm)] = obj["metadata"]["resourceVersion"]
    return out


def test_everything_in_sync_exits_0(lab, synced_lab, drift):
    before = resource_versions(lab)
    res = drift()
    assert res.rc == 0, res.output[-4000:]
    assert res.report["status"] == "in_sync" and res.report["exit_code"] == 0
    assert set(res.report["tenants"]) == {"acme", "globex"}
    for name in lab.clusters:
        assert res.statuses(name) == {c: "in_sync" for c in CHECKS}, res.statuses(name)
        pods = res.check(name, "map_pods")["details"]["pods"]
        assert sorted(p["pod"] for p in pods) == lab.ingress_pods(name) and len(pods) >= 2
        probed = res.check(name, "map_routing")["details"]["pods"]  # every pod, every rule's request
        assert sorted(p["pod"] for p in probed) == lab.ingress_pods(name) and all(p["probes"] >= 3 for p in probed)
    assert "v1alpha1.wardle.example.com" in json.dumps(res.check("cluster-a", "apiservices")["details"])
    assert res.junit.get("tests") == str(3 * len(CHECKS)) and res.junit.get("failures") == "0"
    assert res.junit.get("errors") == "0"
    assert "## Tenant acme" in res.summary and "## Tenant globex" in res.summary and "DRIFTED" not in res.summary
    assert "drift-check: in_sync (exit 0); reports in %s" % res.dir in res.output
    assert resource_versions(lab) == before
    assert no_traceback(res.output)


def test_out_of_band_configmap_edit_is_drift_and_check_mode_changes_nothing(lab, synced_lab, drift):
    cm = lab.get_json("cluster-b", "get", "configmap", "-n", NS, CM)
    original = cm["data"][MAP_KEY]
    assert '"v2" "canary";' in original
    edited = original.replace('"v2" "canary";', '"v2" "hotfix-by-hand";')
    lab.kubectl("cluster-b", "patch", "configmap", "-n", NS, CM, "--type", "merge", "-p",
                json.dumps({"data": {MAP_KEY: edited}}))
    try:
        before = resource_versions(lab)
        res = drift("--check", "--diff")
        assert res.rc == 3, res.output[-4000:]
        assert res.report["status"] == "drifted" and res.report["exit_code"] == 3
        check = res.check("cluster-b", "map_configmap")
        assert check["status"] == "drifted" and MAP_KEY in check["summary"]
        assert '-    "v2" "canary";' in check["diff"] and '+    "v2" "hotfix-by-hand";' in check["diff"]
        for name in ("cluster-a", "cluster-c"):
            assert set(res.statuses(name).values()) == {"in_sync"}, (name, res.statuses(name))
        failures = [(c.get("classname"), c.get("name")) for c in res.junit.iter("testcase") if c.find("failure")
                    is not None]
        assert ("acme.cluster-b", "map_configmap") in failures
        assert all(cls == "acme.cluster-b" for cls, _ in failures)
        assert "| cluster-b | map_configmap | **DRIFTED** |" in res.summary and "hotfix-by-hand" in res.summary
        assert "KUBEGATE_DRIFT status=drifted exit_code=3" in res.output
        assert '+    "v2" "hotfix-by-hand";' in res.output  # --diff shows it in the run's output too
        # check mode (and the check itself) changed nothing: same ConfigMaps, same resourceVersions
        assert resource_versions(lab) == before
        assert lab.get_json("cluster-b", "get", "configmap", "-n", NS, CM)["data"][MAP_KEY] == edited
        # the pods pick up the out-of-band content shortly after: the pods check names every pod then
        assert wait_for(lambda: files_match_configmap(lab, "cluster-b"), timeout=60)
        later = drift()
        assert later.rc == 3
        pods = later.check("cluster-b", "map_pods")
        assert pods["status"] == "drifted" and sorted(pods["details"]["drifted_pods"]) == lab.ingress_pods("cluster-b")
        assert no_traceback(res.output + later.output)
    finally:
        lab.kubectl("cluster-b", "patch", "configmap", "-n", NS, CM, "--type", "merge", "-p",
                    json.dumps({"data": {MAP_KEY: original}}))
        assert wait_for(lambda: files_match_configmap(lab, "cluster-b"), timeout=60)


def test_a_pod_with_a_stale_map_file_is_named(lab, synced_lab, drift):
    files = pod_files(lab, "cluster-a")
    stale_pod = sorted(files)[1]
    original = files[stale_pod].read_text()
    files[stale_pod].write_text(original.replace('"v2" "canary";', '"v2" "stale";'))
    try:
        res = drift()
        assert res.rc == 3, res.output[-4000:]
        pods = res.check("cluster-a", "map_pods")
        assert pods["status"] == "drifted" and pods["details"]["drifted_pods"] == [stale_pod]
        assert stale_pod in pods["summary"] and '+    "v2" "stale";' in pods["diff"]
        assert "%s:conf.d/%s" % (stale_pod, MAP_KEY) in pods["diff"]
        assert res.check("cluster-a", "map_configmap")["status"] == "in_sync"
        assert res.check("cluster-a", "map_routing")["status"] == "in_sync"  # the file changed, nginx was not reloaded
        assert {p["pod"] for p in pods["details"]["pods"] if p["in_sync"]} == set(files) - {stale_pod}
        assert set(res.statuses("cluster-b").values()) == {"in_sync"}
    finally:
        files[stale_pod].write_text(original)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def test_unreachable_cluster_exits_4_and_the_others_are_checked(lab, synced_lab, drift):
    res = drift(overrides={"cluster-b": {"kubegate_host": "https://127.0.0.1:%d" % closed_port()}})
    assert res.rc == 4, res.output[-4000:]
    assert res.report["status"] == "unreachable" and res.report["exit_code"] == 4
    assert set(res.statuses("cluster-b")) == CHECKS
    assert set(res.statuses("cluster-b").values()) == {"unreachable"}
    assert "connection refused" in res.check("cluster-b", "map_configmap")["summary"]
    for name in ("cluster-a", "cluster-c"):
        assert set(res.statuses(name).values()) == {"in_sync"}, (name, res.statuses(name))
    errors = [c for c in res.junit.iter("testcase") if c.find("error") is not None]
    assert len(errors) == len(CHECKS) and {c.find("error").get("type") for c in errors} == {"unreachable"}
    assert "| cluster-b | map_configmap | **UNREACHABLE** |" in res.summary
    assert no_traceback(res.output)


def test_drift_and_unreachable_together_report_both(lab, synced_lab, drift):
    files = pod_files(lab, "cluster-a")
    pod = sorted(files)[0]
    original = files[pod].read_text()
    files[pod].write_text(original + "# edited by hand\n")
    try:
        res = drift("-l", "cluster-a,cluster-b",
                    overrides={"cluster-b": {"kubegate_host": "https://127.0.0.1:%d" % closed_port()}})
        assert res.rc == 4  # unreachable is more severe than drift
        assert set(res.report["tenants"]) == {"acme"}  # -l limits the clusters checked
        assert res.report["counts"]["drifted"] == 1 and res.report["counts"]["unreachable"] == len(CHECKS)
        assert res.check("cluster-a", "map_pods")["details"]["drifted_pods"] == [pod]
    finally:
        files[pod].write_text(original)


@pytest.fixture
def cluster_access_on_a(lab, tmp_path):
    """roles/cluster_access applied to cluster-a (no token); the objects are removed afterwards if they were not there
    before (test_cluster_access leaves them in place, so they usually are)."""
    existed = lab.kubectl("cluster-a", "get", "role", "-n", NS, "kubegate-operator", check=False).returncode == 0
    play = (REPO / "playbooks" / "cluster-access.yml").read_text()
    inv = make_inventory(lab, tmp_path / "inv-access")

    def apply():
        run = run_playbook(tmp_path, play, "-l", "cluster-a", "-e", "cluster_access_issue_token=false",
                           inventory=inv / "hosts.yml", playbook_name="cluster-access.yml")
        assert run.rc == 0, run.output[-3000:]
    apply()
    yield apply
    if existed:
        apply()
    else:
        for kind, ns, name in [("rolebinding", NS, "kubegate-operator"), ("role", NS, "kubegate-operator"),
                               ("rolebinding", "demo", "kubegate-service-proxy"),
                               ("role", "demo", "kubegate-service-proxy"),
                               ("clusterrolebinding", None, "kubegate-apiservices-read"),
                               ("clusterrole", None, "kubegate-apiservices-read"), ("namespace", None, "kubegate-system")]:
            lab.kubectl("cluster-a", "delete", kind, name, *(["-n", ns] if ns else []), "--ignore-not-found",
                        "--wait=false")


def test_rbac_objects_of_cluster_access(lab, synced_lab, drift, cluster_access_on_a):
    enabled = {"cluster-a": {"kubegate_cluster_access": True}}
    res = drift("-l", "cluster-a", overrides=enabled)
    assert res.rc == 0, res.output[-4000:]
    rbac = res.check("cluster-a", "rbac")
    assert rbac["status"] == "in_sync"
    objects = {o["object"] for o in rbac["details"]["objects"]}
    assert {"ServiceAccount kubegate-system/kubegate", "Role ingress-nginx/kubegate-operator",
            "RoleBinding ingress-nginx/kubegate-operator", "ClusterRole kubegate-apiservices-read",
            "ClusterRoleBinding kubegate-apiservices-read"} <= objects
    # someone widens the Role by hand
    lab.kubectl("cluster-a", "patch", "role", "-n", NS, "kubegate-operator", "--type", "json", "-p", json.dumps(
        [{"op": "add", "path": "/rules/-", "value": {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}}]))
    try:
        res = drift("-l", "cluster-a", overrides=enabled)
        assert res.rc == 3, res.output[-4000:]
        rbac = res.check("cluster-a", "rbac")
        assert rbac["status"] == "drifted" and rbac["details"]["drifted_objects"] == ["Role ingress-nginx/kubegate-operator"]
        assert any(line.startswith("+") and '"secrets"' in line for line in rbac["diff"].splitlines())
        assert res.check("cluster-a", "map_configmap")["status"] == "in_sync"
    finally:
        cluster_access_on_a()  # the role puts the rules back (server-side apply, force)
    assert lab.get_json("cluster-a", "get", "role", "-n", NS, "kubegate-operator")["rules"][-1]["resources"] != ["secrets"]


def test_tunnel_hosts_report_through_the_roles_drift_contract(lab, synced_lab, drift, tmp_path):
    """Group tunnel_hosts: roles/<ssh_tunnel|kubectl_proxy>/tasks/drift.yml are included when present and their facts
    ({cluster, in_sync, diff, active}) become checks of the named clusters; an unreachable tunnel host is reported."""
    roles = tmp_path / "roles"
    (roles / "ssh_tunnel" / "tasks").mkdir(parents=True)
    (roles / "ssh_tunnel" / "tasks" / "drift.yml").write_text(yaml.safe_dump([{
        "name": "Stand-in for the ssh_tunnel role's drift check",
        "ansible.builtin.set_fact": {"kubegate_tunnel_drift": [
            {"cluster": "cluster-c", "in_sync": False, "active": True,
             "diff": "-ExecStart=ssh -L 127.0.0.1:33023:198.18.3.2:6443\n+ExecStart=ssh -g -L 33023:198.18.3.2:6443\n"}]}}]))
    # kubectl_proxy is "not installed" here: no roles/kubectl_proxy/tasks/drift.yml, so it is not included
    edges = {"edge-ok": {"ansible_connection": "local"},
             "edge-down": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": closed_port(),
                           "ansible_ssh_common_args": "-o ConnectTimeout=5 -o BatchMode=yes"}}
    inv = make_inventory(lab, tmp_path / "inv-tunnel")
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    hosts["all"]["children"]["tunnel_hosts"] = {"hosts": edges}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    reports = tmp_path / "reports-tunnel"
    env = repo_env(KUBEGATE_REPORTS_DIR=str(reports), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_ROLES_PATH="%s:%s" % (roles, REPO / "roles"),
                   ANSIBLE_PLAYBOOK=str(REPO / ".venv" / "bin" / "ansible-playbook"),
                   PYTHON=str(REPO / ".venv" / "bin" / "python"))
    proc = subprocess.run([str(WRAPPER), "-i", str(inv / "hosts.yml"), "-e", "drift_check_roles_dir=%s" % roles,
                           "--check"], cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300)
    res = Drift(proc, reports)
    assert res.rc == 4, res.output[-4000:]  # edge-down is unreachable; the drift on cluster-c is reported as well
    tunnel = res.check("cluster-c", "ssh_tunnel@edge-ok")
    assert tunnel["status"] == "drifted" and "-g -L 33023" in tunnel["diff"]
    assert res.check("edge-down", "tunnel_host")["status"] == "unreachable"
    assert not any(name.startswith("kubectl_proxy") for name in res.statuses("cluster-c"))
    assert {res.statuses(n)[c] for n in lab.clusters for c in CHECKS} == {"in_sync"}
    cases = {(c.get("classname"), c.get("name")) for c in res.junit.iter("testcase")}
    assert ("globex.cluster-c", "ssh_tunnel@edge-ok") in cases
    assert no_traceback(res.output)


def test_a_check_that_cannot_be_evaluated_exits_5_and_a_failed_run_exits_1(lab, drift, tmp_path):
    """Read-only: invalid rules for cluster-b are an error of its map checks (5), the other checks still run; a run
    that cannot even start (a missing inventory file) writes no report and exits 1."""
    bad = [{"source": "$http_x_version", "variable": "$host", "entries": [{"key": "a;b", "value": "x"}]}]
    res = drift("-l", "cluster-b", overrides={"cluster-b": {"kubegate_routing_maps": bad}})
    assert res.rc == 5, res.output[-4000:]
    assert res.report["status"] == "error" and res.report["exit_code"] == 5
    assert res.statuses("cluster-b") == {"map_configmap": "error", "map_pods": "error", "map_routing": "error",
                                         "apiservices": "in_sync"}
    assert "$host" in res.check("cluster-b", "map_configmap")["summary"]
    assert no_traceback(res.output)
    env = repo_env(KUBEGATE_REPORTS_DIR=str(tmp_path / "none"), ANSIBLE_PLAYBOOK=str(REPO / ".venv/bin/ansible-playbook"))
    proc = subprocess.run([str(WRAPPER), "-i", str(tmp_path / "missing.yml"), "-l", "no-such-cluster"], cwd=str(REPO),
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no report was written" in proc.stderr
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").rglob("drift.json"))


def reload_nginx(lab, cluster, pods):
    """`nginx -s reload` in the given pods (through kubectl exec, as anyone with exec rights could)."""
    for pod in pods:
        lab.kubectl(cluster, "exec", "-n", NS, pod, "--", "nginx", "-s", "reload")


def serves(lab, cluster, pod, version):
    from test_reload_ingress import routed  # the real request through the apiserver's pod proxy
    try:
        return routed(lab, cluster, pod, version)
    except OSError:
        return "(no answer)"


def test_a_configmap_key_kubegate_did_not_render_is_drift(lab, synced_lab, drift):
    """The pods include every key of the map ConfigMap (lab/agent.py copies each into conf.d/): a key added by hand
    is drift, even while the managed keys are untouched."""
    extra = "zz-by-hand.conf"
    lab.kubectl("cluster-b", "patch", "configmap", "-n", NS, CM, "--type", "merge", "-p",
                json.dumps({"data": {extra: "map $http_x_debug $kg_debug_backend { default \"debug\"; }\n"}}))
    try:
        before = resource_versions(lab)
        res = drift("--check")
        assert res.rc == 3, res.output[-4000:]
        check = res.check("cluster-b", "map_configmap")
        assert check["status"] == "drifted" and check["details"]["unexpected_keys"] == [extra]
        assert "did not render: %s" % extra in check["summary"]
        assert "+map $http_x_debug $kg_debug_backend" in check["diff"]
        assert res.statuses("cluster-b")["map_pods"] == "in_sync"  # the managed file itself is unchanged
        assert "| cluster-b | map_configmap | **DRIFTED** |" in res.summary
        assert resource_versions(lab) == before
    finally:
        lab.kubectl("cluster-b", "patch", "configmap", "-n", NS, CM, "--type", "json", "-p",
                    json.dumps([{"op": "remove", "path": "/data/" + extra}]))
        extra_files = [Path(lab.clusters["cluster-b"]["pods_dir"]) / p / "conf.d" / extra
                       for p in lab.ingress_pods("cluster-b")]
        assert wait_for(lambda: not any(f.exists() for f in extra_files), timeout=60)


def test_a_missing_key_is_drift_and_the_pods_routing_shows_it(lab, synced_lab, drift):
    """The location snippet key is deleted by hand; once the pods reload (anyone's `nginx -s reload`), the backend
    no longer receives the routing header although the map file is intact: the routing probe of every pod sees it."""
    snippet_key = "kubegate-routing.location"
    pods = lab.ingress_pods("cluster-b")
    original = lab.get_json("cluster-b", "get", "configmap", "-n", NS, CM)["data"][snippet_key]
    lab.kubectl("cluster-b", "patch", "configmap", "-n", NS, CM, "--type", "json", "-p",
                json.dumps([{"op": "remove", "path": "/data/" + snippet_key}]))
    snippet_files = [Path(lab.clusters["cluster-b"]["pods_dir"]) / p / "conf.d" / snippet_key for p in pods]
    try:
        assert wait_for(lambda: not any(f.exists() for f in snippet_files), timeout=60)
        reload_nginx(lab, "cluster-b", pods)
        assert wait_for(lambda: all(serves(lab, "cluster-b", p, "v2") is None for p in pods), timeout=20)
        res = drift("-l", "cluster-b")
        assert res.rc == 3, res.output[-4000:]
        cm = res.check("cluster-b", "map_configmap")
        assert cm["status"] == "drifted" and cm["summary"].endswith("misses %s" % snippet_key)
        assert res.check("cluster-b", "map_pods")["status"] == "in_sync"
        routing = res.check("cluster-b", "map_routing")
        assert routing["status"] == "drifted" and routing["details"]["drifted_pods"] == pods
        assert "-X-Kubegate-Backend: canary\n+X-Kubegate-Backend: (not set)\n" in routing["diff"]
        assert "| cluster-b | map_routing | **DRIFTED** |" in res.summary
    finally:
        lab.kubectl("cluster-b", "patch", "configmap", "-n", NS, CM, "--type", "merge", "-p",
                    json.dumps({"data": {snippet_key: original}}))
        assert wait_for(lambda: all(f.exists() for f in snippet_files), timeout=60)
        reload_nginx(lab, "cluster-b", pods)
        assert wait_for(lambda: all(serves(lab, "cluster-b", p, "v2") == "canary" for p in pods), timeout=20)


def test_a_pod_whose_nginx_serves_stale_routing_is_named(lab, synced_lab, drift):
    """One pod's nginx loaded a different map (a hand edit, reloaded, then the file put back): its file, the
    ConfigMap and the other pods are all in sync; only asking the pod shows it routes v2 elsewhere."""
    files = pod_files(lab, "cluster-a")
    pod = sorted(files)[0]
    original = files[pod].read_text()
    files[pod].write_text(original.replace('"v2" "canary";', '"v2" "stale-routing";'))
    try:
        reload_nginx(lab, "cluster-a", [pod])
        assert wait_for(lambda: serves(lab, "cluster-a", pod, "v2") == "stale-routing", timeout=20)
        files[pod].write_text(original)  # the file is right again; the running nginx is not
        res = drift()
        assert res.rc == 3, res.output[-4000:]
        routing = res.check("cluster-a", "map_routing")
        assert routing["status"] == "drifted" and routing["details"]["drifted_pods"] == [pod]
        assert pod in routing["summary"]
        assert ('pod %s, request headers {"X-Version": "v2"}:\n-X-Kubegate-Backend: canary\n'
                "+X-Kubegate-Backend: stale-routing\n" % pod) in routing["diff"]
        assert res.check("cluster-a", "map_pods")["status"] == "in_sync"
        assert res.check("cluster-a", "map_configmap")["status"] == "in_sync"
        for name in ("cluster-b", "cluster-c"):
            assert set(res.statuses(name).values()) == {"in_sync"}, (name, res.statuses(name))
    finally:
        files[pod].write_text(original)
        reload_nginx(lab, "cluster-a", [pod])
        assert wait_for(lambda: serves(lab, "cluster-a", pod, "v2") == "canary", timeout=20)

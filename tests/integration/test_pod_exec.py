"""kubegate.multicluster.pod_exec against the lab's ingress pods, whose exec runs real local processes (real nginx)."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from kgplay import conn_token, no_traceback, run_playbook

SELECTOR = "app.kubernetes.io/name=ingress-nginx"


def px(name, **args):
    base = {"namespace": "ingress-nginx"}
    base.update(args)
    return {"name": name, "kubegate.multicluster.pod_exec": base, "ignore_errors": True}


def play(lab, cluster, tasks, conn=None):
    return [{"name": "exec", "hosts": cluster, "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": conn or conn_token(lab, cluster)},
             "tasks": tasks}]


@pytest.mark.parametrize("fastpath", ["0", "1"], ids=["controller", "module"])
def test_single_and_multi_pod_exec_with_stdin_large_output_and_rc(lab, tmp_path, fastpath):
    pods = lab.ingress_pods("cluster-b")
    tasks = [
        px("single", pod=pods[0], command="nginx -t"),
        px("multi", label_selector=SELECTOR, command=["sh", "-c", "pwd"]),
        px("stdin", pod=pods[1], command=["sha256sum"], stdin="kubegate\n"),
        px("large", pod=pods[0], command=["sh", "-c", "head -c 300000 /dev/zero | tr '\\000' x; echo end >&2"]),
        px("nonzero", pod=pods[0], command=["sh", "-c", "echo oops >&2; exit 3"]),
        px("nonzero tolerated", pod=pods[0], command=["sh", "-c", "exit 3"], fail_on_rc=False),
        px("quoted string", pod=pods[0], command="sh -c 'echo \"a  b\"'"),
    ]
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks), env={"KUBEGATE_NO_FASTPATH": fastpath})
    single = run.result("single", "cluster-b")
    assert single["rc"] == 0 and "syntax is ok" in single["stderr"] and single["results"][0]["container"] == "controller"
    multi = run.result("multi", "cluster-b")
    assert [r["pod"] for r in multi["results"]] == pods and multi["pods"] == pods
    cwds = [r["stdout"].strip() for r in multi["results"]]
    assert len(set(cwds)) == 2 and all(pod in cwd for pod, cwd in zip(pods, cwds))  # each pod is its own process tree
    assert "rc" not in multi  # top-level rc only for a single pod
    import hashlib
    assert run.result("stdin", "cluster-b")["stdout"].split()[0] == hashlib.sha256(b"kubegate\n").hexdigest()
    large = run.result("large", "cluster-b")
    assert large["stdout"] == "x" * 300000 and large["stderr"] == "end\n"
    nonzero = run.result("nonzero", "cluster-b")
    assert nonzero["failed"] and nonzero["rc"] == 3 and "exited non-zero in 1 of 1" in nonzero["msg"] and "oops" in nonzero["msg"]
    tolerated = run.result("nonzero tolerated", "cluster-b")
    # rc is returned for a tolerated non-zero exit too (exit_code is its alias), and Ansible does not fail the task
    assert tolerated["rc"] == 3 and tolerated["exit_code"] == 3 and tolerated["results"][0]["rc"] == 3
    assert not tolerated["failed"] and run.status("nonzero tolerated", "cluster-b") == "ok"
    assert run.result("quoted string", "cluster-b")["stdout"] == "a  b\n"
    assert no_traceback(run.output)


def test_rolling_batches_stop_after_a_failing_batch(lab, tmp_path):
    pods = lab.ingress_pods("cluster-a")
    # fails only in the first pod (each pod's working directory is named after it)
    cmd = ["sh", "-c", 'case "$PWD" in *%s*) exit 1;; esac; echo ran' % pods[0]]
    tasks = [px("rolling", label_selector=SELECTOR, command=cmd, batch_size=1, max_concurrency=1),
             px("all at once", label_selector=SELECTOR, command=cmd, fail_on_rc=False)]
    run = run_playbook(tmp_path, play(lab, "cluster-a", tasks))
    rolling = run.result("rolling", "cluster-a")
    assert rolling["failed"] and [r["pod"] for r in rolling["results"]] == [pods[0]]
    assert rolling["skipped_pods"] == pods[1:] and "not run in" in rolling["msg"]
    both = run.result("all at once", "cluster-a")
    assert [r["rc"] for r in both["results"]] == [1, 0] and both["results"][1]["stdout"] == "ran\n"
    assert run.status("all at once", "cluster-a") == "ok" and "rc" not in both  # per-pod rc only, task not failed


def test_timeout_command_not_found_and_selection_errors(lab, tmp_path):
    pods = lab.ingress_pods("cluster-b")
    tasks = [
        px("timeout", pod=pods[0], command=["sleep", "10"], timeout=1),
        px("not found", pod=pods[0], command=["no-such-binary", "--x"]),
        px("no pod", pod="nope-" + uuid.uuid4().hex[:5], command="true"),
        px("no match", label_selector="app=none-" + uuid.uuid4().hex[:5], command="true"),
        px("no container", pod=pods[0], container="sidecar", command="true"),
        px("empty command", pod=pods[0], command=""),
        px("unsplittable", pod=pods[0], command="echo 'unterminated"),
        px("pod and selector", pod=pods[0], label_selector=SELECTOR, command="true"),
    ]
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks))
    timeout = run.result("timeout", "cluster-b")
    assert timeout["failed"] and "timed out after 1" in timeout["msg"]
    nf = run.result("not found", "cluster-b")
    assert nf["failed"] and nf["rc"] == 127 and "command not found" in nf["msg"] and "no-such-binary" in nf["msg"]
    assert "not found" in run.result("no pod", "cluster-b")["msg"] and run.result("no pod", "cluster-b")["status"] == 404
    assert "no pod matches" in run.result("no match", "cluster-b")["msg"]
    assert "container 'sidecar' not found" in run.result("no container", "cluster-b")["msg"]
    assert "command is empty" in run.result("empty command", "cluster-b")["msg"]
    assert "could not be split" in run.result("unsplittable", "cluster-b")["msg"]
    assert "mutually exclusive" in run.result("pod and selector", "cluster-b")["msg"]
    assert no_traceback(run.output)


def test_check_mode_runs_only_read_only_commands(lab, tmp_path):
    pods = lab.ingress_pods("cluster-b")
    marker = "kg-marker-" + uuid.uuid4().hex[:6]
    tasks = [px("write", pod=pods[0], command=["touch", marker]),
             px("read", pod=pods[0], command=["sh", "-c", "pwd"], read_only=True)]
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks), "--check")
    write = run.result("write", "cluster-b")
    assert write["changed"] is True and write["results"] == [] and "would run" in write["msg"]
    read = run.result("read", "cluster-b")
    assert read["changed"] is False and read["rc"] == 0
    assert not (Path(read["stdout"].strip()) / marker).exists()


def test_exec_forbidden_names_the_rbac_needed(lab, tmp_path):
    sa = "kg-noexec-" + uuid.uuid4().hex[:6]
    lab.kubectl("cluster-c", "create", "serviceaccount", "-n", "ingress-nginx", sa)
    lab.kubectl("cluster-c", "create", "rolebinding", "-n", "ingress-nginx", sa, "--clusterrole=view",
                "--serviceaccount=ingress-nginx:" + sa)
    sa_token = lab.kubectl("cluster-c", "create", "token", "-n", "ingress-nginx", sa).stdout.strip()
    try:
        c = lab.clusters["cluster-c"]
        conn = {"host": c["server"], "ca_cert": c["ca_file"], "api_key": sa_token}
        tasks = [px("forbidden", label_selector=SELECTOR, command="nginx -t")]
        # cluster-c is in a restricted network: run the play inside its namespace's reach through the edge forward
        run = run_playbook(tmp_path, play(lab, "cluster-b", tasks, conn=_via_forward(conn)))
        res = run.result("forbidden", "cluster-b")
        assert res["failed"] and "exec forbidden" in res["msg"] and "get and create on pods/exec" in res["msg"]
        assert sa_token not in run.output
    finally:
        lab.kubectl("cluster-c", "delete", "rolebinding,serviceaccount", "-n", "ingress-nginx", sa, check=False)


_FORWARD = {}


def _via_forward(conn):
    return {**conn, "host": _FORWARD["url"], "tls_server_name": "cluster-c"}


@pytest.fixture(autouse=True)
def _cluster_c(request, cluster_c_forward):
    _FORWARD["url"] = cluster_c_forward

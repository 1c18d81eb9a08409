"""The shape of pod_exec's task result (rc, exit_code, failed) for each outcome, without a cluster.

Why: ansible-core's TaskExecutor fails a result that holds a non-zero `rc` unless the result has a `failed` key, so
whether a tolerated non-zero exit is reported *and* not failed depends on exactly these keys.
"""
from __future__ import annotations

import pytest

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import podexec
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.errors import KubegateError
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.runner import Context


def _pod(name):
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"containers": [{"name": "main"}]},
            "status": {"phase": "Running"}}


class _Client:
    where = "cluster x"

    def __init__(self, names):
        self.names = names

    def get_json(self, path, query=None):
        if path.endswith("/pods"):
            return {"items": [_pod(n) for n in self.names]}
        return _pod(path.rsplit("/", 1)[1])


@pytest.fixture
def fake(monkeypatch):
    """Pods p1, p2 whose command exits with the rc given per pod."""
    rcs = {}

    def exec_one(client, namespace, pod, container, argv, stdin, timeout, max_output):
        return {"pod": pod, "container": container, "namespace": namespace, "rc": rcs[pod], "stdout": "out-" + pod,
                "stderr": "", "duration": 0.0}

    monkeypatch.setattr(podexec, "connect", lambda params, ctx: _Client(["p1", "p2"]))
    monkeypatch.setattr(podexec, "exec_one", exec_one)
    return rcs


def run(**params):
    base = {"namespace": "ns", "command": ["sh", "-c", "exit 3"], "fail_on_rc": True}
    base.update(params)
    return podexec.run_pod_exec(base, Context())


def test_single_pod_tolerated_non_zero_exit_returns_rc_and_says_not_failed(fake):
    fake.update(p1=3)
    out = run(pod="p1", fail_on_rc=False)
    assert out["rc"] == 3 and out["exit_code"] == 3 and out["results"][0]["rc"] == 3
    assert out["failed"] is False and out["stdout"] == "out-p1"


def test_single_pod_success_returns_rc_zero(fake):
    fake.update(p1=0)
    out = run(pod="p1")
    assert out["rc"] == 0 and out["exit_code"] == 0 and out["failed"] is False


def test_single_pod_non_zero_exit_fails_with_rc(fake):
    fake.update(p1=3)
    with pytest.raises(KubegateError) as e:
        run(pod="p1")
    assert e.value.details["rc"] == 3 and e.value.details["exit_code"] == 3 and "exited non-zero" in e.value.msg


def test_selector_tolerated_non_zero_exit_reports_per_pod_rc(fake):
    fake.update(p1=1, p2=0)
    out = run(label_selector="a=b", fail_on_rc=False)
    assert [(r["pod"], r["rc"]) for r in out["results"]] == [("p1", 1), ("p2", 0)]
    assert out["failed"] is False and "rc" not in out and "exit_code" not in out

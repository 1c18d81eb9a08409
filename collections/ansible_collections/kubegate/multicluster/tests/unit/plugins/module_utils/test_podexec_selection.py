"""Pod selection, container choice and command splitting of pod_exec (no network)."""
from __future__ import annotations

import pytest

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import podexec


def pod(name, phase="Running", containers=("main",), annotations=None, deleting=False):
    meta = {"name": name, "namespace": "ns", "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"containers": [{"name": c} for c in containers]}, "status": {"phase": phase}}


class FakeClient:
    def __init__(self, items):
        self.items = items
        self.calls = []

    def get_json(self, path, query=None):
        self.calls.append((path, query))
        if path.endswith("/pods"):
            return {"items": self.items}
        return self.items[0]


class Failed(Exception):
    pass


def fail(msg, **_):
    raise Failed(msg)


@pytest.mark.parametrize("command,argv", [
    (["nginx", "-s", "reload"], ["nginx", "-s", "reload"]),
    ("nginx -s reload", ["nginx", "-s", "reload"]),
    ("sh -c 'echo \"a b\"; exit 2'", ["sh", "-c", 'echo "a b"; exit 2']),
    ([1, "x"], ["1", "x"]),
])
def test_split_command(command, argv):
    assert podexec.split_command(command) == argv


@pytest.mark.parametrize("command,message", [("", "empty"), ([], "empty"), ("echo 'open", "could not be split")])
def test_split_command_errors(command, message):
    with pytest.raises(ValueError, match=message):
        podexec.split_command(command)


def test_container_choice_prefers_the_annotation_then_the_first():
    annotated = pod("p", containers=("sidecar", "app"),
                    annotations={podexec.DEFAULT_CONTAINER_ANNOTATION: "app"})
    assert podexec.choose_container(annotated, None) == ("app", None)
    assert podexec.choose_container(pod("p", containers=("a", "b")), None) == ("a", None)
    assert podexec.choose_container(pod("p", containers=("a", "b")), "b") == ("b", None)
    name, problem = podexec.choose_container(pod("p", containers=("a",)), "z")
    assert name is None and "container 'z' not found in pod p (containers: a)" == problem


def test_selection_sorts_skips_terminating_and_refuses_not_running():
    client = FakeClient([pod("b"), pod("a"), pod("c", deleting=True)])
    chosen = podexec.select_pods(client, "ns", label_selector="app=x", fail=fail)
    assert [p["metadata"]["name"] for p in chosen] == ["a", "b"]
    assert client.calls == [("/api/v1/namespaces/ns/pods", {"labelSelector": "app=x"})]
    with pytest.raises(Failed, match=r"not Running: p \(Pending\)"):
        podexec.select_pods(FakeClient([pod("p", phase="Pending")]), "ns", label_selector="a=b", fail=fail)
    with pytest.raises(Failed, match="no pod matches selector labels 'a=b' fields 'x=y' in namespace ns"):
        podexec.select_pods(FakeClient([]), "ns", label_selector="a=b", field_selector="x=y", fail=fail)


def test_exec_path_escapes_every_argument():
    path = podexec.exec_path("ns", "p", "c", ["sh", "-c", "a && b; echo $X"], "in")
    assert path.startswith("/api/v1/namespaces/ns/pods/p/exec?command=sh&command=-c&command=a+%26%26+b%3B+echo+%24X")
    assert path.endswith("&container=c&stdout=true&stderr=true&stdin=true")

"""Secrets never appear in output, errors, diffs or -vvvv logs, nor in any process's arguments while tasks run."""
from __future__ import annotations

import base64
import os
import threading
import uuid
from pathlib import Path

import pytest
import yaml

from kgplay import run_playbook, token

REJECTED = "kg-rejected-" + uuid.uuid4().hex    # a token the apiserver refuses: it must not be shown either


def key_material(lab, cluster):
    """Strings that must never be shown: the token, the client key's PEM body lines, the kubeconfig's key data."""
    c = lab.clusters[cluster]
    key_pem = Path(c["client_key_file"]).read_text()
    body = [line for line in key_pem.splitlines() if line and not line.startswith("-----")]
    kc = yaml.safe_load(Path(lab.desc["kubeconfig"]).read_text())
    key_data = [u["user"].get("client-key-data") for u in kc["users"] if u["user"].get("client-key-data")]
    return [token(lab, cluster)] + body + key_data


class ArgvWatcher:
    """Samples every process's command line while a playbook runs."""

    def __init__(self, needles):
        self.needles = needles
        self.hits = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        argv = f.read().decode("utf-8", "replace")
                except OSError:
                    continue
                for needle in self.needles:
                    if needle in argv:
                        self.hits.append(argv[:200])
            self.stop.wait(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@pytest.mark.parametrize("fastpath", ["0", "1"], ids=["controller", "module"])
def test_no_token_or_key_material_at_vvvv(lab, tmp_path, fastpath):
    c = lab.clusters["cluster-b"]
    secret_name = "kg-leak-test"
    token_conn = {"host": c["server"], "ca_cert": c["ca_file"],
                  "api_key": "{{ lookup('file', '%s') }}" % c["admin_token_file"]}
    kubeconfig_conn = {"kubeconfig": lab.desc["kubeconfig"], "context": "cluster-b"}
    tasks = [
        {"name": "token ok", "kubegate.multicluster.api_request": {**token_conn, "path": "/version"}},
        {"name": "token error", "kubegate.multicluster.api_request":
         {**token_conn, "path": "/version", "ca_cert": lab.clusters["cluster-a"]["ca_file"], "retries": 0},
         "ignore_errors": True},
        {"name": "token 404", "kubegate.multicluster.api_request": {**token_conn, "path": "/api/v1/namespaces/zz-none"},
         "ignore_errors": True},
        {"name": "token 401", "kubegate.multicluster.api_request": {**token_conn, "path": "/version",
                                                                     "api_key": REJECTED},
         "ignore_errors": True},
        {"name": "kubeconfig ok", "kubegate.multicluster.api_request": {**kubeconfig_conn, "path": "/version"}},
        {"name": "kubeconfig write diff", "kubegate.multicluster.api_request":
         {**kubeconfig_conn, "method": "POST", "path": "/api/v1/namespaces/demo/configmaps",
          "body": {"metadata": {"name": secret_name}}}},
        {"name": "proxy", "kubegate.multicluster.service_proxy":
         {**token_conn, "namespace": "demo", "service": "echo", "port": "http"}},
    ]
    play = [{"name": "leak check", "hosts": "cluster-b", "gather_facts": False, "tasks": tasks}]
    needles = key_material(lab, "cluster-b") + [REJECTED]
    with ArgvWatcher(needles) as watcher:
        run = run_playbook(tmp_path, play, "-vvvv", "--check", "--diff", env={"KUBEGATE_NO_FASTPATH": fastpath})
    assert run.status("token ok", "cluster-b") == "ok", run.output[-3000:]
    assert run.status("kubeconfig write diff", "cluster-b") == "ok", run.output[-3000:]
    assert run.status("token error", "cluster-b") == "failed"
    # a rejected token: the 401 says which kind of credential was sent, never its value
    rejected = run.result("token 401", "cluster-b")
    assert rejected["failed"] and rejected["status"] == 401 and "Sent: a bearer token" in rejected["msg"]
    assert "ansible-playbook" in run.output and "Loading collection kubegate.multicluster" in run.output  # -vvvv
    for needle in needles:
        assert needle not in run.output, "secret material in -vvvv output"
    for record in run.records:
        text = yaml.safe_dump(record)
        for needle in needles:
            assert needle not in text, "secret in the result of %s" % record["task"]
    assert watcher.hits == [], "secret material in process arguments"
    # the echo service saw the request, but not the credentials (the apiserver does not forward them)
    echo = run.result("proxy", "cluster-b")["json"]
    assert "Authorization" not in echo["headers"]
    assert base64.b64encode(needles[0].encode()).decode() not in run.output

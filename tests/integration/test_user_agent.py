"""Every request kubegate sends names the collection version and the run in its User-Agent, so an apiserver's audit log
ties the calls to the run: proven on cluster-b's real audit log (the lab's apiservers write one at Metadata level,
.lab/<cluster>/audit.log), for plain requests and for exec (an upgrade request), with the run id the summary callback
derives from AWX's job id and with one the caller sets."""
from __future__ import annotations

import json
import time
import uuid

import pytest
import yaml

from kgplay import playbook_connection, run_playbook
from kgtest import REPO

COLL = REPO / "collections" / "ansible_collections" / "kubegate" / "multicluster"
AUDIT = REPO / ".lab" / "cluster-b" / "audit.log"
VERSION = yaml.safe_load((COLL / "galaxy.yml").read_text())["version"]
SELECTOR = "app.kubernetes.io/name=ingress-nginx"


def audit_events(marker, want, timeout=15):
    """Audit events of cluster-b whose User-Agent contains `marker`, once `want(events)` holds (batched log)."""
    deadline = time.monotonic() + timeout
    while True:
        events = []
        for line in AUDIT.read_text().splitlines():
            if marker in line:
                events.append(json.loads(line))
        if want(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def calls(tmp_path, env=None, extra=None):
    tasks = [{"name": "version", "kubegate.multicluster.api_request": {"path": "/version"}},
             {"name": "exec", "kubegate.multicluster.pod_exec": {"namespace": "ingress-nginx",
                                                                 "label_selector": SELECTOR,
                                                                 "command": ["nginx", "-v"], "read_only": True}}]
    plays = [{"name": "ua", "hosts": "cluster-b", "gather_facts": False,
              "module_defaults": {"group/kubegate.multicluster.cluster": playbook_connection()}, "tasks": tasks}]
    argv = []
    if extra:
        path = tmp_path / "extra.yml"
        path.write_text(yaml.safe_dump(extra))
        argv = ["-e", "@%s" % path]
    run_env = {"ANSIBLE_CALLBACKS_ENABLED": "kg_results,kubegate.multicluster.summary"}
    run_env.update(env or {})
    return run_playbook(tmp_path, plays, *argv, env=run_env)


@pytest.fixture
def audit_log(lab):
    if not AUDIT.exists():
        pytest.fail("cluster-b writes no audit log (%s): its kube-apiserver was started by lab code without the "
                    "audit flags; restart only it with this worktree's lab/labctl.py up" % AUDIT)
    return AUDIT


def test_awx_job_id_names_the_run_in_every_request(audit_log, tmp_path):
    job = str(int(time.time() * 1000) % 10**9)
    run = calls(tmp_path, extra={"awx_job_id": int(job), "awx_user_name": "alice"})
    assert run.rc == 0, run.output[-3000:]
    agent = "kubegate.multicluster/%s (run awx-job-%s)" % (VERSION, job)
    events = audit_events("awx-job-%s)" % job, lambda ev: any("/exec" in e["requestURI"] for e in ev))
    assert events, "no audit event of cluster-b carries the run's User-Agent"
    assert {e["userAgent"] for e in events} == {agent}
    uris = [e["requestURI"] for e in events]
    assert "/version" in uris and any("/pods?" in u or "/pods" in u.split("?")[0] for u in uris)
    assert any(u.split("?")[0].endswith("/exec") for u in uris)  # the upgrade request too


def test_caller_run_id_and_no_header_injection(audit_log, tmp_path):
    run_id = "ci-" + uuid.uuid4().hex[:10]
    run = calls(tmp_path, env={"KUBEGATE_RUN_ID": run_id})
    assert run.rc == 0, run.output[-3000:]
    events = audit_events("(run %s)" % run_id, lambda ev: len(ev) >= 3)
    assert events and {e["userAgent"] for e in events} == {"kubegate.multicluster/%s (run %s)" % (VERSION, run_id)}
    # a value that is not a plain token never reaches a header: the callback replaces it with a fresh id
    bad = "x\r\nX-Evil: 1"
    run = calls(tmp_path, env={"KUBEGATE_RUN_ID": bad})
    assert run.rc == 0, run.output[-3000:]
    assert "Evil" not in AUDIT.read_text()

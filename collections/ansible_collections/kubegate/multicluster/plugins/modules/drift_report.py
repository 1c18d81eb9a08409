#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

DOCUMENTATION = r"""
module: drift_report
short_description: Decide drift from desired state and live answers, and write JSON, JUnit and Markdown reports
version_added: 0.1.0
description:
  - Takes, per cluster, the desired state and the raw answers the drift check collected (registered results of
    M(kubegate.multicluster.api_request) and M(kubegate.multicluster.pod_exec) tasks, facts of other roles), decides
    for every cluster and check whether it is C(in_sync), C(drifted), C(unreachable) or C(error), and writes
    C(drift.json), C(junit.xml) and C(summary.md) into a new directory O(reports_dir)/O(run_id).
  - Talks to no cluster; run it once on the controller (C(run_once) and C(delegate_to=localhost)). The playbook
    C(playbooks/drift-check.yml) and the role C(drift_check) build its input; see C(docs/drift.md).
  - "Check kinds (the C(kind) of each check record): C(configmap) (C(expected): key to text, null for absent;
    C(result): a GET of the ConfigMap accepting 404; a live key not in C(expected) is drift too, since the pods
    include every key as a file), C(pods) (C(expected): the text; C(file); C(result): a
    C(pod_exec) of C(cat FILE) with C(fail_on_rc=false)), C(routing) (C(expected): the routing checks of the
    P(kubegate.multicluster.nginx_map#filter) filter with C(part=checks); C(result): a looped
    M(kubegate.multicluster.api_request) through each pod's apiserver pod proxy with C(item) C([pod, check]);
    drifted when a pod's backend does not receive the expected header value or the pod does not answer), C(objects) (C(expected): a list of C({path, body});
    C(result): a looped GET per path accepting 404; only the fields of C(body) are compared), C(apiservices)
    (C(result): a GET of C(/apis/apiregistration.k8s.io/v1/apiservices)), C(reported) (C(result):
    C({in_sync, diff, active}) computed by another role, for example C(ssh_tunnel))."
  - A failed result is C(unreachable) when it carries C(unreachable) or C(timed_out) (connection refused, timeout,
    ssh jump host down), otherwise C(error). The report's status is the most severe one
    (C(error) > C(unreachable) > C(drifted) > C(in_sync)); RV(exit_code) maps it to 0, 3, 4 or 5, the exit codes of
    C(playbooks/drift-check.sh).
author: kubegate developers (@kubegate)
attributes:
  check_mode:
    description: In check mode nothing is written; the status is still computed. Set C(check_mode=false) on the task
      to write the reports of a check-mode drift run (they are local files, not cluster state).
    support: full
  diff_mode:
    description: Returns the diffs of every drifted check as C(diff.prepared).
    support: full
  platform:
    description: Runs on the controller (or wherever the task is delegated).
    support: full
    platforms: posix
options:
  clusters:
    description:
      - One entry per cluster - C(cluster) (name), C(tenant), optional C(probe) (the registered result of a first
        request; when it failed every check of the cluster gets its status) and C(checks), a list of check records
        C({name, kind, result, ...}) as described above.
    type: list
    elements: dict
    required: true
  tunnel_hosts:
    description:
      - One entry per tunnel host - C(host), C(probe) (the registered result of a first task on it), C(error) (why its
        checks failed, if they did) and C(facts), a mapping of role name (C(ssh_tunnel), C(kubectl_proxy)) to the list
        that role's C(tasks/drift.yml) set (C(kubegate_tunnel_drift), C(kubegate_kubectl_proxy_drift)), each item
        C({cluster, in_sync, diff, active}). Null means the role ran but did not set its fact (an error); a role that
        is not installed is left out.
      - Each item becomes check C(<role>@<host>) of cluster C(cluster) (C(reported) kind); an unreachable tunnel host is
        reported as cluster C(<host>), check C(tunnel_host).
    type: list
    elements: dict
    default: []
  tenants:
    description: Tenant of each inventory host (cluster name to tenant), for the clusters named by the tunnel hosts.
    type: dict
    default: {}
  reports_dir:
    description: Directory under which the run's directory is created (created when missing).
    type: path
    required: true
  run_id:
    description:
      - Name of the run's directory under O(reports_dir). Default the UTC time, C(YYYYMMDDTHHMMSSZ). An existing
        directory that already holds a report is never overwritten (a suffix is added).
    type: str
  formats:
    description: Which files to write.
    type: list
    elements: str
    choices: [json, junit, markdown]
    default: [json, junit, markdown]
notes:
  - The reports hold the routing rules and RBAC objects as found in the clusters (they are not secret); they never
    hold tokens - the collection's modules do not return them.
"""

EXAMPLES = r"""
- name: Write the drift reports (once, on the controller)
  kubegate.multicluster.drift_report:
    reports_dir: "{{ playbook_dir }}/../reports"
    clusters: "{{ ansible_play_hosts_all | map('extract', hostvars, 'drift_check_entry') | select('defined') | list }}"
  run_once: true
  delegate_to: localhost
  check_mode: false
  register: drift

- name: A cluster's ConfigMap compared by hand
  kubegate.multicluster.drift_report:
    reports_dir: /tmp/drift
    run_id: manual
    formats: [json]
    clusters:
      - cluster: prod-eu-1
        tenant: acme
        checks:
          - name: map_configmap
            kind: configmap
            expected: {kubegate-map.conf: "{{ rules | kubegate.multicluster.nginx_map }}"}
            result: "{{ live_configmap }}"
"""

RETURN = r"""
status:
  description: Overall status, the most severe of all checks (C(error) when no cluster was checked).
  returned: always
  type: str
  sample: drifted
exit_code:
  description: The documented exit status for RV(status) - 0 in sync, 3 drifted, 4 unreachable, 5 error.
  returned: always
  type: int
  sample: 3
counts:
  description: Number of checks per status.
  returned: always
  type: dict
  sample: {"in_sync": 11, "drifted": 1, "unreachable": 0, "error": 0}
report_dir:
  description: The run's directory (not created in check mode).
  returned: always
  type: str
files:
  description: Paths of the files written, per format.
  returned: always
  type: dict
  sample: {"json": "/srv/kubegate/reports/20261129T190000Z/drift.json"}
statuses:
  description: C(tenant -> cluster -> check -> status).
  returned: always
  type: dict
problems:
  description: "One line per check that is not in sync: C(tenant/cluster/check: status: summary)."
  returned: always
  type: list
  elements: str
"""

import datetime
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubegate.multicluster.plugins.module_utils._drift import (
    build_report,
    iter_checks,
    render_json,
    render_junit,
    render_markdown,
    tunnel_entries,
)

FILES = {"json": "drift.json", "junit": "junit.xml", "markdown": "summary.md"}
RENDERERS = {"json": render_json, "junit": render_junit, "markdown": render_markdown}


def _run_dir(base, run_id):
    """base/run_id, or base/run_id-N when that already holds a report."""
    candidate, n = os.path.join(base, run_id), 1
    while os.path.exists(os.path.join(candidate, FILES["json"])):
        n += 1
        candidate = os.path.join(base, "%s-%d" % (run_id, n))
    return candidate


def _write(path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            clusters=dict(type="list", elements="dict", required=True),
            tunnel_hosts=dict(type="list", elements="dict", default=[]),
            tenants=dict(type="dict", default={}),
            reports_dir=dict(type="path", required=True),
            run_id=dict(type="str"),
            formats=dict(type="list", elements="str", choices=list(FILES), default=list(FILES)),
        ),
        supports_check_mode=True,
    )
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    run_id = module.params["run_id"] or now.strftime("%Y%m%dT%H%M%SZ")
    if "/" in run_id or run_id in (".", ".."):
        module.fail_json(msg="run_id must be a plain directory name (no '/'), got %r" % run_id)
    extra = tunnel_entries(module.params["tunnel_hosts"], module.params["tenants"])
    report = build_report(module.params["clusters"], extra, run_id=run_id,
                          generated_at=now.isoformat().replace("+00:00", "Z"))
    base = module.params["reports_dir"]
    run_dir = _run_dir(base, run_id)
    files = dict((fmt, os.path.join(run_dir, FILES[fmt])) for fmt in module.params["formats"])
    statuses, problems, diffs = {}, [], []
    for tenant, cluster, name, check in iter_checks(report):
        statuses.setdefault(tenant, {}).setdefault(cluster, {})[name] = check["status"]
        if check["status"] != "in_sync":
            problems.append("%s/%s/%s: %s: %s" % (tenant, cluster, name, check["status"], check["summary"]))
            if check.get("diff"):
                diffs.append("# %s/%s/%s (- desired, + live)\n%s" % (tenant, cluster, name, check["diff"]))
    result = {"changed": False, "status": report["status"], "exit_code": report["exit_code"],
              "counts": report["counts"], "report_dir": run_dir, "files": files, "statuses": statuses,
              "problems": problems}
    if module._diff and diffs:
        result["diff"] = {"prepared": "\n".join(diffs)}
    if not module.check_mode:
        try:
            os.makedirs(run_dir, exist_ok=True)
            for fmt, path in files.items():
                _write(path, RENDERERS[fmt](report))
        except OSError as e:
            module.fail_json(msg="cannot write the drift reports under %s: %s (set the reports directory to a "
                                 "writable place)" % (run_dir, e.strerror or e), **result)
        result["changed"] = True
    module.exit_json(**result)


if __name__ == "__main__":
    main()

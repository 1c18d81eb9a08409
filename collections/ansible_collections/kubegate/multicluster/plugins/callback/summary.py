# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""One summary at the end of a multi-cluster run (reload-ingress, health, drift), a progress line per completed
cluster while it runs, and the same data as a JSON run record (who ran what where) for CI and as custom stats for AWX.

Why a callback: the per-cluster outcome is spread over many task results (per host or in a fan-out task's
results_by_host) and over hosts that stopped early; only the callback sees them all, in both modes, without the
playbooks carrying bookkeeping tasks.
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: summary
type: aggregate
short_description: One table per multi-cluster run, progress per cluster, and a JSON run record
version_added: "0.2.0"
author: kubegate developers (@kubegate)
description:
  - Prints, after the play recap, one table of the run's clusters (inventory hosts) - cluster, tenant, outcome,
    what changed, pods, checks, duration - followed by the failed clusters grouped by their one-line reason.
  - While the run goes on, prints one line per cluster whose outcome is final (it failed, or it reached the play's
    last task or a task named C(Summary)), with a counter.
  - Reads results of tasks run per host and of fan-out tasks (C(results_by_host)) alike, so both modes of
    C(playbooks/reload-ingress.yml) give the same table.
  - The run record names who ran it (the AWX user and job id from the C(awx_user_name)/C(tower_user_name) and
    C(awx_job_id)/C(tower_job_id) extra variables AWX sets, else the local user), when, the C(--limit), the playbook
    and each cluster's row, and the run id. It is written to O(json_path) when set, and given to C(set_stats) as C(kubegate_run)
    (shown by C(show_custom_stats); AWX keeps it as the job's artifacts when it reads stats after this callback).
  - The run id (a valid C(KUBEGATE_RUN_ID) already set, else C(awx-job-<id>) under AWX, else a new one) is exported
    as C(KUBEGATE_RUN_ID) to the run's processes, so every request kubegate sends carries it in its User-Agent,
    C(kubegate.multicluster/<version> (run <id>)), and each apiserver's audit log ties the calls to the run.
  - The C(pods) column is the most pods a cluster's tasks listed (C(pods) of P(kubegate.multicluster.pod_exec#module));
    the C(checks) column counts the looped requests of P(kubegate.multicluster.api_request#module) that passed for
    the cluster.
requirements:
  - enabled in C(callbacks_enabled) (the project's C(ansible.cfg) files enable it)
options:
  json_path:
    description:
      - File to write the run record to (JSON, mode 0600, replaced atomically). Unset - no file.
    type: path
    env:
      - name: KUBEGATE_SUMMARY_JSON
    ini:
      - section: callback_kubegate_summary
        key: json_path
  progress:
    description: Print one line per completed cluster while the run goes on.
    type: bool
    default: true
    env:
      - name: KUBEGATE_SUMMARY_PROGRESS
    ini:
      - section: callback_kubegate_summary
        key: progress
"""

import datetime
import getpass
import json
import os
import re
import tempfile
import time
import uuid

from ansible import context
from ansible.plugins.callback import CallbackBase

REASON_CHARS = 160
# Tasks whose "changed" says nothing about the cluster (kubegate's reports, the fan-out stop tasks)
NOT_CHANGES = frozenset(("ansible.builtin.debug", "debug", "ansible.builtin.fail", "fail", "ansible.builtin.set_fact",
                         "set_fact", "ansible.builtin.assert", "assert"))
LAST_TASK = "Summary"
RUN_ID_ENV = "KUBEGATE_RUN_ID"   # read by module_utils/_cluster/transport.py user_agent()
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def _one_line(text, limit=REASON_CHARS):
    text = " ".join(str(text or "failed").split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _last_task_uuid(play):
    """The play's last task (a host that reaches it is done), or None when the play ends in a block with rescue or
    always sections (their last task is not every host's last)."""
    try:
        last = play.get_tasks()[-1]
    except (AttributeError, IndexError, TypeError):
        return None
    if isinstance(last, list):
        if not last:
            return None
        parent = getattr(last[-1], "_parent", None)
        if getattr(parent, "rescue", None) or getattr(parent, "always", None):
            return None
        last = last[-1]
    return getattr(last, "_uuid", None)


def _rescued(task):
    """Whether a failure of `task` goes on in a rescue section (so the cluster is not done yet)."""
    parent = getattr(task, "_parent", None)
    while parent is not None:
        rescue = getattr(parent, "rescue", None) or []
        if rescue and task._uuid not in [getattr(t, "_uuid", None) for t in rescue]:
            return True
        parent = getattr(parent, "_parent", None)
    return False


class _Row(object):
    __slots__ = ("host", "tenant", "started", "ended", "outcome", "reason", "changed", "pods", "checks", "done")

    def __init__(self, host, started):
        self.host = host
        self.tenant = "-"
        self.started = started  # the clusters of a run go in parallel: each one's time counts from the play's start
        self.ended = time.monotonic()
        self.outcome = "ok"
        self.reason = ""
        self.changed = []
        self.pods = 0
        self.checks = 0
        self.done = False

    def as_dict(self):
        return {"cluster": self.host, "tenant": self.tenant, "outcome": self.outcome, "reason": self.reason,
                "changed": list(self.changed), "pods": self.pods, "checks": self.checks,
                "duration_s": round(self.ended - self.started, 2)}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kubegate.multicluster.summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rows = {}
        self._order = []
        self._play_hosts = 0
        self._started = datetime.datetime.now(datetime.timezone.utc)
        self._playbook = None
        self._extra = {}
        self._variable_manager = None
        self._done = 0
        self._run_id = None
        self._last_task = None
        self._play_started = time.monotonic()

    # ------------------------------------------------------------------------------------------------------ collect

    def _row(self, host):
        row = self._rows.get(host)
        if row is None:
            row = self._rows[host] = _Row(host, self._play_started)
            self._order.append(host)
            row.tenant = self._tenant(host)
        return row

    def _tenant(self, host):
        try:
            inventory = self._variable_manager._inventory
            value = inventory.get_host(host).get_vars().get("kubegate_tenant")
            if value is None:
                groups = [g.name for g in inventory.get_host(host).get_groups() if g.name not in ("all", "ungrouped")]
                return ",".join(groups) or "-"
            return str(value)
        except Exception:  # pylint: disable=broad-except
            return "-"

    def v2_playbook_on_start(self, playbook):
        self._playbook = os.path.basename(getattr(playbook, "_file_name", "") or "")

    def v2_playbook_on_play_start(self, play):
        self._play_started = time.monotonic()
        self._variable_manager = play.get_variable_manager()
        self._extra = dict(getattr(self._variable_manager, "extra_vars", {}) or {})
        self._run_id = self._set_run_id()
        self._last_task = _last_task_uuid(play)
        try:
            self._play_hosts = max(self._play_hosts, len(self._variable_manager._inventory.get_hosts(play.hosts)))
        except Exception:  # pylint: disable=broad-except
            pass

    def _set_run_id(self):
        """The run's id, put in the environment every worker and module process of this run inherits, so every
        request's User-Agent names it: a valid KUBEGATE_RUN_ID already set, else the AWX job, else a new id."""
        if self._run_id:
            return self._run_id
        run = os.environ.get(RUN_ID_ENV, "")
        if not RUN_ID.match(run):
            job = str(self._extra.get("awx_job_id", self._extra.get("tower_job_id", os.environ.get("JOB_ID", ""))))
            run = "awx-job-" + job if job.isdigit() else "%s-%s" % (
                self._started.strftime("%Y%m%dT%H%M%SZ"), uuid.uuid4().hex[:8])
            os.environ[RUN_ID_ENV] = run
        return run

    def _record(self, host, task, res, status):
        """One host's result of one task (status ok/failed/unreachable/skipped)."""
        row = self._row(host)
        row.ended = time.monotonic()
        if status == "skipped" or row.done and status == "ok":
            return
        action = task.resolved_action or task.action
        if status in ("failed", "unreachable"):
            row.outcome = status
            row.reason = "%s: %s" % (task.get_name(), _one_line(res.get("msg") or res.get("stderr")))
            return
        if res.get("changed") and action not in NOT_CHANGES and task.get_name() not in row.changed:
            row.changed.append(task.get_name())
        if isinstance(res.get("pods"), list):
            row.pods = max(row.pods, len(res["pods"]))
        if action.endswith("api_request") and isinstance(res.get("results"), list):
            row.checks += sum(1 for r in res["results"] if isinstance(r, dict) and not r.get("failed")
                              and not r.get("skipped"))

    def _fanout(self, task, res):
        """Attribute a fan-out task's result to each listed host (a looped one item by item)."""
        items = res.get("results") if isinstance(res.get("results"), list) else [res]
        per_host = {}
        for item in items:
            for host, hres in (item.get("results_by_host") or {}).items() if isinstance(item, dict) else ():
                per_host.setdefault(host, []).append(hres)
        for host, results in per_host.items():
            if "results_by_host" not in res:  # looped: one result per item
                merged = {"changed": any(r.get("changed") for r in results), "results": results}
                self._record(host, task, merged, "ok")
            else:
                self._record(host, task, results[0], "ok")
        return bool(per_host)

    def _on(self, result, status):
        res = result._result if isinstance(result._result, dict) else {}
        task = result._task
        if status == "ok" and self._fanout(task, res):
            return
        host = result._host.get_name()
        self._record(host, task, res, status)
        if status in ("failed", "unreachable") and not _rescued(task) or self._is_last(task):
            self._complete(host)

    def _complete(self, host):
        row = self._row(host)
        if row.done:
            return
        row.done = True
        self._done += 1
        if self._get_option_safe("progress"):
            total = max(self._play_hosts, len(self._rows))
            what = row.reason if row.outcome != "ok" else ("changed: " + ", ".join(row.changed) if row.changed
                                                           else "no change")
            fields = (self._done, total, host, row.tenant, row.outcome, _one_line(what, 120))
            line = "kubegate [%d/%d] %s (%s): %s - %s" % fields
            self._display.display(line)

    def _get_option_safe(self, name):
        try:
            return self.get_option(name)
        except Exception:  # pylint: disable=broad-except
            return {"progress": True}.get(name)

    def v2_runner_on_ok(self, result):
        self._on(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._on(result, "ok" if ignore_errors else "failed")

    def v2_runner_on_unreachable(self, result):
        self._on(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._row(result._host.get_name())
        if self._is_last(result._task):
            self._complete(result._host.get_name())

    def _is_last(self, task):
        return task.get_name() == LAST_TASK or self._last_task is not None and task._uuid == self._last_task

    # ------------------------------------------------------------------------------------------------------ report

    def run_record(self):
        """The run record: who, when, what, where, and each cluster's row."""
        extra = self._extra
        job_id = extra.get("awx_job_id", extra.get("tower_job_id"))
        user = extra.get("awx_user_name", extra.get("tower_user_name"))
        try:
            local_user = getpass.getuser()
        except Exception:  # pylint: disable=broad-except
            local_user = str(os.getuid())
        limit = (context.CLIARGS or {}).get("subset")
        rows = [self._rows[h].as_dict() for h in self._order]
        return {
            "run": {"id": self._run_id, "by": user or local_user, "awx_job_id": job_id, "awx_user_name": user, "local_user": local_user,
                    "started": self._started.isoformat(timespec="seconds"),
                    "ended": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "playbook": self._playbook, "limit": limit,
                    "check_mode": bool((context.CLIARGS or {}).get("check"))},
            "totals": {"clusters": len(rows), "ok": sum(1 for r in rows if r["outcome"] == "ok"),
                       "failed": sum(1 for r in rows if r["outcome"] != "ok"),
                       "changed": sum(1 for r in rows if r["changed"])},
            "clusters": rows,
        }

    def v2_playbook_on_stats(self, stats):
        for host in self._order:  # clusters that ended without a Summary line still count as complete
            self._complete(host)
        record = self.run_record()
        if not record["clusters"]:
            return
        self._display.display(self.table(record))
        try:
            stats.set_custom_stats("kubegate_run", record)
        except Exception:  # pylint: disable=broad-except
            pass
        path = self._get_option_safe("json_path")
        if path:
            self._write(path, record)

    def _write(self, path, record):
        directory = os.path.dirname(os.path.abspath(path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".kubegate-run-", dir=directory)
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, indent=1, sort_keys=True, default=str)
                f.write("\n")
            os.replace(tmp, path)
        except OSError as e:
            self._display.warning("kubegate summary: could not write the run record to %s: %s (set "
                                  "KUBEGATE_SUMMARY_JSON to a writable file)" % (path, e.strerror or e))

    @staticmethod
    def table(record):
        head = ("cluster", "tenant", "outcome", "changed", "pods", "checks", "duration")
        lines = []
        for r in record["clusters"]:
            lines.append((r["cluster"], r["tenant"], r["outcome"], ", ".join(r["changed"]) or "-", str(r["pods"]),
                          str(r["checks"]), "%.1fs" % r["duration_s"]))
        widths = [min(60, max(len(head[i]), *(len(line[i]) for line in lines))) for i in range(len(head))]

        def fmt(cells):
            return "  ".join(_one_line(c, widths[i]).ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

        run, totals = record["run"], record["totals"]
        out = ["", "KUBEGATE RUN %s by %s%s, limit %s: %d cluster(s), %d ok, %d failed, %d changed" % (
            run["started"], run["by"], " (AWX job %s)" % run["awx_job_id"] if run["awx_job_id"] is not None else "",
            run["limit"] or "-", totals["clusters"], totals["ok"], totals["failed"], totals["changed"]),
            fmt(head)]
        out += [fmt(line) for line in lines]
        reasons = {}
        for r in record["clusters"]:
            if r["outcome"] != "ok":
                reasons.setdefault(r["reason"], []).append(r["cluster"])
        if reasons:
            out.append("failed:")
            for reason, hosts in reasons.items():
                out.append("  %s: %s" % (", ".join(hosts), reason))
        return "\n".join(out)

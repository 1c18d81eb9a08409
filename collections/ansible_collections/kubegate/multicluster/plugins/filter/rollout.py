# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Filters that let playbooks/reload-ingress.yml run every cluster step as one fan-out task (the default) or per host
(kubegate_fanout: false) with the same per-cluster outcome.

A fan-out task registers one result for all hosts (`results_by_host`, `failed_hosts`); a per-host task registers each
host's own. These filters read either shape, so the playbook's conditions and summary are written once:
`fanout_view` (a host's own result), `fanout_hosts` (who goes on), `rollout_plan` / `rollout_plan_hosts` (the routing
checks per host), `rollout_misses` (who still routes wrong) and `rollout_failures` (each failed cluster's first failed
step and reason). Documentation: the .yml files of the same names next to this file.
"""
from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

SKIPPED = {"skipped": True, "changed": False}


def _by_host(registered):
    if isinstance(registered, Mapping) and isinstance(registered.get("results_by_host"), Mapping):
        return registered["results_by_host"]
    return None


def _looped(registered):
    """The item results of a looped fan-out task, else None."""
    results = registered.get("results") if isinstance(registered, Mapping) else None
    if isinstance(results, list) and any(_by_host(r) is not None for r in results):
        return [r for r in results if _by_host(r) is not None]
    return None


def fanout_view(registered, host: str) -> dict:
    """`host`'s own result of a task registered per host or with fanout (looped or not)."""
    if not isinstance(registered, Mapping):
        return dict(SKIPPED)
    by_host = _by_host(registered)
    if by_host is not None:
        return dict(by_host[host]) if host in by_host else dict(SKIPPED)
    items = _looped(registered)
    if items is not None:
        mine = [dict(r["results_by_host"][host], item=r.get("item")) for r in items if host in r["results_by_host"]]
        if not mine:
            return dict(SKIPPED)
        return {"results": mine, "changed": any(r.get("changed") for r in mine),
                "failed": any(r.get("failed") for r in mine)}
    return dict(registered)


def fanout_hosts(registered, hosts, changed_only: bool = False) -> list:
    """The hosts of `hosts` whose result of `registered` did not fail (and, with changed_only, changed)."""
    out = []
    for host in hosts or ():
        res = fanout_view(registered, host)
        if res.get("failed") or res.get("skipped"):
            continue
        if changed_only and not res.get("changed"):
            continue
        out.append(host)
    return out


def rollout_plan(map_registered, sync_registered, hosts) -> dict:
    """{host: [[pod, check], ...]}: the routing checks of each host, every rule (`checks` of nginx_map) in every pod
    the sync step found, in the order the per-host loop runs them."""
    plan = {}
    for host in hosts or ():
        pods = fanout_view(sync_registered, host).get("pods") or []
        checks = fanout_view(map_registered, host).get("checks") or []
        plan[host] = [[pod, check] for pod in pods for check in checks]
    return plan


def rollout_plan_hosts(plan, index) -> list:
    """The hosts of `plan` that have a check number `index` (0-based)."""
    try:
        index = int(index)
    except (TypeError, ValueError):
        raise AnsibleFilterError("rollout_plan_hosts: index must be a whole number, got %r" % (index,))
    return [host for host, checks in (plan or {}).items() if len(checks) > index]


def _answer(res, check):
    headers = (res.get("json") or {}).get("headers") if isinstance(res.get("json"), Mapping) else None
    return (headers or {}).get(check.get("response_header"), "")


def rollout_misses(registered, plan, index, host: str | None = None) -> list:
    """The hosts whose answer to check `index` (a result of the routing check task, per host or fan-out) failed or
    was not the expected value; per host, pass `host`."""
    by_host = _by_host(registered)
    if by_host is None:
        by_host = {host: registered} if host else {}
    misses = []
    for name, res in by_host.items():
        check = (plan.get(name) or [])[int(index)][1] if len((plan or {}).get(name) or []) > int(index) else None
        if check is None:
            continue
        if res.get("failed") or _answer(res, check) != check.get("expect"):
            misses.append(name)
    return misses


def _short(text, limit=1000):
    text = " ".join(str(text or "failed").split())
    return text if len(text) <= limit else text[:limit] + "..."


def rollout_failures(steps, plan=None) -> dict:
    """{host: {"step": name, "msg": reason}}: each host's first failed step of fan-out results. `steps` lists
    {"name", "result", "kind"} in order; kind `task` (the host's call failed), `synced` (also: a pod's rc was not 0
    when the wait ended) or `checks` (a looped routing check: failed or answered another value than expected)."""
    failed = {}
    for step in steps or ():
        name, registered, kind = step.get("name"), step.get("result"), step.get("kind", "task")
        if kind == "checks":
            for item in _looped(registered) or ():
                index = item.get("item")
                for host, res in item["results_by_host"].items():
                    if host in failed or not (plan or {}).get(host) or index is None or len(plan[host]) <= index:
                        continue
                    pod, check = plan[host][index]
                    if res.get("failed"):
                        failed[host] = {"step": name, "msg": _short(res.get("msg"))}
                    elif _answer(res, check) != check.get("expect"):
                        failed[host] = {"step": name, "msg": "pod %s answered %s=%r for request headers %s, expected %r"
                                        % (pod, check.get("response_header"), _answer(res, check),
                                           check.get("headers"), check.get("expect"))}
            continue
        for host, res in (_by_host(registered) or {}).items():
            if host in failed:
                continue
            if res.get("failed"):
                failed[host] = {"step": name, "msg": _short(res.get("msg"))}
            elif kind == "synced":
                late = [r.get("pod") for r in res.get("results") or () if r.get("rc") != 0]
                if late:
                    failed[host] = {"step": name, "msg": "pod(s) %s did not see the expected maps before the sync "
                                    "timeout (kubegate_sync_timeout)" % ", ".join(str(p) for p in late)}
    return failed


class FilterModule(object):
    """kubegate.multicluster rollout filters (fan-out and per-host results read alike)."""

    def filters(self):
        return {
            "fanout_view": fanout_view,
            "fanout_hosts": fanout_hosts,
            "rollout_plan": rollout_plan,
            "rollout_plan_hosts": rollout_plan_hosts,
            "rollout_misses": rollout_misses,
            "rollout_failures": rollout_failures,
        }

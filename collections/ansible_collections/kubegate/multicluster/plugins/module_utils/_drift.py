# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Drift evaluation and report writers (pure, standard library only), behind the ``drift_report`` module.

The drift check playbook (``playbooks/drift-check.yml``, role ``drift_check``) only *reads* the clusters and hands the
raw answers to ``drift_report`` together with the desired state. Everything that decides "in sync or not" lives here,
so it is unit-tested without a cluster:

``evaluate_check(check, probe=None)`` -> ``{"status", "summary", "diff", "details"}`` for one check record:

  ``{"name": <check name>, "kind": <kind>, "result": <the registered task result>, ...kind-specific keys}``

  kinds:
    ``configmap``   ``expected``: {key: text or null (absent)}; ``result``: an api_request GET of the ConfigMap
                    (status 200 or 404). Drifted when any key's live text differs, is missing, or when the
                    ConfigMap has a key not in ``expected`` (the pods include every key as a file); the diff is a
                    unified diff per key.
    ``routing``     ``expected``: the routing checks (``nginx_map`` filter, ``part='checks'``: {headers,
                    response_header, expect}); ``result``: a looped api_request through each pod's apiserver pod
                    proxy, ``item`` = [pod, check]. Drifted when a pod's backend does not receive
                    ``response_header: expect`` (or the pod does not answer): what nginx serves, whatever its files
                    say. A failed item is judged per pod (unreachable and 401/403 still fail the whole check).
    ``pods``        ``expected``: the text every pod must have loaded; ``file``: its path in the pod; ``result``: a
                    pod_exec of ``cat <file>`` (fail_on_rc false). Drifted when a pod's file differs or is missing;
                    the pods are named, each with its sha256 and a diff.
    ``objects``     ``expected``: [{path, body}]; ``result``: a looped api_request GET per path (status 200 or 404),
                    in the same order. Every field of the desired body must be equal in the live object (fields the
                    apiserver adds are ignored); lists are compared element by element and by length.
    ``apiservices`` ``result``: an api_request GET of ``/apis/apiregistration.k8s.io/v1/apiservices``. Drifted
                    when an APIService is not ``Available=True`` (each is named with its reason and message).
    ``reported``    ``result``: ``{"in_sync": bool, "diff": str, "active": bool}`` computed elsewhere (the ssh_tunnel
                    and kubectl_proxy roles' ``tasks/drift.yml``). Drifted when not in sync or not active.

  A failed ``result`` (or a failed cluster ``probe``) makes the check ``unreachable`` (connection refused, timeout,
  ssh jump host down: the result carries ``unreachable`` or ``timed_out``) or ``error`` (anything else, for example
  403). ``expected_error`` (the desired state could not be built, e.g. invalid rules) makes it ``error``.

``build_report(clusters, extra=(), run_id=..., generated_at=...)`` -> the report dict (``drift.json``);
``render_junit(report)`` and ``render_markdown(report)`` -> text. Statuses: ``in_sync``, ``drifted``,
``unreachable``, ``error``; the report's status is the most severe one (error > unreachable > drifted > in_sync) and
``EXIT_CODES`` maps it to the wrapper's exit status.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import hashlib
import json
import xml.etree.ElementTree as ET

SCHEMA = "kubegate.drift/v1"
STATUSES = ("in_sync", "drifted", "unreachable", "error")
SEVERITY = {"in_sync": 0, "drifted": 1, "unreachable": 2, "error": 3}
EXIT_CODES = {"in_sync": 0, "drifted": 3, "unreachable": 4, "error": 5}
KINDS = ("configmap", "pods", "routing", "objects", "apiservices", "reported")
SHORT_DIFF_LINES = 8
NO_TENANT = "-"


def sha256(text):
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()


def worst(statuses):
    """The most severe status of ``statuses`` (in_sync for none)."""
    found = [s for s in statuses if s in SEVERITY]
    return max(found, key=lambda s: SEVERITY[s]) if found else "in_sync"


def _check_result(status, summary, diff="", details=None):
    return {"status": status, "summary": summary, "diff": diff or "", "details": details if details is not None else {}}


def failure(result):
    """(status, message) when a registered task result is a failure, else None."""
    if not isinstance(result, dict):
        return ("error", "no result was recorded for this check (the task did not run)")
    if result.get("unreachable") or result.get("timed_out"):
        return ("unreachable", str(result.get("msg") or "unreachable"))
    if result.get("failed"):
        return ("error", str(result.get("msg") or "the check failed without a message"))
    if result.get("skipped"):
        return ("error", "the check was skipped: %s" % (result.get("skip_reason") or "condition false"))
    return None


def unified(before, after, before_name, after_name):
    """A unified diff (``-`` desired, ``+`` live); empty when equal. None means "absent"."""
    if before == after:
        return ""
    a = (before if before is not None else "")
    b = (after if after is not None else "")
    lines = list(difflib.unified_diff(a.splitlines(True), b.splitlines(True),
                                      before_name + ("" if before is not None else " (absent)"),
                                      after_name + ("" if after is not None else " (absent)"), n=2))
    out = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    return out or "--- %s\n+++ %s\n(only presence differs)\n" % (before_name, after_name)


def _eval_configmap(check, result):
    expected = check.get("expected") or {}
    status_code = result.get("status")
    live_obj = result.get("json") if status_code == 200 else None
    where = check.get("configmap") or (((live_obj or {}).get("metadata") or {}).get("name")) or "configmap"
    data = (live_obj or {}).get("data") or {}
    binary = (live_obj or {}).get("binaryData") or {}
    diffs, keys = [], []
    for key in sorted(expected):
        want, have = expected[key], data.get(key)
        if want == have:
            continue
        keys.append(key)
        diffs.append(unified(want, have, "desired/%s" % key, "live/%s/%s" % (where, key)))
    # The pods mount every key of this ConfigMap as a file of the directory nginx includes, so a key kubegate did
    # not render changes routing as much as an edited one.
    extra = sorted(k for k in set(data) | set(binary) if k not in expected)
    for key in extra:
        shown = data.get(key) if key in data else "(binaryData, %d base64 characters)\n" % len(binary[key] or "")
        diffs.append(unified(None, shown, "desired/%s" % key, "live/%s/%s" % (where, key)))
    details = {"configmap": where, "exists": live_obj is not None,
               "resource_version": ((live_obj or {}).get("metadata") or {}).get("resourceVersion"),
               "keys": dict((k, {"desired_sha256": sha256(v) if v is not None else None,
                                 "live_sha256": sha256(data.get(k)) if data.get(k) is not None else None})
                            for k, v in sorted(expected.items()))}
    if not keys and not extra:
        return _check_result("in_sync", "ConfigMap %s matches the rendered rules" % where, details=details)
    if live_obj is None:
        summary = "ConfigMap %s does not exist" % where
    else:
        missing = [k for k in keys if expected[k] is not None and data.get(k) is None]
        differ = [k for k in keys if k not in missing]
        parts = (["differs in %s" % ", ".join(differ)] if differ else []) + (
            ["misses %s" % ", ".join(missing)] if missing else []) + (
            ["has key(s) kubegate did not render: %s" % ", ".join(extra)] if extra else [])
        summary = "ConfigMap %s %s" % (where, "; ".join(parts))
    details["drifted_keys"] = keys + extra
    if extra:
        details["unexpected_keys"] = extra
    return _check_result("drifted", summary, "".join(diffs), details)


def _header(headers, name):
    """A response header value from the echo's JSON, matched case-insensitively as HTTP does."""
    for k, v in (headers or {}).items():
        if str(k).lower() == str(name).lower():
            return v if isinstance(v, str) else ", ".join(str(x) for x in v) if isinstance(v, list) else str(v)
    return ""


def _eval_routing(check, result):
    """Each controller pod's nginx, asked through the apiserver's pod proxy with every routing check's headers: the
    backend must receive ``response_header: expect``. This sees what nginx serves, whatever its files say."""
    expected = check.get("expected") or []
    answers = result.get("results")
    if not expected:
        return _check_result("in_sync", "the rules define no request-header routing to probe", details={"pods": []})
    if not isinstance(answers, list) or not answers:
        return _check_result("error", "no routing probe was sent (no controller pod was found)", details={"pods": []})
    rows, drifted, diffs = {}, [], []
    for answer in answers:
        item = answer.get("item") if isinstance(answer, dict) else None
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[1], dict):
            return _check_result("error", "a routing probe result has no (pod, check) item")
        pod, probe = str(item[0]), item[1]
        row = rows.setdefault(pod, {"pod": pod, "probes": 0, "failed": []})
        row["probes"] += 1
        sent = json.dumps(probe.get("headers") or {}, sort_keys=True)
        failed = failure(answer)
        if failed and failed[0] == "unreachable":
            return _check_result("unreachable", "%s: %s" % (pod, failed[1]))
        if failed and answer.get("status") in (401, 403):
            return _check_result("error", "%s: %s" % (pod, failed[1]))
        if failed:
            got = "(no answer: %s)" % failed[1]
        else:
            got = _header(((answer.get("json") or {}).get("headers")), probe.get("response_header"))
            if got == probe.get("expect"):
                continue
            got = got or "(not set)"
        row["failed"].append({"headers": probe.get("headers") or {}, "expect": probe.get("expect"), "got": got})
        diffs.append("pod %s, request headers %s:\n-%s: %s\n+%s: %s\n" % (
            pod, sent, probe.get("response_header"), probe.get("expect"), probe.get("response_header"), got))
    for pod, row in sorted(rows.items()):
        row["in_sync"] = not row["failed"]
        if row["failed"]:
            drifted.append(pod)
    details = {"pods": [rows[p] for p in sorted(rows)]}
    if not drifted:
        return _check_result("in_sync", "%d pod(s) route all %d request(s) as desired" % (len(rows), len(expected)),
                             details=details)
    details["drifted_pods"] = drifted
    return _check_result("drifted", "%d of %d pod(s) route differently: %s" % (len(drifted), len(rows),
                                                                               ", ".join(drifted)),
                         "".join(diffs), details)


def _eval_pods(check, result):
    expected = check.get("expected") or ""
    path = check.get("file") or "map file"
    want = sha256(expected)
    pods = result.get("results") or []
    if not pods:
        return _check_result("error", "no controller pod matched, nothing to compare", details={"pods": []})
    differ, diffs, rows = [], [], []
    for pod in pods:
        name = pod.get("pod") or "?"
        if pod.get("rc") != 0:
            problem = (pod.get("msg") or (pod.get("stderr") or "").strip() or "exit code %s" % pod.get("rc"))
            rows.append({"pod": name, "sha256": None, "in_sync": False, "problem": problem})
            differ.append(name)
            diffs.append("pod %s: %s cannot be read: %s\n" % (name, path, problem))
            continue
        text = pod.get("stdout") or ""
        got = sha256(text)
        rows.append({"pod": name, "sha256": got, "in_sync": got == want})
        if got != want:
            differ.append(name)
            diffs.append(unified(expected, text, "desired/%s" % path, "%s:%s" % (name, path)))
    details = {"file": path, "desired_sha256": want, "pods": rows}
    if not differ:
        return _check_result("in_sync", "%d pod(s) loaded the desired map (%s)" % (len(rows), want[:12]),
                             details=details)
    details["drifted_pods"] = differ
    return _check_result("drifted", "%d of %d pod(s) differ: %s" % (len(differ), len(rows), ", ".join(differ)),
                         "".join(diffs), details)


def project(desired, live):
    """``live`` reduced to the fields ``desired`` sets (what a server-side apply of ``desired`` owns)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return live
        return dict((k, project(v, live.get(k))) for k, v in desired.items() if k in live)
    if isinstance(desired, list) and isinstance(live, list) and len(desired) == len(live):
        return [project(d, v) for d, v in zip(desired, live)]
    return live


def _dump(obj):
    return json.dumps(obj, indent=2, sort_keys=True) + "\n" if obj is not None else None


def _eval_objects(check, result):
    expected = check.get("expected") or []
    answers = result.get("results")
    if not isinstance(answers, list) or len(answers) != len(expected):
        return _check_result("error", "expected one answer per desired object (%d), got %s"
                             % (len(expected), len(answers) if isinstance(answers, list) else "none"))
    drifted, diffs, rows = [], [], []
    for want, answer in zip(expected, answers):
        path = want.get("path") or "?"
        failed = failure(answer)
        if failed:
            return _check_result(failed[0], "%s: %s" % (path, failed[1]))
        body = want.get("body") or {}
        live = answer.get("json") if answer.get("status") == 200 else None
        name = "%s %s" % (body.get("kind", "object"), "/".join(
            p for p in ((body.get("metadata") or {}).get("namespace"), (body.get("metadata") or {}).get("name")) if p))
        if live is None:
            drifted.append(name)
            rows.append({"object": name, "path": path, "state": "missing"})
            diffs.append(unified(_dump(body), None, "desired %s" % name, "live %s" % name))
            continue
        seen = project(body, live)
        if seen == body:
            rows.append({"object": name, "path": path, "state": "in_sync"})
            continue
        drifted.append(name)
        rows.append({"object": name, "path": path, "state": "differs"})
        diffs.append(unified(_dump(body), _dump(seen), "desired %s" % name, "live %s" % name))
    details = {"objects": rows}
    if not drifted:
        return _check_result("in_sync", "%d object(s) match" % len(rows), details=details)
    details["drifted_objects"] = drifted
    return _check_result("drifted", "%d of %d object(s) differ or are missing: %s"
                         % (len(drifted), len(rows), ", ".join(drifted)), "".join(diffs), details)


def _available(apiservice):
    for cond in ((apiservice.get("status") or {}).get("conditions") or []):
        if cond.get("type") == "Available":
            return cond
    return None


def _eval_apiservices(check, result):
    items = ((result.get("json") or {}).get("items")) or []
    rows, down = [], []
    for item in sorted(items, key=lambda i: (i.get("metadata") or {}).get("name", "")):
        name = (item.get("metadata") or {}).get("name", "?")
        cond = _available(item) or {}
        ok = cond.get("status") == "True"
        rows.append({"apiservice": name, "available": ok, "reason": cond.get("reason"),
                     "message": cond.get("message")})
        if not ok:
            down.append(name)
    details = {"apiservices": rows}
    if not down:
        return _check_result("in_sync", "%d APIService(s) Available" % len(rows), details=details)
    diff = "".join("%s: Available=%s (%s) %s\n" % (
        r["apiservice"], "True" if r["available"] else "False", r["reason"] or "no condition", r["message"] or "")
        for r in rows if not r["available"])
    details["unavailable"] = down
    return _check_result("drifted", "%d of %d APIService(s) not Available: %s"
                         % (len(down), len(rows), ", ".join(down)), diff, details)


def _eval_reported(check, result):
    in_sync, active = result.get("in_sync"), result.get("active")
    if not isinstance(in_sync, bool):
        return _check_result("error", "the drift fact has no boolean in_sync (contract: {cluster, in_sync, diff, "
                                      "active})")
    details = {"active": active}
    if check.get("host"):
        details["host"] = check["host"]
    where = " on %s" % check["host"] if check.get("host") else ""
    if in_sync and active is not False:
        return _check_result("in_sync", "unit in sync and active%s" % where, details=details)
    problems = ([] if in_sync else ["unit differs from the desired one"]) + (
        ["unit not active"] if active is False else [])
    diff = result.get("diff") or ""
    if active is False and "not active" not in diff:
        diff += ("" if not diff or diff.endswith("\n") else "\n") + "unit not active%s\n" % where
    return _check_result("drifted", "; ".join(problems) + where, diff, details)


_EVALUATORS = {"configmap": _eval_configmap, "pods": _eval_pods, "routing": _eval_routing,
               "objects": _eval_objects, "apiservices": _eval_apiservices, "reported": _eval_reported}
# Kinds whose result is a loop: a failed item is judged per item (a pod that does not answer is drift of that pod),
# not as a failure of the whole check.
PER_ITEM = ("routing",)


def evaluate_check(check, probe=None):
    """Status of one check record (see the module docstring); never raises on odd input."""
    kind = check.get("kind")
    if kind not in _EVALUATORS:
        return _check_result("error", "unknown check kind %r (expected one of %s)" % (kind, ", ".join(KINDS)))
    if probe is not None:
        failed = failure(probe)
        if failed:
            return _check_result(failed[0], failed[1])
    if check.get("expected_error"):
        return _check_result("error", "the desired state could not be built: %s" % check["expected_error"])
    result = check.get("result")
    looped = kind in PER_ITEM and isinstance(result, dict) and isinstance(result.get("results"), list) \
        and not result.get("skipped")
    failed = None if looped else failure(result)
    if failed:
        return _check_result(failed[0], failed[1])
    try:
        return _EVALUATORS[kind](check, result)
    except (AttributeError, TypeError, ValueError, KeyError) as e:
        return _check_result("error", "could not evaluate the %s check: %s: %s" % (kind, type(e).__name__, e))


TUNNEL_FACTS = {"ssh_tunnel": "kubegate_tunnel_drift", "kubectl_proxy": "kubegate_kubectl_proxy_drift"}


def tunnel_entries(tunnel_hosts, tenants=None):
    """Cluster entries (``reported`` checks) from the tunnel hosts' drift facts.

    ``tunnel_hosts``: [{host, probe, error, facts: {ssh_tunnel: [..] or None, kubectl_proxy: [..] or None}}] - a
    role that is not installed is absent from ``facts``; None means it ran but did not set its fact. Each fact item
    ``{cluster, in_sync, diff, active}`` becomes check ``<role>@<host>`` of that cluster. A tunnel host that cannot
    be reached or whose checks failed is reported as cluster ``<host>``, check ``tunnel_host``."""
    tenants = tenants or {}
    out = []
    for th in tunnel_hosts or []:
        host = str(th.get("host") or "?")
        own = {"cluster": host, "tenant": tenants.get(host) or NO_TENANT}
        if th.get("probe") is not None and failure(th.get("probe")):
            out.append({"cluster": host, "tenant": own["tenant"],
                        "checks": [{"name": "tunnel_host", "kind": "reported", "result": th.get("probe")}]})
            continue
        if th.get("error"):
            out.append({"cluster": host, "tenant": own["tenant"],
                        "checks": [{"name": "tunnel_host", "kind": "reported",
                                    "result": {"failed": True, "msg": str(th["error"])}}]})
        for role, items in sorted((th.get("facts") or {}).items()):
            if th.get("error") and items is None:
                continue
            if not isinstance(items, list):
                out.append({"cluster": host, "tenant": own["tenant"], "checks": [{
                    "name": role, "kind": "reported", "result": {
                        "failed": True, "msg": "roles/%s tasks/drift.yml did not set %s (a list of {cluster, in_sync, "
                                               "diff, active})" % (role, TUNNEL_FACTS.get(role, "its drift fact"))}}]})
                continue
            for item in items:
                item = item if isinstance(item, dict) else {}
                cluster = str(item.get("cluster") or host)
                out.append({"cluster": cluster, "tenant": tenants.get(cluster) or NO_TENANT,
                            "checks": [{"name": role, "kind": "reported", "host": host, "result": item}]})
    return out


def counts(statuses):
    out = dict((s, 0) for s in STATUSES)
    for s in statuses:
        out[s] = out.get(s, 0) + 1
    return out


def build_report(clusters, extra=(), run_id="", generated_at=""):
    """The report dict: {schema, run_id, generated_at, status, exit_code, counts, tenants: {tenant: {cluster:
    {status, checks: {name: result}}}}}. ``clusters``: [{cluster, tenant, probe, checks: [record]}]; ``extra``:
    further [{cluster, tenant, checks: [record]}] (for example from tunnel hosts), merged into the same clusters."""
    tenants = {}
    for entry in list(clusters or []) + list(extra or []):
        name = str(entry.get("cluster") or "?")
        tenant = str(entry.get("tenant") or NO_TENANT)
        slot = tenants.setdefault(tenant, {}).setdefault(name, {"status": "in_sync", "checks": {}})
        for check in entry.get("checks") or []:
            check_name = str(check.get("name") or check.get("kind") or "check")
            if check.get("host") and check.get("kind") == "reported":
                check_name = "%s@%s" % (check_name, check["host"])
            slot["checks"][check_name] = evaluate_check(check, entry.get("probe"))
        if not slot["checks"] and entry.get("probe") is not None:
            failed = failure(entry.get("probe"))
            if failed:
                slot["checks"]["apiserver"] = _check_result(failed[0], failed[1])
    all_statuses = []
    for tenant in tenants.values():
        for cluster in tenant.values():
            cluster["status"] = worst(c["status"] for c in cluster["checks"].values())
            all_statuses.extend(c["status"] for c in cluster["checks"].values())
    status = worst(all_statuses) if all_statuses else "error"
    report = {"schema": SCHEMA, "run_id": run_id, "generated_at": generated_at, "status": status,
              "exit_code": EXIT_CODES[status], "counts": counts(all_statuses),
              "tenants": dict((t, dict(sorted(c.items()))) for t, c in sorted(tenants.items()))}
    if not all_statuses:
        report["message"] = "no cluster was checked (empty inventory or --limit matched no cluster)"
    return report


def iter_checks(report):
    """(tenant, cluster, check name, check result) in report order."""
    for tenant, clusters in report.get("tenants", {}).items():
        for cluster, data in clusters.items():
            for name, check in data.get("checks", {}).items():
                yield tenant, cluster, name, check


def render_json(report):
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def render_junit(report):
    """JUnit XML: a testsuite per tenant, a testcase per cluster x check (drifted: a failure, unreachable and error:
    an error)."""
    root = ET.Element("testsuites", name="kubegate drift check %s" % report.get("run_id", ""))
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for tenant, clusters in report.get("tenants", {}).items():
        suite = ET.SubElement(root, "testsuite", name="kubegate.drift.%s" % tenant)
        n = {"tests": 0, "failures": 0, "errors": 0}
        for cluster, data in clusters.items():
            for name, check in data.get("checks", {}).items():
                case = ET.SubElement(suite, "testcase", classname="%s.%s" % (tenant, cluster), name=name)
                n["tests"] += 1
                body = check["summary"] + ("\n\n" + check["diff"] if check.get("diff") else "")
                if check["status"] == "drifted":
                    n["failures"] += 1
                    ET.SubElement(case, "failure", message=check["summary"], type="drifted").text = body
                elif check["status"] in ("unreachable", "error"):
                    n["errors"] += 1
                    ET.SubElement(case, "error", message=check["summary"], type=check["status"]).text = body
                else:
                    ET.SubElement(case, "system-out").text = check["summary"]
        for k, v in n.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    if hasattr(ET, "indent"):
        ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_ICONS = {"in_sync": "in sync", "drifted": "**DRIFTED**", "unreachable": "**UNREACHABLE**", "error": "**ERROR**"}


def _cell(text):
    return (text or "").replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def short_diff(diff, lines=SHORT_DIFF_LINES):
    """The changed lines of a diff (headers and context dropped), at most ``lines`` of them."""
    changed = [line for line in (diff or "").splitlines()
               if not line.startswith(("---", "+++", "@@", " ")) and line.strip()]
    more = len(changed) - lines
    return "\n".join(changed[:lines] + (["... %d more line(s)" % more] if more > 0 else []))


def render_markdown(report):
    """A table per tenant (cluster, check, status, summary and a short diff), then the full diffs."""
    c = report.get("counts", {})
    out = ["# kubegate drift check %s" % report.get("run_id", ""), "",
           "Overall: **%s** (exit code %s) - %s in sync, %s drifted, %s unreachable, %s error(s). Generated %s." % (
               report.get("status"), report.get("exit_code"), c.get("in_sync", 0), c.get("drifted", 0),
               c.get("unreachable", 0), c.get("error", 0), report.get("generated_at", "")), ""]
    if report.get("message"):
        out += [report["message"], ""]
    full = []
    for tenant, clusters in report.get("tenants", {}).items():
        out += ["## Tenant %s" % tenant, "", "| cluster | check | status | details |", "|---|---|---|---|"]
        for cluster, data in clusters.items():
            for name, check in data.get("checks", {}).items():
                detail = _cell(check["summary"])
                if check.get("diff") and check["status"] == "drifted":
                    detail += "".join("<br>`%s`" % _cell(line.replace("`", "'"))
                                      for line in short_diff(check["diff"]).splitlines())
                out.append("| %s | %s | %s | %s |" % (
                    _cell(cluster), _cell(name), _ICONS.get(check["status"]), detail))
                if check.get("diff") and check["status"] != "in_sync":
                    full.append((tenant, cluster, name, check["diff"]))
        out.append("")
    if full:
        out += ["## Diffs (`-` desired, `+` live)", ""]
        for tenant, cluster, name, diff in full:
            fence = "````" if "```" in diff else "```"
            out += ["### %s / %s / %s" % (tenant, cluster, name), "", fence + "diff", diff.rstrip("\n"), fence, ""]
    return "\n".join(out).rstrip("\n") + "\n"

# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Pod exec across one or many pods: target selection, container choice, rolling batches, concurrency, result shaping.

Works on a `client` with two capabilities (provided by the connection layer):
  client.get_json(path, query=None) -> dict            raises the collection's error type on HTTP errors
  client.open_upgrade() -> (socket, host_header, headers)  a connected, verified socket to the apiserver and the
                                                          authentication/impersonation headers for an upgrade request
and a `fail(message, **details)` callable that raises the collection's error type.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shlex
import socket
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from urllib.parse import quote, urlencode
except ImportError:  # pragma: no cover - Python 2 is not supported, kept for import-time safety in sanity tests
    from urllib import quote, urlencode

from . import exec as wsexec
from .errors import KubegateError
from .runner import connect

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def split_command(command):
    """argv list as given, or a string split like a POSIX shell would (no expansion, no pipes)."""
    if isinstance(command, (list, tuple)):
        argv = [str(a) for a in command]
    else:
        try:
            argv = shlex.split(str(command))
        except ValueError as e:
            raise ValueError("command could not be split like a shell would (%s); pass an argv list instead" % e)
    if not argv or not argv[0]:
        raise ValueError("command is empty; give the program and its arguments, e.g. ['nginx', '-s', 'reload']")
    return argv


def choose_container(pod, wanted):
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    pod_name = pod["metadata"]["name"]
    if wanted:
        if wanted not in names:
            return None, "container %r not found in pod %s (containers: %s)" % (wanted, pod_name, ", ".join(names) or "none")
        return wanted, None
    default = ((pod.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if default and default in names:
        return default, None
    if not names:
        return None, "pod %s has no containers" % pod_name
    return names[0], None


def select_pods(client, namespace, pod=None, label_selector=None, field_selector=None, fail=None):
    """The pods to run in, sorted by name. Terminating pods are left out; a pod that is not Running is an error."""
    base = "/api/v1/namespaces/%s/pods" % quote(namespace, safe="")
    if pod:
        items = [client.get_json("%s/%s" % (base, quote(pod, safe="")))]
        what = "pod %s/%s" % (namespace, pod)
    else:
        query = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        items = client.get_json(base, query=query).get("items") or []
        items = [p for p in items if not (p.get("metadata") or {}).get("deletionTimestamp")]
        what = "selector %s in namespace %s" % (
            " ".join(x for x in ("labels '%s'" % label_selector if label_selector else "",
                                 "fields '%s'" % field_selector if field_selector else "") if x), namespace)
        if not items:
            fail("no pod matches %s; check the selector (kubectl get pods -n %s -l ...)" % (what, namespace))
    not_running = ["%s (%s)" % (p["metadata"]["name"], (p.get("status") or {}).get("phase", "unknown"))
                   for p in items if (p.get("status") or {}).get("phase") != "Running"]
    if not_running:
        fail("cannot exec into pods that are not Running: %s" % ", ".join(not_running))
    return sorted(items, key=lambda p: p["metadata"]["name"])


def exec_path(namespace, pod, container, argv, stdin):
    query = [("command", a) for a in argv] + [("container", container), ("stdout", "true"), ("stderr", "true")]
    if stdin is not None:
        query.append(("stdin", "true"))
    return "/api/v1/namespaces/%s/pods/%s/exec?%s" % (quote(namespace, safe=""), quote(pod, safe=""), urlencode(query))


def _text(data):
    return data.decode("utf-8", "replace")


def exec_one(client, namespace, pod, container, argv, stdin, timeout, max_output):
    """Run in one pod; never raises for per-pod problems: they go into the result's `msg` (and `rc`)."""
    started = time.monotonic()
    result = {"pod": pod, "container": container, "namespace": namespace, "rc": None, "stdout": "", "stderr": ""}
    sock = None
    try:
        sock, host, headers = client.open_upgrade()
        res = wsexec.run(sock, client.path_prefix + exec_path(namespace, pod, container, argv, stdin), host, headers=headers,
                         stdin=stdin, timeout=timeout, max_output=max_output)
        result.update(rc=res.rc, stdout=_text(res.stdout), stderr=_text(res.stderr), protocol=res.protocol)
        if res.stdout_truncated or res.stderr_truncated:
            result["truncated"] = True
            result["msg"] = "output was larger than max_output_bytes (%d); the rest was dropped" % max_output
        if res.rc is None:
            message = res.error or "the command did not report an exit status"
            lowered = message.lower()
            if "executable file not found" in lowered or "no such file or directory" in lowered:
                result.update(rc=127, msg="command not found in container %s of pod %s: %s" % (container, pod, argv[0]))
                result["stderr"] = result["stderr"] or message
            elif "permission denied" in lowered or "exec format error" in lowered:
                result.update(rc=126, msg="command not executable in container %s of pod %s: %s" % (container, pod, argv[0]))
                result["stderr"] = result["stderr"] or message
            else:
                result["msg"] = "exec failed in pod %s: %s" % (pod, message)
    except wsexec.ExecProtocolError as e:
        if e.kind == "http":
            result["msg"] = describe_refused_upgrade(e, namespace, pod,
                                                     via_proxy=getattr(client.cluster, "plain_http", False))
            result["http_status"] = e.http_status
        else:
            result["msg"] = "exec in pod %s failed: %s" % (pod, e)
    except socket.timeout:
        result["msg"] = "exec in pod %s timed out after %ss (the command may still be running)" % (pod, timeout)
        result["timed_out"] = True
    except (OSError, ValueError) as e:
        result["msg"] = "exec in pod %s failed: %s" % (pod, e)
    finally:
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
    result["duration"] = round(time.monotonic() - started, 3)
    return result


def describe_refused_upgrade(err, namespace, pod, via_proxy=False):
    """The message for an exec upgrade the server refused. A 403 whose body is not a Kubernetes Status comes from a
    proxy in front of the apiserver (kubectl proxy answers a plain "Forbidden" for paths in its --reject-paths, which
    by default include pods/exec and pods/attach), not from RBAC."""
    import json
    message = ""
    status = False
    try:
        body = json.loads(err.body.decode("utf-8", "replace")) if err.body else {}
        message = body.get("message", "") if isinstance(body, dict) else ""
        status = isinstance(body, dict) and body.get("kind") == "Status"
    except ValueError:
        message = err.body[:200].decode("utf-8", "replace").strip() if err.body else ""
    if err.http_status == 403 and not status:
        return ("exec in pod %s/%s was refused by %s with a plain 403 (%r, not a Kubernetes Status, so not RBAC): "
                "kubectl proxy blocks pods/exec and pods/attach by default (--reject-paths). Run exec against the "
                "apiserver directly (https with a least-privilege identity), or - dangerous - let exec through the "
                "proxy (role kubectl_proxy: kubectl_proxy_dangerous_allow_exec)"
                % (namespace, pod, "the kubectl proxy" if via_proxy else "a proxy in front of the apiserver",
                   message or "Forbidden"))
    if err.http_status == 403:
        return ("exec forbidden in pod %s/%s: %s. The identity needs RBAC verbs get and create on pods/exec in namespace %s"
                % (namespace, pod, message or "forbidden", namespace))
    if err.http_status == 404:
        return "pod %s/%s not found for exec: %s" % (namespace, pod, message or "not found")
    if err.http_status == 401:
        return "the apiserver rejected the credentials for exec (401): the token is invalid or expired"
    return "exec upgrade for pod %s/%s refused with HTTP %s: %s" % (namespace, pod, err.http_status, message)


def run_in_pods(client, pods, argv, stdin=None, container=None, timeout=60, max_concurrency=10, batch_size=0,
                max_output=wsexec.DEFAULT_MAX_OUTPUT, stop_on_failure=True):
    """Run in every pod: batches of `batch_size` (0 = all at once) one after another, up to `max_concurrency` at a time
    inside a batch. After a batch with a failure (rc != 0 or no rc) the remaining pods are skipped when
    stop_on_failure. Returns (results in pod order, skipped pod names)."""
    targets = []
    results = []
    for pod in pods:
        chosen, problem = choose_container(pod, container)
        name = pod["metadata"]["name"]
        if problem:
            results.append({"pod": name, "container": container, "namespace": pod["metadata"].get("namespace"),
                            "rc": None, "stdout": "", "stderr": "", "msg": problem, "duration": 0.0})
        else:
            targets.append((name, pod["metadata"].get("namespace"), chosen))
    if results and stop_on_failure:
        return results, [t[0] for t in targets]
    size = batch_size if batch_size and batch_size > 0 else len(targets) or 1
    skipped = []
    workers = max(1, min(max_concurrency, size))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(targets), size):
            batch = targets[start:start + size]
            futures = [pool.submit(exec_one, client, ns, name, chosen, argv, stdin, timeout, max_output)
                       for name, ns, chosen in batch]
            batch_results = [f.result() for f in futures]
            results.extend(batch_results)
            if stop_on_failure and any(r["rc"] != 0 for r in batch_results):
                skipped = [t[0] for t in targets[start + size:]]
                break
    results.sort(key=lambda r: r["pod"])
    return results, skipped


# ---------------------------------------------------------------------------------------------------------------- task

def _summary(results, limit=3):
    parts = []
    for r in results[:limit]:
        detail = r.get("msg") or (r.get("stderr") or "").strip().splitlines()[-1:] or [""]
        detail = detail if isinstance(detail, str) else detail[0]
        parts.append("%s rc=%s%s" % (r["pod"], r["rc"], (": " + detail[:200]) if detail else ""))
    more = len(results) - limit
    return "; ".join(parts) + (" (and %d more)" % more if more > 0 else "")


def run_pod_exec(params, ctx):
    """The pod_exec task: select pods, then run the command in each (rolling batches), or report what would run."""
    try:
        argv = split_command(params.get("command"))
    except ValueError as e:
        raise KubegateError(str(e))
    namespace = params.get("namespace") or "default"
    for option in ("max_concurrency", "batch_size", "max_output_bytes"):
        value = params.get(option)
        if value is not None and value < (1 if option != "batch_size" else 0):
            raise KubegateError("%s must be at least %d, got %s" % (option, 1 if option != "batch_size" else 0, value))
    client = connect(params, ctx)

    def fail(message, **details):
        raise KubegateError("%s: %s" % (client.where, message), **details)

    pods = select_pods(client, namespace, pod=params.get("pod"), label_selector=params.get("label_selector"),
                       field_selector=params.get("field_selector"), fail=fail)
    names = [p["metadata"]["name"] for p in pods]
    read_only = bool(params.get("read_only"))
    if ctx.check_mode and not read_only:
        return {"changed": True, "pods": names, "command": argv, "results": [],
                "msg": "check mode: would run %s in %d pod(s) of namespace %s: %s (set read_only: true to run a "
                       "command that changes nothing in check mode)" % (argv, len(names), namespace, ", ".join(names))}
    results, skipped = run_in_pods(client, pods, argv, stdin=params.get("stdin"), container=params.get("container"),
                                   timeout=params.get("timeout") or 30,
                                   max_concurrency=params.get("max_concurrency") or 10,
                                   batch_size=params.get("batch_size") or 0,
                                   max_output=params.get("max_output_bytes") or wsexec.DEFAULT_MAX_OUTPUT,
                                   stop_on_failure=params.get("fail_on_rc", True))
    out = {"changed": not read_only and any(r["rc"] is not None for r in results), "results": results,
           "pods": names, "command": argv}
    if skipped:
        out["skipped_pods"] = skipped
    if params.get("pod") and len(results) == 1:
        rc = results[0]["rc"]
        out.update(rc=rc, exit_code=rc, stdout=results[0]["stdout"], stderr=results[0]["stderr"])
    errors = [r for r in results if r["rc"] is None]
    nonzero = [r for r in results if r["rc"] not in (None, 0)]
    denied = [r for r in errors if r.get("http_status") in (401, 403)]
    if denied:
        raise KubegateError("%s: %s (%d of %d pod(s) refused)"
                            % (client.where, denied[0]["msg"], len(denied), len(names)), **out)
    if errors:
        raise KubegateError("%s: exec failed in %d of %d pod(s): %s%s" % (
            client.where, len(errors), len(names), _summary(errors),
            "; not run in %s" % ", ".join(skipped) if skipped else ""), **out)
    if nonzero and params.get("fail_on_rc", True):
        raise KubegateError("%s: %s exited non-zero in %d of %d pod(s): %s%s" % (
            client.where, argv[0], len(nonzero), len(names), _summary(nonzero),
            "; not run in %s (stopped after the failing batch)" % ", ".join(skipped) if skipped else ""), **out)
    # ansible-core's TaskExecutor fails a result holding a non-zero `rc` only when the result has no `failed` key:
    # saying so explicitly keeps `rc` for a tolerated non-zero exit (fail_on_rc: false) without failing the task.
    out["failed"] = False
    return out

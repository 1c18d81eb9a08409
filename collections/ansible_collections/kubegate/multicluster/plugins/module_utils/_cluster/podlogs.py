# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Pod logs across one or many pods: the pod_logs task (selection, per-pod reads in parallel, result shaping).

Why a module of its own: reading logs through api_request returns one opaque body, cannot follow several pods at
once, and cannot stop when a line appears. Here every read (plain or `follow`) is one GET of the `log` subresource
through the shared transport (same TLS, auth, proxy/jump/tunnel and retry loop as every other module), bounded three
ways so a chatty or never-ending stream cannot hang a play or exhaust memory:
  * time: an overall deadline per read (`follow_timeout` when following, else the connection `timeout`);
  * memory: at most `max_bytes` kept per pod (the transport stops reading beyond that);
  * lines: at most `max_lines` kept per pod, and `until` ends the read at the first matching line.
The pure parts (StreamStop, split_lines, compile_until, stop_reason) are unit-tested without a cluster.
"""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from .api import quote_segment
from .errors import KubegateError, http_error
from .podexec import choose_container
from .runner import connect

DEFAULT_MAX_BYTES = 1048576  # the max_bytes default in spec.py
DEFAULT_FOLLOW_TIMEOUT = 10.0
# stopped reasons, in the words the RETURN documentation uses
END, TIMEOUT, UNTIL, MAX_LINES, MAX_BYTES = "end", "timeout", "until", "max_lines", "max_bytes"


# ---------------------------------------------------------------------------------------------------------------- pure parts

def compile_until(pattern: str | None):
    """The `until` regex compiled, or None; a bad pattern is a clear error before anything is sent."""
    if pattern is None or pattern == "":
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise KubegateError("until %r is not a valid Python regular expression: %s (escape literal characters such as "
                            "'[' or '(' with a backslash, or use re.escape)" % (pattern, e))


def split_lines(data: bytes, max_lines: int | None = None, max_bytes: int | None = None, cut: bool = False,
                until=None) -> tuple[list[str], bool, bool]:
    """(lines, truncated, matched) from raw log bytes.

    Lines are split on '\\n' and decoded as UTF-8 (invalid bytes replaced). At most `max_bytes` bytes (counting each
    line's newline) and `max_lines` lines are kept; `truncated` tells that something was left out. With `cut` the data
    ended mid-stream (the byte cap stopped the read), so a final line without its newline is incomplete and is dropped;
    otherwise it is real content (a line still being written when the read ended) and is kept. With `until` (a
    compiled regex) the lines stop at the first line it matches (that line included) and `matched` is true.
    """
    parts = data.split(b"\n")
    tail = parts.pop()   # b"" when the data ends with a newline
    truncated = False
    if tail:
        if cut:
            truncated = True
        else:
            parts.append(tail)
    lines = []
    size = 0
    matched = False
    for raw in parts:
        if max_lines is not None and len(lines) >= max_lines:
            truncated = True
            break
        if max_bytes is not None and size + len(raw) + 1 > max_bytes:
            truncated = True
            break
        size += len(raw) + 1
        line = raw.decode("utf-8", "replace")
        lines.append(line)
        if until is not None and until.search(line):
            matched = True
            break
    return lines, truncated, matched


class StreamStop(object):
    """The `stream_until` callback of one streaming read: true (stop reading) once `until` matched a complete line or
    `max_lines` complete lines arrived. Keeps only the current unfinished line (bounded by the transport's byte cap),
    not the stream: the lines returned are split from the bytes the transport kept, so a retried request (the
    transport retries a GET whose connection broke) never mixes two attempts' lines into the result."""

    def __init__(self, until=None, max_lines: int | None = None):
        self.until = until
        self.max_lines = max_lines
        self.lines = 0
        self.partial = b""
        self.reason = None

    def __call__(self, chunk: bytes) -> bool:
        data = self.partial + chunk
        complete = data.split(b"\n")
        self.partial = complete.pop()
        for raw in complete:
            self.lines += 1
            if self.until is not None and self.until.search(raw.decode("utf-8", "replace")):
                self.reason = UNTIL
                return True
            if self.max_lines is not None and self.lines >= self.max_lines:
                self.reason = MAX_LINES
                return True
        return False


def stop_reason(stop: StreamStop, truncated: bool, matched: bool, line_capped: bool, deadline: float,
                now: float | None = None) -> str:
    """Why a read ended: until matched, a cap was reached, the deadline passed, or the stream ended by itself."""
    if matched:
        return UNTIL
    if truncated and not line_capped:
        return MAX_BYTES
    if line_capped or stop.reason == MAX_LINES:
        return MAX_LINES
    if (time.monotonic() if now is None else now) >= deadline:
        return TIMEOUT
    return END


def log_query(params: dict, container: str) -> list[tuple[str, str]]:
    """The query of GET .../pods/NAME/log for these options (only the ones set)."""
    query = [("container", container)]
    for option, name in (("since_seconds", "sinceSeconds"), ("tail_lines", "tailLines"), ("limit_bytes", "limitBytes")):
        if params.get(option) is not None:
            query.append((name, str(params[option])))
    for option in ("follow", "previous", "timestamps"):
        if params.get(option):
            query.append((option, "true"))
    return query


def check_params(params: dict) -> None:
    """Refuse numbers the apiserver would refuse (or that make no sense) with the option's name, before connecting."""
    minimum = {"since_seconds": 1, "tail_lines": 0, "limit_bytes": 1, "max_lines": 1, "max_bytes": 1,
               "max_concurrency": 1}
    for option, low in minimum.items():
        value = params.get(option)
        if value is not None and value < low:
            raise KubegateError("%s must be at least %d, got %s" % (option, low, value))
    follow_timeout = params.get("follow_timeout")
    if follow_timeout is not None and follow_timeout <= 0:
        raise KubegateError("follow_timeout must be more than 0 seconds, got %s" % follow_timeout)


# ---------------------------------------------------------------------------------------------------------------- reads

def select_pods(client, namespace: str, name: str | None, label_selector: str | None, field_selector: str | None):
    """The pods to read, sorted by name (pods of any phase: finished pods keep their logs)."""
    base = "/api/v1/namespaces/%s/pods" % quote_segment(namespace)
    if name:
        pod = client.get_json("%s/%s" % (base, quote_segment(name)), accepted={200, 404})
        if pod is None:
            raise KubegateError("%s: pod %s not found in namespace %s; check the name (kubectl get pods -n %s)"
                                % (client.where, name, namespace, namespace), status=404)
        return [pod]
    query = {}
    if label_selector:
        query["labelSelector"] = label_selector
    if field_selector:
        query["fieldSelector"] = field_selector
    items = client.get_json(base, query=query).get("items") or []
    if not items:
        given = (("labels", label_selector), ("fields", field_selector))
        shown = ", ".join("%s '%s'" % (what, value) for what, value in given if value)
        raise KubegateError("%s: no pod matches %s in namespace %s; check the selector (kubectl get pods -n %s -l ...)"
                            % (client.where, shown, namespace, namespace))
    return sorted(items, key=lambda p: p["metadata"]["name"])


def read_one(client, namespace: str, pod: str, container: str, params: dict, until, deadline: float) -> dict:
    """Read one container's log; never raises for a per-pod problem (it goes into the result's `msg`)."""
    started = time.monotonic()
    max_bytes = params.get("max_bytes") or DEFAULT_MAX_BYTES
    max_lines = params.get("max_lines")
    result = {"pod": pod, "namespace": namespace, "container": container, "lines": [], "truncated": False,
              "matched": False}
    path = "/api/v1/namespaces/%s/pods/%s/log" % (quote_segment(namespace), quote_segment(pod))
    stop = StreamStop(until, max_lines)
    try:
        response = client.request("GET", path, log_query(params, container), check=False, max_body=max_bytes,
                                  deadline=deadline, stream_until=stop)
    except KubegateError as e:
        if e.details.get("timed_out") and params.get("follow"):
            # the deadline passed before the apiserver answered: nothing was logged that we could read
            result.update(stopped=TIMEOUT, bytes=0, duration=round(time.monotonic() - started, 3),
                          msg="%s: no answer for the log of pod %s/%s within follow_timeout (%ss)"
                              % (client.where, namespace, pod, params.get("follow_timeout")))
            return result
        result.update(stopped="error", msg=e.msg, duration=round(time.monotonic() - started, 3))
        return result
    if not 200 <= response.status < 300:
        error = http_error(client.where, "GET", path, response.status, response.body, response.reason)
        msg = error.msg
        if params.get("previous") and response.status == 400:
            msg += (" (previous: true reads the log of the container's previous instance, which exists only after "
                    "container %s of pod %s restarted)" % (container, pod))
        result.update(stopped="error", msg=msg, http_status=response.status,
                      duration=round(time.monotonic() - started, 3))
        return result
    lines, truncated, matched = split_lines(response.body, max_lines, max_bytes, cut=response.truncated, until=until)
    line_capped = max_lines is not None and (len(lines) >= max_lines or stop.reason == MAX_LINES) and not matched
    truncated = truncated or response.truncated
    result.update(lines=lines, truncated=truncated, matched=matched, bytes=len(response.body),
                  stopped=stop_reason(stop, truncated, matched, line_capped, deadline),
                  duration=round(time.monotonic() - started, 3))
    return result


def run_pod_logs(params: dict, ctx) -> dict:
    """The pod_logs task: select pods, read (or follow) each pod's log in parallel, report per pod. Read-only, so it
    runs in check mode too and never reports a change."""
    check_params(params)
    until = compile_until(params.get("until"))
    namespace = params.get("namespace") or "default"
    client = connect(params, ctx)
    pods = select_pods(client, namespace, params.get("name"), params.get("label_selector"),
                       params.get("field_selector"))
    names = [p["metadata"]["name"] for p in pods]
    concurrency = params.get("max_concurrency") or 10
    if params.get("follow") and len(pods) > concurrency:
        raise KubegateError("%s: follow reads every selected pod at once, but %d pods match and max_concurrency is %d "
                            "(pods: %s); raise max_concurrency or narrow the selector"
                            % (client.where, len(pods), concurrency, ", ".join(names[:10])))
    targets = []
    results = []
    for pod in pods:
        chosen, problem = choose_container(pod, params.get("container"))
        if problem:
            results.append({"pod": pod["metadata"]["name"], "namespace": namespace, "container": params.get("container"),
                            "lines": [], "truncated": False, "matched": False, "stopped": "error", "msg": problem})
        else:
            targets.append((pod["metadata"]["name"], chosen))
    budget = params.get("follow_timeout") if params.get("follow") else params.get("timeout")
    budget = float(budget if budget is not None else DEFAULT_FOLLOW_TIMEOUT)
    started = time.monotonic()
    if targets:
        # one overall deadline for every pod: a selector over N pods returns within the same bound as one pod
        deadline = started + budget
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(targets)))) as pool:
            futures = [pool.submit(read_one, client, namespace, name, chosen, params, until, deadline)
                       for name, chosen in targets]
            results.extend(f.result() for f in futures)
    results.sort(key=lambda r: r["pod"])
    out = {"changed": False, "pods": names, "results": results, "elapsed": round(time.monotonic() - started, 3)}
    if until is not None:
        out["matched_pods"] = [r["pod"] for r in results if r.get("matched")]
    if params.get("name") and len(results) == 1:
        one = results[0]
        out.update(container=one.get("container"), lines=one["lines"],
                   text="".join(line + "\n" for line in one["lines"]), truncated=one["truncated"],
                   matched=one["matched"], stopped=one.get("stopped"))
    errors = [r for r in results if r.get("stopped") == "error"]
    if errors:
        shown = "; ".join(r["msg"] for r in errors[:3]) + (" (and %d more)" % (len(errors) - 3) if len(errors) > 3 else "")
        raise KubegateError("reading logs failed in %d of %d pod(s): %s" % (len(errors), len(names), shown), **out)
    return out

# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""The pass-through runners: api_request (any method/path/body, watch) and service_proxy.

Change detection for writes: the object is read before a mutating call (for POST: the collection path plus the body's
metadata.name); `changed` is true when resourceVersion moved (the apiserver does not bump it for no-op writes) and the
content without server-managed fields (resourceVersion, managedFields, generation) differs; in check mode
(server-side dryRun=All) the content alone decides. Paths the apiserver cannot
dry-run (proxy, exec, attach, portforward, non-resource paths) are not sent at all in check mode.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import json
import time

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover
    from urllib import quote

from .api import check_headers, decode_response, encode_body, public_headers, query_pairs, validate_path
from .errors import KubegateError, http_error, parse_status_body
from .runner import connect

READ_METHODS = ("GET", "HEAD", "OPTIONS")
NOT_DRY_RUNNABLE = ("proxy", "exec", "attach", "portforward")
SERVER_FIELDS = ("resourceVersion", "managedFields", "generation")  # left out when comparing content
DEFAULT_FIELD_MANAGER = "kubegate"


# ---------------------------------------------------------------------------------------------------------------- paths

def parse_resource_path(path):
    """{prefix, namespace, resource, name, subresource} for /api/v1/... and /apis/G/V/... paths, else None."""
    segments = path.strip("/").split("/")
    if len(segments) >= 2 and segments[0] == "api":
        prefix, rest = segments[:2], segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        prefix, rest = segments[:3], segments[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    if not rest or not rest[0]:
        return None
    return {"prefix": "/" + "/".join(prefix), "namespace": namespace, "resource": rest[0],
            "name": rest[1] if len(rest) > 1 else None, "subresource": "/".join(rest[2:]) or None}


def collection_path(parts):
    ns = "/namespaces/%s" % parts["namespace"] if parts["namespace"] else ""
    return "%s%s/%s" % (parts["prefix"], ns, parts["resource"])


def _pairs_get(pairs, key):
    return [v for k, v in pairs if k == key]


def _is_streaming(pairs):
    return any(v.lower() in ("true", "1") for v in _pairs_get(pairs, "follow") + _pairs_get(pairs, "watch"))


# ---------------------------------------------------------------------------------------------------------------- results

def shape(response, changed):
    out = {"changed": changed, "status": response.status, "headers": public_headers(response.headers)}
    out.update(decode_response(response))
    return out


def _object(data):
    """A Kubernetes object (has metadata, is not a Status), else None."""
    if isinstance(data, dict) and isinstance(data.get("metadata"), dict) and data.get("kind") != "Status":
        return data
    return None


def _content(obj):
    clean = copy.deepcopy(obj)
    meta = clean.get("metadata") or {}
    for field in SERVER_FIELDS:
        meta.pop(field, None)
    return clean


def _mask_secret(obj):
    if not obj or obj.get("kind") != "Secret":
        return obj
    obj = copy.deepcopy(obj)
    for field in ("data", "stringData"):
        values = obj.get(field)
        if isinstance(values, dict):
            obj[field] = dict((k, "<hidden sha256:%s>" % hashlib.sha256(str(v).encode("utf-8")).hexdigest()[:12])
                              for k, v in values.items())
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if "kubectl.kubernetes.io/last-applied-configuration" in annotations:
        annotations["kubectl.kubernetes.io/last-applied-configuration"] = "<hidden>"
    return obj


def for_diff(obj):
    """Stable text for diff mode: without managedFields, Secret values masked."""
    if obj is None:
        return ""
    clean = _mask_secret(copy.deepcopy(obj))
    (clean.get("metadata") or {}).pop("managedFields", None)
    return json.dumps(clean, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------------------------------------------- api_request

def _status_codes(params):
    codes = params.get("status_code")
    return set(codes) if codes else None


def _write_query(params, pairs, content_type):
    if params.get("force") and content_type != "apply-patch":
        raise KubegateError("force only applies to server-side apply; set content_type: apply-patch (or drop force)")
    if content_type == "apply-patch":
        if not _pairs_get(pairs, "fieldManager"):
            pairs.append(("fieldManager", params.get("field_manager") or DEFAULT_FIELD_MANAGER))
        if params.get("force"):
            pairs.append(("force", "true"))
    elif params.get("field_manager") and not _pairs_get(pairs, "fieldManager"):
        pairs.append(("fieldManager", params["field_manager"]))
    return pairs


def run_api_request(params, ctx):
    method = params.get("method", "GET").upper()
    path = validate_path(params.get("path"))
    pairs = query_pairs(params.get("query"))
    headers = check_headers(params.get("headers"))
    content_type = params.get("content_type")
    body = params.get("body")
    max_body = params.get("max_body_bytes")
    if max_body is not None and max_body < 1:
        raise KubegateError("max_body_bytes must be at least 1, got %s" % max_body)
    if method in READ_METHODS and body is not None:
        raise KubegateError("a %s request cannot carry a body; use POST/PUT/PATCH or drop body" % method)
    if content_type == "apply-patch" and method != "PATCH":
        raise KubegateError("content_type apply-patch (server-side apply) needs method PATCH, got %s" % method)
    if content_type in ("merge-patch", "json-patch", "strategic-merge-patch") and method != "PATCH":
        raise KubegateError("content_type %s needs method PATCH, got %s" % (content_type, method))
    if params.get("until") and not params.get("watch"):
        raise KubegateError("until needs watch: true")
    if params.get("watch"):
        if method != "GET":
            raise KubegateError("watch needs method GET, got %s" % method)
        until = _compile_until(params.get("until"))
        client = connect(params, ctx)
        return run_watch(client, path, pairs, headers, until, params, ctx)
    if method in READ_METHODS:
        payload = ctype = None
    else:
        payload, ctype = encode_body(body, content_type, method)
        pairs = _write_query(params, pairs, content_type or ("merge-patch" if method == "PATCH" else "json"))
        if ctype:
            headers["Content-Type"] = ctype
    client = connect(params, ctx)
    accepted = _status_codes(params)
    if method in READ_METHODS:
        streaming = _is_streaming(pairs)
        deadline = time.monotonic() + params.get("timeout", 30) if streaming else None
        response = client.request(method, path, pairs, headers=headers, accepted=accepted, max_body=max_body,
                                  deadline=deadline, stream_until=(lambda chunk: False) if streaming else None)
        return shape(response, False)
    return _write(client, method, path, pairs, payload, headers, accepted, max_body, body, ctx)


def _write(client, method, path, pairs, payload, headers, accepted, max_body, body, ctx):
    parts = parse_resource_path(path)
    target = None
    if parts and not parts["subresource"]:
        if parts["name"]:
            target = path
        elif method == "POST" and isinstance(body, dict) and isinstance(body.get("metadata"), dict) \
                and body["metadata"].get("name"):
            target = "%s/%s" % (path.rstrip("/"), quote(str(body["metadata"]["name"]), safe=""))
    elif parts and parts["subresource"] in ("status", "scale"):
        target = path
    before, before_known = None, False
    if target:
        read = client.request("GET", target, check=False)
        if read.status == 200:
            before, before_known = _object(parse_status_body(read.body)), True
        elif read.status == 404:
            before_known = True
    dry_runnable = parts is not None and not (parts["subresource"] and
                                              parts["subresource"].split("/")[0] in NOT_DRY_RUNNABLE)
    if ctx.check_mode:
        if not dry_runnable:
            return {"changed": True, "status": None, "dry_run": False,
                    "msg": "check mode: %s %s was not sent (the apiserver cannot dry-run this path)" % (method, path)}
        pairs = pairs + [("dryRun", "All")]
    response = client.request(method, path, pairs, body=payload, headers=headers, accepted=accepted,
                              max_body=max_body)
    out = shape(response, True)
    if ctx.check_mode:
        out["dry_run"] = True
    after = _object(out.get("json"))
    success = 200 <= response.status < 300
    if not success:
        changed = False
    elif method == "DELETE":
        changed = before is not None if before_known else True
        after = None
    elif before is not None and after is not None:
        # A write that left resourceVersion alone changed nothing. One that bumped it but only rewrote server-managed
        # fields (e.g. managedFields, as the second server-side apply after a create does) did not change the object
        # either. Dry-run answers keep the old resourceVersion, so check mode compares content only.
        same_version = (before.get("metadata") or {}).get("resourceVersion") == \
            (after.get("metadata") or {}).get("resourceVersion")
        changed = _content(before) != _content(after) if ctx.check_mode or not same_version else False
    else:
        changed = True
    out["changed"] = changed
    if ctx.diff and success and (before is not None or after is not None) and (target or method == "DELETE"):
        header = target or path
        out["diff"] = {"before": for_diff(before), "after": for_diff(after if method != "DELETE" else None),
                       "before_header": header, "after_header": header}
    return out


# ---------------------------------------------------------------------------------------------------------------- watch

def _compile_until(expression):
    if not expression:
        return None
    try:
        import jmespath
        from jmespath import exceptions as jmespath_errors
    except ImportError:
        raise KubegateError("until needs the Python library jmespath on the host running the task "
                            "(pip install jmespath)")
    try:
        return jmespath.compile(expression)
    except jmespath_errors.JMESPathError as e:
        raise KubegateError("until %r is not a valid JMESPath expression: %s" % (expression, e))


def _truthy(value):
    """JMESPath truthiness: false, null and empty strings/lists/objects are false; numbers (even 0) are true."""
    return not (value is None or value is False or value == "" or value == [] or value == {})


def run_watch(client, path, pairs, headers, until, params, ctx):
    """List, then watch from the list's resourceVersion until `until` matches an object or `timeout` expires."""
    parts = parse_resource_path(path)
    if parts is None or parts["subresource"]:
        raise KubegateError("watch needs a resource path: a collection (e.g. /api/v1/namespaces/ns/pods) or one "
                            "object (e.g. /api/v1/namespaces/ns/pods/web-0), got %s" % path)
    timeout = params.get("timeout", 30)
    deadline = time.monotonic() + timeout
    coll = collection_path(parts)
    base = [(k, v) for k, v in pairs if k not in ("watch", "resourceVersion", "timeoutSeconds", "allowWatchBookmarks")]
    if parts["name"]:
        selector = "metadata.name=%s" % parts["name"]
        existing = _pairs_get(base, "fieldSelector")
        base = [(k, v) for k, v in base if k != "fieldSelector"]
        base.append(("fieldSelector", ",".join(existing + [selector])))
    events = []
    started = time.monotonic()

    def done(event_type, obj):
        return {"changed": False, "status": 200, "matched": True, "event": event_type, "json": obj,
                "elapsed": round(time.monotonic() - started, 3)}

    def relist():
        listed = client.get_json(coll, query=base)
        for item in listed.get("items") or []:
            if until is not None and _truthy(until.search(item)):
                return None, item
        return (listed.get("metadata") or {}).get("resourceVersion"), None

    rv, match = relist()
    if match is not None:
        return done("EXISTING", match)
    state = {"buf": b"", "match": None, "error": None, "rv": rv}

    def on_chunk(chunk):
        state["buf"] += chunk
        while b"\n" in state["buf"]:
            line, state["buf"] = state["buf"].split(b"\n", 1)
            if not line.strip():
                continue
            try:
                event = json.loads(line.decode("utf-8"))
            except ValueError:
                continue
            etype, obj = event.get("type"), event.get("object") or {}
            if etype == "ERROR":
                state["error"] = obj
                return True
            new_rv = (obj.get("metadata") or {}).get("resourceVersion")
            if new_rv:
                state["rv"] = new_rv
            if etype == "BOOKMARK":
                continue
            if until is None:
                events.append({"type": etype, "object": obj})
            elif _truthy(until.search(obj)):
                state["match"] = (etype, obj)
                return True
        return False

    while time.monotonic() < deadline:
        remaining = deadline - time.monotonic()
        query = base + [("watch", "1"), ("resourceVersion", state["rv"] or ""), ("allowWatchBookmarks", "true"),
                        ("timeoutSeconds", str(max(1, int(remaining))))]
        state["buf"] = b""
        try:
            client.request("GET", coll, query, headers=headers, deadline=deadline, stream_until=on_chunk,
                           max_body=params.get("max_body_bytes"))
        except KubegateError as e:
            if e.details.get("timed_out"):
                break
            raise
        if state["match"]:
            return done(*state["match"])
        if state["error"]:
            err, state["error"] = state["error"], None
            if err.get("code") == 410:    # resourceVersion too old: list again and continue from there
                state["rv"], match = relist()
                if match is not None:
                    return done("EXISTING", match)
                continue
            raise http_error(client.where, "GET", coll + " (watch)", err.get("code"), json.dumps(err).encode())
    if until is None:
        return {"changed": False, "status": 200, "matched": False, "events": events,
                "elapsed": round(time.monotonic() - started, 3)}
    raise KubegateError("%s: watch on %s timed out after %ss before until %r matched"
                        % (client.where, path, timeout, params.get("until")), timed_out=True)


# ---------------------------------------------------------------------------------------------------------------- service_proxy

_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def _name(value, what):
    value = str(value or "")
    if not value or "/" in value or value in (".", "..") or any(c.isspace() or ord(c) < 32 for c in value):
        raise KubegateError("%s %r is not a valid Kubernetes name" % (what, value))
    return value


def proxy_path(namespace, service, scheme=None, port=None, path="/"):
    namespace = _name(namespace, "namespace")
    service = _name(service, "service")
    if port is not None and (str(port) == "" or ":" in str(port) or "/" in str(port)):
        raise KubegateError("port %r must be a port number or a port name of the service" % port)
    sub = validate_path(path or "/", "path", spaces=True)
    target = "%s%s%s" % (scheme + ":" if scheme else "", service, ":%s" % port if port is not None else "")
    return "/api/v1/namespaces/%s/services/%s/proxy%s" % (quote(namespace, safe=""), quote(target, safe=":"),
                                                          quote(sub, safe=_PATH_SAFE))


def _check_service_port(client, namespace, service, port):
    """Raise a precise error when the Service has no such port (the apiserver only says 'no endpoints')."""
    svc = client.get_json("/api/v1/namespaces/%s/services/%s" % (quote(namespace, safe=""), quote(service, safe="")),
                          accepted={200, 404})
    ports = ((svc or {}).get("spec") or {}).get("ports") or []
    if svc and not any(str(port) in (str(p.get("name")), str(p.get("port"))) for p in ports):
        raise KubegateError("%s: service %s/%s has no port %r (ports: %s); set port to one of them"
                            % (client.where, namespace, service, port,
                               ", ".join("%s %s" % (p.get("name") or "-", p.get("port")) for p in ports) or "none"),
                            status=503)


def run_service_proxy(params, ctx):
    method = params.get("method", "GET").upper()
    path = proxy_path(params.get("namespace") or "default", params.get("service"), params.get("scheme"),
                      params.get("port"), params.get("path") or "/")
    pairs = query_pairs(params.get("query"))
    headers = check_headers(params.get("headers"))
    body = params.get("body")
    if method in READ_METHODS and body is not None:
        raise KubegateError("a %s request cannot carry a body; use POST/PUT/PATCH or drop body" % method)
    payload = None
    if body is not None:
        payload, ctype = encode_body(body, "text" if isinstance(body, str) else "json", method)
        headers.setdefault("Content-Type", ctype)
    client = connect(params, ctx)
    if ctx.check_mode and method not in READ_METHODS:
        return {"changed": True, "status": None,
                "msg": "check mode: %s %s was not sent (a proxied request cannot be dry-run)" % (method, path)}
    response = client.request(method, path, pairs, body=payload, headers=headers, check=False,
                              max_body=params.get("max_body_bytes"))
    accepted = _status_codes(params)
    ok = response.status in accepted if accepted else 200 <= response.status < 300
    if not ok:
        status = parse_status_body(response.body) or {}
        if status.get("kind") == "Status" and status.get("apiVersion") == "v1":
            if response.status == 503 and params.get("port") is not None:
                _check_service_port(client, params.get("namespace") or "default", params["service"], params["port"])
            raise http_error(client.where, method, path, response.status, response.body, response.reason)
        message = ("%s: service %s/%s answered HTTP %s for %s %s (accepted: %s)"
                   % (client.where, params.get("namespace") or "default", params.get("service"), response.status,
                      method, path, ", ".join(str(c) for c in sorted(accepted)) if accepted else "2xx"))
        raise KubegateError(message, **shape(response, False))
    return shape(response, method not in READ_METHODS)

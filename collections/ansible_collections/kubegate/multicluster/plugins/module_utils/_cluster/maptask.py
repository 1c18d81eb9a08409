# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""The nginx_map task: validate and render maps, check them with a real `nginx -t` when available, and apply them to a
ConfigMap with diff, check mode and idempotence. Before every change the managed keys' current content is saved in
the ConfigMap `<name>-previous`, so `restore: true` (or a failed rollout) can put it back."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover
    from urllib import quote

from .._nginx_check import check_with_nginx
from .._nginx_map import NginxMapError, render, render_snippets, routing_checks
from .errors import KubegateError
from .runner import connect

PREVIOUS_SUFFIX = "-previous"
STATE_ANNOTATION = "kubegate.io/previous-state"
SOURCE_ANNOTATION = "kubegate.io/previous-of"


def sha256(text):
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()


def _cm_path(namespace, name=None):
    base = "/api/v1/namespaces/%s/configmaps" % quote(namespace, safe="")
    return base + ("/" + quote(name, safe="") if name else "")


def _get(client, namespace, name):
    return client.get_json(_cm_path(namespace, name), accepted={200, 404})


def _write_json(client, method, path, body, dry_run=False):
    query = [("fieldManager", "kubegate")] + ([("dryRun", "All")] if dry_run else [])
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    response = client.request(method, path, query, body=json.dumps(body).encode("utf-8"),
                              headers={"Content-Type": ctype})
    return json.loads(response.body.decode("utf-8"))


def _desired(params):
    maps = params.get("maps")
    if not maps:
        raise KubegateError("maps is empty: give at least one map (source, variable, entries), or restore: true")
    try:
        text = render(maps, params.get("map_hash_bucket_size") or 64)
        snippet = render_snippets(maps, params.get("map_hash_bucket_size") or 64)["location_snippet"]
    except NginxMapError as e:
        raise KubegateError(str(e), problems=e.problems)
    return text, snippet


def _nginx_test(text, params, ctx):
    mode = params.get("nginx_check") or "auto"
    if mode == "never":
        return None
    ok, message = check_with_nginx(text, nginx_binary=params.get("nginx_binary"),
                                   map_hash_bucket_size=params.get("map_hash_bucket_size") or 64)
    if ok is None:
        if mode == "always":
            raise KubegateError("nginx_check is always but %s" % message)
        ctx.warn("the rendered maps were not checked with nginx -t: %s" % message)
        return None
    if not ok:
        raise KubegateError("nginx -t rejected the rendered maps (nothing was changed):\n%s" % message)
    return True


def _managed(data, keys):
    return dict((k, (data or {}).get(k)) for k in keys)


def _diff_text(managed):
    return "".join("# --- %s\n%s" % (k, v if v.endswith("\n") else v + "\n") for k, v in sorted(managed.items()) if v)


def _apply_data(client, namespace, name, current, desired, ctx, annotations=None):
    """Create or merge-patch the ConfigMap so the managed keys equal `desired` (None removes a key)."""
    if current is None:
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "kubegate"}},
                "data": dict((k, v) for k, v in desired.items() if v is not None)}
        if annotations:
            body["metadata"]["annotations"] = annotations
        return _write_json(client, "POST", _cm_path(namespace), body, dry_run=ctx.check_mode)
    patch = {"data": desired}
    if annotations:
        patch["metadata"] = {"annotations": annotations}
    return _write_json(client, "PATCH", _cm_path(namespace, name), patch, dry_run=ctx.check_mode)


def run_nginx_map(params, ctx):
    namespace = params.get("namespace") or "ingress-nginx"
    name = params.get("configmap") or "kubegate-nginx-map"
    key = params.get("key") or "kubegate-map.conf"
    snippet_key = params.get("location_snippet_key")
    keys = [key] + ([snippet_key] if snippet_key else [])
    if len(set(keys)) != len(keys):
        raise KubegateError("key and location_snippet_key must differ (both are %r)" % key)
    restoring = bool(params.get("restore"))
    if restoring and params.get("maps"):
        raise KubegateError("maps and restore: true are mutually exclusive: restore puts back the saved content")
    if not restoring:
        text, snippet = _desired(params)
        checked = _nginx_test(text, params, ctx)
        desired = {key: text}
        if snippet_key:
            desired[snippet_key] = snippet or None
    client = connect(params, ctx)
    current = _get(client, namespace, name)
    before = _managed((current or {}).get("data"), keys)
    previous_name = name + PREVIOUS_SUFFIX
    if restoring:
        saved = _get(client, namespace, previous_name)
        if saved is None:
            raise KubegateError("%s: nothing to restore: ConfigMap %s/%s (saved before the last change) does not "
                                "exist" % (client.where, namespace, previous_name))
        state = ((saved.get("metadata") or {}).get("annotations") or {}).get(STATE_ANNOTATION, "present")
        desired = _managed(saved.get("data"), keys) if state == "present" else dict((k, None) for k in keys)
        checked = None
    after = dict((k, v) for k, v in desired.items())
    changed = before != after
    result = {"changed": changed, "configmap": "%s/%s" % (namespace, name), "key": key,
              "sha256": sha256(after.get(key)), "previous_sha256": sha256(before.get(key)) if before.get(key) else None,
              "rendered": after.get(key) or "", "nginx_checked": bool(checked)}
    if snippet_key:
        result["location_snippet"] = after.get(snippet_key) or ""
    if not restoring:
        result["checks"] = routing_checks(params.get("maps"))
    if ctx.diff:
        result["diff"] = {"before": _diff_text(before), "after": _diff_text(after),
                          "before_header": "configmap %s/%s" % (namespace, name),
                          "after_header": "configmap %s/%s" % (namespace, name)}
    if not changed:
        result["resource_version"] = ((current or {}).get("metadata") or {}).get("resourceVersion")
        return result
    if not restoring and params.get("keep_previous", True):
        # Save what is there now (or that nothing was), so the change can be undone.
        saved = _get(client, namespace, previous_name)
        state = "present" if current is not None and any(v is not None for v in before.values()) else "absent"
        previous_data = dict((k, v) for k, v in before.items() if v is not None)
        annotations = {STATE_ANNOTATION: state, SOURCE_ANNOTATION: "%s@%s" % (
            name, ((current or {}).get("metadata") or {}).get("resourceVersion", "absent"))}
        if saved is None:
            _write_json(client, "POST", _cm_path(namespace), {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": previous_name, "namespace": namespace, "annotations": annotations,
                             "labels": {"app.kubernetes.io/managed-by": "kubegate"}},
                "data": previous_data}, dry_run=ctx.check_mode)
        else:
            replace = dict((k, None) for k in (saved.get("data") or {}))
            replace.update(previous_data)
            _write_json(client, "PATCH", _cm_path(namespace, previous_name),
                        {"metadata": {"annotations": annotations}, "data": replace}, dry_run=ctx.check_mode)
    written = _apply_data(client, namespace, name, current, desired, ctx)
    result["resource_version"] = (written.get("metadata") or {}).get("resourceVersion")
    if ctx.check_mode:
        result["dry_run"] = True
    return result

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
REPLACED_BY_ANNOTATION = "kubegate.io/previous-replaced-by"


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


def fingerprint(managed):
    """{key: sha256 of its text, or None when absent}: what the previous copy records about the state that replaced
    it, so `restore` can tell whether the copy really is the predecessor of what is live now."""
    return dict((k, sha256(v) if v is not None else None) for k, v in sorted(managed.items()))


def _rv(obj):
    return ((obj or {}).get("metadata") or {}).get("resourceVersion")


def conflict_error(where, namespace, name, what, hint="nothing of this change was applied; re-run to apply it on "
                                                      "the fresh state"):
    """The one message for a lost optimistic-concurrency race (HTTP 409 on a resourceVersion precondition, or a
    create of an object that appeared meanwhile)."""
    return KubegateError("%s: ConfigMap %s/%s was changed by someone else while this task ran (%s): %s"
                         % (where, namespace, name, what, hint), status=409, reason="Conflict")


def _send(client, method, path, body, dry_run, conflict):
    """_write_json, with a 409 answer raised as `conflict` instead of the generic HTTP error."""
    try:
        return _write_json(client, method, path, body, dry_run=dry_run)
    except KubegateError as e:
        if e.status == 409:
            raise conflict
        raise


def previous_body(namespace, name, current, saved, before, after):
    """The complete `<name>-previous` ConfigMap, for POST (when `saved` is None) or for PUT with saved's
    resourceVersion as precondition. Its data is exactly the managed keys of `current` - a full replace, never a
    merge, so two writers can never leave a mix of their states in it - and its annotations say which state of
    `name` it holds (`previous-of`) and which content replaced it (`replaced-by`, checked by restore)."""
    present = current is not None and any(v is not None for v in before.values())
    annotations = {STATE_ANNOTATION: "present" if present else "absent",
                   SOURCE_ANNOTATION: "%s@%s" % (name, _rv(current) or "absent"),
                   REPLACED_BY_ANNOTATION: json.dumps(fingerprint(after), sort_keys=True)}
    meta = {"name": name + PREVIOUS_SUFFIX, "namespace": namespace, "annotations": annotations,
            "labels": {"app.kubernetes.io/managed-by": "kubegate"}}
    if saved is not None:
        old = saved.get("metadata") or {}
        meta["resourceVersion"] = old.get("resourceVersion")
        meta["labels"] = dict(old.get("labels") or {}, **meta["labels"])
        for k, v in (old.get("annotations") or {}).items():
            annotations.setdefault(k, v)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": dict((k, v) for k, v in before.items() if v is not None)}


def current_write(namespace, name, current, desired):
    """(method, path, body) that makes the managed keys equal `desired` (None removes a key) only if `current` is
    still what is live: a create fails when the ConfigMap appeared meanwhile, a merge patch carries current's
    resourceVersion as precondition. Keys kubegate does not manage are left as they are."""
    if current is None:
        return "POST", _cm_path(namespace), {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "kubegate"}},
            "data": dict((k, v) for k, v in desired.items() if v is not None)}
    return "PATCH", _cm_path(namespace, name), {"metadata": {"resourceVersion": _rv(current)}, "data": desired}


def restore_problem(saved, live, keys, expected_sha256=None):
    """Why restoring `saved` (the previous copy) over `live` (the managed keys now) would undo the wrong change, or
    None. The copy belongs to the live state when its `replaced-by` fingerprint equals the live keys' (copies written
    before that annotation existed are trusted); `expected_sha256` additionally pins the live map key to the content
    the caller itself wrote, so a rollback never undoes someone else's later change."""
    key = keys[0]
    if expected_sha256 and (live.get(key) is None or sha256(live.get(key)) != expected_sha256):
        return ("the live %s is no longer the content this run applied (sha256 %s, expected %s): someone else "
                "changed it since" % (key, sha256(live.get(key))[:12] if live.get(key) is not None else "absent",
                                      expected_sha256[:12]))
    recorded = ((saved.get("metadata") or {}).get("annotations") or {}).get(REPLACED_BY_ANNOTATION)
    if recorded is None:
        return None
    try:
        replaced_by = json.loads(recorded)
    except ValueError:
        return "its %s annotation is not valid JSON" % REPLACED_BY_ANNOTATION
    if not isinstance(replaced_by, dict):
        return "its %s annotation is not a mapping" % REPLACED_BY_ANNOTATION
    now = fingerprint(live)
    differ = [k for k in keys if k in replaced_by and replaced_by[k] != now.get(k)]
    if differ:
        return ("the saved copy is not the predecessor of the live state (%s changed since the copy was taken, by "
                "another run or by hand)" % ", ".join(differ))
    return None


def _save_previous(client, namespace, name, current, before, after, ctx):
    """Write the previous copy (precondition: it is unchanged since read). Returns (saved before, written)."""
    previous_name = name + PREVIOUS_SUFFIX
    saved = _get(client, namespace, previous_name)
    body = previous_body(namespace, name, current, saved, before, after)
    conflict = conflict_error(client.where, namespace, previous_name, "another run saved its previous copy first")
    if saved is None:
        written = _send(client, "POST", _cm_path(namespace), body, ctx.check_mode, conflict)
    else:
        written = _send(client, "PUT", _cm_path(namespace, previous_name), body, ctx.check_mode, conflict)
    return saved, written


def _undo_previous(client, namespace, name, saved, written):
    """After losing the race on the map ConfigMap: put the previous copy back as it was before this run touched it
    (precondition: nobody wrote it since), so it still belongs to the winner's state. Returns a note for the error."""
    previous_name = name + PREVIOUS_SUFFIX
    path = _cm_path(namespace, previous_name)
    try:
        if saved is None:
            client.request("DELETE", path, body=json.dumps({"preconditions": {"resourceVersion": _rv(written)}})
                           .encode("utf-8"), headers={"Content-Type": "application/json"})
        else:
            body = dict(saved, metadata=dict(saved.get("metadata") or {}, resourceVersion=_rv(written)))
            body["metadata"].pop("managedFields", None)
            _write_json(client, "PUT", path, body)
    except KubegateError as e:
        if e.status in (404, 409):
            return "; %s/%s was written again meanwhile, so it was left to that writer" % (namespace, previous_name)
        return "; putting %s/%s back failed too (%s)" % (namespace, previous_name, e.msg)
    return "; %s/%s was put back as it was" % (namespace, previous_name)


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
    if params.get("expected_sha256") and not restoring:
        raise KubegateError("expected_sha256 only applies with restore: true (it pins what a rollback may undo)")
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
    if restoring and changed:
        problem = restore_problem(saved, before, keys, params.get("expected_sha256"))
        if problem:
            raise conflict_error(client.where, namespace, name, problem,
                                 "nothing was restored, so that change is kept; check the live routing and re-run "
                                 "the rollout you want")
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
        result["resource_version"] = _rv(current)
        return result
    # Order: save the state read above (precondition: the copy is unchanged since read), then write the map
    # (precondition: it is unchanged since read). Dying between the two leaves the copy holding the live state, which
    # restore treats as nothing to undo; losing the second race puts the copy back, so it stays the winner's.
    saved_previous = written_previous = None
    if not restoring and params.get("keep_previous", True):
        saved_previous, written_previous = _save_previous(client, namespace, name, current, before, after, ctx)
    method, path, body = current_write(namespace, name, current, desired)
    conflict = conflict_error(client.where, namespace, name, "its resourceVersion is no longer %s" % _rv(current)
                              if current is not None else "it was created meanwhile")
    try:
        written = _send(client, method, path, body, ctx.check_mode, conflict)
    except KubegateError as e:
        if e.status == 409 and written_previous is not None and not ctx.check_mode:
            e.msg += _undo_previous(client, namespace, name, saved_previous, written_previous)
            e.args = (e.msg,)
        raise
    result["resource_version"] = _rv(written)
    if ctx.check_mode:
        result["dry_run"] = True
    return result

# -*- coding: utf-8 -*-
"""Optimistic concurrency of nginx_map (module_utils/_cluster/maptask.py): the pure pieces (the bodies and their
preconditions, restore's consistency check) and the write sequence against an in-memory apiserver that enforces
resourceVersion preconditions like the real one, with a racing writer injected between read and write."""
from __future__ import annotations

import json

import pytest

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import maptask
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.errors import KubegateError, http_error
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.runner import Context

NS, NAME, KEY, SNIP = "ingress-nginx", "kubegate-nginx-map", "kubegate-map.conf", "kubegate-routing.location"
PREV = NAME + "-previous"


def maps(value):
    return [{"source": "$http_x_version", "variable": "$kubegate_backend", "default": "stable",
             "proxy_set_header": "X-Kubegate-Backend", "entries": [{"key": "v2", "value": value}]}]


class Resp(object):
    def __init__(self, status, obj):
        self.status = status
        self.body = json.dumps(obj).encode("utf-8")
        self.reason = ""


class FakeApi(object):
    """ConfigMaps in one namespace with an etcd-like revision counter: POST fails 409 when the name exists, PUT and
    PATCH fail 409 when the body's metadata.resourceVersion is not the stored one, DELETE honours preconditions."""

    where = "cluster test (https://127.0.0.1:6443)"

    def __init__(self):
        self.objects = {}
        self.rev = 100
        self.writes = []
        self.before_write = None  # called once, before the first write: the racing writer

    def put_object(self, name, data, annotations=None):
        self.rev += 1
        self.objects[name] = {"metadata": {"name": name, "namespace": NS, "resourceVersion": str(self.rev),
                                           "annotations": dict(annotations or {})}, "data": dict(data)}

    def _name(self, path):
        tail = path.split("/configmaps", 1)[1]
        return tail.lstrip("/") or None

    def get_json(self, path, query=None, accepted=None):
        obj = self.objects.get(self._name(path))
        return json.loads(json.dumps(obj)) if obj is not None else None

    def request(self, method, path, query=None, body=None, headers=None, accepted=None, check=True, **_):
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook(self)
        dry = ("dryRun", "All") in (query or [])
        doc = json.loads(body.decode("utf-8")) if body else {}
        name = self._name(path) or doc["metadata"]["name"]
        self.writes.append((method, name, dry))
        live = self.objects.get(name)
        want_rv = (doc.get("metadata") or {}).get("resourceVersion")
        if method == "DELETE":
            want_rv = (doc.get("preconditions") or {}).get("resourceVersion")
        if method == "POST" and live is not None:
            return self._fail(409, method, path, "AlreadyExists")
        if method in ("PUT", "PATCH", "DELETE") and live is None:
            return self._fail(404, method, path, "NotFound")
        if method in ("PUT", "PATCH", "DELETE") and want_rv and want_rv != live["metadata"]["resourceVersion"]:
            return self._fail(409, method, path, "Conflict")
        if method == "DELETE":
            if not dry:
                del self.objects[name]
            return Resp(200, {})
        if method == "PATCH":
            new = json.loads(json.dumps(live))
            for k, v in (doc.get("data") or {}).items():
                if v is None:
                    new["data"].pop(k, None)
                else:
                    new["data"][k] = v
        else:
            new = {"metadata": dict(doc["metadata"]), "data": dict(doc.get("data") or {})}
        self.rev += 1
        new["metadata"]["resourceVersion"] = str(self.rev)
        if not dry:
            self.objects[name] = new
        return Resp(201 if method == "POST" else 200, new)

    def _fail(self, status, method, path, reason):
        raise http_error(self.where, method, path, status,
                         json.dumps({"kind": "Status", "reason": reason, "message": reason}).encode(), "")


@pytest.fixture
def api(monkeypatch):
    fake = FakeApi()
    monkeypatch.setattr(maptask, "connect", lambda params, ctx: fake)
    return fake


def apply(value=None, check_mode=False, **params):
    base = {"namespace": NS, "configmap": NAME, "key": KEY, "location_snippet_key": SNIP, "nginx_check": "never"}
    if value is not None:
        base["maps"] = maps(value)
    base.update(params)
    return maptask.run_nginx_map(base, Context(check_mode=check_mode))


def text(value):
    return maptask.render(maps(value), 64)


# ---- pure pieces ----------------------------------------------------------------------------------------------------

def test_current_write_carries_the_read_resource_version_or_creates():
    method, path, body = maptask.current_write(NS, NAME, None, {KEY: "a", SNIP: None})
    assert method == "POST" and path.endswith("/configmaps") and body["data"] == {KEY: "a"}
    live = {"metadata": {"name": NAME, "resourceVersion": "7"}, "data": {KEY: "old", "other.conf": "x"}}
    method, path, body = maptask.current_write(NS, NAME, live, {KEY: "a", SNIP: None})
    assert method == "PATCH" and path.endswith("/configmaps/" + NAME)
    assert body == {"metadata": {"resourceVersion": "7"}, "data": {KEY: "a", SNIP: None}}


def test_previous_body_is_a_whole_copy_with_a_precondition():
    live = {"metadata": {"resourceVersion": "7"}, "data": {KEY: "old", "other.conf": "x"}}
    saved = {"metadata": {"resourceVersion": "3", "labels": {"team": "x"}, "annotations": {"note": "kept"}},
             "data": {KEY: "older", "stale-key": "y"}}
    body = maptask.previous_body(NS, NAME, live, saved, {KEY: "old", SNIP: None}, {KEY: "new", SNIP: None})
    meta = body["metadata"]
    assert body["data"] == {KEY: "old"}  # whole replace: the stale key and the unmanaged key are not in it
    assert meta["name"] == PREV and meta["resourceVersion"] == "3"
    assert meta["labels"] == {"team": "x", "app.kubernetes.io/managed-by": "kubegate"}
    assert meta["annotations"][maptask.STATE_ANNOTATION] == "present"
    assert meta["annotations"][maptask.SOURCE_ANNOTATION] == NAME + "@7" and meta["annotations"]["note"] == "kept"
    assert json.loads(meta["annotations"][maptask.REPLACED_BY_ANNOTATION]) == {KEY: maptask.sha256("new"), SNIP: None}
    first = maptask.previous_body(NS, NAME, None, None, {KEY: None}, {KEY: "new"})
    assert "resourceVersion" not in first["metadata"] and first["data"] == {}
    assert first["metadata"]["annotations"][maptask.STATE_ANNOTATION] == "absent"


def saved_copy(replaced_by):
    ann = {maptask.REPLACED_BY_ANNOTATION: json.dumps(replaced_by)} if replaced_by is not None else {}
    return {"metadata": {"annotations": ann}, "data": {KEY: "old"}}


def test_restore_problem():
    live = {KEY: "new", SNIP: None}
    fp = maptask.fingerprint(live)
    assert maptask.restore_problem(saved_copy(fp), live, [KEY, SNIP]) is None
    assert maptask.restore_problem(saved_copy(None), live, [KEY, SNIP]) is None  # copies of older versions
    assert maptask.restore_problem(saved_copy(fp), live, [KEY, SNIP], maptask.sha256("new")) is None
    other = maptask.restore_problem(saved_copy(maptask.fingerprint({KEY: "theirs", SNIP: None})), live, [KEY, SNIP])
    assert "not the predecessor" in other and KEY in other
    pinned = maptask.restore_problem(saved_copy(fp), live, [KEY, SNIP], maptask.sha256("mine"))
    assert "no longer the content this run applied" in pinned
    assert "no longer" in maptask.restore_problem(saved_copy(fp), {KEY: None}, [KEY], maptask.sha256("mine"))
    assert "not valid JSON" in maptask.restore_problem({"metadata": {"annotations": {
        maptask.REPLACED_BY_ANNOTATION: "{"}}}, live, [KEY])


# ---- the write sequence, with a racing writer -----------------------------------------------------------------------

def test_sequential_runs_keep_the_direct_predecessor(api):
    apply("one")
    apply("two")
    assert api.objects[NAME]["data"][KEY] == text("two")
    assert api.objects[PREV]["data"][KEY] == text("one")
    assert [w[0] for w in api.writes] == ["POST", "POST", "PUT", "PATCH"]


def test_a_map_changed_between_read_and_write_fails_and_loses_nothing(api):
    apply("one")
    prev_before = json.loads(json.dumps(api.objects[PREV]))

    def racer(fake):  # another run (or a person) writes the map right after this run read it
        fake.put_object(NAME, {KEY: text("theirs")})
    api.before_write = racer
    with pytest.raises(KubegateError) as err:
        apply("mine")
    msg = err.value.msg
    assert err.value.status == 409
    assert "ConfigMap ingress-nginx/kubegate-nginx-map was changed by someone else" in msg and "re-run" in msg
    assert "cluster test" in msg and "was put back as it was" in msg
    assert api.objects[NAME]["data"][KEY] == text("theirs")  # the other writer's change survives
    # the copy is exactly what it was before this run touched it (its own annotations included)
    assert api.objects[PREV]["data"] == prev_before["data"]
    assert api.objects[PREV]["metadata"]["annotations"] == prev_before["metadata"]["annotations"]


def test_a_copy_written_by_another_run_between_read_and_write_fails_before_the_map_is_touched(api):
    apply("one")
    rv = api.objects[NAME]["metadata"]["resourceVersion"]

    def racer(fake):
        fake.put_object(PREV, {KEY: "written by the other run"})
    api.before_write = racer
    with pytest.raises(KubegateError) as err:
        apply("mine")
    assert "ConfigMap ingress-nginx/kubegate-nginx-map-previous was changed by someone else" in err.value.msg
    assert api.objects[NAME]["metadata"]["resourceVersion"] == rv  # the map was not written
    assert api.objects[PREV]["data"] == {KEY: "written by the other run"}


def test_two_first_creates_one_wins_and_the_copy_is_removed_again(api):
    def racer(fake):
        fake.put_object(NAME, {KEY: text("theirs")})
    api.before_write = racer
    with pytest.raises(KubegateError) as err:
        apply("mine")
    assert "it was created meanwhile" in err.value.msg
    assert PREV not in api.objects  # the copy this run created (of "nothing") was deleted again
    assert api.objects[NAME]["data"][KEY] == text("theirs")


def test_check_mode_sends_the_preconditions_as_dry_run(api):
    apply("one")
    api.writes.clear()
    res = apply("two", check_mode=True)
    assert res["changed"] and res["dry_run"] and all(write[2] for write in api.writes)
    assert api.objects[NAME]["data"][KEY] == text("one")


def test_restore_after_dying_between_the_two_writes_is_a_no_op(api):
    apply("one")
    # a run saved its copy ("one", replaced by "two") and died before writing the map
    saved = api.objects[NAME]
    body = maptask.previous_body(NS, NAME, saved, api.objects[PREV], {KEY: text("one"), SNIP: saved["data"][SNIP]},
                                 {KEY: text("two"), SNIP: saved["data"][SNIP]})
    api.request("PUT", maptask._cm_path(NS, PREV), body=json.dumps(body).encode())
    res = apply(restore=True)
    assert res["changed"] is False and api.objects[NAME]["data"][KEY] == text("one")


def test_restore_refuses_a_copy_that_belongs_to_another_state(api):
    apply("one")
    apply("mine")
    api.put_object(NAME, {KEY: text("theirs"), SNIP: api.objects[NAME]["data"][SNIP]})  # edited after "mine"
    with pytest.raises(KubegateError) as err:
        apply(restore=True)
    assert "not the predecessor" in err.value.msg and "nothing was restored" in err.value.msg
    assert api.objects[NAME]["data"][KEY] == text("theirs")


def test_restore_pinned_to_this_runs_content(api):
    apply("one")
    mine = apply("mine")
    apply("theirs")  # a later run won: its copy ("mine") is consistent, but restoring it would undo "theirs"
    with pytest.raises(KubegateError) as err:
        apply(restore=True, expected_sha256=mine["sha256"])
    assert "no longer the content this run applied" in err.value.msg
    assert api.objects[NAME]["data"][KEY] == text("theirs")
    theirs = maptask.sha256(text("theirs"))
    res = apply(restore=True, expected_sha256=theirs)
    assert res["changed"] and api.objects[NAME]["data"][KEY] == text("mine")
    with pytest.raises(KubegateError, match="only applies with restore"):
        apply("x", expected_sha256=theirs)


def test_a_restore_racing_a_writer_fails_without_writing(api):
    apply("one")
    apply("two")

    def racer(fake):
        fake.put_object(NAME, {KEY: text("theirs")})
    api.before_write = racer
    with pytest.raises(KubegateError) as err:
        apply(restore=True)
    assert "changed by someone else" in err.value.msg
    assert api.objects[NAME]["data"][KEY] == text("theirs")

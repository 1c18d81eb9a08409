"""Request building and validation (pure functions of the connection layer)."""
from __future__ import annotations

import json

import pytest

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import api, passthrough
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.errors import KubegateError, http_error


@pytest.mark.parametrize("path", ["/version", "/api/v1/namespaces/demo/configmaps/a.b", "/apis/x.io/v1/foos",
                                  "/api/v1/namespaces/demo/pods/p/log", "/metrics"])
def test_valid_paths(path):
    assert api.validate_path(path) == path


@pytest.mark.parametrize("path,message", [
    ("", "non-empty"), ("version", "must start with '/'"), ("//evil/api", "not a URL"), ("http://x/y", "not a URL"),
    ("/a/../b", "'..' segment"), ("/a/%2E%2e/b", "segment"), ("/a/./b", "'.' segment"), ("/a?b=c", "query option"),
    ("/a#frag", "query option"), ("/a b", "control characters"), ("/a\x00", "control characters"),
])
def test_invalid_paths(path, message):
    with pytest.raises(KubegateError, match=None) as err:
        api.validate_path(path)
    assert message in err.value.msg


def test_spaces_allowed_only_when_the_caller_escapes():
    assert api.validate_path("/a b", spaces=True) == "/a b"
    with pytest.raises(KubegateError):
        api.validate_path("/a\tb", spaces=True)


def test_query_pairs_repeat_keys_and_render_booleans():
    assert api.query_pairs({"a": ["1", 2], "b": True, "c": None}) == [("a", "1"), ("a", "2"), ("b", "true"), ("c", "")]
    assert api.query_pairs([{"x": "1"}, ["y", "2"], {"x": "3"}]) == [("x", "1"), ("y", "2"), ("x", "3")]
    assert api.full_path("/p", {"labelSelector": "app=web,tier in (a,b)"}) == \
        "/p?labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29"
    for bad in ("a=b", {"a": {"b": 1}}, [1], {"": "x"}):
        with pytest.raises(KubegateError):
            api.query_pairs(bad)


@pytest.mark.parametrize("body,ctype,method,expected_type", [
    ({"a": 1}, None, "POST", "application/json"),
    ({"a": 1}, None, "PATCH", "application/merge-patch+json"),
    ([{"op": "add", "path": "/a", "value": 1}], "json-patch", "PATCH", "application/json-patch+json"),
    ({"a": 1}, "strategic-merge-patch", "PATCH", "application/strategic-merge-patch+json"),
    ({"a": 1}, "apply-patch", "PATCH", "application/apply-patch+yaml"),
    ("plain", "text", "POST", "text/plain; charset=utf-8"),
    ('{"a": 1}', "json", "POST", "application/json"),
])
def test_body_encoding(body, ctype, method, expected_type):
    data, content_type = api.encode_body(body, ctype, method)
    assert content_type == expected_type
    if expected_type != "text/plain; charset=utf-8":
        assert json.loads(data) == (json.loads(body) if isinstance(body, str) else body)


def test_body_problems_are_specific():
    for body, ctype, message in (({"a": 1}, "json-patch", "list of operations"), ([1], "merge-patch", "mapping"),
                                 ("{x", "json", "not valid JSON"), ({"a": 1}, "text", "string")):
        with pytest.raises(KubegateError) as err:
            api.encode_body(body, ctype, "PATCH")
        assert message in err.value.msg


def test_reserved_headers_are_refused_case_insensitively():
    assert api.check_headers({"X-Trace": 1}) == {"X-Trace": "1"}
    for name in ("authorization", "Impersonate-Group", "impersonate-extra-scopes", "Host", "Content-Length"):
        with pytest.raises(KubegateError):
            api.check_headers({name: "x"})
    with pytest.raises(KubegateError):
        api.check_headers({"Bad Name": "x"})


@pytest.mark.parametrize("path,expected", [
    ("/api/v1/namespaces/demo/configmaps/web",
     {"prefix": "/api/v1", "namespace": "demo", "resource": "configmaps", "name": "web", "subresource": None}),
    ("/api/v1/namespaces/demo", {"prefix": "/api/v1", "namespace": None, "resource": "namespaces", "name": "demo",
                                 "subresource": None}),
    ("/api/v1/namespaces/demo/status", {"prefix": "/api/v1", "namespace": None, "resource": "namespaces",
                                        "name": "demo", "subresource": "status"}),
    ("/apis/apps/v1/namespaces/x/deployments/d/scale",
     {"prefix": "/apis/apps/v1", "namespace": "x", "resource": "deployments", "name": "d", "subresource": "scale"}),
    ("/api/v1/namespaces/x/services/echo:http/proxy/a/b",
     {"prefix": "/api/v1", "namespace": "x", "resource": "services", "name": "echo:http", "subresource": "proxy/a/b"}),
    ("/apis/wardle.example.com/v1alpha1/flunders",
     {"prefix": "/apis/wardle.example.com/v1alpha1", "namespace": None, "resource": "flunders", "name": None,
      "subresource": None}),
    ("/version", None), ("/apis/apps", None), ("/api/v1", None),
])
def test_resource_path_parsing(path, expected):
    assert passthrough.parse_resource_path(path) == expected


def test_content_comparison_ignores_server_managed_fields():
    before = {"metadata": {"name": "a", "resourceVersion": "1", "managedFields": [1], "generation": 1}, "data": {"k": "v"}}
    after = {"metadata": {"name": "a", "resourceVersion": "2", "managedFields": [2], "generation": 2}, "data": {"k": "v"}}
    assert passthrough._content(before) == passthrough._content(after)
    after["data"]["k"] = "w"
    assert passthrough._content(before) != passthrough._content(after)


def test_diff_masks_secret_values_but_shows_which_changed():
    secret = {"kind": "Secret", "metadata": {"name": "s", "managedFields": []}, "data": {"a": "c2VjcmV0", "b": "eA=="}}
    text = passthrough.for_diff(secret)
    assert "c2VjcmV0" not in text and "eA==" not in text and "managedFields" not in text
    other = passthrough.for_diff({**secret, "data": {"a": "c2VjcmV0", "b": "eQ=="}})
    assert text.splitlines()[2] == other.splitlines()[2]  # same hash for the unchanged key a
    assert text != other


@pytest.mark.parametrize("value,truthy", [(None, False), (False, False), ("", False), ([], False), ({}, False),
                                          (0, True), ("x", True), ([0], True), (True, True)])
def test_jmespath_truthiness(value, truthy):
    assert passthrough._truthy(value) is truthy


def test_proxy_path_escaping():
    assert passthrough.proxy_path("demo", "echo", "https", "https", "/a b/ü") == \
        "/api/v1/namespaces/demo/services/https:echo:https/proxy/a%20b/%C3%BC"
    assert passthrough.proxy_path("demo", "echo") == "/api/v1/namespaces/demo/services/echo/proxy/"


@pytest.mark.parametrize("status,body,fragment", [
    (401, b"", "rejected the credentials"),
    (403, json.dumps({"kind": "Status", "message": 'configmaps is forbidden: User "u" cannot list resource'}).encode(),
     'User "u" cannot list resource'),
    (404, b'{"kind":"Status","message":"not here"}', "not found (404)"),
    (409, b'{"kind":"Status","message":"already exists"}', "conflict (409)"),
    (422, b'{"kind":"Status","message":"bad"}', "invalid (422)"),
    (503, b'{"kind":"Status","message":"no endpoints available for service \\"x\\""}', "no ready endpoints"),
    (500, b"<html>oops</html>", "HTTP 500"),
])
def test_http_errors_map_to_clear_messages(status, body, fragment):
    err = http_error("cluster x (https://h:6443)", "GET", "/p", status, body)
    assert fragment in err.msg and err.status == status and "cluster x" in err.msg

# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""A small API client over one resolved Cluster: request building (path and query validation and escaping, body
encoding by content type, header rules), JSON helpers and the socket for upgrade requests (exec).

The checks here are the collection's input validation for everything that becomes part of a request; they raise
KubegateError with a message naming the problem and what to do instead.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

try:
    from urllib.parse import quote, urlencode
except ImportError:  # pragma: no cover
    from urllib import quote, urlencode

from . import transport
from .errors import KubegateError, parse_status_body

CONTENT_TYPES = {
    "json": "application/json",
    "merge-patch": "application/merge-patch+json",
    "json-patch": "application/json-patch+json",
    "strategic-merge-patch": "application/strategic-merge-patch+json",
    "apply-patch": "application/apply-patch+yaml",
    "text": "text/plain; charset=utf-8",
}
# Headers a task may not set: credentials and identity come from the connection options only.
RESERVED_HEADERS = ("authorization", "proxy-authorization", "impersonate-user", "impersonate-group", "impersonate-uid",
                    "host", "content-length", "transfer-encoding", "connection", "upgrade")
RESERVED_PREFIXES = ("impersonate-extra-",)
# Response headers that are never returned.
HIDDEN_RESPONSE_HEADERS = ("set-cookie", "authorization", "proxy-authorization", "www-authenticate")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def validate_path(path, what="path", spaces=False):
    """A request path as the apiserver sees it: absolute, no scheme/host, no '..' segments, no query string.
    With `spaces`, spaces are allowed (the caller percent-encodes the path)."""
    if not isinstance(path, str) or not path:
        raise KubegateError("%s must be a non-empty string starting with '/', e.g. /api/v1/namespaces" % what)
    if "://" in path or path.startswith("//"):
        raise KubegateError("%s %r must be a path on the apiserver, not a URL: give the server with host/kubeconfig "
                            "and only the path here (e.g. /api/v1/namespaces)" % (what, path))
    if not path.startswith("/"):
        raise KubegateError("%s %r must start with '/' (e.g. /api/v1/namespaces/default/configmaps)" % (what, path))
    if _CONTROL.search(path.replace(" ", "") if spaces else path):
        raise KubegateError("%s %r contains spaces or control characters; percent-encode them" % (what, path))
    if "?" in path or "#" in path:
        raise KubegateError("%s %r contains '?' or '#': pass query parameters with the query option "
                            "(e.g. query: {labelSelector: app=web})" % (what, path))
    for segment in path.split("/"):
        decoded = segment.replace("%2e", ".").replace("%2E", ".")
        if decoded in (".", ".."):
            raise KubegateError("%s %r contains a '%s' segment; use the canonical path without dot segments"
                                % (what, path, segment))
    return path


def query_pairs(query, what="query"):
    """[(key, value)] from a dict (list values repeat the key), a list of pairs/one-key dicts, or None."""
    if query in (None, "", {}, []):
        return []
    pairs = []
    if isinstance(query, dict):
        items = list(query.items())
    elif isinstance(query, (list, tuple)):
        items = []
        for item in query:
            if isinstance(item, dict) and len(item) == 1:
                items.extend(item.items())
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                items.append((item[0], item[1]))
            else:
                raise KubegateError("%s list items must be one-key mappings or [key, value] pairs, got %r"
                                    % (what, item))
    else:
        raise KubegateError("%s must be a mapping of parameter names to values (a list value repeats the "
                            "parameter), got %s" % (what, type(query).__name__))
    for key, value in items:
        if not isinstance(key, str) or not key:
            raise KubegateError("%s parameter names must be non-empty strings, got %r" % (what, key))
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, (dict, list, tuple)):
                raise KubegateError("%s parameter %r must be a string, number or boolean (or a list of them)"
                                    % (what, key))
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif v is None:
                v = ""
            pairs.append((key, str(v)))
    return pairs


def full_path(path, query=None):
    """path plus the encoded query (a mapping or a list of pairs, see query_pairs)."""
    pairs = query_pairs(query)
    return path + ("?" + urlencode(pairs) if pairs else "")


def encode_body(body, content_type, method):
    """(bytes or None, Content-Type header or None)."""
    if body is None:
        return None, None
    preset = content_type or ("merge-patch" if method == "PATCH" else "json")
    if preset == "text" or isinstance(body, str) and preset not in ("json", "json-patch"):
        if not isinstance(body, str):
            raise KubegateError("content_type text needs body to be a string, got %s" % type(body).__name__)
        return body.encode("utf-8"), CONTENT_TYPES[preset]
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as e:
            raise KubegateError("body is a string but not valid JSON for content_type %s (%s); give a mapping/list "
                                "or valid JSON text" % (preset, e))
    if preset == "json-patch" and not isinstance(body, list):
        raise KubegateError("content_type json-patch needs body to be a list of operations "
                            "(e.g. [{op: replace, path: /data/key, value: x}]), got %s" % type(body).__name__)
    if preset in ("merge-patch", "strategic-merge-patch", "apply-patch") and not isinstance(body, dict):
        raise KubegateError("content_type %s needs body to be a mapping, got %s" % (preset, type(body).__name__))
    try:
        data = json.dumps(body, separators=(",", ":"), sort_keys=False)
    except (TypeError, ValueError) as e:
        raise KubegateError("body cannot be encoded as JSON: %s" % e)
    return data.encode("utf-8"), CONTENT_TYPES[preset]


def check_headers(headers):
    """Plain {name: value} from the task's headers, refusing credentials/identity and hop-by-hop headers."""
    out = {}
    for name, value in (headers or {}).items():
        name = str(name)
        lowered = name.lower()
        if not _HEADER_NAME.match(name):
            raise KubegateError("header name %r is not a valid HTTP header name" % name)
        if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_PREFIXES):
            raise KubegateError("header %s cannot be set in headers: credentials and impersonation come from the "
                                "connection options (api_key, client_cert, impersonate_user, ...) and framing "
                                "headers are set by kubegate" % name)
        value = "" if value is None else str(value)
        if "\r" in value or "\n" in value or "\x00" in value:
            raise KubegateError("header %s has a line break or NUL in its value" % name)
        out[name] = value
    return out


def public_headers(headers):
    return dict((k, v) for k, v in headers.items() if k not in HIDDEN_RESPONSE_HEADERS)


def decode_response(response):
    """{'json': ...} when the body is JSON, else {'body': text}; plus 'truncated' when the body was capped."""
    out = {}
    body = response.body or b""
    ctype = response.content_type
    if body and (ctype == "application/json" or ctype.endswith("+json")) and not response.truncated:
        try:
            out["json"] = json.loads(body.decode("utf-8"))
        except ValueError:
            out["body"] = body.decode("utf-8", "replace")
    else:
        out["body"] = body.decode("utf-8", "replace")
    if response.truncated:
        out["truncated"] = True
    return out


class Client(object):
    """Requests to one cluster. Stateless apart from the process-wide connection pool in transport."""

    def __init__(self, cluster):
        self.cluster = cluster

    @property
    def where(self):
        return self.cluster.where

    @property
    def path_prefix(self):
        """The server URL's path (a proxy may serve the API under a prefix); prepended to upgrade request paths."""
        return self.cluster.base_path

    def request(self, method, path, query=None, body=None, headers=None, accepted=None, check=True, max_body=None,
                deadline=None, stream_until=None):
        """Send (body already encoded) and return transport.Response; raise the mapped error when `check` and the
        status is not accepted (default 2xx)."""
        target = full_path(path, query)
        response = transport.request(self.cluster, method, target, body=body, headers=headers, max_body=max_body,
                                     deadline=deadline, stream_until=stream_until)
        if check:
            transport.check_status(self.cluster, method, path, response, accepted)
        return response

    def get_json(self, path, query=None, accepted=None):
        response = self.request("GET", path, query=query, accepted=accepted)
        if response.status == 404 and accepted and 404 in accepted:
            return None
        data = parse_status_body(response.body)
        if data is None:
            raise KubegateError("%s: GET %s did not return a JSON object" % (self.where, path))
        return data

    def open_upgrade(self):
        """(socket, host header, headers) for an upgrade request such as exec."""
        headers, cert, key = transport.auth_headers(self.cluster)
        if self.cluster.impersonate_groups:
            # a list value becomes one header line per group in the upgrade request
            headers["Impersonate-Group"] = list(self.cluster.impersonate_groups)
        sock = transport.open_socket(self.cluster, cert_data=cert, key_data=key)
        host = self.cluster.host if ":" not in self.cluster.host else "[%s]" % self.cluster.host
        return sock, "%s:%d" % (host, self.cluster.port), headers


def quote_segment(value):
    return quote(str(value), safe="")

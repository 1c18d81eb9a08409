# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""The http_route task: render the routing rules as HTTPRoutes (module_utils/_httproute.py) and apply each with
server-side apply through the api_request runner, so check mode (dryRun=All), diff and honest `changed` are the
collection's one implementation of writes rather than a second one."""
from __future__ import annotations

from urllib.parse import quote

from .._httproute import HTTPRouteError, differences, render
from .errors import KubegateError
from .passthrough import run_api_request
from .spec import CONNECTION, DEFAULT_MAX_BODY

FIELD_MANAGER = "kubegate"


def route_path(namespace: str, name: str) -> str:
    return "/apis/gateway.networking.k8s.io/v1/namespaces/%s/httproutes/%s" % (
        quote(namespace, safe=""), quote(name, safe=""))


def run_http_route(params: dict, ctx) -> dict:
    try:
        out = render(params.get("maps"), namespace=params.get("namespace") or "default",
                     parent_refs=params.get("parent_refs"), hostnames=params.get("hostnames"),
                     backend_port=params.get("backend_port") or 80, name_prefix=params.get("name_prefix") or "kubegate",
                     map_hash_bucket_size=params.get("map_hash_bucket_size") or 64)
    except HTTPRouteError as e:
        raise KubegateError("%s\nNothing was sent." % e, problems=e.problems)
    connection = dict((k, params.get(k)) for k in CONNECTION)
    results, diffs, changed = [], [], False
    for route in out["routes"]:
        meta = route["metadata"]
        request = dict(connection, method="PATCH", path=route_path(meta["namespace"], meta["name"]), body=route,
                       content_type="apply-patch", field_manager=FIELD_MANAGER, force=True, query=None,
                       headers=None, status_code=None, watch=False, until=None, max_body_bytes=DEFAULT_MAX_BODY)
        try:
            answer = run_api_request(request, ctx)
        except KubegateError as e:
            if e.status == 404:
                raise KubegateError("%s\nHTTPRoute %s/%s: the apiserver does not serve gateway.networking.k8s.io/v1 "
                                    "httproutes or the namespace does not exist; install the Gateway API CRDs "
                                    "(standard channel) and create the namespace first"
                                    % (e.msg, meta["namespace"], meta["name"]), status=404)
            raise
        changed = changed or answer["changed"]
        applied = answer.get("json") or {}
        results.append({"name": "%s/%s" % (meta["namespace"], meta["name"]), "changed": answer["changed"],
                        "resource_version": (applied.get("metadata") or {}).get("resourceVersion")})
        if answer.get("diff"):
            diffs.append(answer["diff"])
    result = {"changed": changed, "routes": out["routes"], "applied": results, "report": out["report"],
              "differences": len(differences(out["report"])),
              "not_emitted": len([i for i in out["report"] if not i["emitted"]])}
    if ctx.check_mode and out["routes"]:
        result["dry_run"] = True
    if ctx.diff and diffs:
        result["diff"] = diffs
    return result

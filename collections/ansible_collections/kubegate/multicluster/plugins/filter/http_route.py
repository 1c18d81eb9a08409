# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Filters ``http_routes`` (the HTTPRoute objects) and ``http_route_report`` (the per-rule difference report) over
the shared renderer in module_utils/_httproute.py, so playbooks preview exactly what the http_route module applies.

Documentation: http_routes.yml and http_route_report.yml next to this file.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.kubegate.multicluster.plugins.module_utils._httproute import OPTIONS, HTTPRouteError, render


def _int(value):
    """Integers that went through templating often arrive as digit strings."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _render(maps, name, **options):
    unknown = sorted(k for k in options if k not in OPTIONS)
    if unknown:
        raise AnsibleFilterError("%s: unknown option(s) %s (allowed: %s)" % (name, ", ".join(unknown), ", ".join(OPTIONS)))
    for key in ("backend_port", "map_hash_bucket_size"):
        if key in options:
            options[key] = _int(options[key])
    try:
        return render(maps, **options)
    except HTTPRouteError as exc:
        raise AnsibleFilterError("%s: %s" % (name, exc)) from None


def http_routes(maps, **options):
    """The HTTPRoute objects for ``maps`` (options as for the http_route module)."""
    return _render(maps, "http_routes", **options)["routes"]


def http_route_report(maps, **options):
    """The per-rule report: what was emitted, what differs from nginx and what to do."""
    return _render(maps, "http_route_report", **options)["report"]


class FilterModule(object):
    """kubegate.multicluster Gateway API filters."""

    def filters(self):
        return {"http_routes": http_routes, "http_route_report": http_route_report}

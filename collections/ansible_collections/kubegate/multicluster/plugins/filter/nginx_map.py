# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Filters ``nginx_map`` (render) and ``nginx_map_problems`` (validate) over the shared map renderer.

Documentation: nginx_map.yml and nginx_map_problems.yml next to this file. The logic lives in
module_utils/_nginx_map.py so the module and the filters render byte-identical text.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.kubegate.multicluster.plugins.module_utils._nginx_map import (
    DEFAULT_MAP_HASH_BUCKET_SIZE,
    NginxMapError,
    render,
    render_snippets,
    routing_checks,
    validate,
)

PARTS = ("map", "location_snippet", "checks")


def _bucket_size(value):
    """Accept integers and digit strings (values that went through templating often arrive as strings)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def nginx_map(maps, map_hash_bucket_size=DEFAULT_MAP_HASH_BUCKET_SIZE, part="map"):
    """Render ``maps`` (``part=map``), the location snippet that consumes them (``part=location_snippet``), or list
    the requests that prove the routing (``part=checks``, the module's ``checks``: one rule for both)."""
    if part not in PARTS:
        raise AnsibleFilterError("nginx_map: part must be one of %s, got %r" % (", ".join(PARTS), part))
    try:
        if part == "map":
            return render(maps, map_hash_bucket_size=_bucket_size(map_hash_bucket_size))
        if part == "checks":
            render(maps, map_hash_bucket_size=_bucket_size(map_hash_bucket_size))  # only valid rules have checks
            return routing_checks(maps)
        return render_snippets(maps, map_hash_bucket_size=_bucket_size(map_hash_bucket_size))["location_snippet"]
    except NginxMapError as exc:
        raise AnsibleFilterError("nginx_map: %s" % exc) from None


def nginx_map_problems(maps, map_hash_bucket_size=DEFAULT_MAP_HASH_BUCKET_SIZE):
    """Every problem in ``maps`` as a list of messages (empty when nginx_map would render them)."""
    return validate(maps, map_hash_bucket_size=_bucket_size(map_hash_bucket_size))


class FilterModule(object):
    """kubegate.multicluster nginx map filters."""

    def filters(self):
        return {
            "nginx_map": nginx_map,
            "nginx_map_problems": nginx_map_problems,
        }

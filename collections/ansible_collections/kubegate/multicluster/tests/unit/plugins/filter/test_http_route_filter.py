# -*- coding: utf-8 -*-
"""The http_routes / http_route_report filters: the module's renderer, templated integers accepted, bad input as an
AnsibleFilterError listing every problem (never another exception)."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubegate.multicluster.plugins.filter.http_route import FilterModule
from ansible_collections.kubegate.multicluster.plugins.module_utils._httproute import render

FILTERS = FilterModule().filters()
MAPS = [{"source": "$http_x_version", "variable": "$kubegate_backend", "default": "stable",
         "entries": [{"key": "v2", "value": "canary"}]}]
PARENTS = [{"name": "kubegate", "namespace": "gateway-system"}]


def test_filters_return_what_the_renderer_returns():
    expected = render(MAPS, namespace="demo", parent_refs=PARENTS, backend_port=8080)
    assert FILTERS["http_routes"](MAPS, namespace="demo", parent_refs=PARENTS, backend_port="8080") == \
        expected["routes"]
    assert FILTERS["http_route_report"](MAPS, namespace="demo", parent_refs=PARENTS, backend_port=8080) == \
        expected["report"]


def test_bad_input_is_a_filter_error_with_every_problem():
    with pytest.raises(AnsibleFilterError) as info:
        FILTERS["http_routes"]([{"source": "$http_x", "variable": "$host", "entries": {"a;": "b"}}],
                               parent_refs=[{"name": "Gateway"}])
    text = str(info.value)
    assert text.startswith("http_routes: 3 problems in the routing rules for HTTPRoutes:")
    assert "$host" in text and "';'" in text and "parent_refs[0]" in text


def test_unknown_option_is_a_filter_error():
    with pytest.raises(AnsibleFilterError) as info:
        FILTERS["http_route_report"](MAPS, parent_refs=PARENTS, colour="red")
    assert str(info.value).startswith("http_route_report: unknown option(s) colour (allowed: namespace, parent_refs,")

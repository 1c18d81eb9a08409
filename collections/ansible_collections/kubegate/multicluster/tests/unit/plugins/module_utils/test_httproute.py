# -*- coding: utf-8 -*-
"""The HTTPRoute renderer (module_utils/_httproute.py): shapes, input problems, and an equivalence test.

Equivalence: every rule shape of the nginx map golden corpus and of inventories/lab is rendered both ways. Each probe
(the golden probes, the maps' routing checks, letter-case variants of every key) is answered by a real nginx serving
the rendered map and by a small evaluator of the Gateway API spec's HTTPRoute matching (header names case-insensitive,
Exact values case-sensitive, RegularExpression as RE2-style full match, equally specific matches -> first rule in list
order, no match -> no route). Every probe where the two disagree must be explained by a reported difference on a rule
involved.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.kubegate.multicluster.plugins.module_utils._httproute import (
    HTTPRouteError, differences, header_of, render, validate)
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.maptask import routing_checks
from ansible_collections.kubegate.multicluster.plugins.module_utils._nginx_map import render as render_nginx

from ansible_collections.kubegate.multicluster.tests.unit.plugins.module_utils.test_nginx_map import (
    GOLDEN, LiveNginx, load_golden)

REPO = Path(__file__).resolve().parents[8]
PARENTS = [{"name": "kubegate", "namespace": "gateway-system"}]
# Differences that concern other routes or the cluster, not how this route matches a request.
NOT_ABOUT_MATCHING = ("catch-all-overlap", "reference-grant")
LAB_MAPS = sorted((REPO / "inventories" / "lab" / "group_vars").glob("*.yml"))


def lab_cases():
    out = []
    for path in LAB_MAPS:
        maps = (yaml.safe_load(path.read_text()) or {}).get("kubegate_routing_maps")
        if maps:
            out.append(("lab-" + path.stem, maps, 64, []))
    return out


def corpus():
    cases = [(name,) + load_golden(name) for name in sorted(p.stem for p in GOLDEN.glob("*.yml"))]
    return cases + lab_cases()


# ---------------------------------------------------------------------------------------------------------------
# a model of the Gateway API spec's HTTPRoute matching (one route at a time)


def _ows(value):
    return value.strip(" \t")


def gateway_route(route, headers):
    """The rule name that serves a request with ``headers``, or None (404)."""
    lowered = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), _ows(value))  # header names are case-insensitive; first value only
    best = None
    for index, rule in enumerate(route["spec"]["rules"]):
        for match in rule.get("matches") or [{}]:
            ok = True
            for h in match.get("headers", []):
                got = lowered.get(h["name"].lower())
                if got is None:
                    ok = False
                elif h["type"] == "Exact":
                    ok = ok and got == h["value"]  # Exact: case-sensitive
                else:
                    ok = ok and re.fullmatch(h["value"], got) is not None  # RE2-style implementations: full match
            if ok:
                # precedence: more header matches first; ties -> the first rule in list order
                rank = (-len(match.get("headers", [])), index)
                if best is None or rank < best[0]:
                    best = (rank, rule)
    return None if best is None else best[1]


def gateway_value(route, headers, backends_to_value):
    rule = gateway_route(route, headers)
    if rule is None:
        return None
    return backends_to_value[rule["backendRefs"][0]["name"]]


def probes_for(maps, probes):
    """The corpus probes, each map's routing checks (what reload-ingress.yml proves after a reload), and for each
    exact key the key and its upper/lower-case spellings, and no header."""
    out = [(p["variable"].lstrip("$"), p["headers"]) for p in probes]
    for m in maps:
        out.extend((m["variable"].lstrip("$"), check["headers"]) for check in routing_checks([m]))
    for m in maps:
        header = header_of(m["source"])
        if not header:
            continue
        raw = m["entries"]
        entries = raw.items() if isinstance(raw, dict) else [(e["key"], e["value"]) for e in raw]
        for key, _value in entries:
            key = str(key)
            if key.startswith("~") or not key:
                continue
            for variant in sorted({key, key.upper(), key.lower()}):
                out.append((m["variable"].lstrip("$"), {header: variant}))
        out.append((m["variable"].lstrip("$"), {}))
    return out


@pytest.mark.parametrize("case", corpus(), ids=lambda c: c[0])
def test_equivalence_with_real_nginx(case):
    _name, maps, bucket, probes = case
    out = render(maps, namespace="demo", parent_refs=PARENTS, map_hash_bucket_size=bucket)
    routes = dict((r["metadata"]["annotations"]["kubegate.io/map-variable"].lstrip("$"), r) for r in out["routes"])
    by_map = {}
    for item in out["report"]:
        by_map.setdefault(item["map"].split(" (")[1].rstrip(")").lstrip("$"), []).append(item)
    unexplained = []
    with LiveNginx(render_nginx(maps, bucket), bucket) as server:
        for variable, headers in probes_for(maps, probes):
            nginx = server.get(variable, headers).decode("utf-8")
            route = routes.get(variable)
            items = by_map[variable]
            if route is None:
                assert all(i["differences"] and not i["emitted"] for i in items)  # the whole map is reported
                continue
            values = dict((i["value"], i["value"]) for i in items if i["emitted"])
            gateway = gateway_value(route, headers, values)
            if gateway == nginx or (gateway is None and nginx == ""):
                continue
            # the rule nginx chose or the one the route chose must carry a difference about matching
            # (a value with variables can yield any text)
            involved = [i for i in items if i["value"] in (nginx, gateway) or "$" in (i["value"] or "")
                        or (i["entry"] == "default" and gateway is None)]
            if not any(d["kind"] not in NOT_ABOUT_MATCHING for i in involved for d in i["differences"]):
                unexplained.append((variable, headers, nginx, gateway))
    assert not unexplained, "differences nginx/HTTPRoute missing from the report: %r" % unexplained


def test_differences_are_real_and_case_explained():
    """The lab rule set: V1 goes to canary/stable differently, and exactly the case difference says so."""
    maps = [{"source": "$http_x_version", "variable": "$kubegate_backend", "default": "stable",
             "entries": [{"key": "v1", "value": "one"}, {"key": "~^v3-", "value": "next"}]}]
    out = render(maps, namespace="demo", parent_refs=PARENTS)
    route = out["routes"][0]
    values = {"one": "one", "next": "next", "stable": "stable"}
    assert gateway_value(route, {"x-version": "v1"}, values) == "one"
    assert gateway_value(route, {"X-Version": "V1"}, values) == "stable"  # nginx: "one"
    assert [d["kind"] for d in out["report"][0]["differences"]] == ["case"]
    assert gateway_value(route, {"X-Version": "v3-beta"}, values) == "next"
    assert gateway_value(route, {"X-Version": "xv3-"}, values) == "stable"


# ---------------------------------------------------------------------------------------------------------------
# shapes


def test_lab_rules_render_exact_regex_default_in_nginx_order():
    maps = yaml.safe_load((REPO / "inventories/lab/group_vars/acme.yml").read_text())["kubegate_routing_maps"]
    route = render(maps, namespace="demo", parent_refs=PARENTS)["routes"][0]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == "kubegate-backend" and route["metadata"]["namespace"] == "demo"
    assert route["spec"]["parentRefs"] == PARENTS
    assert [(r["name"], r.get("matches"), r["backendRefs"]) for r in route["spec"]["rules"]] == [
        ("exact-1", [{"headers": [{"type": "Exact", "name": "X-Version", "value": "v1"}]}],
         [{"name": "stable", "port": 80}]),
        ("exact-2", [{"headers": [{"type": "Exact", "name": "X-Version", "value": "v2"}]}],
         [{"name": "canary", "port": 80}]),
        ("regex-1", [{"headers": [{"type": "RegularExpression", "name": "X-Version", "value": ".*(?:^v3-).*"}]}],
         [{"name": "next", "port": 80}]),
        ("default", None, [{"name": "stable", "port": 80}]),
    ]


def test_backends_mapping_groups_exact_keys_and_crosses_namespaces():
    maps = [{"source": "$http_x_tier", "variable": "tier", "default": "shared",
             "backends": {"gold": {"name": "gold-svc", "port": 8080, "namespace": "vip"}, "shared": "shared-svc"},
             "entries": {"gold": "gold", "platinum": "gold", "~*^silver": "shared"}}]
    out = render(maps, namespace="demo", parent_refs=PARENTS, hostnames=["shop.example.com"], backend_port=8000)
    rules = out["routes"][0]["spec"]["rules"]
    assert out["routes"][0]["spec"]["hostnames"] == ["shop.example.com"]
    assert rules[0]["backendRefs"] == [{"name": "gold-svc", "port": 8080, "namespace": "vip"}]
    assert [m["headers"][0]["value"] for m in rules[0]["matches"]] == ["gold", "platinum"]
    assert rules[1]["matches"][0]["headers"][0]["value"] == "(?i).*(?:^silver).*"
    assert rules[2] == {"name": "default", "backendRefs": [{"name": "shared-svc", "port": 8000}]}
    kinds = [d["kind"] for d in out["report"][0]["differences"]]
    assert "reference-grant" in kinds and "case" in kinds


def test_not_expressible_rules_are_reported_not_emitted():
    maps = [{"source": "$http_x_a", "variable": "kg_a", "allow_variables_in_values": True,
             "entries": [{"key": "~^(?<v>\\d)$", "value": "svc-$v"}, {"key": "~^(?=x)", "value": "look"},
                         {"key": "", "value": "empty"}, {"key": "k", "value": "Not A Service"}]},
            {"source": "$http_x_a:$http_x_b", "variable": "kg_b", "entries": {"a:b": "ab"}}]
    out = render(maps, namespace="demo", parent_refs=PARENTS)
    kinds = dict((i["key"], [d["kind"] for d in i["differences"]]) for i in out["report"] if i["entry"] != "default")
    assert kinds == {"~^(?<v>\\d)$": ["variable-value"], "~^(?=x)": ["regex-not-portable"], "": ["empty-key"],
                     "k": ["not-a-service"], "a:b": ["source-not-expressible"]}
    assert all(i["emitted"] is None for i in out["report"])
    assert [r["metadata"]["name"] for r in out["routes"]] == ["kubegate-kg-a"]
    assert [r["name"] for r in out["routes"][0]["spec"]["rules"]] == []
    assert len(differences(out["report"])) == len(out["report"])


def test_too_many_rules_is_reported():
    maps = [{"source": "$http_x_a", "variable": "kg", "default": "d",
             "entries": [{"key": "k%d" % i, "value": "v%d" % i} for i in range(20)]}]
    out = render(maps, namespace="demo", parent_refs=PARENTS)
    assert out["routes"] == []
    assert all("too-large" in [d["kind"] for d in i["differences"]] for i in out["report"])


def test_input_problems_are_listed_and_nothing_rendered():
    maps = [{"source": "$http_x_a", "variable": "kg", "entries": {"V": "a", "v": "b"},
             "backends": {"a": {"name": "Bad_Name", "port": 0}}}]
    problems = validate(maps, namespace="Demo", parent_refs=[{"name": "gw", "color": "red"}],
                        hostnames=["Example.com", "a.b"])
    assert problems == [
        'map[0]: backends["a"]: name "Bad_Name" is not a valid Service name (lower-case RFC 1035 label, at most 63 '
        'characters)',
        'map[0]: backends["a"]: port must be a port number 1-65535, got 0 (an integer)',
        'map[0] ($kg) entry[1] (key "v"): differs only in letter case from entry[0] (key "V"); nginx compares exact '
        'keys case-insensitively and rejects such a map ("conflicting parameter")',
        'namespace "Demo" is not a valid namespace name (lower-case RFC 1123 label)',
        'parent_refs[0]: unknown field "color" (allowed: name, namespace, sectionName)',
        "hostnames[0] \"Example.com\" is not a valid HTTPRoute hostname (lower-case DNS name, optionally starting "
        "with '*.'; no IP addresses, ports or trailing dots)",
    ]
    with pytest.raises(HTTPRouteError) as info:
        render(maps, namespace="demo", parent_refs=PARENTS)
    assert len(info.value.problems) == 3
    assert validate(maps[:0], parent_refs=None) == [
        "parent_refs is required: the Gateway(s) the routes attach to, e.g. [{name: kubegate, namespace: "
        "gateway-system}]"]


def test_render_is_deterministic():
    maps = load_golden("header_routing")[0]
    assert render(maps, parent_refs=PARENTS) == render(maps, parent_refs=PARENTS)


def test_host_header_source_points_to_hostnames():
    out = render([{"source": "$http_host", "variable": "kg_h", "default": "web", "entries": {"a.example.com": "a"}}],
                 parent_refs=PARENTS)
    assert out["routes"] == []
    texts = [d["text"] for i in out["report"] for d in i["differences"]]
    assert texts and all("route's hostnames" in t for t in texts)


MASK_HOSTS = ["a.example.com", ".example.com", "a..example.com", "example.com", "A.B.EXAMPLE.COM.", "example.org",
              ".example.org", "x.example.org", "www.example.de", "www.example.", "www.example.co.uk",
              "WWW.EXAMPLE.DE.", "a.example.com:80"]


@pytest.mark.parametrize("mask", ["*.example.com", ".example.org", "www.example.*"])
def test_host_mask_regex_matches_like_nginx(mask):
    """A mask's emitted regex (RE2-style full match) selects exactly the hosts nginx's hostnames map selects."""
    maps = [{"source": "$http_x_h", "variable": "kg_m", "hostnames": True, "default": "no",
             "entries": {mask: "yes"}}]
    route = render(maps, parent_refs=PARENTS)["routes"][0]
    with LiveNginx(render_nginx(maps)) as server:
        for host in MASK_HOSTS:
            nginx = server.get("kg_m", {"X-H": host}).decode("utf-8")
            assert gateway_value(route, {"X-H": host}, {"yes": "yes", "no": "no"}) == nginx, host


def test_pcre_only_syntax_is_not_emitted_and_the_common_subset_is():
    """The nginx_map unit tests' PCRE list: what RE2 also reads is emitted, the rest reported as not portable."""
    from ansible_collections.kubegate.multicluster.tests.unit.plugins.module_utils.test_nginx_map import (
        PCRE_ONLY_VALID)
    extra = [r"^x{2}+$", r"(?-1)a"]
    maps = [{"source": "$http_x_a", "variable": "kg_pcre", "default": "d",
             "entries": [{"key": "~" + p, "value": "v%d" % i} for i, p in enumerate(PCRE_ONLY_VALID + extra)]}]
    report = render(maps, parent_refs=PARENTS)["report"]
    emitted = [i["key"][1:] for i in report if i["emitted"] and i["entry"] != "default"]
    assert emitted == [r"\Qa(b\E", r"^[[:alpha:]]+$", r"\p{L}+", r"(?i)ab(?-i)c", r"ab(?i)c", r"\x{41}", r"a\z"]
    for item in report:
        if not item["emitted"]:
            assert [d["kind"] for d in item["differences"]] == ["regex-not-portable"], item

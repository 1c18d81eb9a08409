# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Render kubegate's routing rules (``kubegate_routing_maps``, the input of the nginx map renderer) as Gateway API
``HTTPRoute`` objects (gateway.networking.k8s.io/v1), with a per-rule report of every semantic difference.

Why a second renderer: ingress-nginx is retired and tenants move to the Gateway API, but header maps kept in nginx
configuration are not converted by ingress2gateway. The same rules are rendered both ways during the migration, so
nothing may be silently approximated: whatever an HTTPRoute cannot say exactly is either emitted with a reported
difference or not emitted and reported as not expressible.

Pure and standard library only (shared by the ``http_route`` module and the ``http_routes`` / ``http_route_report``
filters). The rules are parsed and validated by ``_nginx_map`` (one rule in one place); this file only adds the
optional ``backends`` mapping of each map (value -> Service) and the Gateway API side.

Mapping (docs/gateway-api.md has the table):
  * a map whose ``source`` is one request header (``$http_x_version``) becomes one HTTPRoute; other sources (several
    variables, ``$host``, cookies, arguments) are reported as not expressible;
  * exact keys -> ``Exact`` header matches, grouped into one rule per backend (exact keys never overlap);
  * host masks of ``hostnames`` maps -> ``RegularExpression`` matches ordered like nginx (longest ``*.x``/``.x``
    first, then longest ``x.*``), regex keys -> ``RegularExpression`` matches in file order, consecutive keys with
    the same value sharing a rule; the pattern is wrapped as ``.*(?:RE).*`` so implementations that match the whole
    value (Envoy/RE2) and those that search in it (nginx/PCRE) agree, ``~*`` adds ``(?i)``;
  * the default -> the last rule, without matches (the catch-all);
  * rules are emitted exact first, then masks, then regexes: the spec gives equally specific matches (one header
    match each) to the first rule in list order, which is nginx's precedence.

Report: a list of items, one per entry plus one for the default, each ``{map, route, entry, key, value, emitted,
differences: [{kind, text, what_to_do}]}``; ``emitted`` describes the match and backend written, or is null.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from ._nginx_map import _analyse, _is_list, _show, _type_name

API_VERSION = "gateway.networking.k8s.io/v1"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubegate"}
VARIABLE_LABEL = "kubegate.io/map-variable"
# Limits of the HTTPRoute CRD (standard channel, v1.6): the apiserver rejects more.
MAX_RULES = 16
MAX_MATCHES_PER_RULE = 64
MAX_MATCHES_TOTAL = 128
MAX_BACKENDS = 16
MAX_HOSTNAMES = 16
MAX_HEADER_VALUE = 4096
MAX_PARENT_REFS = 32

_DNS_LABEL = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")          # namespaces, rule names (RFC 1123 label)
_SERVICE_NAME = re.compile(r"\A[a-z]([-a-z0-9]*[a-z0-9])?\Z")          # Service names (RFC 1035 label)
_DNS_SUBDOMAIN = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_HOSTNAME = re.compile(r"\A(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_HEADER_VARIABLE = re.compile(r"\A\$\{?http_([a-z0-9_]+)\}?\Z")
# PCRE syntax RE2 (Envoy-based Gateway implementations) rejects: lookaround, atomic groups, backreferences, possessive
# quantifiers, recursion, verbs, \K \R \h \G and friends. Such keys are reported and not emitted.
_PCRE_ONLY = [
    (re.compile(r"\(\?<?[=!]"), "lookaround (?=, (?!, (?<=, (?<!"),
    (re.compile(r"\(\?>"), "an atomic group (?>...)"),
    (re.compile(r"\(\?(?:R|[0-9]|[+-][0-9]|&|P>|\|)"), "recursion, a subroutine call or a branch reset"),
    (re.compile(r"\(\*[A-Z]"), "a PCRE verb such as (*UTF) or (*SKIP)"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\(?:[1-9]|g|k)"), "a backreference"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\[KRhHGNXoe]"), "an escape RE2 does not know (\\K, \\R, \\h, \\G, \\N, ...)"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\c[A-Za-z]"), "a control escape \\cX"),
    (re.compile(r"(?:[+*?]|\{\d+(?:,\d*)?\})\+"), "a possessive quantifier"),
    (re.compile(r"\(\?<[A-Za-z_]"), "a named group written (?<name>...) (RE2 only knows (?P<name>...))"),
    (re.compile(r"\{,"), "a {,n} quantifier"),
]

OPTIONS = ("namespace", "parent_refs", "hostnames", "backend_port", "name_prefix", "map_hash_bucket_size")


class HTTPRouteError(Exception):
    """Invalid input. ``problems`` lists every problem (nginx map problems and Gateway API ones)."""

    def __init__(self, problems):
        self.problems = list(problems)
        count = len(self.problems)
        head = "%d problem%s in the routing rules for HTTPRoutes:" % (count, "" if count == 1 else "s")
        super().__init__("\n".join([head] + ["  - " + p for p in self.problems]))

    def __reduce__(self):
        return (self.__class__, (self.problems,))


# ---------------------------------------------------------------------------------------------------------------
# public API


def validate(maps, namespace="default", parent_refs=None, hostnames=None, backend_port=80, name_prefix="kubegate",
             map_hash_bucket_size=64) -> list:
    """Every problem with the input (empty when render() succeeds). Never raises for bad input.

    Problems are input errors (the nginx map rules, ``backends``, the route options); rules that are valid but not
    expressible as HTTPRoutes are not problems, they are in render()'s report.
    """
    return _prepare(maps, namespace, parent_refs, hostnames, backend_port, name_prefix, map_hash_bucket_size)[0]


def render(maps, namespace="default", parent_refs=None, hostnames=None, backend_port=80, name_prefix="kubegate",
           map_hash_bucket_size=64) -> dict:
    """``{"routes": [HTTPRoute, ...], "report": [item, ...]}``; raises HTTPRouteError listing every input problem.

    ``parent_refs``: list of ``{name, namespace?, sectionName?}`` (the Gateway(s) the routes attach to);
    ``hostnames``: the routes' hostnames (optional); ``backend_port``: Service port for values without a
    ``backends`` entry that gives one; ``name_prefix``: route names are ``<prefix>-<variable>`` (the prefix is not repeated).
    """
    problems, norm, backends, opts = _prepare(maps, namespace, parent_refs, hostnames, backend_port, name_prefix,
                                              map_hash_bucket_size)
    if problems:
        raise HTTPRouteError(problems)
    routes, report = [], []
    for m in norm:
        route = _render_map(m, backends.get(m.index) or {}, opts, report)
        if route is not None:
            routes.append(route)
    return {"routes": routes, "report": report}


def differences(report) -> list:
    """The report items that carry at least one difference (what a migration must look at)."""
    return [item for item in report or [] if item.get("differences")]


def header_of(source):
    """``X-Version`` for ``$http_x_version`` / ``${http_x_version}``; None for any other source."""
    match = _HEADER_VARIABLE.match(source or "")
    if not match:
        return None
    return "-".join(part.capitalize() for part in match.group(1).split("_"))


# ---------------------------------------------------------------------------------------------------------------
# input


def _prepare(maps, namespace, parent_refs, hostnames, backend_port, name_prefix, bucket):
    problems = []
    stripped, backends = _split_backends(maps, problems)
    nginx_problems, norm = _analyse(stripped, bucket)
    problems.extend(nginx_problems)
    opts = {"namespace": namespace, "backend_port": backend_port, "name_prefix": name_prefix}
    if not isinstance(namespace, str) or not _DNS_LABEL.match(namespace) or len(namespace) > 63:
        problems.append("namespace %s is not a valid namespace name (lower-case RFC 1123 label)"
                        % _show_any(namespace))
    if isinstance(backend_port, bool) or not isinstance(backend_port, int) or not 1 <= backend_port <= 65535:
        problems.append("backend_port must be a port number 1-65535, got %s" % _show_any(backend_port))
    if not isinstance(name_prefix, str) or not _DNS_LABEL.match(name_prefix) or len(name_prefix) > 100:
        problems.append("name_prefix %s must be a lower-case RFC 1123 label (e.g. kubegate)" % _show_any(name_prefix))
    opts["parent_refs"] = _parent_refs(parent_refs, problems)
    opts["hostnames"] = _hostnames(hostnames, problems)
    for m in norm:
        if m.variable is not None:
            name = _route_name(name_prefix if isinstance(name_prefix, str) else "kubegate", m.variable)
            if len(name) > 253:
                problems.append("%s: route name %s is longer than 253 characters" % (_label(m), name))
    return problems, norm, backends, opts


def _split_backends(maps, problems):
    """The maps without ``backends`` (for the nginx validator) and each map's parsed backends by map index."""
    if not _is_list(maps):
        return maps, {}
    stripped, backends = [], {}
    for index, raw in enumerate(maps):
        if not isinstance(raw, Mapping) or "backends" not in raw:
            stripped.append(raw)
            continue
        stripped.append(dict((k, v) for k, v in raw.items() if k != "backends"))
        backends[index] = _backends(raw["backends"], "map[%d]" % index, problems)
    return stripped, backends


def _backends(raw, where, problems):
    """``{value: {name, port?, namespace?}}``; a string stands for ``{name: string}``."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append("%s: backends must be a mapping of map value -> Service ({name, port, namespace} or a "
                        "Service name), got %s" % (where, _type_name(raw)))
        return {}
    out = {}
    for value, ref in raw.items():
        at = "%s: backends[%s]" % (where, _show(str(value)))
        if isinstance(ref, str):
            ref = {"name": ref}
        if not isinstance(ref, Mapping):
            problems.append("%s must be a Service name or {name, port, namespace}, got %s" % (at, _type_name(ref)))
            continue
        unknown = [k for k in ref if k not in ("name", "port", "namespace")]
        for key in unknown:
            problems.append("%s: unknown field %s (allowed: name, port, namespace)" % (at, _show_any(key)))
        name, port, ns = ref.get("name"), ref.get("port"), ref.get("namespace")
        ok = not unknown
        if not isinstance(name, str) or not _SERVICE_NAME.match(name) or len(name) > 63:
            problems.append("%s: name %s is not a valid Service name (lower-case RFC 1035 label, at most 63 "
                            "characters)" % (at, _show_any(name)))
            ok = False
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
            problems.append("%s: port must be a port number 1-65535, got %s" % (at, _show_any(port)))
            ok = False
        if ns is not None and (not isinstance(ns, str) or not _DNS_LABEL.match(ns) or len(ns) > 63):
            problems.append("%s: namespace %s is not a valid namespace name" % (at, _show_any(ns)))
            ok = False
        if ok:
            out[str(value)] = dict((k, v) for k, v in (("name", name), ("port", port), ("namespace", ns))
                                   if v is not None)
    return out


def _parent_refs(raw, problems):
    if raw is None or (_is_list(raw) and not raw):
        problems.append("parent_refs is required: the Gateway(s) the routes attach to, e.g. [{name: kubegate, "
                        "namespace: gateway-system}]")
        return []
    if not _is_list(raw):
        problems.append("parent_refs must be a list of {name, namespace, sectionName}, got %s" % _type_name(raw))
        return []
    if len(raw) > MAX_PARENT_REFS:
        problems.append("parent_refs has %d items; an HTTPRoute allows at most %d" % (len(raw), MAX_PARENT_REFS))
    out = []
    for i, ref in enumerate(raw):
        at = "parent_refs[%d]" % i
        if not isinstance(ref, Mapping):
            problems.append("%s must be a dict {name, namespace, sectionName}, got %s" % (at, _type_name(ref)))
            continue
        unknown = [k for k in ref if k not in ("name", "namespace", "sectionName")]
        for key in unknown:
            problems.append("%s: unknown field %s (allowed: name, namespace, sectionName)" % (at, _show_any(key)))
        clean = {}
        for key in ("name", "namespace", "sectionName"):
            value = ref.get(key)
            if value is None and key != "name":
                continue
            pattern, limit = (_DNS_LABEL, 63) if key == "namespace" else (_DNS_SUBDOMAIN, 253)
            if not isinstance(value, str) or not pattern.match(value) or len(value) > limit:
                problems.append("%s: %s %s is not a valid Kubernetes name" % (at, key, _show_any(value)))
                continue
            clean[key] = value
        if not unknown and "name" in clean:
            out.append(clean)
    return out


def _hostnames(raw, problems):
    if raw is None:
        return []
    if not _is_list(raw):
        problems.append("hostnames must be a list of host names, got %s" % _type_name(raw))
        return []
    if len(raw) > MAX_HOSTNAMES:
        problems.append("hostnames has %d items; an HTTPRoute allows at most %d" % (len(raw), MAX_HOSTNAMES))
    out = []
    for i, host in enumerate(raw):
        if not isinstance(host, str) or not _HOSTNAME.match(host) or len(host) > 253:
            problems.append("hostnames[%d] %s is not a valid HTTPRoute hostname (lower-case DNS name, optionally "
                            "starting with '*.'; no IP addresses, ports or trailing dots)" % (i, _show_any(host)))
        else:
            out.append(host)
    return out


# ---------------------------------------------------------------------------------------------------------------
# one map -> one HTTPRoute


def _render_map(m, backends, opts, report):
    label = _label(m)
    name = _route_name(opts["name_prefix"], m.variable)
    where = "%s/%s" % (opts["namespace"], name)
    header = header_of(m.source)
    items = [_item(label, where, e.index, e.key, e.value) for e in m.entries]
    default_item = _item(label, where, "default", None, m.default)
    if header is None or header.lower() == "host":
        what = _inexpressible_source(m.source, header)
        for item in items + [default_item]:
            _differ(item, "source-not-expressible",
                    "source %s %s; an HTTPRoute matches single request headers (and the Host through hostnames), "
                    "so this map is not emitted" % (_show(m.source), what),
                    "route on one header per map (source: $http_<name>), or write this HTTPRoute by hand (a match "
                    "may AND several headers)")
        report.extend(items + [default_item])
        return None

    exact, masks_head, masks_tail, regex = [], [], [], []
    for entry, item in zip(m.entries, items):
        if entry.kind == "exact" and entry.key == "":
            if entry.value != m.default:
                _differ(item, "empty-key",
                        "the key \"\" matches a missing or empty %s header in nginx; an HTTPRoute cannot match an "
                        "absent header, such requests reach the catch-all (%s) instead" % (header, _show_default(m)),
                        "make the default the value of the \"\" key, or send the header")
            else:
                item["emitted"] = "covered by the catch-all rule (same value as the default)"
            continue
        backend = _backend(entry.value, backends, opts, item, m)
        if backend is None:
            continue
        if entry.kind == "exact":
            _exact(entry, item, header, m)
            exact.append((entry, item, backend))
        elif entry.kind == "mask":
            pattern, head = _mask_pattern(entry.key)
            _differ(item, "host-mask",
                    "nginx host mask %s emitted as the case-insensitive RegularExpression %s (an HTTPRoute has no "
                    "mask match for headers; RegularExpression is implementation-specific); masks are ordered like "
                    "nginx: longest *.x/.x first, then longest x.*" % (_show(entry.key), _show(pattern)),
                    "check the Gateway implementation's regex dialect; if the header is the Host, use the route's "
                    "hostnames instead (*.example.com)")
            (masks_head if head else masks_tail).append((entry, item, backend, pattern))
        else:
            pattern = _regex_pattern(entry, item)
            if pattern is not None:
                regex.append((entry, item, backend, pattern))

    rules = []
    # Exact keys never overlap: one rule per backend, in first-seen order.
    by_backend = {}
    for entry, item, backend in exact:
        key = _backend_key(backend)
        if key not in by_backend:
            by_backend[key] = {"kind": "exact", "backend": backend, "matches": [], "items": []}
            rules.append(by_backend[key])
        by_backend[key]["matches"].append(_header_match("Exact", header, entry.key))
        by_backend[key]["items"].append((item, "header %s Exact %s" % (header, _show(entry.key))))
    # Masks like nginx: longest *.x / .x first, then longest x.*; each its own rule (order is the precedence).
    for group in (masks_head, masks_tail):
        for entry, item, backend, pattern in sorted(group, key=lambda t: -len(t[0].key.strip("*."))):
            match = _header_match("RegularExpression", header, pattern)
            rules.append({"kind": "mask", "backend": backend, "matches": [match],
                          "items": [(item, "header %s RegularExpression %s" % (header, _show(pattern)))]})
    # Regexes in file order; consecutive ones with the same backend share a rule (same outcome whichever matches).
    for entry, item, backend, pattern in regex:
        if rules and rules[-1]["kind"] == "regex" and rules[-1]["backend"] == backend:
            rule = rules[-1]
        else:
            rule = {"kind": "regex", "backend": backend, "matches": [], "items": []}
            rules.append(rule)
        rule["matches"].append(_header_match("RegularExpression", header, pattern))
        rule["items"].append((item, "header %s RegularExpression %s" % (header, _show(pattern))))
    regex_rules = [r for r in rules if r["kind"] in ("regex", "mask")]
    if len(set(_backend_key(r["backend"]) for r in regex_rules)) > 1:
        for rule in regex_rules:
            for item, _text in rule["items"]:
                _differ(item, "precedence",
                        "nginx tries regexes in file order; the HTTPRoute lists them in the same order and the spec "
                        "gives equally specific matches to the first rule in list order, but a RegularExpression "
                        "match is implementation-specific and some implementations order them differently",
                        "make the regexes mutually exclusive (anchor them) so their order does not matter")

    default_backend = None
    if m.default is None:
        _differ(default_item, "no-default",
                "the map has no default: nginx yields an empty value for unmatched requests; the HTTPRoute has no "
                "catch-all rule, so they get 404 from the Gateway (or match another route)",
                "set default: <value> to route unmatched requests to a Service")
    else:
        default_backend = _backend(m.default, backends, opts, default_item, m)
    if default_backend is not None:
        rules.append({"kind": "default", "backend": default_backend, "matches": None,
                      "items": [(default_item, "catch-all (no match: every request)")]})
        _differ(default_item, "catch-all-overlap",
                "the catch-all matches every request of the route's hostnames; another HTTPRoute with a '/' rule on "
                "the same Gateway and hostnames ties with it and the spec then prefers the oldest route",
                "give each tenant's routes their own hostnames, or keep one catch-all per hostname")

    total = sum(len(r["matches"] or []) for r in rules)
    too_many = [r for r in rules if len(r["matches"] or []) > MAX_MATCHES_PER_RULE]
    if len(rules) > MAX_RULES or total > MAX_MATCHES_TOTAL or too_many:
        for rule in rules:
            for item, _text in rule["items"]:
                _differ(item, "too-large",
                        "the HTTPRoute would need %d rules and %d matches; the CRD allows %d rules, %d matches per rule "
                        "and %d in all, so this map is not emitted"
                        % (len(rules), total, MAX_RULES, MAX_MATCHES_PER_RULE, MAX_MATCHES_TOTAL),
                        "split the map, or merge keys with the same value into one regex")
                item["emitted"] = None
        report.extend(items + [default_item])
        return None

    counters = {}
    spec_rules = []
    for rule in rules:
        counters[rule["kind"]] = counters.get(rule["kind"], 0) + 1
        rule_name = rule["kind"] if rule["kind"] == "default" else "%s-%d" % (rule["kind"], counters[rule["kind"]])
        out = {"name": rule_name}
        if rule["matches"]:
            out["matches"] = rule["matches"]
        ref = {"name": rule["backend"]["name"], "port": rule["backend"]["port"]}
        if rule["backend"].get("namespace"):
            ref["namespace"] = rule["backend"]["namespace"]
        out["backendRefs"] = [ref]
        spec_rules.append(out)
        target = _describe_backend(rule["backend"])
        for item, text in rule["items"]:
            item["emitted"] = "rule %s: %s -> %s" % (rule_name, text, target)
    spec = {"parentRefs": opts["parent_refs"]}
    if opts["hostnames"]:
        spec["hostnames"] = opts["hostnames"]
    spec["rules"] = spec_rules
    report.extend(items + [default_item])
    return {
        "apiVersion": API_VERSION, "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": opts["namespace"],
                     "labels": dict(MANAGED_BY, **{VARIABLE_LABEL: m.variable[1:].lower().replace("_", "-")[:63]
                                                   .strip("-")}),
                     "annotations": {"kubegate.io/map-source": m.source, "kubegate.io/map-variable": m.variable}},
        "spec": spec,
    }


def _inexpressible_source(source, header):
    """Why a map with this source cannot become header matches (``header`` is header_of(source))."""
    if header is not None:  # $http_host: the Host belongs to spec.hostnames, not to a header match
        return "reads the Host header; match hosts with the route's hostnames (kubegate_gateway_hostnames) instead"
    if len(re.findall(r"\$", source)) != 1:
        return "reads several variables or literal text"
    return "is not a request header variable ($http_<name>)"


def _exact(entry, item, header, m):
    if len(entry.key.encode("utf-8")) > MAX_HEADER_VALUE:
        _differ(item, "too-large", "the key is longer than %d bytes, the HTTPRoute limit" % MAX_HEADER_VALUE,
                "shorten the key")
    if any("a" <= c.lower() <= "z" for c in entry.key):
        _differ(item, "case",
                "nginx matches exact keys case-insensitively (%s also matches %s); the HTTPRoute Exact match is "
                "case-sensitive and matches only %s"
                % (_show(entry.key), _show(_swapcase_ascii(entry.key)), _show(entry.key)),
                "make sure clients send exactly this spelling, or replace the key by ~*^<key>$ (a case-insensitive "
                "RegularExpression, implementation-specific)")
    if m.hostnames and "." in entry.key:
        _differ(item, "host-trailing-dot",
                "in a hostnames map nginx ignores a trailing dot of the header value (%s also matches with a "
                "trailing dot); the Exact match does not" % _show(entry.key),
                "make sure clients do not send the trailing dot")


def _mask_pattern(key):
    """A RegularExpression for an nginx host mask, matching like nginx (case-insensitive, trailing dot ignored).

    Checked against nginx 1.22 with a live map: ``*.example.com`` also matches ``.example.com`` (hence ``.*`` rather
    than ``.+`` before the dot) but not ``example.com``; ``www.example.*`` needs at least one character after the dot.
    """
    if key.startswith("*."):
        return "(?i)^.*\\.%s\\.?$" % re.escape(key[2:]), True
    if key.startswith("."):
        return "(?i)^(?:.*\\.)?%s\\.?$" % re.escape(key[1:]), True
    return "(?i)^%s\\..+$" % re.escape(key[:-2]), False


def _regex_pattern(entry, item):
    insensitive = entry.key.startswith("~*")
    body = entry.key[2:] if insensitive else entry.key[1:]
    for pattern, what in _PCRE_ONLY:
        if pattern.search(body):
            _differ(item, "regex-not-portable",
                    "the regex uses %s, PCRE syntax that RE2-based Gateway implementations (Envoy) reject; not "
                    "emitted" % what, "rewrite the regex in the common subset of PCRE and RE2")
            return None
    emitted = ("(?i)" if insensitive else "") + ".*(?:%s).*" % body
    if len(emitted.encode("utf-8")) > MAX_HEADER_VALUE:
        _differ(item, "too-large", "the regex is longer than %d bytes, the HTTPRoute limit; not emitted"
                % MAX_HEADER_VALUE, "shorten the regex")
        return None
    _differ(item, "regex",
            "RegularExpression header matches are implementation-specific: nginx uses PCRE and searches the value; "
            "emitted as %s so implementations matching the whole value (Envoy, RE2) agree%s"
            % (_show(emitted), "; ~* became (?i), which ECMAScript-style engines do not accept" if insensitive
               else ""),
            "check the Gateway implementation's regex dialect (conformance does not cover it), or replace the "
            "regex by exact keys")
    return emitted


def _backend(value, backends, opts, item, m):
    """The Service for a map value, or None (recorded in the report) when the value cannot name one."""
    if m.allow_variables and "$" in value:
        _differ(item, "variable-value",
                "the value %s references nginx variables, so nginx picks the backend per request; an HTTPRoute "
                "needs a fixed Service, so this rule is not emitted" % _show(value),
                "list the possible values as separate keys, or add backends: {%s: {name: <service>}} after "
                "replacing the variable" % _show(value))
        return None
    ref = backends.get(value)
    if ref is None:
        if not _SERVICE_NAME.match(value) or len(value) > 63:
            _differ(item, "not-a-service",
                    "the value %s is not a Service name and has no backends entry, so this rule is not emitted"
                    % _show(value),
                    "add backends: {%s: {name: <service>, port: <port>}} to the map" % _show(value))
            return None
        ref = {"name": value}
    out = dict(ref)
    out.setdefault("port", opts["backend_port"])
    if out.get("namespace") and out["namespace"] != opts["namespace"]:
        _differ(item, "reference-grant",
                "the Service is in namespace %s, the route in %s: the Gateway ignores the backend (ResolvedRefs "
                "False) unless a ReferenceGrant in %s allows it; nginx has no such check"
                % (out["namespace"], opts["namespace"], out["namespace"]),
                "create a ReferenceGrant in %s from HTTPRoutes of %s" % (out["namespace"], opts["namespace"]))
    return out


def _describe_backend(backend):
    ns = backend.get("namespace")
    return "Service %s%s:%d" % (ns + "/" if ns else "", backend["name"], backend["port"])


def _backend_key(backend):
    return (backend.get("namespace"), backend["name"], backend["port"])


def _header_match(kind, header, value):
    return {"headers": [{"type": kind, "name": header, "value": value}]}


def _item(label, route, entry, key, value):
    return {"map": label, "route": route, "entry": entry, "key": key, "value": value, "emitted": None,
            "differences": []}


def _differ(item, kind, text, what_to_do):
    item["differences"].append({"kind": kind, "text": text, "what_to_do": what_to_do})


def _route_name(prefix, variable):
    """``<prefix>-<variable>`` with '_' as '-'; the prefix is not repeated (``$kubegate_backend`` -> kubegate-backend)."""
    base = variable[1:].lower().replace("_", "-").strip("-")
    return base if base.startswith(prefix + "-") else "%s-%s" % (prefix, base)


def _label(m):
    return "map[%d] (%s)" % (m.index, m.variable)


def _show_default(m):
    return "the default %s" % _show(m.default) if m.default is not None else "no default"


def _show_any(value):
    return _show(value) if isinstance(value, str) else "%s (%s)" % (value, _type_name(value))


def _swapcase_ascii(text):
    return "".join(c.swapcase() if c.isascii() else c for c in text)

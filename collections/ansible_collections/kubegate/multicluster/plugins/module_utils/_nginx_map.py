# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Render and strictly validate nginx ``map`` blocks for header-based routing (pure, standard library only).

Shared by the ``nginx_map`` module and the ``kubegate.multicluster.nginx_map`` / ``nginx_map_problems`` filters.
Nothing here touches files, sockets or processes (``_nginx_check`` runs a real ``nginx -t``).

Input: a list of maps; each map is a dict
  ``source``      (required) nginx expression the map reads: ``$name`` / ``${name}`` variables and literal text made of
                  letters, digits and ``_ - . : , / @ = + |``; at least one variable. Header variables are written
                  ``$http_<lowercase header name, '-' replaced by '_'>``.
  ``variable``    (required) the variable the map defines, ``$name`` or ``name`` (normalised to ``$name``).
  ``default``     (optional) value when nothing matches; nginx's own default is the empty string. null = not set.
  ``hostnames``   (bool, default false) emit ``hostnames;``: keys may then be host masks ``*.example.com``,
                  ``.example.com`` (also matches ``example.com``) or ``www.example.*``.
  ``volatile``    (bool, default false) emit ``volatile;`` (the value is not cached per request).
  ``allow_variables_in_values`` (bool, default false) let values (and the default) reference ``$name``, ``${name}``
                  and regex captures ``$1``..``$9``. Without it a ``$`` in a value is an error: nginx has no escape
                  for a literal ``$`` in map values.
  ``proxy_set_header`` (optional) header name under which the variable is passed upstream; see render_snippets().
  ``entries``     list of ``{key: ..., value: ...}`` dicts, or a dict ``{key: value}``; the output keeps the input
                  order in both forms (dicts keep insertion order). Keys: an exact string, ``~regex``
                  (case-sensitive) or ``~*regex`` (case-insensitive); a key starting with ``~`` is always a regex.
                  Exact keys are literal text, ``;`` ``{`` ``}`` ``$`` ``#`` quotes and backslashes included (nginx
                  reads them literally inside the double quotes every key is written in); the empty key matches an
                  absent or empty header.
                  Integers are accepted as keys/values and written in decimal; booleans, floats and null are
                  rejected (quote them in YAML). An exact key cannot start with ``~`` (match it with ``~^~...``) and,
                  as in nginx, a case-sensitive regex cannot start with ``*`` (``~*`` means case-insensitive).

API: validate(maps, map_hash_bucket_size=64) -> [problem, ...] (never raises); render(maps, map_hash_bucket_size=64)
-> str and render_snippets(maps, map_hash_bucket_size=64) -> {"location_snippet": str} raise NginxMapError (one
exception, ``problems`` = every problem) when validate() finds anything. Messages name the map as
``map[INDEX] ($variable)`` and the entry as ``entry[INDEX] (key "KEY")``.

Validation rules (all problems are collected, never just the first):
  * names: the variable ``[A-Za-z_][A-Za-z0-9_]*``, not an nginx or ingress-nginx built-in (or family such as
    ``$http_*``, ``$arg_*``, ``$upstream_*``), unique across maps (case-insensitively); source variables well formed,
    header variables lower case, no ``$http_x-y`` (nginx would read ``$http_x`` + ``-y``), no self reference;
  * characters: no control/invisible/line-separator characters (they cannot occur in a header value, and a line
    break is how a directive would be smuggled into a hand-read config), ``$`` in values only as references when
    allowed (nginx has no escape for a literal ``$`` there); at most MAX_TOKEN_BYTES per quoted key/value. Anything
    else - ``;`` ``{`` ``}`` ``#`` quotes backslashes - is written inside double quotes with ``\\`` and ``"``
    escaped, so nginx reads it as part of the one token and it cannot end the entry or open a block;
  * keys: no exact or letter-case duplicates (non-ASCII case variants too), no duplicate regexes, ``default`` and
    ``include`` rejected as keys (the only words nginx reads as map parameters even when quoted and followed by a
    value; ``default`` next to the default option is reported as a duplicate default), regexes pre-checked, host
    masks well formed and not conflicting, keys that can never match
    (edge whitespace with a single-header source, a trailing dot in hostnames maps), exact keys within
    ``map_hash_bucket_size``.

Output of render(): deterministic text (input order, LF line ends, trailing newline) for the nginx ``http`` context,
starting with ``# Managed by kubegate.multicluster — do not edit by hand``. Every key and value is written as a double
quoted string with ``\\`` and ``"`` escaped; an exact key that starts with a backslash gets one more leading
backslash, because the map module strips one from such keys (that is how nginx escapes ``\\default``).

Facts this module relies on (nginx source ngx_http_map_module.c / ngx_hash.c, confirmed against nginx 1.22.1):
  * Exact keys match case-insensitively: nginx lower-cases them (ASCII only) when building the hash and lower-cases
    the looked-up value; ``v2`` and ``V2`` in one map fail ``nginx -t`` with ``conflicting parameter``. Regex keys
    see the original value; ``~*`` makes them case-insensitive.
  * ``default`` and ``include`` as the first of two tokens are parameters even when quoted: both are rejected as
    keys (with the regex advice). ``hostnames`` and ``volatile`` are parameters only when alone, so as keys (always
    followed by a value here) they are ordinary keys.
  * Exact keys are stored in a hash whose element takes ``sizeof(void *) + align(len + 2, sizeof(void *))`` bytes
    (NGX_HASH_ELT_SIZE) and ngx_hash_init() requires ``bucket_size >= element + sizeof(void *)``. With 8-byte
    pointers a key of N bytes (UTF-8) needs ``16 + align(N + 2, 8)``: 64 fits 46 bytes, 128 fits 110 bytes. nginx
    rounds the configured size up to the CPU cache line; this check does not rely on that. Regex keys do not count.
  * Two maps may define the same variable (the later silently wins) and variable names are case-insensitive
    (``$HOST`` collides with ``$host``): both are reported here.
  * nginx strips leading and trailing whitespace from header values, so such keys never match a ``$http_*`` source.
  * Regexes are pre-checked with Python ``re`` but only errors PCRE reports too are kept (unbalanced parentheses,
    unterminated classes, reversed ranges/quantifiers, a trailing backslash, a quantifier after ``|`` or ``(``);
    PCRE-only syntax (named groups ``(?<n>..)``, ``\\Q..\\E``, ``(*UTF)``, possessive quantifiers, ``\\h``...)
    is never rejected. ``nginx -t`` (``_nginx_check.check_with_nginx``) is the final word.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import unicodedata
import warnings
from collections.abc import Mapping, Sequence

HEADER_COMMENT = u"# Managed by kubegate.multicluster \u2014 do not edit by hand"
DEFAULT_MAP_HASH_BUCKET_SIZE = 64
POINTER_SIZE = 8
# nginx reads configuration tokens through a 4 KiB buffer; stay well below it.
MAX_TOKEN_BYTES = 2048
INDENT = "    "

MAP_OPTIONS = ("source", "variable", "default", "hostnames", "volatile", "allow_variables_in_values",
               "proxy_set_header", "entries")
ENTRY_FIELDS = ("key", "value", "sample")
REQUIRED_ENTRY_FIELDS = ("key", "value")
# Words nginx reads as map parameters when first of two tokens, even quoted: never usable as exact keys.
SPECIAL_WORDS = ("default", "include")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME_RE = re.compile(r"\A" + _NAME + r"\Z")
_SOURCE_LITERAL_RE = re.compile(r"\A[A-Za-z0-9_.:,/@=+|-]*\Z")
_HEADER_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9-]*\Z")
_LEADING_VERBS_RE = re.compile(r"\A(?:\(\*[A-Z_]+(?:=\d+)?\))+")
_ASCII_UPPER = dict((c, c + 32) for c in range(ord("A"), ord("Z") + 1))
_FORBIDDEN_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Cs": "an unpaired surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}

# Variables nginx itself defines (core and the modules commonly built in), and prefixes of its families.
NGINX_BUILTIN_VARIABLES = frozenset((
    "ancient_browser", "args", "binary_remote_addr", "body_bytes_sent", "bytes_sent", "connection",
    "connection_requests", "connection_time", "content_length", "content_type", "date_gmt", "date_local",
    "document_root", "document_uri", "fastcgi_path_info", "fastcgi_script_name", "gzip_ratio", "host", "hostname",
    "http2", "http3", "https", "invalid_referer", "is_args", "limit_conn_status", "limit_rate", "limit_req_status",
    "memcached_key", "modern_browser", "msec", "msie", "nginx_version", "pid", "pipe", "proxy_add_x_forwarded_for",
    "proxy_host", "proxy_port", "proxy_protocol_addr", "proxy_protocol_port", "proxy_protocol_server_addr",
    "proxy_protocol_server_port", "query_string", "quic", "realip_remote_addr", "realip_remote_port",
    "realpath_root", "remote_addr", "remote_port", "remote_user", "request", "request_body", "request_body_file",
    "request_completion", "request_filename", "request_id", "request_length", "request_method", "request_time",
    "request_uri", "scheme", "secure_link", "secure_link_expires", "server_addr", "server_name", "server_port",
    "server_protocol", "slice_range", "spdy", "spdy_request_priority", "status", "tcpinfo_rcv_space", "tcpinfo_rtt",
    "tcpinfo_rttvar", "tcpinfo_snd_cwnd", "time_iso8601", "time_local", "uid_got", "uid_reset", "uid_set", "uri",
))
NGINX_BUILTIN_PREFIXES = ("http_", "sent_http_", "sent_trailer_", "cookie_", "arg_", "upstream_", "ssl_",
                          "proxy_protocol_tlv_", "geoip_")
# Variables the ingress-nginx controller template defines (maps, `set`, geo) and prefixes it generates.
INGRESS_NGINX_VARIABLES = frozenset((
    "proxy_upstream_name", "proxy_alternative_upstream_name", "namespace", "ingress_name", "service_name",
    "service_port", "location_path", "global_rate_limit_exceeding", "balancer_ewma_score", "best_http_host",
    "this_host", "pass_access_scheme", "pass_server_port", "pass_port", "the_real_ip", "redirect_to_https", "req_id",
    "full_x_forwarded_for", "literal_dollar", "connection_upgrade", "loggable", "block_ua", "block_ref",
    "auth_cookie",
))
INGRESS_NGINX_PREFIXES = ("limit_", "whitelist_", "allowlist_", "deny_", "geoip2_", "opentelemetry_",
                          "opentracing_")
# Request headers ingress-nginx (and nginx proxying in general) already sets or that must not be overridden.
RESERVED_HEADERS = frozenset((
    "host", "connection", "upgrade", "content-length", "transfer-encoding", "te", "trailer", "keep-alive",
    "proxy-connection", "x-request-id", "x-real-ip", "x-forwarded-for", "x-forwarded-host", "x-forwarded-port",
    "x-forwarded-proto", "x-forwarded-scheme", "x-scheme", "x-original-forwarded-for", "x-original-uri",
    "x-original-url", "x-original-method", "x-auth-request-redirect", "x-code", "x-format", "x-namespace",
    "x-ingress-name", "x-service-name", "x-service-port", "authorization", "cookie",
))
_HEADER_VARIABLE_PREFIXES = ("http_", "sent_http_", "upstream_http_")
_DASH_TRAP_PREFIXES = _HEADER_VARIABLE_PREFIXES + ("cookie_", "arg_")


class NginxMapError(Exception):
    """Invalid map input. ``problems`` lists every problem found (validation never stops at the first one)."""

    def __init__(self, problems):
        self.problems = list(problems)
        super(NginxMapError, self).__init__(self._text())

    def _text(self):
        count = len(self.problems)
        head = "%d problem%s in the nginx map definitions:" % (count, "" if count == 1 else "s")
        return "\n".join([head] + ["  - " + p for p in self.problems])

    def __reduce__(self):
        return (self.__class__, (self.problems,))


class _Entry(object):
    """One validated entry. ``kind`` is ``exact``, ``regex`` or ``mask`` (a host mask, hostnames maps only)."""

    __slots__ = ("index", "key", "value", "kind", "sample")

    def __init__(self, index, key, value, kind, sample=None):
        self.index = index
        self.key = key
        self.value = value
        self.kind = kind
        self.sample = sample


class _Map(object):
    """One normalised map, as render() writes it."""

    __slots__ = ("index", "source", "variable", "default", "has_default", "hostnames", "volatile",
                 "allow_variables", "proxy_set_header", "entries")

    def __init__(self, index):
        self.index = index
        self.source = None
        self.variable = None
        self.default = None
        self.has_default = False
        self.hostnames = False
        self.volatile = False
        self.allow_variables = False
        self.proxy_set_header = None
        self.entries = []


# ---------------------------------------------------------------------------------------------------------------
# public API


def validate(maps, map_hash_bucket_size=DEFAULT_MAP_HASH_BUCKET_SIZE):
    """Return the list of problems in ``maps`` (empty when render() would succeed). Never raises for bad input."""
    return _analyse(maps, map_hash_bucket_size)[0]


def render(maps, map_hash_bucket_size=DEFAULT_MAP_HASH_BUCKET_SIZE):
    """Validate ``maps`` and return the nginx configuration text of all map blocks.

    Raises NginxMapError listing every problem. ``map_hash_bucket_size`` is the value the target nginx uses
    (ingress-nginx ConfigMap key ``map-hash-bucket-size``, default 64); it is not written into the output.
    """
    norm = _validated(maps, map_hash_bucket_size)
    lines = [HEADER_COMMENT]
    for m in norm:
        lines.append("")
        lines.append("map %s %s {" % (quote(m.source), m.variable))
        if m.hostnames:
            lines.append(INDENT + "hostnames;")
        if m.volatile:
            lines.append(INDENT + "volatile;")
        if m.default is not None:
            lines.append(INDENT + "default %s;" % quote(m.default))
        for entry in m.entries:
            lines.append(INDENT + "%s %s;" % (quote(_key_token(entry)), quote(entry.value)))
        lines.append("}")
    return "\n".join(lines) + "\n"


def render_snippets(maps, map_hash_bucket_size=DEFAULT_MAP_HASH_BUCKET_SIZE):
    """Validate ``maps`` and return the directives that consume their variables.

    Returns ``{"location_snippet": text}``: one ``proxy_set_header NAME $variable;`` line per map that has
    ``proxy_set_header`` (input order), after the managed-by comment; an empty string when no map has one.
    Only a location-level snippet is produced on purpose: nginx inherits ``proxy_set_header`` from an outer level
    only when the inner level has none, and every ingress-nginx location sets its own headers, so a server-level
    ``proxy_set_header`` would silently do nothing. Use it as the ingress-nginx ConfigMap key ``location-snippet``
    or the ``configuration-snippet`` annotation (where snippets are allowed).
    """
    norm = _validated(maps, map_hash_bucket_size)
    lines = ["proxy_set_header %s %s;" % (m.proxy_set_header, m.variable) for m in norm if m.proxy_set_header]
    text = "\n".join([HEADER_COMMENT] + lines) + "\n" if lines else ""
    return {"location_snippet": text}


def routing_checks(maps):
    """Requests that prove the routing of ``maps`` on a live nginx (the reload playbook sends them through each
    controller pod): ``[{"headers": {Header: value}, "response_header": name, "expect": value, "key": key}]``.

    For each map that reads one request header (``$http_x_version`` -> ``X-Version``) and has ``proxy_set_header``:
    one request per exact key, one per regex key with its ``sample`` (declared on the entry, else derived from the
    regex), and one without the header. The expected value is what nginx answers (exact keys first, then regexes in
    order, else the default). Not checked: values that reference variables, keys HTTP cannot carry verbatim
    (non-ASCII, control characters), hostnames maps' masks, and regex keys without a declared sample whose sample
    cannot be derived (lookarounds, back-references to optional groups...) or would be answered by an earlier rule.
    Raises NginxMapError for invalid maps.
    """
    checks = []
    problems, norm = _analyse(maps, 1 << 20)  # the bucket size decides whether nginx loads the maps, not the answers
    if problems:
        raise NginxMapError(problems)
    for m in norm:
        header, upstream = header_of(m.source), m.proxy_set_header
        if not header or not upstream or m.hostnames:
            continue
        for entry in m.entries:
            declared = entry.kind == "regex" and entry.sample is not None
            if entry.kind == "exact":
                sample = entry.key
            else:
                sample = entry.sample if declared else regex_sample(entry.key)
            if not sample or not _is_header_text(sample):
                continue
            winner = _first_match(m.entries, sample)
            # a declared sample is trusted when an earlier PCRE-only regex makes the answer unknown here
            if winner is not entry and not (declared and winner is None):
                continue
            if m.allow_variables and "$" in entry.value:
                continue
            checks.append({"headers": {header: sample}, "response_header": upstream, "expect": entry.value,
                           "key": entry.key})
        # an absent header reads as the empty string: the "" key or a regex matching "" may answer it
        absent = _first_match(m.entries, "")
        expect = absent.value if absent is not None else (m.default or "")
        if not (m.allow_variables and "$" in expect):
            checks.append({"headers": {}, "response_header": upstream, "expect": expect,
                           "key": absent.key if absent is not None else None})
    return checks


def header_of(source):
    """'X-Version' for '$http_x_version' or '${http_x_version}' (None for anything but one request header)."""
    if not _single_header_source(source):
        return None
    name = list(_scan_references(source))[0][1]
    return "-".join(part.capitalize() for part in name[len("http_"):].split("_"))


def regex_sample(key):
    """A value the regex key (``~re`` / ``~*re``) matches, derived from its syntax tree; None when that is not
    possible (assertions, PCRE-only syntax, conditionals) or the derived value does not match after all."""
    pattern, flags = (key[2:], re.IGNORECASE) if key.startswith("~*") else (key[1:], 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                from re import _parser as sre_parse  # Python >= 3.11
            except ImportError:  # pragma: no cover - older Pythons
                import sre_parse
            tree = sre_parse.parse(pattern, flags)
        sample = _sample_of(list(tree), {})
    # anything the generator cannot follow means "no sample"
    except Exception:  # pylint: disable=broad-except
        return None
    return sample if _regex_search(key, sample) else None


def quote(text):
    """Write ``text`` as an nginx double-quoted string: backslash and double quote are backslash-escaped.

    nginx's configuration reader turns ``\\\\`` into ``\\`` and ``\\"`` into ``"`` inside quotes; any other backslash
    sequence except ``\\t``, ``\\r``, ``\\n`` is kept as is. Because every backslash is doubled here, ``\\t`` etc. can
    never appear, so the parsed token is exactly ``text``.
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def hash_bucket_size_needed(key_bytes):
    """The smallest map_hash_bucket_size that holds an exact key of ``key_bytes`` bytes (8-byte pointers)."""
    element = POINTER_SIZE + _align(key_bytes + 2, POINTER_SIZE)
    return element + POINTER_SIZE


# ---------------------------------------------------------------------------------------------------------------
# analysis


def _validated(maps, map_hash_bucket_size):
    problems, norm = _analyse(maps, map_hash_bucket_size)
    if problems:
        raise NginxMapError(problems)
    return norm


def _analyse(maps, map_hash_bucket_size):
    """Return (problems, normalised maps). The normalised maps are only meaningful when there are no problems."""
    problems = []
    if isinstance(map_hash_bucket_size, bool) or not isinstance(map_hash_bucket_size, int) \
            or map_hash_bucket_size < 1:
        problems.append("map_hash_bucket_size must be a positive integer, got %s" % _show_any(map_hash_bucket_size))
        map_hash_bucket_size = None
    if isinstance(maps, Mapping):
        problems.append("maps must be a list of map definitions, got a dict (wrap a single map in a list)")
        return problems, []
    if not _is_list(maps):
        problems.append("maps must be a list of map definitions, got %s" % _type_name(maps))
        return problems, []
    norm = []
    seen_variables = {}  # lower-cased name -> (index, label)
    seen_headers = {}  # lower-cased header -> (index, label)
    for index, raw in enumerate(maps):
        m = _analyse_map(index, raw, map_hash_bucket_size, problems)
        if m is None:
            continue
        label = _map_label(index, m.variable)
        if m.variable is not None:
            folded = m.variable.lower()
            if folded in seen_variables:
                other_index, other_variable = seen_variables[folded]
                problems.append("%s: variable %s is already defined by map[%d] (%s); nginx would silently let the "
                                "later map win (variable names are case-insensitive)"
                                % (label, m.variable, other_index, other_variable))
            else:
                seen_variables[folded] = (index, m.variable)
        if m.proxy_set_header is not None:
            folded = m.proxy_set_header.lower()
            if folded in seen_headers:
                other_index, other_variable = seen_headers[folded]
                problems.append("%s: proxy_set_header %s is already set by map[%d] (%s)"
                                % (label, m.proxy_set_header, other_index, other_variable))
            else:
                seen_headers[folded] = (index, m.variable)
        norm.append(m)
    return problems, norm


def _analyse_map(index, raw, bucket_size, problems):
    if not isinstance(raw, Mapping):
        problems.append("map[%d]: must be a dict with source, variable and entries, got %s" % (index, _type_name(raw)))
        return None
    m = _Map(index)
    variable = _analyse_variable(index, raw, problems)
    m.variable = variable
    label = _map_label(index, variable)

    unknown = [k for k in raw if k not in MAP_OPTIONS]
    for key in unknown:
        problems.append("%s: unknown option %s (allowed: %s)" % (label, _show_any(key), ", ".join(MAP_OPTIONS)))

    for flag in ("hostnames", "volatile", "allow_variables_in_values"):
        value = raw.get(flag)
        if value is None:
            continue
        if not isinstance(value, bool):
            problems.append("%s: %s must be true or false, got %s" % (label, flag, _show_any(value)))
            continue
        setattr(m, "allow_variables" if flag == "allow_variables_in_values" else flag, value)

    m.source = _analyse_source(raw, label, variable, problems)

    m.has_default = raw.get("default") is not None
    if m.has_default:
        text = _scalar_text(raw.get("default"), "default", label, problems)
        if text is not None and _check_value(text, "default", label, m, problems):
            m.default = text

    header = raw.get("proxy_set_header")
    if header is not None:
        m.proxy_set_header = _analyse_header(header, label, problems)

    if raw.get("entries") is None:
        if not m.has_default:
            problems.append("%s: has no entries and no default; the variable would always be empty" % label)
    else:
        _analyse_entries(raw["entries"], m, label, bucket_size, problems)
    return m


def _analyse_variable(index, raw, problems):
    """Return the normalised ``$name`` or None (after recording why)."""
    where = "map[%d]" % index
    value = raw.get("variable")
    if value is None:
        problems.append("%s: variable is required (the name the map defines, e.g. $kubegate_backend)" % where)
        return None
    if not isinstance(value, str):
        problems.append("%s: variable must be a string, got %s" % (where, _type_name(value)))
        return None
    name = value[1:] if value.startswith("$") else value
    if not _NAME_RE.match(name):
        problems.append("%s: variable %s is not a valid nginx variable name (letters, digits and _, not starting "
                        "with a digit; written $name or name)" % (where, _show(value)))
        return None
    variable = "$" + name
    label = _map_label(index, variable)
    clash = _builtin_clash(name)
    if clash:
        problems.append("%s: variable %s collides with %s; choose a name of your own such as $kubegate_%s"
                        % (label, variable, clash, name.lower()))
    return variable


def _builtin_clash(name):
    """Describe the built-in variable (family) ``name`` collides with, or return None."""
    low = name.lower()
    if low in NGINX_BUILTIN_VARIABLES:
        return "the nginx built-in variable $%s" % low
    for prefix in NGINX_BUILTIN_PREFIXES:
        if low.startswith(prefix):
            return "nginx's built-in $%s* variables" % prefix
    if low in INGRESS_NGINX_VARIABLES:
        return "the variable $%s that ingress-nginx defines" % low
    for prefix in INGRESS_NGINX_PREFIXES:
        if low.startswith(prefix):
            return "the $%s* variables ingress-nginx generates" % prefix
    return None


def _analyse_source(raw, label, variable, problems):
    source = raw.get("source")
    if source is None:
        problems.append("%s: source is required (the expression the map reads, e.g. $http_x_version)" % label)
        return None
    if not isinstance(source, str):
        problems.append("%s: source must be a string, got %s" % (label, _type_name(source)))
        return None
    ok = True
    names = []
    for kind, name, ref, start in _scan_references(source):
        if kind == "literal":
            bad = [ch for ch in name if not _SOURCE_LITERAL_RE.match(ch)]
            if bad:
                problems.append("%s: source %s contains %s; only variables and the literal characters letters, "
                                "digits and _ - . : , / @ = + | are allowed" % (label, _show(source), _describe(bad[0])))
                ok = False
            continue
        if kind != "variable":
            problems.append("%s: source %s has an invalid variable reference %s at offset %d (use $name or ${name})"
                            % (label, _show(source), _show(ref), start))
            ok = False
            continue
        names.append(name)
        prefix = _prefix_of(name, _HEADER_VARIABLE_PREFIXES)
        if prefix and (name != name.lower() or len(name) == len(prefix)):
            problems.append("%s: source variable $%s: write header variables in lower case with '-' replaced by '_' "
                            "(e.g. $http_x_version for the header X-Version)" % (label, name))
            ok = False
        after = source[start + len(ref):]
        dashed = re.match(r"-[A-Za-z0-9][A-Za-z0-9-]*", after)
        if dashed and not ref.startswith("${") and _prefix_of(name, _DASH_TRAP_PREFIXES):
            suggestion = "$" + name.lower() + dashed.group().replace("-", "_").lower()
            problems.append("%s: source %s: nginx reads $%s followed by the literal text %s; header variables use "
                            "'_' for '-' (e.g. %s)" % (label, _show(source), name, _show(dashed.group()), suggestion))
            ok = False
    if not names:
        hint = ""
        if _NAME_RE.match(source):
            hint = " (did you mean $%s?)" % source
        problems.append("%s: source %s references no variable%s" % (label, _show(source), hint))
        ok = False
    if variable is not None and any(n.lower() == variable[1:].lower() for n in names):
        problems.append("%s: source %s reads the map's own variable %s (a cycle)" % (label, _show(source), variable))
        ok = False
    return source if ok else None


def _analyse_header(header, label, problems):
    if not isinstance(header, str):
        problems.append("%s: proxy_set_header must be a header name (string), got %s" % (label, _type_name(header)))
        return None
    if not _HEADER_NAME_RE.match(header):
        problems.append("%s: proxy_set_header %s is not a valid header name (letters, digits and '-', e.g. "
                        "X-Kubegate-Backend)" % (label, _show(header)))
        return None
    if header.lower() in RESERVED_HEADERS:
        problems.append("%s: proxy_set_header %s would override a header ingress-nginx/nginx proxying sets itself; "
                        "use a header of your own such as X-Kubegate-Backend" % (label, header))
        return None
    return header


def _analyse_entries(raw_entries, m, label, bucket_size, problems):
    if isinstance(raw_entries, Mapping):
        pairs = [(i, k, v, None) for i, (k, v) in enumerate(raw_entries.items())]
    elif _is_list(raw_entries):
        pairs = []
        for i, item in enumerate(raw_entries):
            where = "%s entry[%d]" % (label, i)
            if not isinstance(item, Mapping):
                problems.append("%s: must be a dict with key and value, got %s" % (where, _type_name(item)))
                continue
            extra = [k for k in item if k not in ENTRY_FIELDS]
            for k in extra:
                problems.append("%s: unknown field %s (allowed: %s)" % (where, _show_any(k), ", ".join(ENTRY_FIELDS)))
            missing = [f for f in REQUIRED_ENTRY_FIELDS if f not in item]
            for f in missing:
                problems.append("%s: %s is required" % (where, f))
            if not missing:
                pairs.append((i, item["key"], item["value"], item.get("sample")))
    else:
        problems.append("%s: entries must be a list of {key, value} dicts or a dict of key: value, got %s"
                        % (label, _type_name(raw_entries)))
        return
    if len(raw_entries) == 0 and not m.has_default:
        problems.append("%s: has no entries and no default; the variable would always be empty" % label)

    exact_seen = {}  # ascii-lower key -> (index, key)
    fold_seen = {}  # unicode casefold -> (index, key)
    regex_seen = {}  # key -> index
    head_seen = {}  # hostnames: "*.x"/".x" masks by lower-cased x
    tail_seen = {}  # hostnames: "x.*" masks by lower-cased x
    single_header = _single_header_source(m.source)
    for i, raw_key, raw_value, raw_sample in pairs:
        key = _scalar_text(raw_key, "key", "%s entry[%d]" % (label, i), problems)
        if key is None:
            continue
        where = "%s entry[%d] (key %s)" % (label, i, _show(key))
        value = _scalar_text(raw_value, "value", where, problems)
        kind = _key_kind(key, m.hostnames)
        key_ok = _check_key(key, kind, where, m, problems)
        value_ok = value is not None and _check_value(value, "value", where, m, problems)
        sample = None
        if raw_sample is not None:
            sample = _scalar_text(raw_sample, "sample", where, problems)
            value_ok = sample is not None and _check_sample(sample, key, kind, where, single_header, problems) \
                and value_ok
        if not key_ok:
            continue
        if kind == "regex":
            if key in regex_seen:
                problems.append("%s: duplicate of entry[%d]; nginx tries regexes in order, so this one can never "
                                "match" % (where, regex_seen[key]))
                key_ok = False
            else:
                regex_seen[key] = i
        else:
            key_ok = _check_exact_or_mask(key, kind, i, where, m, bucket_size, single_header, exact_seen, fold_seen,
                                          head_seen, tail_seen, problems)
        if key_ok and value_ok:
            m.entries.append(_Entry(i, key, value, kind, sample))
    for entry in m.entries:
        if entry.sample is not None:
            winner = _first_match(m.entries, entry.sample)
            if winner is not None and winner is not entry:
                problems.append("%s entry[%d] (key %s): sample %s is answered by entry[%d] (key %s) first (nginx "
                                "tries exact keys, then regexes in order); declare a sample only this rule matches"
                                % (label, entry.index, _show(entry.key), _show(entry.sample), winner.index,
                                   _show(winner.key)))


def _check_sample(sample, key, kind, where, single_header, problems):
    """A declared routing-check sample: for a regex key of a map reading one header, a value HTTP carries as-is."""
    if kind != "regex":
        problems.append("%s: sample is only for regex keys (an exact key is its own sample)" % where)
        return False
    if not single_header:
        problems.append("%s: sample needs a source that reads one request header ($http_<name>); the routing "
                        "check sends it as that header" % where)
        return False
    if not _is_header_text(sample):
        problems.append("%s: sample %s must be printable ASCII without leading or trailing whitespace (it is sent "
                        "as a request header)" % (where, _show(sample)))
        return False
    matched = _regex_search(key, sample)
    if matched is False:
        problems.append("%s: sample %s does not match the regex" % (where, _show(sample)))
        return False
    return True


def _key_kind(key, hostnames):
    if key.startswith("~"):
        return "regex"
    if hostnames and ("*" in key or (len(key) > 1 and key.startswith("."))):
        return "mask"
    return "exact"


def _check_key(key, kind, where, m, problems):
    """Character-level checks of one key; returns False when the key is unusable."""
    ok = _check_characters(key, "key", where, problems)
    ok = _check_length(key, "key", where, problems) and ok
    if kind == "regex":
        pattern = key[2:] if key.startswith("~*") else key[1:]
        error = regex_precheck(pattern)
        if error:
            problems.append("%s: regex does not compile: %s" % (where, error))
            ok = False
        return ok
    low = key.lower()
    if key == "default" and m.has_default:
        problems.append("%s: duplicate default: the map already sets default, and nginx reads the key 'default' as "
                        "a second default (\"duplicate default map parameter\")" % where)
        ok = False
    elif low == "default":
        problems.append("%s: 'default' is a map parameter, not a key (in any letter case it is ambiguous); set the "
                        "map's default option instead, or match the literal text with the regex key ~*^default$"
                        % where)
        ok = False
    elif low in SPECIAL_WORDS:
        problems.append("%s: '%s' is a map parameter word in nginx (in any letter case it is ambiguous); match the "
                        "literal text with the regex key ~*^%s$ instead" % (where, low, low))
        ok = False
    return ok


def _check_exact_or_mask(key, kind, i, where, m, bucket_size, single_header, exact_seen, fold_seen, head_seen,
                         tail_seen, problems):
    ok = True
    folded = _ascii_lower(key)
    if kind == "mask":
        mask_error = _mask_error(key)
        if mask_error:
            problems.append("%s: invalid host mask: %s" % (where, mask_error))
            return False
        if key.startswith("."):
            base, table = folded[1:], head_seen
            # ".example.com" also matches "example.com" exactly: nginx treats it as conflicting with that key.
            if base in exact_seen:
                j, other = exact_seen[base]
                problems.append("%s: conflicts with entry[%d] (key %s): %s already matches %s"
                                % (where, j, _show(other), _show(key), _show(base)))
                ok = False
            else:
                exact_seen[base] = (i, key)
        elif key.startswith("*."):
            base, table = folded[2:], head_seen
        else:
            base, table = folded[:-2], tail_seen
        if base in table:
            j, other = table[base]
            problems.append("%s: conflicts with entry[%d] (key %s): both are masks for %s"
                            % (where, j, _show(other), _show(base)))
            ok = False
        else:
            table[base] = (i, key)
        labels = [part for part in base.split(".") if part]
        longest = max([len(part.encode("utf-8")) for part in labels] or [0])
        if bucket_size is not None and hash_bucket_size_needed(longest) > bucket_size:
            problems.append("%s: host mask label of %d bytes needs map_hash_bucket_size >= %d (configured: %d)"
                            % (where, longest, hash_bucket_size_needed(longest), bucket_size))
            ok = False
    else:
        if m.hostnames and ".." in key:
            problems.append("%s: invalid host name: '..' is not allowed in hostnames maps" % where)
            return False
        if folded in exact_seen:
            j, other = exact_seen[folded]
            if other == key:
                problems.append("%s: duplicate of entry[%d]" % (where, j))
            elif other.startswith(".") and m.hostnames:
                problems.append("%s: conflicts with entry[%d] (key %s): %s already matches %s"
                                % (where, j, _show(other), _show(other), _show(key)))
            else:
                problems.append("%s: differs only in letter case from entry[%d] (key %s); nginx compares exact keys "
                                "case-insensitively and rejects such a map (\"conflicting parameter\")"
                                % (where, j, _show(other)))
            ok = False
        else:
            exact_seen[folded] = (i, key)
            casefolded = key.casefold()
            if casefolded in fold_seen:
                j, other = fold_seen[casefolded]
                problems.append("%s: differs only in the case of non-ASCII letters from entry[%d] (key %s); nginx "
                                "folds only ASCII letters, so these keys would match differently than they read; "
                                "use a single spelling" % (where, j, _show(other)))
                ok = False
            else:
                fold_seen[casefolded] = (i, key)
        size = len(key.encode("utf-8"))
        if bucket_size is not None and hash_bucket_size_needed(size) > bucket_size:
            problems.append("%s: key of %d bytes needs map_hash_bucket_size >= %d (configured: %d)"
                            % (where, size, hash_bucket_size_needed(size), bucket_size))
            ok = False
        if m.hostnames and key.endswith("."):
            problems.append("%s: can never match: in hostnames maps nginx removes a trailing dot from the value "
                            "before looking it up" % where)
            ok = False
    if single_header and kind != "regex" and key != key.strip(" "):
        problems.append("%s: can never match: nginx strips leading and trailing whitespace from header values"
                        % where)
        ok = False
    return ok


def _mask_error(key):
    """Mirror nginx's rules for host masks (ngx_hash_add_key with NGX_HASH_WILDCARD_KEY), a little stricter."""
    if key.count("*") > 1:
        return "at most one '*' is allowed"
    if ".." in key:
        return "'..' is not allowed"
    if key.startswith("."):
        if "*" in key:
            return "a mask is either .example.com, *.example.com or www.example.*"
        return None
    if len(key) > 2 and key.startswith("*."):
        return None
    if len(key) > 2 and key.endswith(".*"):
        return None
    return "'*' is only allowed as a leading '*.' or a trailing '.*' (e.g. *.example.com, www.example.*)"


def _check_value(text, what, where, m, problems):
    """Checks of a value (``what`` = "value") or the default (``what`` = "default"); False when unusable."""
    ok = True
    literal_parts = []
    if m.allow_variables:
        for kind, name, ref, start in _scan_references(text):
            if kind == "literal":
                literal_parts.append(name)
            elif kind == "invalid":
                problems.append("%s: %s has an invalid variable reference %s at offset %d (use $name, ${name} or "
                                "$1..$9)" % (where, what, _show(ref), start))
                ok = False
            elif m.variable is not None and kind == "variable" and name.lower() == m.variable[1:].lower():
                problems.append("%s: %s references the map's own variable %s (a cycle)" % (where, what, m.variable))
                ok = False
        literal = "".join(literal_parts)
    else:
        literal = text
        pos = text.find("$")
        if pos >= 0:
            problems.append("%s: %s contains '$' at offset %d; nginx reads it as a variable reference and has no "
                            "escape for a literal '$' (set allow_variables_in_values to reference variables)"
                            % (where, what, pos))
            ok = False
    if not _check_characters(literal, what, where, problems):
        ok = False
    if not _check_length(text, what, where, problems):
        ok = False
    return ok


def _check_characters(text, what, where, problems):
    """Characters no header value carries and operators would trip over (control, invisible, line separators).

    ``;`` ``{`` ``}`` are fine: quote() keeps them inside one double-quoted token, where nginx reads them literally.
    """
    for ch in text:
        category = unicodedata.category(ch)
        if category in _FORBIDDEN_CATEGORIES:
            described = _FORBIDDEN_CATEGORIES[category]
            problems.append("%s: %s contains %s (%s)" % (where, what, described, _codepoint(ch)))
            return False
    return True


def _check_length(text, what, where, problems):
    try:
        size = len(quote(text).encode("utf-8"))
    except UnicodeEncodeError:
        return False  # already reported as an unpaired surrogate
    if size > MAX_TOKEN_BYTES:
        problems.append("%s: %s is %d bytes long once quoted; at most %d are allowed"
                        % (where, what, size, MAX_TOKEN_BYTES))
        return False
    return True


def regex_precheck(pattern):
    """Return a message when ``pattern`` is certainly not a valid PCRE, else None.

    Python's ``re`` is only a pre-check: its errors are reported only when PCRE would fail the same way. Anything
    Python rejects for other reasons (PCRE-only syntax) is left to ``nginx -t``.
    """
    verbs = _LEADING_VERBS_RE.match(pattern)
    body = pattern[verbs.end():] if verbs else pattern
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(body)
        return None
    except re.error as exc:
        return _pcre_equivalent(body, getattr(exc, "msg", str(exc)), getattr(exc, "pos", None))
    except Exception:  # RecursionError, OverflowError: not a verdict on PCRE
        return None


def _pcre_equivalent(pattern, msg, pos):
    if msg.startswith("missing ), unterminated subpattern"):
        return "missing closing parenthesis"
    if msg.startswith("unbalanced parenthesis"):
        return "unmatched closing parenthesis at offset %s" % pos
    if msg.startswith("unterminated character set"):
        return "missing terminating ] for the character class at offset %s" % pos
    if msg.startswith("bad escape (end of pattern)"):
        return "a backslash at the end of the pattern"
    if msg.startswith("min repeat greater than max repeat"):
        return "numbers out of order in a {m,n} quantifier at offset %s" % pos
    if msg.startswith("bad character range "):
        low, _sep, high = msg[len("bad character range "):].partition("-")
        if len(low) == 1 and len(high) == 1 and ord(low) < 128 and ord(high) < 128:
            return "range out of order in a character class (%s-%s)" % (low, high)
        return None
    if msg.startswith("nothing to repeat") and pos:
        before, char = pattern[pos - 1], pattern[pos]
        if before == "|" or (before == "(" and char != "*"):
            return "quantifier %r at offset %d does not follow a repeatable item" % (char, pos)
    return None


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _key_token(entry):
    """The key as nginx must read it: exact keys starting with a backslash get one more (nginx strips one)."""
    if entry.kind == "exact" and entry.key.startswith("\\"):
        return "\\" + entry.key
    return entry.key


def _scan_references(text):
    """Split ``text`` the way nginx's script compiler does: yield (kind, name, text, offset) tuples.

    kind is ``literal`` (name = the text), ``variable`` (name = the variable name), ``capture`` (name = the digit)
    or ``invalid`` (name = ""); text is the part of the input the tuple covers.
    """
    literal_start = 0
    i = 0
    n = len(text)
    while i < n:
        if text[i] != "$":
            i += 1
            continue
        if i > literal_start:
            yield "literal", text[literal_start:i], text[literal_start:i], literal_start
        ref = _reference_text(text, i)
        if ref.startswith("${"):
            name = ref[2:-1] if ref.endswith("}") else ""
        else:
            name = ref[1:]
        if len(name) == 1 and name in "123456789" and not ref.startswith("${"):
            yield "capture", name, ref, i
        elif _NAME_RE.match(name):
            yield "variable", name, ref, i
        else:
            yield "invalid", "", ref, i
        i += len(ref)
        literal_start = i
    if literal_start < n:
        yield "literal", text[literal_start:], text[literal_start:], literal_start


def _reference_text(text, start):
    """The text of the variable reference starting with the ``$`` at ``start`` (nginx's parsing rules)."""
    i = start + 1
    if i < len(text) and text[i].isdigit() and text[i] != "0" and ord(text[i]) < 128:
        return text[start:i + 1]
    if i < len(text) and text[i] == "{":
        end = text.find("}", i)
        return text[start:] if end < 0 else text[start:end + 1]
    while i < len(text) and (text[i] == "_" or (text[i].isalnum() and ord(text[i]) < 128)):
        i += 1
    return text[start:i]


class _NoSample(Exception):
    """The regex uses syntax the sample generator does not follow."""


_CATEGORY_SAMPLES = {"CATEGORY_DIGIT": "0", "CATEGORY_NOT_DIGIT": "a", "CATEGORY_WORD": "a",
                     "CATEGORY_NOT_WORD": "-", "CATEGORY_SPACE": " ", "CATEGORY_NOT_SPACE": "a"}


def _sample_of(items, groups):
    """Walk a ``re`` syntax tree: the first alternative of each branch, each repeat at least once."""
    out = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append("a" if arg != ord("a") else "b")
        elif name == "ANY":
            out.append("x")
        elif name == "IN":
            out.append(_class_sample(arg))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            out.append(_sample_of(list(sub), groups) * (max(low, 1) if high >= 1 else 0))
        elif name == "SUBPATTERN":
            group, sub = arg[0], arg[-1]
            text = _sample_of(list(sub), groups)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif name == "ATOMIC_GROUP":
            out.append(_sample_of(list(arg), groups))
        elif name == "BRANCH":
            out.append(_sample_of(list(arg[1][0]), groups))
        elif name == "AT":
            continue
        elif name == "GROUPREF" and arg in groups:
            out.append(groups[arg])
        else:
            raise _NoSample(name)
    return "".join(out)


def _class_sample(items):
    """A character of a ``[...]`` class; for a negated class the first common character outside it."""
    if items and str(items[0][0]) == "NEGATE":
        for ch in "x0-_A.~":
            if not any(_in_class_item(ch, op, arg) for op, arg in items[1:]):
                return ch
        raise _NoSample("NEGATE")
    op, arg = items[0]
    name = str(op)
    if name == "LITERAL":
        return chr(arg)
    if name == "RANGE":
        return chr(arg[0])
    if name == "CATEGORY" and str(arg) in _CATEGORY_SAMPLES:
        return _CATEGORY_SAMPLES[str(arg)]
    raise _NoSample(name)


def _in_class_item(ch, op, arg):
    name = str(op)
    if name == "LITERAL":
        return ord(ch) == arg
    if name == "RANGE":
        return arg[0] <= ord(ch) <= arg[1]
    if name == "CATEGORY" and str(arg) in _CATEGORY_SAMPLES:
        return bool(re.match({"CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_WORD": r"\w",
                              "CATEGORY_NOT_WORD": r"\W", "CATEGORY_SPACE": r"\s",
                              "CATEGORY_NOT_SPACE": r"\S"}[str(arg)], ch))
    raise _NoSample(name)


def _regex_search(key, text):
    """True/False: does the regex key match ``text`` (Python ``re`` on UTF-8 bytes, as nginx's PCRE sees them);
    None when Python cannot compile it (PCRE-only syntax)."""
    pattern, flags = (key[2:], re.IGNORECASE) if key.startswith("~*") else (key[1:], 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.search(pattern.encode("utf-8"), text.encode("utf-8"), flags) is not None
    # re.error, RecursionError...: not a verdict
    except Exception:  # pylint: disable=broad-except
        return None


def _first_match(entries, text):
    """The entry nginx answers ``text`` with: an exact key (ASCII case-insensitive) first, then the regexes in order;
    None when nothing matches or an earlier regex cannot be evaluated here (so the answer is unknown)."""
    folded = _ascii_lower(text)
    for entry in entries:
        if entry.kind == "exact" and _ascii_lower(entry.key) == folded:
            return entry
    for entry in entries:
        if entry.kind == "regex":
            matched = _regex_search(entry.key, text)
            if matched is None:
                return None
            if matched:
                return entry
    return None


def _is_header_text(text):
    """Printable ASCII without edge whitespace: a header value sent and seen exactly as written."""
    return text == text.strip(" ") and all(" " <= ch <= "~" for ch in text)


def _prefix_of(name, prefixes):
    """The first of ``prefixes`` that ``name`` starts with (case-insensitively), or None."""
    low = name.lower()
    for prefix in prefixes:
        if low.startswith(prefix):
            return prefix
    return None


def _single_header_source(source):
    """True when the map reads exactly one request header variable (``$http_x`` or ``${http_x}``)."""
    if not source:
        return False
    parts = list(_scan_references(source))
    return len(parts) == 1 and parts[0][0] == "variable" and parts[0][1].startswith("http_")


def _scalar_text(value, what, where, problems):
    """Keys and values: strings as they are, integers in decimal; anything else is a problem."""
    if isinstance(value, bool):
        problems.append("%s: %s is a boolean (YAML reads unquoted yes/no/true/false/on/off as booleans); quote it"
                        % (where, what))
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        problems.append("%s: %s is a number with a fraction (%r); quote it so it is kept verbatim"
                        % (where, what, value))
        return None
    if value is None:
        problems.append("%s: %s is null; write \"\" for an empty string" % (where, what))
        return None
    problems.append("%s: %s must be a string, got %s" % (where, what, _type_name(value)))
    return None


def _is_list(value):
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def _type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a dict"
    if _is_list(value):
        return "a list"
    return "a %s" % type(value).__name__


def _map_label(index, variable):
    return "map[%d] (%s)" % (index, variable) if variable else "map[%d]" % index


def _show(text):
    """A string for messages: double-quoted, control characters and quotes escaped, Unicode kept when printable."""
    shown = json.dumps(text, ensure_ascii=False)
    try:
        shown.encode("utf-8")
    except UnicodeEncodeError:  # unpaired surrogates
        shown = json.dumps(text)
    return shown


def _show_any(value):
    return _show(value) if isinstance(value, str) else "%s (%s)" % (value, _type_name(value))


def _describe(ch):
    return "%s (%s)" % (_show(ch), _codepoint(ch))


def _codepoint(ch):
    return "U+%04X" % ord(ch)


def _ascii_lower(text):
    return text.translate(_ASCII_UPPER)


def _align(value, alignment):
    return (value + alignment - 1) // alignment * alignment

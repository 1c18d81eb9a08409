# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""The model of the ``gateway`` role: every inventory value that reaches an nginx file, checked against an allow-list.

Why a pure function: the role's templates render values into nginx configuration, and nginx's own syntax check
(``nginx -t``) is no safety net (directives injected through a value run during that very test, as in the
ingress-nginx CVEs). So every value the templates render passes through here first, one rule per kind of value
(DNS label, host, port, path, ...), and the templates render only what this model returns. Messages name the inventory
host and variable and say what to do; they never contain a credential. Used through the filter
``kubegate.multicluster.gateway_model``; unit-tested without a host.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from ansible_collections.kubegate.multicluster.plugins.module_utils._nginx_map import _show

# ---- the allow-lists (one rule per kind of value) ------------------------------------------------------------------
DNS_LABEL_RE = re.compile(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
DNS_NAME_RE = re.compile(r"\A(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")
SERVER_NAME_RE = re.compile(r"\A(_|(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                            r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)\Z")
CALLER_RE = re.compile(r"\A[a-z0-9]([a-z0-9._@-]{0,62}[a-z0-9])?\Z")
SUBJECT_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9:@._-]{0,252}\Z")
TOKEN_RE = re.compile(r"\A[A-Za-z0-9._~+/=-]{16,8192}\Z")
HEADER_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9-]{0,63}\Z")
# Characters nginx takes literally in an unquoted argument (no space, ; { } ' " $ # \ or anything non-ASCII).
PATH_RE = re.compile(r"\A/[A-Za-z0-9._+@/-]{0,1023}\Z")
FILE_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
SIZE_RE = re.compile(r"\A[0-9]{1,9}[kKmMgG]?\Z")
ACCOUNT_RE = re.compile(r"\A[a-z_][a-z0-9_.-]{0,31}\Z")
UNIX_SOCKET_MAX = 107  # sun_path
FORBIDDEN_HEADERS_RE = re.compile(r"\A(authorization|proxy-authorization|impersonate-.*|x-remote-.*|host|connection|"
                                  r"upgrade|content-length|transfer-encoding|x-forwarded-.*)\Z")
CALLER_KEYS = ("name", "tenants", "token", "client_cert", "impersonate")
IMPERSONATE_KEYS = ("user", "groups")

# Integer settings: (minimum, maximum, what it is). Messages quote the range.
INTEGERS = {
    "gateway_read_timeout": (1, 86400, "seconds"),
    "gateway_connect_timeout": (1, 75, "seconds (nginx caps connect timeouts at 75)"),
    "gateway_upstream_keepalive": (1, 1024, "connections"),
    "gateway_worker_shutdown_timeout": (1, 86400, "seconds"),
    "gateway_caller_rate": (1, 100000, "requests per second"),
    "gateway_caller_burst": (0, 100000, "requests"),
    "gateway_caller_connections": (1, 100000, "concurrent requests"),
    "gateway_bad_credential_rate": (1, 100000, "requests per minute"),
    "gateway_bad_credential_burst": (0, 100000, "requests"),
}
PATHS_REQUIRED = ("gateway_tls_cert", "gateway_tls_key", "gateway_conf_dir", "gateway_data_dir", "gateway_audit_log",
                  "gateway_health_socket")
PATHS_OPTIONAL = ("gateway_caller_ca", "gateway_main_conf_dir")
SHORTEN = 80


def show(value) -> str:
    """A value for a message: quoted and escaped (newlines, quotes, control characters visible), long ones cut."""
    text = value if isinstance(value, str) else repr(value)
    shown = _show(text[:SHORTEN] + ("..." if len(text) > SHORTEN else ""))
    return shown + (" (%d characters)" % len(text) if len(text) > SHORTEN else "")


def _text(value) -> str:
    """A scalar inventory value as text (vault-encrypted values decrypt on str()); None and '' are unset."""
    if value is None or isinstance(value, (bool, list, tuple, dict, Mapping)):
        return ""
    return str(value)


def _bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "y"):
        return True
    if text in ("0", "false", "no", "off", "n", ""):
        return False
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_ok(text: str) -> bool:
    """A DNS name or an IP address (what may follow https:// or appear in a TLS server name)."""
    return bool(DNS_NAME_RE.match(text)) or _is_ip(text)


def parse_server(text: str):
    """(address for an nginx ``server`` line, host) of https://HOST[:PORT], or None when it is anything else."""
    if not isinstance(text, str) or not re.match(r"\Ahttps://[\x21-\x7e]+\Z", text):
        return None
    try:
        parts = urlsplit(text)
        port = 443 if parts.port is None else parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    netloc_host = parts.netloc.rsplit("@", 1)[-1]
    if (parts.username is not None or parts.query or parts.fragment or parts.path not in ("", "/")
            or not host_ok(host) or not 1 <= port <= 65535):
        return None
    if ":" in host:  # IPv6
        if not netloc_host.startswith("["):
            return None
        return "[%s]:%d" % (host, port), host
    return "%s:%d" % (host.lower(), port), host.lower()


def parse_listen(text: str):
    """An nginx ``listen`` address: ADDRESS:PORT, [IPv6]:PORT or PORT (the role adds ``ssl`` itself)."""
    if not isinstance(text, str):
        return None
    m = re.match(r"\A(?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):)?([0-9]{1,5})\Z", text)
    if not m or not 1 <= int(m.group(2)) <= 65535:
        return None
    host = m.group(1)
    if host is not None:
        bare = host[1:-1] if host.startswith("[") else host
        if host.startswith("["):
            try:
                ipaddress.IPv6Address(bare)
            except ValueError:
                return None
        elif not host_ok(bare):
            return None
    return text


class _Checker:
    """Collects problems; every check returns the accepted value or None."""

    def __init__(self):
        self.problems: list[str] = []

    def add(self, where: str, message: str):
        self.problems.append("%s: %s" % (where, message))

    def integer(self, where, var, value):
        low, high, unit = INTEGERS[var]
        try:
            if isinstance(value, bool) or isinstance(value, float) or not re.match(r"\A[0-9]{1,9}\Z", str(value)):
                raise ValueError
            number = int(value)
            if not low <= number <= high:
                raise ValueError
        except (TypeError, ValueError):
            self.add(where, "%s %s must be a whole number from %d to %d (%s)" % (var, show(value), low, high, unit))
            return None
        return number

    def path(self, where, var, value, required=True, socket=False):
        text = _text(value)
        if not text:
            if required:
                self.add(where, "%s is required (an absolute path on the gateway host)" % var)
            return ""
        if not PATH_RE.match(text) or "/../" in text + "/" or "/./" in text + "/" or "//" in text:
            self.add(where, "%s %s must be an absolute path of letters, digits and . _ + @ - / (no spaces, quotes, "
                            "; { } $ # or non-ASCII characters, at most 1024): nginx would read those as syntax; "
                            "use a path without them (e.g. a symlink)" % (var, show(value)))
            return None
        if socket and len(text) > UNIX_SOCKET_MAX:
            self.add(where, "%s %s is longer than a unix socket path may be (%d bytes)"
                     % (var, show(value), UNIX_SOCKET_MAX))
            return None
        return text


def _check_settings(gw_host: str, s: Mapping, c: _Checker) -> dict:
    """The gateway host's own role variables."""
    out = {}
    listen = s.get("gateway_listen")
    if isinstance(listen, str) or not isinstance(listen, (list, tuple)) or not listen:
        c.add(gw_host, "gateway_listen must be a non-empty list of ADDRESS:PORT, got %s" % show(listen))
        out["listen"] = []
    else:
        out["listen"] = []
        for i, item in enumerate(listen):
            parsed = parse_listen(item)
            if parsed is None:
                c.add(gw_host, "gateway_listen[%d] %s must be ADDRESS:PORT, [IPv6]:PORT or PORT (nothing else: the "
                               "role adds 'ssl' itself)" % (i, show(item)))
            elif parsed in out["listen"]:
                c.add(gw_host, "gateway_listen[%d] %s is listed twice" % (i, show(item)))
            else:
                out["listen"].append(parsed)
    names = _text(s.get("gateway_server_name"))
    if not names or not all(SERVER_NAME_RE.match(n) for n in names.split(" ")):
        c.add(gw_host, "gateway_server_name %s must be _ or host names separated by single spaces (letters, digits, "
                       "'.', '-', an optional leading '*.'; no regular expressions)" % show(s.get("gateway_server_name")))
    out["server_name"] = names
    for var in PATHS_REQUIRED + PATHS_OPTIONAL:
        out[var[len("gateway_"):]] = c.path(gw_host, var, s.get(var), required=var in PATHS_REQUIRED,
                                            socket=var == "gateway_health_socket")
    site = _text(s.get("gateway_site_name"))
    if not FILE_NAME_RE.match(site):
        c.add(gw_host, "gateway_site_name %s must be a file name of letters, digits and . _ - (at most 64)"
              % show(s.get("gateway_site_name")))
    out["site_name"] = site
    size = _text(s.get("gateway_client_max_body_size"))
    if not SIZE_RE.match(size):
        c.add(gw_host, "gateway_client_max_body_size %s must be a size such as 4m (digits and an optional k, m or g)"
              % show(s.get("gateway_client_max_body_size")))
    out["client_max_body_size"] = size
    for var in INTEGERS:
        out[var[len("gateway_"):]] = c.integer(gw_host, var, s.get(var))
    for var in ("gateway_audit_log_query", "gateway_impersonate"):
        value = _bool(s.get(var, False))
        if value is None:
            c.add(gw_host, "%s %s must be true or false" % (var, show(s.get(var))))
        out[var[len("gateway_"):]] = bool(value)
    for var in ("gateway_file_owner", "gateway_file_group"):
        if not ACCOUNT_RE.match(_text(s.get(var))):
            c.add(gw_host, "%s %s must be a user/group name (lower-case letters, digits, _ . -)" % (var, show(s.get(var))))
    headers = s.get("gateway_forward_headers")
    out["forward_headers"] = []
    if isinstance(headers, str) or not isinstance(headers, (list, tuple)):
        c.add(gw_host, "gateway_forward_headers must be a list of header names, got %s" % show(headers))
    else:
        for name in headers:
            text = _text(name)
            if not HEADER_RE.match(text):
                c.add(gw_host, "gateway_forward_headers: %s is not a header name (letters, digits, -)" % show(name))
            elif FORBIDDEN_HEADERS_RE.match(text.lower()):
                c.add(gw_host, "gateway_forward_headers: %s cannot be forwarded (credentials, impersonation, "
                               "hop-by-hop and framing headers are set by the gateway itself)" % _show(text))
            else:
                out["forward_headers"].append({"name": text, "variable": "http_" + text.lower().replace("-", "_")})
    return out


def _check_callers(gw_host: str, callers, caller_ca: str, impersonate_default: bool, c: _Checker):
    out, tokens, names = [], [], set()
    if isinstance(callers, str) or not isinstance(callers, (list, tuple)):
        c.add(gw_host, "gateway_callers must be a list of callers ({name, tenants, token or client_cert})")
        return out, tokens
    for i, caller in enumerate(callers):
        label = "gateway_callers[%d]" % i
        if not isinstance(caller, Mapping):
            c.add(gw_host, "%s must be a mapping (name, tenants, token or client_cert, impersonate)" % label)
            continue
        name = _text(caller.get("name"))
        if not CALLER_RE.match(name):
            c.add(gw_host, "%s: caller name %s must be lower-case letters, digits and . _ @ - (at most 64)"
                  % (label, show(caller.get("name"))))
            continue
        where = "caller %s (%s)" % (name, label)
        if name in names:
            c.add(gw_host, "%s: defined twice" % where)
        names.add(name)
        unknown = sorted(str(k) for k in caller if k not in CALLER_KEYS)
        if unknown:
            shown = ", ".join(show(k) for k in unknown)
            c.add(gw_host, "%s: unknown key(s) %s; allowed: %s" % (where, shown, ", ".join(CALLER_KEYS)))
        token = _text(caller.get("token"))
        if token and not TOKEN_RE.match(token):
            c.add(gw_host, "%s: token must be 16 to 8192 characters of A-Z a-z 0-9 . _ ~ + / = - (value not shown)"
                  % where)
            token = ""
        client_cert = _bool(caller.get("client_cert", False))
        if client_cert is None:
            c.add(gw_host, "%s: client_cert %s must be true or false" % (where, show(caller.get("client_cert"))))
            client_cert = False
        if not token and not client_cert and not _text(caller.get("token")):
            c.add(gw_host, "%s: give it a token or client_cert: true" % where)
        if client_cert and not caller_ca:
            c.add(gw_host, "%s: client_cert needs gateway_caller_ca (the CA that signs caller certificates)" % where)
        tenants = caller.get("tenants")
        if isinstance(tenants, str) or not isinstance(tenants, (list, tuple)) or not tenants:
            c.add(gw_host, "%s: tenants must be a non-empty list of tenant names" % where)
            tenants = []
        ok_tenants = []
        for t in tenants:
            if not DNS_LABEL_RE.match(_text(t)):
                c.add(gw_host, "%s: tenant %s is not a DNS label (lower-case letters, digits, -)" % (where, show(t)))
            else:
                ok_tenants.append(_text(t))
        imp = caller.get("impersonate", impersonate_default)
        user, groups = "", []
        if isinstance(imp, Mapping):
            unknown = sorted(str(k) for k in imp if k not in IMPERSONATE_KEYS)
            if unknown:
                c.add(gw_host, "%s: impersonate has unknown key(s) %s; allowed: user, groups"
                      % (where, ", ".join(show(k) for k in unknown)))
            user = _text(imp.get("user", name)) if imp.get("user", name) is not None else ""
            groups = imp.get("groups") or []
            if isinstance(groups, str) or not isinstance(groups, (list, tuple)):
                c.add(gw_host, "%s: impersonate.groups must be a list, got %s" % (where, show(groups)))
                groups = []
        elif _bool(imp) is None:
            c.add(gw_host, "%s: impersonate %s must be true, false or {user, groups}" % (where, show(imp)))
        elif _bool(imp):
            user = name
        good_groups = []
        for what, v in [("user", user)] * bool(user) + [("group", g) for g in (groups if user else [])]:
            if not SUBJECT_RE.match(_text(v)):
                c.add(gw_host, "%s: impersonated %s %s must be letters, digits and : @ . _ - (at most 253)"
                      % (where, what, show(v)))
            elif what == "group":
                good_groups.append(_text(v))
        if groups and not user:
            c.add(gw_host, "%s: impersonate.groups needs an impersonated user" % where)
        if token:
            tokens.append([name, token])
        out.append({"name": name, "client_cert": bool(client_cert), "tenants": sorted(set(ok_tenants)),
                    "impersonate_user": user, "impersonate_groups": good_groups})
    return out, tokens


def _pick(hv: Mapping, *names):
    """(variable, value) of the first of `names` set on the host (None and '' are unset)."""
    for name in names:
        value = hv.get(name) if name in hv else None
        if value not in (None, ""):
            return name, value
    return names[-1], None


def _check_cluster(h: str, hv: Mapping, group: str, non_tenant: list, c: _Checker):
    """One cluster host; returns (cluster, token or None, client files) or None when it is not behind the gateway."""
    server_var, server = _pick(hv, "kubegate_gateway_server", "kubegate_host")
    groups = [g for g in (hv.get("group_names") or []) if g not in ["all", "ungrouped", group] + list(non_tenant)]
    tenant_var, tenant = _pick(hv, "kubegate_tenant")
    if tenant is None:
        tenant_var = "kubegate_tenant (or its only group)"
        tenant = groups[0] if len(groups) == 1 else ""
    tenant = _text(tenant)
    ok = True
    if not DNS_LABEL_RE.match(h):
        c.add(h, "the cluster name (inventory host name) must be a DNS label (lower-case letters, digits, -, at most "
                 "63) to appear in gateway URLs; rename the host or list it in gateway_exclude_clusters")
        ok = False
    if not tenant:
        c.add(h, "cannot tell its tenant (groups: %s); set kubegate_tenant" % (", ".join(groups) or "none"))
        ok = False
    elif not DNS_LABEL_RE.match(tenant):
        c.add(h, "%s %s is not a DNS label (lower-case letters, digits, -, at most 63)" % (tenant_var, show(tenant)))
        ok = False
    parsed = parse_server(_text(server))
    if parsed is None:
        c.add(h, "%s %s must be https://HOST[:PORT] (HOST a DNS name or an IP address, [IPv6] in brackets, PORT 1-65535, "
                 "no path, query or user)" % (server_var, show(server)))
        ok = False
        address, url_host = "", ""
    else:
        address, url_host = parsed
    if "kubegate_jump" in hv and hv.get("kubegate_jump") and "kubegate_gateway_server" not in hv:
        c.add(h, "reached through kubegate_jump (an in-process ssh forward nginx cannot use); run a tunnel (role "
                 "ssh_tunnel) and set kubegate_gateway_server to its local address, plus kubegate_tls_server_name, or "
                 "list the cluster in gateway_exclude_clusters")
        ok = False
    tls_var, tls_name = _pick(hv, "kubegate_gateway_tls_server_name", "kubegate_tls_server_name")
    tls_name = _text(tls_name) or url_host
    if tls_name and not host_ok(tls_name):
        c.add(h, "%s %s must be the DNS name or IP address in the apiserver's certificate (letters, digits, '.', '-')"
              % (tls_var, show(tls_name)))
        ok = False
    ca_var, ca = _pick(hv, "kubegate_gateway_ca_cert", "kubegate_ca_cert")
    if ca is None:
        c.add(h, "no CA certificate (kubegate_ca_cert or kubegate_gateway_ca_cert): the gateway always verifies the "
                 "apiserver")
        ok = False
    elif c.path(h, ca_var, ca) is None:
        ok = False
    token_var, token = _pick(hv, "kubegate_gateway_token", "kubegate_token")
    cert_var, cert = _pick(hv, "kubegate_gateway_client_cert", "kubegate_client_cert")
    key_var, key = _pick(hv, "kubegate_gateway_client_key", "kubegate_client_key")
    uses_cert = cert is not None and key is not None
    if not uses_cert and token is None:
        c.add(h, "no credential for the gateway: set kubegate_gateway_token (or kubegate_token), or kubegate_client_cert "
                 "and kubegate_client_key (kubeconfig credentials are not read by the gateway role)")
        ok = False
    elif not uses_cert and not TOKEN_RE.match(_text(token)):
        c.add(h, "the bearer token (%s) has characters or a length a bearer token cannot have (value not shown)"
              % token_var)
        ok = False
    if uses_cert:
        for var, value in ((cert_var, cert), (key_var, key)):
            if c.path(h, var, value) is None:
                ok = False
    if not ok:
        return None
    cid = "%s--%s" % (tenant, h)
    cluster = {"tenant": tenant, "name": h, "id": cid, "address": address, "tls_server_name": tls_name,
               "ca_src": _text(ca), "uses_token": not uses_cert, "client_cert": uses_cert}
    files = [{"src": _text(cert), "dest": cid + ".crt"}, {"src": _text(key), "dest": cid + ".key"}] if uses_cert else []
    return cluster, (None if uses_cert else ["%s/%s" % (tenant, h), _text(token)]), files


def model(hosts, hostvars: Mapping, settings: Mapping, gateway_host: str = "", gateway_hosts=()) -> dict:
    """The gateway's model: {clusters, callers, settings, problems, ...}; never raises on bad input.

    hosts: inventory hosts of gateway_clusters_group; hostvars: Ansible's hostvars; settings: the gateway host's role
    variables (gateway_*); gateway_host: the host being configured (named in messages about its variables).
    The result holds credentials (cluster_tokens, caller_tokens): use it only with no_log.
    """
    c = _Checker()
    gw_host = gateway_host or "gateway"
    s = _check_settings(gw_host, settings, c)
    data_dir = s.get("data_dir") or ""
    excluded = settings.get("gateway_exclude_clusters") or []
    non_tenant = settings.get("gateway_non_tenant_groups") or []
    group = _text(settings.get("gateway_clusters_group")) or "all"
    clusters, cluster_tokens, client_files, skipped, ids = [], [], [], [], set()
    for h in sorted(str(x) for x in (hosts or [])):
        hv = hostvars[h] if h in hostvars else {}
        if h in gateway_hosts or h in excluded:
            continue
        if _pick(hv, "kubegate_gateway_server", "kubegate_host")[1] is None:
            skipped.append("%s (no kubegate_host or kubegate_gateway_server)" % h)
            continue
        checked = _check_cluster(h, hv, group, non_tenant, c)
        if checked is None:
            continue
        cluster, token, files = checked
        if cluster["id"] in ids:
            c.add(h, "tenant %s already has a cluster named %s" % (cluster["tenant"], h))
            continue
        ids.add(cluster["id"])
        clusters.append(cluster)
        client_files += files
        if token:
            cluster_tokens.append(token)
    callers, caller_tokens = _check_callers(gw_host, settings.get("gateway_callers") or [], s.get("caller_ca") or "",
                                            s.get("impersonate", False), c)
    wanted = ["%s/ca/%s.crt" % (data_dir, cl["id"]) for cl in clusters]
    wanted += ["%s/client/%s" % (data_dir, f["dest"]) for f in client_files]
    return {"cluster_tokens": cluster_tokens, "caller_tokens": caller_tokens, "wanted_files": wanted,
            "client_files": client_files, "clusters": clusters, "callers": callers, "problems": c.problems,
            "skipped": skipped, "tenants": sorted({cl["tenant"] for cl in clusters}), "settings": s,
            "max_groups": max([len(x["impersonate_groups"]) for x in callers if x["impersonate_user"]] or [0])}

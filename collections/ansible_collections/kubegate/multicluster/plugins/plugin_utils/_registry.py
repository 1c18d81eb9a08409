# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Cluster registry and kubeconfig contexts -> inventory host records (used by the ``clusters`` inventory plugin).

Pure data work: no sockets, no Ansible inventory objects. Every problem raises RegistryError with a message naming the
tenant, the cluster and the field, and saying what to do. The plugin turns records into hosts and groups.

A record is a dict: ``tenant``, ``cluster``, ``region`` (or None), ``access``, ``origin`` (where it was defined, for
messages) and ``hostvars`` (the ``kubegate_*`` variables the playbooks' ``module_defaults`` read, plus extra ``vars``).
Values that must be templated at play time (a token variable reference, a token file lookup) are built through the
``template`` callable the caller passes (the plugin marks them trusted); values taken from the registry are passed
through untouched, so templates written there (``"{{ vault_token }}"``) and ``!vault`` values keep working.
"""
from __future__ import annotations

import json
import os
import re
from urllib.parse import urlsplit

ACCESS_PATHS = ("direct", "tunnel", "jump", "proxy")

# Fields a cluster may have; INHERITED ones may also be set per tenant and under the registry's `defaults`.
CLUSTER_FIELDS = ("apiserver", "ca_file", "tls_server_name", "region", "access", "token", "token_var", "token_file",
                  "client_cert", "client_key", "kubeconfig", "context", "jump", "tunnel", "proxy", "routing", "vars")
INHERITED = ("region", "access", "tls_server_name", "jump", "tunnel", "proxy", "routing", "vars", "kubeconfig")
TENANT_FIELDS = ("clusters",) + INHERITED
REGISTRY_FIELDS = ("tenants", "defaults", "version")
MERGED_DICTS = ("jump", "tunnel", "proxy", "vars")

JUMP_KEYS = {"host": "str", "port": "int", "user": "str", "key_file": "path", "known_hosts": "path",
             "connect_timeout": "num"}
JUMP_REQUIRED = ("host", "user", "key_file", "known_hosts")
TUNNEL_KEYS = {"jump_host": "str", "jump_port": "int", "jump_user": "str", "local_address": "str", "local_port": "int",
               "key_file": "path", "known_hosts": "path"}
TUNNEL_REQUIRED = ("jump_host", "jump_user", "local_port")
PROXY_KEYS = {"address": "str", "port": "int"}
PROXY_REQUIRED = ("port",)

# Variables the plugin owns: `vars` may not override them (they identify the host and decide its groups).
RESERVED_VARS = ("kubegate_tenant", "kubegate_cluster", "kubegate_region", "kubegate_access")

TENANT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CLUSTER_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

TENANT_HINT = ("tenant names become inventory group names (group_vars/<tenant>.yml): letters, digits and "
               "underscores, not starting with a digit (e.g. acme_corp instead of acme-corp)")


class RegistryError(Exception):
    """A malformed registry or kubeconfig source. The message is complete and safe to show (no secret values)."""


def is_template(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def is_vaulted(value):
    """A ``!vault`` value as Ansible's loader returns it (never decrypted here)."""
    return type(value).__name__ in ("EncryptedString", "AnsibleVaultEncryptedUnicode")


def _kind(value):
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Where(object):
    """Builds error messages: `<source>: tenant 'acme', cluster 'a': <field>: <problem>`."""

    def __init__(self, source, tenant=None, cluster=None):
        self.source, self.tenant, self.cluster = source, tenant, cluster

    def __call__(self, field, problem):
        parts = [self.source]
        if self.tenant is not None:
            parts.append("tenant %r" % self.tenant + (", cluster %r" % self.cluster if self.cluster is not None else ""))
        head = ": ".join(parts)
        return RegistryError("%s: %s%s" % (head, ("%s: " % field) if field else "", problem))


def resolve_path(value, base_dir):
    """Relative paths are relative to the file that names them. Templates and ~ are left as they are (expanded when a
    task runs, in the environment of the job rather than of the inventory update)."""
    if not isinstance(value, str) or is_template(value) or value.startswith("~"):
        return value
    return value if os.path.isabs(value) or not base_dir else os.path.normpath(os.path.join(base_dir, value))


def _mapping(value, where, field, what="a mapping"):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where(field, "must be %s, got %s" % (what, _kind(value)))
    return value


def _string(value, where, field, allow_template=True):
    if is_template(value) and not allow_template:
        raise where(field, "cannot be a template here (it decides the inventory structure); give a plain value")
    if not isinstance(value, str) or not value.strip():
        raise where(field, "must be a non-empty string, got %s" % _kind(value))
    return value


def _number(value, where, field, integer=True, low=1, high=None):
    ok = isinstance(value, int) and not isinstance(value, bool) if integer else \
        isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok and isinstance(value, str) and value.strip().isdigit():
        value, ok = int(value), True
    if not ok or value < low or (high is not None and value > high):
        rng = "%s..%s" % (low, high) if high else ">= %s" % low
        raise where(field, "must be %s %s, got %r" % ("an integer" if integer else "a number", rng,
                                                      value if not isinstance(value, (dict, list)) else _kind(value)))
    return value


def _check_keys(data, allowed, where, field):
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise where(field, "unknown key%s %s; allowed: %s" % ("s" if len(unknown) > 1 else "", ", ".join(unknown),
                                                              ", ".join(allowed)))


def _sub(data, spec, required, where, field, base_dir):
    """Validate a small settings mapping (jump, tunnel, proxy) and return a plain dict with paths resolved."""
    data = _mapping(data, where, field)
    _check_keys(data, tuple(spec), where, field)
    missing = [k for k in required if data.get(k) in (None, "")]
    if missing:
        raise where(field, "missing %s (needs %s)" % (", ".join(missing), ", ".join(required)))
    out = {}
    for key, value in data.items():
        kind = spec[key]
        sub_field = "%s.%s" % (field, key)
        if is_template(value):
            out[key] = value
        elif kind == "int":
            out[key] = _number(value, where, sub_field, high=65535 if key.endswith("port") else None)
        elif kind == "num":
            out[key] = _number(value, where, sub_field, integer=False, low=0.1)
        elif kind == "path":
            out[key] = resolve_path(_string(value, where, sub_field), base_dir)
        else:
            out[key] = _string(value, where, sub_field)
    return out


def _apiserver(value, where):
    value = _string(value, where, "apiserver", allow_template=False)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise where("apiserver", "%r is not a valid URL; expected https://HOST[:PORT]" % value) from None
    if parts.scheme != "https" or not parts.hostname:
        raise where("apiserver", "%r must be an https:// URL of the apiserver (https://HOST[:PORT]); a kubectl proxy "
                                 "is described with access: proxy instead" % value)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise where("apiserver", "%r must not contain credentials, a query or a fragment" % value)
    host = parts.hostname
    return value.rstrip("/"), host, port or 443


def load_routing(value, where, base_dir, load_file, validate_maps):
    """`routing`: a list of maps (kubegate_routing_maps schema), or a path to a YAML file holding such a list or a
    mapping with `kubegate_routing_maps`."""
    if is_template(value):
        return value
    if isinstance(value, str):
        path = os.path.expanduser(resolve_path(value, base_dir))
        if not os.path.isfile(path):
            raise where("routing", "file %s not found; give a path (relative to the registry file) to a YAML list of "
                                   "maps, or the maps inline" % path)
        try:
            data = load_file(path)
        except Exception as exc:  # the loader's own message says what is wrong with the YAML
            raise where("routing", "cannot read %s: %s" % (path, str(exc).splitlines()[0] if str(exc) else exc)) from None
        if isinstance(data, dict) and "kubegate_routing_maps" in data:
            data = data["kubegate_routing_maps"]
        value, label = data, "routing (%s)" % path
    else:
        label = "routing"
    if not isinstance(value, list):
        raise where(label, "must be a list of nginx maps (the kubegate_routing_maps schema, see "
                           "inventories/lab/group_vars/acme.yml), got %s" % _kind(value))
    if validate_maps is not None and not any(is_template(v) for v in _walk_strings(value)):
        problems = validate_maps(value)
        if problems:
            raise where(label, "invalid nginx maps: " + "; ".join(problems))
    return value


def _walk_strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _walk_strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk_strings(v)
    elif isinstance(value, str):
        yield value


def _merge(layers):
    """Later layers win; the MERGED_DICTS fields merge key by key."""
    out = {}
    for layer in layers:
        for key, value in layer.items():
            if key in MERGED_DICTS and isinstance(value, dict) and isinstance(out.get(key), dict):
                merged = dict(out[key])
                merged.update(value)
                out[key] = merged
            else:
                out[key] = value
    return out


def parse_registry(data, source, base_dir, template=lambda s: s, load_file=None, validate_maps=None):
    """Registry data (already loaded YAML) -> list of records. See the plugin's documentation for the schema."""
    top = Where(source)
    if not isinstance(data, dict):
        raise top("registry", "must be a mapping with a `tenants` key, got %s" % _kind(data))
    _check_keys(data, REGISTRY_FIELDS, top, "registry")
    if "version" in data and data["version"] != 1:
        raise top("version", "unsupported registry version %r (this plugin reads version 1)" % (data["version"],))
    defaults = _mapping(data.get("defaults"), top, "defaults")
    _check_keys(defaults, INHERITED, top, "defaults")
    tenants = data.get("tenants")
    if not isinstance(tenants, dict) or not tenants:
        raise top("tenants", "must be a non-empty mapping of tenant name -> {clusters: {...}}, got %s"
                  % _kind(tenants))
    records = []
    for tenant, tdata in tenants.items():
        tw = Where(source, tenant)
        if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
            raise tw(None, "invalid tenant name: " + TENANT_HINT)
        tdata = _mapping(tdata, tw, None, "a mapping with `clusters`")
        _check_keys(tdata, TENANT_FIELDS, tw, None)
        clusters = tdata.get("clusters")
        if not isinstance(clusters, dict) or not clusters:
            raise tw("clusters", "must be a non-empty mapping of cluster name -> settings, got %s" % _kind(clusters))
        tenant_layer = dict((k, v) for k, v in tdata.items() if k != "clusters")
        for cluster, cdata in clusters.items():
            cw = Where(source, tenant, cluster)
            if not isinstance(cluster, str) or not CLUSTER_RE.match(cluster):
                raise cw(None, "invalid cluster name (it becomes an inventory host name): letters, digits, '.', '-' "
                               "and '_', starting and ending with a letter or digit")
            cdata = _mapping(cdata, cw, None, "a mapping of cluster settings")
            _check_keys(cdata, CLUSTER_FIELDS, cw, None)
            merged = _merge([defaults, tenant_layer, cdata])
            records.append(_cluster_record(tenant, cluster, merged, cw, base_dir, template, load_file, validate_maps,
                                           origin="%s (tenant %s)" % (source, tenant), own=tuple(cdata)))
    return records


def _cluster_record(tenant, cluster, c, where, base_dir, template, load_file, validate_maps, origin, own=()):
    """`c`: the merged settings; `own`: the keys the cluster itself sets (not inherited)."""
    hv = {}
    access = c.get("access", "direct")
    if access not in ACCESS_PATHS:
        raise where("access", "must be one of %s, got %r" % (", ".join(ACCESS_PATHS), access))
    region = c.get("region")
    if region is not None:
        region = _string(region, where, "region", allow_template=False)
    for field in ("kubeconfig", "context"):
        if field in c and not isinstance(c[field], (str, list)):
            raise where(field, "must be a string%s, got %s" % (" or a list of paths" if field == "kubeconfig" else "",
                                                               _kind(c[field])))
    if "apiserver" not in c and "context" not in c:
        raise where(None, "needs `apiserver` (https://HOST[:PORT]) or a kubeconfig `context` to reach the cluster")
    host = port = None
    if "apiserver" in c:
        url, host, port = _apiserver(c["apiserver"], where)
        hv["kubegate_apiserver"] = url
        hv["kubegate_host"] = url
    if "context" in c:
        hv["kubegate_context"] = _string(c["context"], where, "context")
    if "kubeconfig" in c:
        kc = c["kubeconfig"]
        hv["kubegate_kubeconfig"] = [resolve_path(_string(p, where, "kubeconfig"), base_dir) for p in kc] \
            if isinstance(kc, list) else resolve_path(_string(kc, where, "kubeconfig"), base_dir)
    if "ca_file" in c:
        hv["kubegate_ca_cert"] = resolve_path(_string(c["ca_file"], where, "ca_file"), base_dir)
    for field, var in (("client_cert", "kubegate_client_cert"), ("client_key", "kubegate_client_key")):
        if field in c:
            hv[var] = resolve_path(_string(c[field], where, field), base_dir)
    if ("client_key" in c) != ("client_cert" in c):
        raise where("client_cert" if "client_key" in c else "client_key",
                    "give both client_cert and client_key (PEM files), or neither")
    if "tls_server_name" in c:
        hv["kubegate_tls_server_name"] = _string(c["tls_server_name"], where, "tls_server_name")

    tokens = [f for f in ("token", "token_var", "token_file") if f in c]
    if len(tokens) > 1:
        raise where(None, "give only one of token, token_var and token_file (got %s)" % ", ".join(tokens))
    if "token" in c:
        token = c["token"]
        if not (is_vaulted(token) or is_template(token)):
            raise where("token", "a plain-text token in the registry would show in `ansible-inventory --list` and "
                                 "in AWX; encrypt it (`ansible-vault encrypt_string --stdin-name token`, a !vault "
                                 "value), or use token_var (a vaulted variable) or token_file instead")
        hv["kubegate_token"] = token
    elif "token_var" in c:
        name = _string(c["token_var"], where, "token_var", allow_template=False)
        if not IDENT_RE.match(name):
            raise where("token_var", "%r is not a variable name; name the (vaulted) variable that holds the token, "
                                     "e.g. vault_token_%s" % (name, cluster.replace("-", "_").replace(".", "_")))
        hv["kubegate_token"] = template("{{ %s }}" % name)
    elif "token_file" in c:
        path = resolve_path(_string(c["token_file"], where, "token_file"), base_dir)
        if is_template(path):
            raise where("token_file", "cannot be a template; give a path (plain or vault-encrypted file) or use "
                                      "token_var")
        hv["kubegate_token"] = template("{{ lookup('ansible.builtin.unvault', %s) | trim }}" % json.dumps(path))

    if access == "jump":
        hv["kubegate_jump"] = _sub(c.get("jump"), JUMP_KEYS, JUMP_REQUIRED, where, "jump", base_dir)
        if host is None:
            raise where("apiserver", "access: jump needs the apiserver URL (the address the jump host forwards to)")
    # Tunnel and kubectl proxy settings are data for the ssh_tunnel / kubectl_proxy roles. They are published when the
    # cluster uses that access path, or when the cluster itself describes them (a tunnel being prepared while the
    # cluster is still reached another way); settings merely inherited from the tenant are not published otherwise.
    if access == "tunnel" or "tunnel" in own:
        if host is None:
            raise where("apiserver", "tunnel settings need the apiserver URL (the tunnel's far end)")
        tunnel = _sub(c.get("tunnel"), TUNNEL_KEYS, TUNNEL_REQUIRED, where, "tunnel", base_dir)
        tunnel.setdefault("jump_port", 22)
        tunnel.setdefault("local_address", "127.0.0.1")
        tunnel["apiserver"] = "%s:%d" % ("[%s]" % host if ":" in host else host, port)
        hv["kubegate_tunnel"] = tunnel
        if access == "tunnel":
            local = tunnel["local_address"]
            hv["kubegate_host"] = "https://%s:%s" % ("[%s]" % local if ":" in str(local) else local,
                                                     tunnel["local_port"])
            # Through a forward the certificate still names the apiserver: verify that name, never skip verification.
            hv.setdefault("kubegate_tls_server_name", host)
    if access == "proxy" or "proxy" in own:
        proxy = _sub(c.get("proxy"), PROXY_KEYS, PROXY_REQUIRED, where, "proxy", base_dir)
        proxy.setdefault("address", "127.0.0.1")
        hv["kubegate_kubectl_proxy"] = proxy
        if access == "proxy":
            addr = proxy["address"]
            hv["kubegate_host"] = "http://%s:%s" % ("[%s]" % addr if ":" in str(addr) else addr, proxy["port"])

    if "routing" in c:
        hv["kubegate_routing_maps"] = load_routing(c["routing"], where, base_dir, load_file, validate_maps)
    extra = _mapping(c.get("vars"), where, "vars")
    for key, value in extra.items():
        if not isinstance(key, str) or not IDENT_RE.match(key):
            raise where("vars", "%r is not a valid variable name" % (key,))
        if key in RESERVED_VARS:
            raise where("vars", "%s is set by the plugin (from the registry structure); change the registry "
                                "instead of overriding it" % key)
        hv[key] = value
    hv.update({"kubegate_tenant": tenant, "kubegate_cluster": cluster, "kubegate_access": access})
    if region is not None:
        hv["kubegate_region"] = region
    return {"tenant": tenant, "cluster": cluster, "region": region, "access": access, "hostvars": hv,
            "origin": origin, "trusted": True}


# ------------------------------------------------------------------------------------------------- kubeconfig contexts

KUBECONFIG_FIELDS = ("path", "contexts", "tenant", "tenant_map", "tenant_pattern", "region", "region_map", "vars")


def kubeconfig_sources(value, source):
    """The plugin's `kubeconfig` option: one mapping or a list of them."""
    where = Where(source)
    if value is None:
        return []
    entries = value if isinstance(value, list) else [value]
    out = []
    for i, entry in enumerate(entries):
        field = "kubeconfig" if not isinstance(value, list) else "kubeconfig[%d]" % i
        entry = _mapping(entry, where, field)
        _check_keys(entry, KUBECONFIG_FIELDS, where, field)
        out.append((field, entry))
    return out


def kubeconfig_paths(entry, field, where, base_dir, env):
    path = entry.get("path")
    if path is None:
        if env.get("KUBECONFIG"):
            return [p for p in env["KUBECONFIG"].split(os.pathsep) if p and os.path.exists(os.path.expanduser(p))]
        home = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".kube", "config")
        return [home] if os.path.exists(home) else []
    paths = path if isinstance(path, list) else [path]
    out = []
    for p in paths:
        p = os.path.expanduser(resolve_path(_string(p, where, field + ".path", allow_template=False), base_dir))
        if not os.path.isfile(p):
            raise where(field + ".path", "kubeconfig %s not found; fix the path (relative paths are relative to the "
                                         "inventory source file)" % p)
        out.append(p)
    return out


def summarise_kubeconfigs(paths, load_yaml):
    """Context name -> {cluster, server} from the merged kubeconfigs (the first file defining a name wins, as kubectl
    does). Reads names and URLs only: no credentials leave this function."""
    contexts, clusters = {}, {}
    for path in paths:
        try:
            data = load_yaml(path)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RegistryError("kubeconfig %s cannot be read: %s" % (path, reason)) from None
        if data is None:
            continue
        if not isinstance(data, dict):
            raise RegistryError("kubeconfig %s is not a kubeconfig (expected a mapping with clusters and contexts)"
                                % path)
        for key, store in (("clusters", clusters), ("contexts", contexts)):
            entries = data.get(key) or []
            if not isinstance(entries, list):
                raise RegistryError("kubeconfig %s: %s must be a list" % (path, key))
            for e in entries:
                if not isinstance(e, dict) or not isinstance(e.get("name"), str):
                    raise RegistryError("kubeconfig %s: every entry of %s needs a name" % (path, key))
                store.setdefault(e["name"], e.get(key[:-1]) or {})
    out = {}
    for name, ctx in contexts.items():
        cl = clusters.get(ctx.get("cluster")) if isinstance(ctx, dict) else None
        out[name] = {"cluster": ctx.get("cluster") if isinstance(ctx, dict) else None,
                     "server": (cl or {}).get("server") if isinstance(cl, dict) else None}
    return out


def kubeconfig_records(entry, field, source, paths, contexts, warn, strict=False):
    """Records for the contexts of one kubeconfig entry. Contexts whose tenant cannot be told are skipped with a
    warning (an error with strict)."""
    where = Where(source)
    patterns = entry.get("contexts")
    if patterns is not None and (not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns)):
        raise where(field + ".contexts", "must be a list of context names or regular expressions")
    compiled = []
    for p in patterns or []:
        try:
            compiled.append(re.compile(p))
        except re.error as exc:
            raise where(field + ".contexts", "%r is not a valid regular expression: %s" % (p, exc)) from None
    tenant_pattern = entry.get("tenant_pattern")
    if tenant_pattern is not None:
        try:
            tenant_pattern = re.compile(_string(tenant_pattern, where, field + ".tenant_pattern", False))
        except re.error as exc:
            raise where(field + ".tenant_pattern", "not a valid regular expression: %s" % exc) from None
        if "tenant" not in tenant_pattern.groupindex:
            raise where(field + ".tenant_pattern", "needs a named group (?P<tenant>...) (optional: (?P<cluster>...), "
                                                   "(?P<region>...))")
    tenant_map = _mapping(entry.get("tenant_map"), where, field + ".tenant_map")
    region_map = _mapping(entry.get("region_map"), where, field + ".region_map")
    extra = _mapping(entry.get("vars"), where, field + ".vars")
    for key in extra:
        if not isinstance(key, str) or not IDENT_RE.match(key) or key in RESERVED_VARS:
            raise where(field + ".vars", "%r cannot be set here (not a variable name, or set by the plugin)" % (key,))
    unknown = sorted(set(tenant_map) - set(contexts))
    if unknown:
        warn("%s: %s.tenant_map names context(s) not in %s: %s" % (source, field, ", ".join(paths), ", ".join(unknown)))
    records = []
    for name in sorted(contexts):
        if compiled and not any(p.fullmatch(name) or p.pattern == name for p in compiled):
            continue
        info = contexts[name]
        match = tenant_pattern.match(name) if tenant_pattern is not None else None
        tenant = tenant_map.get(name) or (match.group("tenant") if match else None) or entry.get("tenant")
        cluster = (match.group("cluster") if match and "cluster" in match.re.groupindex and match.group("cluster")
                   else name)
        region = region_map.get(name) or (match.group("region") if match and "region" in match.re.groupindex
                                          else None) or entry.get("region")
        problem = None
        if not tenant:
            problem = ("no tenant for context %r: add it to %s.tenant_map, set %s.tenant, or make %s.tenant_pattern "
                       "match it (or leave it out with %s.contexts)" % (name, field, field, field, field))
        elif not isinstance(tenant, str) or not TENANT_RE.match(tenant):
            problem = "context %r: tenant %r is not a valid name: %s" % (name, tenant, TENANT_HINT)
        elif not CLUSTER_RE.match(cluster):
            problem = "context %r: %r is not a valid host name for the cluster" % (name, cluster)
        elif not info.get("server"):
            problem = "context %r names cluster %r, which has no server in %s" % (
                name, info.get("cluster"), ", ".join(paths))
        if problem:
            if strict:
                raise RegistryError("%s: %s" % (source, problem))
            warn("%s: %s; context skipped" % (source, problem))
            continue
        hv = dict(extra)
        hv.update({"kubegate_context": name, "kubegate_apiserver": info["server"], "kubegate_tenant": tenant,
                   "kubegate_cluster": cluster, "kubegate_access": "direct"})
        if entry.get("path") is not None:
            # An explicit path is pinned. Without one the contexts came from $KUBECONFIG / ~/.kube/config, which is
            # read again when each task runs: AWX hands inventory updates a temporary credential file that is gone
            # by the time a job runs, so pinning that path would break every job.
            hv["kubegate_kubeconfig"] = paths[0] if len(paths) == 1 else list(paths)
        if region:
            hv["kubegate_region"] = region
        records.append({"tenant": tenant, "cluster": cluster, "region": region or None, "access": "direct",
                        "hostvars": hv, "origin": "%s (%s, context %s)" % (source, field, name)})
    return records


# ------------------------------------------------------------------------------------------------------- host names

def assign_names(records, naming="cluster"):
    """Host name per record. `cluster`: the cluster name, and `<tenant>-<cluster>` for every cluster whose name is used
    by more than one tenant (so no tenant's host silently replaces another's). `tenant_cluster`: always
    `<tenant>-<cluster>`. The same cluster twice in one tenant is an error."""
    seen = {}
    for r in records:
        key = (r["tenant"], r["cluster"])
        if key in seen:
            raise RegistryError("cluster %r of tenant %r is defined twice: in %s and in %s; keep one (for a kubeconfig, "
                                "leave the context out with `contexts`)" % (r["cluster"], r["tenant"],
                                                                            seen[key]["origin"], r["origin"]))
        seen[key] = r
    tenants_of = {}
    for r in records:
        tenants_of.setdefault(r["cluster"], set()).add(r["tenant"])
    collisions = sorted(c for c, ts in tenants_of.items() if len(ts) > 1)
    names = {}
    for r in records:
        if naming == "tenant_cluster" or r["cluster"] in collisions:
            name = "%s-%s" % (r["tenant"], r["cluster"])
        else:
            name = r["cluster"]
        if name in names:
            other = names[name]
            raise RegistryError("host name %r is produced twice (tenant %r cluster %r, and tenant %r cluster %r); "
                                "rename one of them" % (name, other["tenant"], other["cluster"], r["tenant"],
                                                        r["cluster"]))
        names[name] = r
        r["name"] = name
    return collisions


def group_name(prefix, value):
    """Safe group name: anything but letters, digits and _ becomes _."""
    return re.sub(r"[^A-Za-z0-9_]", "_", "%s%s" % (prefix, value))

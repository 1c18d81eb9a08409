# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Resolve the connection options of a task into one frozen `Cluster` value. Reads files, never opens a socket.

Order (first that applies wins; documented in the `cluster` doc fragment):
  1. explicit task options (host, api_key, ca_cert, ...; module_defaults count as options)
  2. K8S_AUTH_* environment variables (as AWX's Kubernetes credential injects them), option by option
  3. a kubeconfig: the `kubeconfig` option / K8S_AUTH_KUBECONFIG, else KUBECONFIG (a path list, merged: the first file
     defining a name wins), else ~/.kube/config; the `context` option or the current-context. Used when no host was
     given, or whenever kubeconfig/context is given explicitly (then explicit options override its fields).
  4. in-cluster: KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}
     (the token file is re-read for every request so rotated projected tokens keep working).
A host starting with http:// (e.g. a local `kubectl proxy`) gets no credentials at all.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import subprocess
import threading
import time

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit

from . import jump
from .errors import KubegateError

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# option name -> environment variable (names shared with kubernetes.core where they overlap)
ENV_NAMES = {
    "host": "K8S_AUTH_HOST",
    "api_key": "K8S_AUTH_API_KEY",
    "kubeconfig": "K8S_AUTH_KUBECONFIG",
    "context": "K8S_AUTH_CONTEXT",
    "ca_cert": "K8S_AUTH_SSL_CA_CERT",
    "client_cert": "K8S_AUTH_CERT_FILE",
    "client_key": "K8S_AUTH_KEY_FILE",
    "validate_certs": "K8S_AUTH_VERIFY_SSL",
    "tls_server_name": "K8S_AUTH_TLS_SERVER_NAME",
    "proxy": "K8S_AUTH_PROXY",
    "no_proxy": "K8S_AUTH_NO_PROXY",
    "impersonate_user": "K8S_AUTH_IMPERSONATE_USER",
    "impersonate_groups": "K8S_AUTH_IMPERSONATE_GROUPS",
}
CONNECTION_OPTIONS = tuple(ENV_NAMES) + ("timeout", "connect_timeout", "retries")

_TRUE = ("1", "true", "yes", "on", "y")
_FALSE = ("0", "false", "no", "off", "n")


class Cluster(object):
    """Everything needed to talk to one apiserver. Immutable after resolution."""

    __slots__ = ("name", "source", "scheme", "host", "port", "base_path", "ca_file", "ca_data", "verify",
                 "tls_server_name", "token", "token_file", "cert_file", "cert_data", "key_file", "key_data",
                 "exec_config", "proxy", "no_proxy", "ssh_jump", "tunnel", "impersonate_user", "impersonate_groups", "connect_timeout",
                 "timeout", "retries", "namespace", "secrets", "warnings", "_frozen")

    def __init__(self, **kw):
        for slot in self.__slots__:
            object.__setattr__(self, slot, kw.get(slot))
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name, value):
        raise AttributeError("Cluster is immutable")

    @property
    def server(self):
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else ":%d" % self.port
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s%s%s" % (self.scheme, host, port, self.base_path)

    @property
    def where(self):
        """How messages name this cluster: 'cluster <context> (https://addr)' or the address alone."""
        if self.name:
            return "cluster %s (%s)" % (self.name, self.server)
        return "apiserver %s" % self.server

    @property
    def plain_http(self):
        return self.scheme == "http"

    def key(self):
        """Identity for connection pooling / TLS context caching (no secret values, only their presence)."""
        return (self.scheme, self.host, self.port, self.ca_file, _digest(self.ca_data), self.verify,
                self.tls_server_name, self.cert_file, _digest(self.cert_data), self.key_file, _digest(self.key_data),
                self.proxy, self.ssh_jump)


def _digest(data):
    if not data:
        return None
    import hashlib
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode("utf-8")).hexdigest()


def _bool(value, what):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise KubegateError("%s must be a boolean (true/false), got %r" % (what, value))


def _read_file(path, what, binary=True):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (IOError, OSError) as e:
        raise KubegateError("cannot read %s %s: %s" % (what, path, e.strerror or e))
    return data if binary else data.decode("utf-8", "replace")


def _pick(params, env, name):
    value = params.get(name)
    if value not in (None, "", []):
        return value, "option"
    env_value = env.get(ENV_NAMES[name]) if name in ENV_NAMES else None
    if env_value not in (None, ""):
        return env_value, ENV_NAMES[name]
    return None, None


# ---------------------------------------------------------------------------------------------------------------- kubeconfig

def _load_yaml(path):
    try:
        import yaml
    except ImportError:
        raise KubegateError("reading a kubeconfig needs PyYAML on the host running the task (pip install pyyaml)")
    text = _read_file(path, "kubeconfig", binary=False)
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = " (line %d)" % (mark.line + 1) if mark is not None else ""
        raise KubegateError("kubeconfig %s is not valid YAML%s; fix the file or point kubeconfig elsewhere" % (path, where))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KubegateError("kubeconfig %s is not a kubeconfig (expected a mapping with clusters/users/contexts)" % path)
    return data


def kubeconfig_paths(params, env):
    value, _src = _pick(params, env, "kubeconfig")
    if value:
        if isinstance(value, (list, tuple)):
            paths = [str(p) for p in value]
        else:
            paths = [p for p in str(value).split(os.pathsep) if p]
        missing = [p for p in paths if not os.path.exists(os.path.expanduser(p))]
        if missing:
            raise KubegateError("kubeconfig file not found: %s; check the kubeconfig option (or K8S_AUTH_KUBECONFIG)"
                                % ", ".join(missing))
        return [os.path.abspath(os.path.expanduser(p)) for p in paths], True
    if env.get("KUBECONFIG"):
        # like kubectl: missing files in KUBECONFIG are skipped
        paths = [os.path.abspath(os.path.expanduser(p)) for p in env["KUBECONFIG"].split(os.pathsep) if p]
        return [p for p in paths if os.path.exists(p)], False
    home = env.get("HOME") or os.path.expanduser("~")
    default = os.path.join(home, ".kube", "config")
    return ([default] if os.path.exists(default) else []), False


def _named(entries, key, path):
    out = {}
    for entry in entries or []:
        if not isinstance(entry, dict) or "name" not in entry:
            raise KubegateError("kubeconfig %s: every entry of %s needs a name" % (path, key))
        out[entry["name"]] = (entry.get(key[:-1]) or {}, os.path.dirname(path))
    return out


def merge_kubeconfigs(paths):
    """Merged view like kubectl's: the first file defining a cluster/user/context name or current-context wins."""
    merged = {"clusters": {}, "users": {}, "contexts": {}, "current-context": None}
    for path in paths:
        data = _load_yaml(path)
        for key in ("clusters", "users", "contexts"):
            if data.get(key) is not None and not isinstance(data.get(key), list):
                raise KubegateError("kubeconfig %s: %s must be a list" % (path, key))
            for name, value in _named(data.get(key), key, path).items():
                merged[key].setdefault(name, value)
        if not merged["current-context"] and data.get("current-context"):
            merged["current-context"] = data["current-context"]
    return merged


def _kc_path(value, base):
    value = os.path.expanduser(str(value))
    return value if os.path.isabs(value) else os.path.join(base, value)


def _b64(value, what, ctx):
    try:
        return base64.b64decode(value, validate=False)
    except (ValueError, TypeError):
        raise KubegateError("kubeconfig context %s: %s is not valid base64" % (ctx, what))


def from_kubeconfig(paths, context_name, explicit):
    if not paths:
        raise KubegateError("no kubeconfig found (KUBECONFIG unset and ~/.kube/config missing)")
    kc = merge_kubeconfigs(paths)
    name = context_name or kc["current-context"]
    if not name:
        raise KubegateError("kubeconfig %s has no current-context; set the context option (contexts: %s)"
                            % (", ".join(paths), ", ".join(sorted(kc["contexts"])) or "none"))
    if name not in kc["contexts"]:
        raise KubegateError("context %r not found in kubeconfig %s; available contexts: %s"
                            % (name, ", ".join(paths), ", ".join(sorted(kc["contexts"])) or "none"))
    ctx, _base = kc["contexts"][name]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if cluster_name not in kc["clusters"]:
        raise KubegateError("kubeconfig context %s names cluster %r, which is not defined in %s"
                            % (name, cluster_name, ", ".join(paths)))
    cl, cl_base = kc["clusters"][cluster_name]
    out = {"name": name, "namespace": ctx.get("namespace"), "server": cl.get("server"),
           "source": "kubeconfig %s, context %s" % (", ".join(paths), name)}
    if not out["server"]:
        raise KubegateError("kubeconfig cluster %r (context %s) has no server" % (cluster_name, name))
    if cl.get("certificate-authority-data"):
        out["ca_data"] = _b64(cl["certificate-authority-data"], "certificate-authority-data", name)
    elif cl.get("certificate-authority"):
        out["ca_file"] = _kc_path(cl["certificate-authority"], cl_base)
    if cl.get("insecure-skip-tls-verify"):
        out["verify"] = False
    if cl.get("tls-server-name"):
        out["tls_server_name"] = cl["tls-server-name"]
    if cl.get("proxy-url"):
        out["proxy"] = cl["proxy-url"]
    if user_name:
        if user_name not in kc["users"]:
            raise KubegateError("kubeconfig context %s names user %r, which is not defined in %s"
                                % (name, user_name, ", ".join(paths)))
        user, u_base = kc["users"][user_name]
        if user.get("token"):
            out["token"] = user["token"]
        elif user.get("tokenFile"):
            out["token_file"] = _kc_path(user["tokenFile"], u_base)
        if user.get("client-certificate-data"):
            out["cert_data"] = _b64(user["client-certificate-data"], "client-certificate-data", name)
        elif user.get("client-certificate"):
            out["cert_file"] = _kc_path(user["client-certificate"], u_base)
        if user.get("client-key-data"):
            out["key_data"] = _b64(user["client-key-data"], "client-key-data", name)
        elif user.get("client-key"):
            out["key_file"] = _kc_path(user["client-key"], u_base)
        if user.get("exec"):
            out["exec_config"] = dict(user["exec"], _base=u_base)
        if user.get("auth-provider"):
            cfg = (user["auth-provider"] or {}).get("config") or {}
            token = cfg.get("id-token") or cfg.get("access-token")
            if not token:
                raise KubegateError("kubeconfig user %r uses auth-provider %r without a cached id-token/access-token; "
                                    "log in with the provider's tool first or use an exec plugin"
                                    % (user_name, (user["auth-provider"] or {}).get("name")))
            out["token"] = token
        if user.get("username") or user.get("password"):
            raise KubegateError("kubeconfig user %r uses basic auth, which Kubernetes no longer supports; use a token "
                                "or client certificate" % user_name)
        if user.get("as"):
            out["impersonate_user"] = user["as"]
        if user.get("as-groups"):
            out["impersonate_groups"] = list(user["as-groups"])
    return out


# ---------------------------------------------------------------------------------------------------------------- exec plugin

_EXEC_CACHE = {}
_EXEC_LOCK = threading.Lock()


def exec_credential(exec_config, where):
    """Run a kubeconfig exec credential plugin (client.authentication.k8s.io) and cache its answer until it expires."""
    command = exec_config.get("command")
    if not command:
        raise KubegateError("%s: kubeconfig exec plugin has no command" % where)
    args = [str(a) for a in exec_config.get("args") or []]
    extra_env = dict((e.get("name"), str(e.get("value", ""))) for e in exec_config.get("env") or [] if e.get("name"))
    cache_key = json.dumps([command, args, sorted(extra_env.items())])
    with _EXEC_LOCK:
        cached = _EXEC_CACHE.get(cache_key)
        if cached and (cached[0] is None or cached[0] - 60 > time.time()):
            return cached[1]
        api_version = exec_config.get("apiVersion") or "client.authentication.k8s.io/v1"
        env = dict(os.environ)
        env.update(extra_env)
        env["KUBERNETES_EXEC_INFO"] = json.dumps({"apiVersion": api_version, "kind": "ExecCredential",
                                                  "spec": {"interactive": False}})
        if not os.path.isabs(command) and os.sep in command:
            command = os.path.join(exec_config.get("_base") or ".", command)
        try:
            # no AnsibleModule (and so no run_command) here: this also runs on the controller (fast path, inventory)
            proc = subprocess.run([command] + args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                                  stderr=subprocess.PIPE, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            hint = exec_config.get("installHint") or ""
            raise KubegateError("%s: kubeconfig exec plugin %s could not run: %s. %s" % (where, command, e, hint))
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()[-300:]
            raise KubegateError("%s: kubeconfig exec plugin %s failed with exit code %d: %s"
                                % (where, command, proc.returncode, err))
        try:
            status = (json.loads(proc.stdout.decode("utf-8")) or {}).get("status") or {}
        except ValueError:
            raise KubegateError("%s: kubeconfig exec plugin %s did not print an ExecCredential JSON" % (where, command))
        cred = {}
        if status.get("token"):
            cred["token"] = status["token"]
        if status.get("clientCertificateData") and status.get("clientKeyData"):
            cred["cert_data"] = status["clientCertificateData"].encode("utf-8")
            cred["key_data"] = status["clientKeyData"].encode("utf-8")
        if not cred:
            raise KubegateError("%s: kubeconfig exec plugin %s returned neither a token nor a client certificate"
                                % (where, command))
        expires = None
        stamp = status.get("expirationTimestamp")
        if stamp:
            try:
                import calendar
                expires = calendar.timegm(time.strptime(stamp.replace("Z", "").split(".")[0], "%Y-%m-%dT%H:%M:%S"))
            except ValueError:
                expires = time.time() + 60
        _EXEC_CACHE[cache_key] = (expires, cred)
        return cred


# ---------------------------------------------------------------------------------------------------------------- resolution

def _split_server(server, what):
    parts = urlsplit(str(server).strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise KubegateError("%s %r is not an apiserver URL; expected https://HOST[:PORT] (or http:// for a kubectl "
                            "proxy)" % (what, server))
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise KubegateError("%s %r has an invalid port" % (what, server))
    if parts.query or parts.fragment or parts.username:
        raise KubegateError("%s %r must not contain credentials, a query or a fragment" % (what, server))
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


def _groups(value):
    if value in (None, ""):
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [g.strip() for g in str(value).split(",") if g.strip()]


def _number(value, name, minimum, integer=False):
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise KubegateError("%s must be a number, got %r" % (name, value))
    if number < minimum:
        raise KubegateError("%s must be at least %s, got %s" % (name, minimum, value))
    return number


def resolve(params, env=None, name=None):
    """One Cluster from task params (+ environment). Raises KubegateError with a specific message."""
    env = os.environ if env is None else env
    params = params or {}
    picked = {}
    sources = {}
    for option in ENV_NAMES:
        value, src = _pick(params, env, option)
        if value is not None:
            picked[option] = value
            sources[option] = src
    warnings = []
    base = {}
    if picked.get("client_key") and not picked.get("client_cert"):
        raise KubegateError("client_key is set without client_cert; give both (PEM files) or neither")
    use_kubeconfig = "kubeconfig" in picked or "context" in picked or "host" not in picked
    source = None
    if use_kubeconfig:
        paths, explicit = kubeconfig_paths(params, env)
        if paths:
            base = from_kubeconfig(paths, picked.get("context"), explicit)
            source = base.pop("source")
        elif "context" in picked:
            raise KubegateError("context %r was given but no kubeconfig was found (set kubeconfig, KUBECONFIG or "
                                "create ~/.kube/config)" % picked["context"])
        elif "host" not in picked:
            sa_host, sa_port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
            if sa_host and os.path.exists(os.path.join(SA_DIR, "token")):
                host = "[%s]" % sa_host if ":" in sa_host else sa_host
                base = {"server": "https://%s:%s" % (host, sa_port or "443"),
                        "token_file": os.path.join(SA_DIR, "token"), "name": "in-cluster"}
                if os.path.exists(os.path.join(SA_DIR, "ca.crt")):
                    base["ca_file"] = os.path.join(SA_DIR, "ca.crt")
                ns_file = os.path.join(SA_DIR, "namespace")
                if os.path.exists(ns_file):
                    base["namespace"] = _read_file(ns_file, "service account namespace", binary=False).strip()
                source = "in-cluster service account (%s)" % SA_DIR
            else:
                raise KubegateError(
                    "no cluster to talk to: set host (and api_key or a client certificate), or kubeconfig/context, "
                    "or the K8S_AUTH_* environment; no KUBECONFIG, ~/.kube/config or in-cluster service account found")
    if "host" in picked:
        source = source or ("task options" if sources["host"] == "option" else "environment (%s)" % sources["host"])
        base["server"] = picked["host"]
    scheme, host, port, base_path = _split_server(base["server"], "host" if "host" in picked else "kubeconfig server")
    cl = dict(base)
    cl.pop("server", None)
    if "api_key" in picked:
        cl["token"] = str(picked["api_key"])
        cl.pop("token_file", None)
        cl.pop("exec_config", None)
    if "ca_cert" in picked:
        cl["ca_file"] = os.path.expanduser(str(picked["ca_cert"]))
        cl.pop("ca_data", None)
    if "client_cert" in picked:
        cl["cert_file"] = os.path.expanduser(str(picked["client_cert"]))
        cl.pop("cert_data", None)
        cl.pop("key_data", None)
        cl["key_file"] = os.path.expanduser(str(picked.get("client_key") or picked["client_cert"]))
    verify = cl.get("verify", True)
    if "validate_certs" in picked:
        verify = _bool(picked["validate_certs"], "validate_certs" if sources["validate_certs"] == "option"
                       else sources["validate_certs"])
    for option in ("tls_server_name", "proxy", "no_proxy", "impersonate_user"):
        if option in picked:
            cl[option] = str(picked[option])
    if "impersonate_groups" in picked:
        cl["impersonate_groups"] = _groups(picked["impersonate_groups"])
    if cl.get("impersonate_groups") and not cl.get("impersonate_user"):
        raise KubegateError("impersonate_groups needs impersonate_user as well (Kubernetes impersonates groups only "
                            "together with a user)")
    where = "cluster %s (%s://%s:%s)" % (name or cl.get("name") or "", scheme, host, port) if (name or cl.get("name")) \
        else "apiserver %s://%s:%s" % (scheme, host, port)
    if scheme == "http":
        # A kubectl proxy: it authenticates on our behalf; never send credentials over plain HTTP.
        for k in ("token", "token_file", "cert_file", "cert_data", "key_file", "key_data", "exec_config"):
            cl.pop(k, None)
        if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
            warnings.append("%s is plain HTTP on a non-loopback address; anyone on the path can read and change the "
                            "traffic. Use it only for a kubectl proxy on loopback." % where)
    else:
        if not verify:
            warnings.append("TLS certificate verification is disabled for %s (validate_certs: false): anyone on the "
                            "path can impersonate the apiserver. Prefer ca_cert plus tls_server_name." % where)
        for option, what in (("ca_file", "CA certificate (ca_cert)"), ("cert_file", "client certificate (client_cert)"),
                             ("key_file", "client key (client_key)"), ("token_file", "token file")):
            path = cl.get(option)
            if path and not os.access(path, os.R_OK):
                reason = "does not exist" if not os.path.exists(path) else "is not readable"
                raise KubegateError("%s: %s %s %s" % (where, what, path, reason))
        if cl.get("ca_file"):
            data = _read_file(cl["ca_file"], "CA certificate (ca_cert)")
            if b"-----BEGIN CERTIFICATE-----" not in data:
                raise KubegateError("%s: CA certificate %s is not a PEM certificate" % (where, cl["ca_file"]))
        if cl.get("ca_data") is not None and b"-----BEGIN CERTIFICATE-----" not in cl["ca_data"]:
            raise KubegateError("%s: the kubeconfig's certificate-authority-data is not a PEM certificate" % where)
    if cl.get("tls_server_name") and scheme == "http":
        raise KubegateError("tls_server_name is set but host %s is plain http; it only applies to https" % base["server"])
    timeout = _number(params.get("timeout") if params.get("timeout") is not None else 30, "timeout", 0.1)
    connect_timeout = _number(params.get("connect_timeout") if params.get("connect_timeout") is not None else 10,
                              "connect_timeout", 0.1)
    retries = _number(params.get("retries") if params.get("retries") is not None else 3, "retries", 0, integer=True)
    ssh_jump = jump.normalise(params.get("ssh_jump"))
    if ssh_jump and cl.get("proxy"):
        raise KubegateError("ssh_jump and proxy cannot be combined for %s; use one way to reach the apiserver" % where)
    tunnel = params.get("tunnel")
    if tunnel is not None and not isinstance(tunnel, str):
        raise KubegateError("tunnel must be a text describing the tunnel (e.g. 'kubegate-tunnel@cluster-c on "
                            "tunnel-host'), got %s" % type(tunnel).__name__)
    tunnel = " ".join(tunnel.split()) if tunnel else None
    if tunnel and ssh_jump:
        raise KubegateError("tunnel and ssh_jump cannot be combined for %s: tunnel describes a tunnel service whose "
                            "local end is host, ssh_jump opens its own forward; use one of them" % where)
    secrets = [v for v in (cl.get("token"),) if v]
    return Cluster(name=name or cl.get("name"), source=source, scheme=scheme, host=host, port=port,
                   base_path=base_path, ca_file=cl.get("ca_file"), ca_data=cl.get("ca_data"), verify=verify,
                   tls_server_name=cl.get("tls_server_name"), token=cl.get("token"), token_file=cl.get("token_file"),
                   cert_file=cl.get("cert_file"), cert_data=cl.get("cert_data"), key_file=cl.get("key_file"),
                   key_data=cl.get("key_data"), exec_config=cl.get("exec_config"), proxy=cl.get("proxy"),
                   no_proxy=cl.get("no_proxy"), ssh_jump=ssh_jump, tunnel=tunnel, impersonate_user=cl.get("impersonate_user"),
                   impersonate_groups=tuple(cl.get("impersonate_groups") or ()), connect_timeout=connect_timeout,
                   timeout=timeout, retries=retries, namespace=cl.get("namespace"), secrets=tuple(secrets),
                   warnings=tuple(warnings))

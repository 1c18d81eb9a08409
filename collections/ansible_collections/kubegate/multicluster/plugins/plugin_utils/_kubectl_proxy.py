# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""The plan of the ``kubectl_proxy`` role: validated per-cluster settings -> files, arguments, endpoints, warnings.

Pure functions (no I/O), so the role's logic is unit-tested without a host. Used through the filter
``kubegate.multicluster.kubectl_proxy_plan``.

Security rules encoded here (see roles/kubectl_proxy/README.md):
- the proxy listens on 127.0.0.1 (or a unix socket); upstream's ``--accept-hosts`` / ``--reject-paths`` defaults are kept
  (never passed) unless one of the separately named ``dangerous_*`` settings asks otherwise, and each of those produces
  a warning;
- the upstream apiserver is always https with its CA (no switch to turn verification off); credentials go into the
  kubeconfig only (never the arguments), and messages never contain credential values.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import re

UNIT_PREFIX = "kubegate-kubectl-proxy"
RUNTIME_DIR = "/run/" + UNIT_PREFIX
ENV_VAR = "KUBEGATE_KUBECTL_PROXY_ARGS"
KUBECONFIG_USER = "kubegate-kubectl-proxy"
# kubectl proxy's own default for --reject-paths is "^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach"; allowing exec
# drops only the exec pattern (attach stays refused).
REJECT_PATHS_ALLOW_EXEC = "^/api/.*/pods/.*/attach"
UPSTREAM_ACCEPT_HOSTS = r"^localhost$,^127\.0\.0\.1$,^\[::1\]$"

KEYS = ("name", "state", "server", "ca_cert", "token", "client_cert", "client_key", "tls_server_name", "port",
        "unix_socket")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]+$")
SERVER_RE = re.compile(r"^https://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?/?$")
TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")


def _is_loopback(address):
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _truthy(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y")


def _b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _pem_text(value):
    return value if isinstance(value, str) else ""


def kubeconfig(name, server, ca_cert, token=None, client_cert=None, client_key=None, tls_server_name=None):
    """The proxy's kubeconfig as deterministic JSON text (kubectl reads JSON kubeconfigs)."""
    cluster = {"server": server.rstrip("/"), "certificate-authority-data": _b64(ca_cert.strip() + "\n")}
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    if token:
        user = {"token": token.strip()}
    else:
        user = {"client-certificate-data": _b64(client_cert.strip() + "\n"),
                "client-key-data": _b64(client_key.strip() + "\n")}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": KUBECONFIG_USER, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": KUBECONFIG_USER}}],
        "current-context": name,
        "preferences": {},
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def env_file(name, args):
    """The unit instance's EnvironmentFile: the arguments, split at whitespace by systemd (``$VAR`` in ExecStart)."""
    return ("# Managed by kubegate (role kubectl_proxy): kubectl proxy arguments for cluster %s.\n"
            "# Credentials are in the kubeconfig, never here.\n"
            "%s='%s'\n" % (name, ENV_VAR, " ".join(args)))


def _check_cluster(index, item, problems):
    """Problems of one entry (messages name the entry, never a credential value)."""
    label = "kubectl_proxy_clusters[%d]" % index
    if not isinstance(item, dict):
        problems.append("%s must be a mapping (name, server, ca_cert, token or client_cert/client_key, port or "
                        "unix_socket), got %s" % (label, type(item).__name__))
        return None
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append("%s: name must be the cluster's inventory host name (letters, digits, '.', '_', '-'; at most "
                        "63 characters), got %r" % (label, name))
        return None
    where = "cluster %s (%s)" % (name, label)
    unknown = sorted(str(k) for k in item if k not in KEYS)
    if unknown:
        problems.append("%s: unknown key(s) %s; allowed: %s" % (where, ", ".join(unknown), ", ".join(KEYS)))
    state = item.get("state", "present")
    if state not in ("present", "absent"):
        problems.append("%s: state must be present or absent, got %r" % (where, state))
        return None
    if state == "absent":
        return {"name": name, "state": "absent"}

    server = item.get("server")
    if not isinstance(server, str) or not SERVER_RE.match(server.strip()):
        problems.append("%s: server must be the apiserver URL as seen from the proxy host, https://HOST[:PORT] (TLS is "
                        "always verified; through an ssh tunnel give the tunnel's local end and tls_server_name), got %r"
                        % (where, server))
    ca = _pem_text(item.get("ca_cert"))
    if not ca.strip():
        problems.append("%s: ca_cert is missing: give the cluster CA certificate (PEM text, e.g. "
                        "\"{{ lookup('ansible.builtin.file', 'ca.crt') }}\"); verification cannot be turned off" % where)
    elif "-----BEGIN CERTIFICATE-----" not in ca:
        problems.append("%s: ca_cert is not a PEM certificate (expected the certificate text, not a file name)" % where)
    token = item.get("token")
    cert, key = item.get("client_cert"), item.get("client_key")
    has_token = token not in (None, "")
    has_cert = cert not in (None, "") or key not in (None, "")
    if not has_token and not has_cert:
        problems.append("%s: missing credentials: set token, or client_cert and client_key (PEM text) - the proxy "
                        "authenticates to the apiserver with them" % where)
    elif has_token and has_cert:
        problems.append("%s: give either token or client_cert/client_key, not both" % where)
    elif has_token:
        if not isinstance(token, str) or not TOKEN_RE.match(token.strip()):
            problems.append("%s: token must be a single-line bearer token (value not shown)" % where)
    else:
        if not _pem_text(cert).strip() or not _pem_text(key).strip():
            problems.append("%s: client_cert and client_key must be given together (PEM text)" % where)
        else:
            if "-----BEGIN CERTIFICATE-----" not in cert:
                problems.append("%s: client_cert is not a PEM certificate" % where)
            if "PRIVATE KEY-----" not in key:
                problems.append("%s: client_key is not a PEM private key (value not shown)" % where)
    tls_server_name = item.get("tls_server_name")
    if tls_server_name not in (None, "") and (not isinstance(tls_server_name, str)
                                              or not HOSTNAME_RE.match(tls_server_name)):
        problems.append("%s: tls_server_name must be a host name from the apiserver certificate, got %r"
                        % (where, tls_server_name))

    port = item.get("port")
    socket = _truthy(item.get("unix_socket", False))
    if port in (None, "") and not socket:
        problems.append("%s: set port (the proxy listens on 127.0.0.1:PORT) or unix_socket: true" % where)
    elif port not in (None, "") and socket:
        problems.append("%s: port and unix_socket are exclusive (kubectl proxy listens on one of them)" % where)
    elif port not in (None, ""):
        try:
            port = int(port)
            if isinstance(item.get("port"), bool) or not 1 <= port <= 65535:
                raise ValueError
        except (TypeError, ValueError):
            problems.append("%s: port must be a number from 1 to 65535, got %r" % (where, item.get("port")))
            port = None
    return {"name": name, "state": "present", "server": server.strip().rstrip("/") if isinstance(server, str) else "",
            "ca_cert": ca, "token": token if has_token else None, "client_cert": cert, "client_key": key,
            "tls_server_name": tls_server_name or None, "port": None if socket else port, "socket": socket}


def listening_sockets(texts):
    """(address, port) of every TCP socket in LISTEN state in the text of /proc/net/tcp and /proc/net/tcp6."""
    found = []
    for text in texts or ():
        for line in str(text or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":
                continue
            try:
                hex_addr, hex_port = fields[1].split(":")
                raw = bytes.fromhex(hex_addr)
                # the kernel prints each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                address = ipaddress.ip_address(raw)
                if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                    address = address.ipv4_mapped
                found.append((str(address), int(hex_port, 16)))
            except ValueError:
                continue
    return found


def _overlaps(bind, listener):
    wildcard = ("0.0.0.0", "::")
    return bind == listener or bind in wildcard or listener in wildcard


def port_clashes(clusters, host_state):
    """Problems for ports already taken on the proxy host by something other than the same cluster's running proxy.

    host_state: {"listening": [text of /proc/net/tcp, text of /proc/net/tcp6],
                 "active": {name: the unit's state from `systemctl is-active`, "active" when running},
                 "installed_args": {name: text of the installed EnvironmentFile}}.
    """
    problems = []
    sockets = listening_sockets(host_state.get("listening"))
    active = host_state.get("active") or {}
    installed = host_state.get("installed_args") or {}
    for entry in clusters:
        if entry.get("state") != "present" or not isinstance(entry.get("port"), int):
            continue
        port, address = entry["port"], entry["address"]
        taken = sorted(set("%s:%d" % (a if ":" not in a else "[%s]" % a, p) for a, p in sockets
                           if p == port and _overlaps(address, a)))
        if not taken:
            continue
        words = str(installed.get(entry["name"]) or "").replace("'", " ").split()
        if active.get(entry["name"]) in (True, "active") and "--port=%d" % port in words:
            continue  # this cluster's own proxy, already running on that port
        problems.append("port clash: port %d for cluster %s is already in use on this host (listening: %s) by another "
                        "program or another cluster's proxy; choose a free port" % (port, entry["name"],
                                                                                    ", ".join(taken)))
    return problems


def plan(clusters, inventory_hosts=None, publish=True, dangerous_address="", dangerous_accept_hosts="",
         dangerous_allow_exec=False, kubectl_path="/usr/local/bin/kubectl", config_dir="/etc/kubegate-kubectl-proxy",
         host_state=None):
    """Everything the role needs: {"clusters": [...], "kubeconfigs": {name: text}, "problems": [...], "warnings": [...]}.

    clusters: one entry per cluster without any credential (safe to loop over and show).
    kubeconfigs: the kubeconfig text per present cluster (holds the credentials: handle with no_log).
    problems: one message per mistake (the role fails listing all of them, before changing anything).
    warnings: one message per dangerous setting in use (the role prints them as Ansible warnings).
    host_state: what the proxy host looks like (see port_clashes); when given, ports in use are problems too.
    """
    problems, warnings = [], []
    if clusters in (None, ""):
        clusters = []
    if not isinstance(clusters, list):
        return {"clusters": [], "kubeconfigs": {}, "warnings": [], "problems": [
            "kubectl_proxy_clusters must be a list of clusters, got %s" % type(clusters).__name__]}
    for label, path in (("kubectl_proxy_kubectl_path", kubectl_path), ("kubectl_proxy_config_dir", config_dir)):
        if not isinstance(path, str) or not SAFE_PATH_RE.match(path):
            problems.append("%s must be an absolute path of letters, digits, '.', '_', '-' and '/', got %r"
                            % (label, path))

    address = "127.0.0.1"
    if dangerous_address not in (None, ""):
        try:
            address = str(ipaddress.ip_address(str(dangerous_address).strip()))
        except ValueError:
            problems.append("kubectl_proxy_dangerous_address must be an IP address to bind (for example 0.0.0.0), "
                            "got %r" % dangerous_address)
        else:
            if not _is_loopback(address):
                warnings.append(
                    "kubectl_proxy_dangerous_address=%s: kubectl proxy listens beyond loopback. Anyone who can reach "
                    "this address uses the cluster with the proxy's credentials, without authentication and over "
                    "plain HTTP. Prefer the loopback default or a unix socket, and put an authenticating reverse "
                    "proxy in front if remote access is really needed." % address)
    accept_hosts = ""
    if dangerous_accept_hosts not in (None, ""):
        accept_hosts = str(dangerous_accept_hosts)
        if re.search(r"[\s']", accept_hosts):
            problems.append("kubectl_proxy_dangerous_accept_hosts must be comma-separated regular expressions without "
                            "whitespace or single quotes, got %r" % accept_hosts)
        else:
            warnings.append(
                "kubectl_proxy_dangerous_accept_hosts=%s replaces kubectl proxy's default (%s): requests whose Host "
                "header matches are served with the proxy's credentials, which opens the proxy to DNS rebinding and "
                "cross-site requests from any web page a user of this host visits."
                % (accept_hosts, UPSTREAM_ACCEPT_HOSTS))
    allow_exec = _truthy(dangerous_allow_exec)
    if allow_exec:
        warnings.append(
            "kubectl_proxy_dangerous_allow_exec=true: kubectl proxy no longer refuses pods/exec (only attach stays "
            "refused), so anything that can reach the proxy can run commands in every pod the proxy's identity may "
            "exec into. Prefer calling exec directly against the apiserver with a least-privilege identity.")

    out, names, ports, kubeconfigs = [], {}, {}, {}
    hosts = None if inventory_hosts is None else set(inventory_hosts)
    for index, item in enumerate(clusters):
        entry = _check_cluster(index, item, problems)
        if entry is None:
            continue
        name = entry["name"]
        if name in names:
            problems.append("cluster %s is listed twice (kubectl_proxy_clusters[%d] and [%d])"
                            % (name, names[name], index))
            continue
        names[name] = index
        entry["unit"] = "%s@%s.service" % (UNIT_PREFIX, name)
        entry["kubeconfig_path"] = "%s/%s.kubeconfig" % (config_dir, name)
        entry["env_path"] = "%s/%s.env" % (config_dir, name)
        if entry["state"] == "absent":
            out.append(entry)
            continue
        if publish and hosts is not None and name not in hosts:
            problems.append("cluster %s is not a host of the inventory: the role publishes its connection settings "
                            "(kubegate_host) to the cluster's inventory host. Use the inventory name of the cluster, "
                            "or set kubectl_proxy_publish: false" % name)
        port = entry["port"]
        if isinstance(port, int):
            if port in ports:
                problems.append("port clash: clusters %s and %s both use port %d; give every cluster its own port"
                                % (ports[port], name, port))
            ports[port] = name
        if entry["socket"]:
            socket_path = "%s/%s/proxy.sock" % (RUNTIME_DIR, name)
            args = ["--unix-socket=%s" % socket_path]
            entry.update(address="", socket_path=socket_path, endpoint="", check_url="http://localhost/version",
                         check_host="")
        else:
            # Where this host reaches the proxy: the wildcard binds through loopback, other addresses as they are.
            connect = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
            host = "[%s]" % connect if ":" in connect else connect
            args = ["--address=%s" % address, "--port=%s" % port]
            entry.update(address=address, socket_path="", endpoint="http://%s:%s" % (host, port),
                         check_url="http://%s:%s/version" % (host, port),
                         # A specific non-loopback bind: the readiness check names the proxy "localhost", which
                         # upstream's accept-hosts default accepts (the address itself is only accepted when the
                         # dangerous accept-hosts override says so).
                         check_host="localhost" if not _is_loopback(connect) and not accept_hosts else "")
        if accept_hosts:
            args.append("--accept-hosts=%s" % accept_hosts)
        if allow_exec:
            args.append("--reject-paths=%s" % REJECT_PATHS_ALLOW_EXEC)
        entry["args"] = args
        entry["env"] = env_file(name, args)
        if not any(p.startswith("cluster %s " % name) for p in problems) and entry["server"] and entry["ca_cert"]:
            kubeconfigs[name] = kubeconfig(name, entry["server"], entry["ca_cert"], entry["token"],
                                           entry["client_cert"], entry["client_key"], entry["tls_server_name"])
        # The entries are shown (loop items, -v output): credentials stay in `kubeconfigs` only.
        for secret in ("token", "client_cert", "client_key", "ca_cert"):
            entry.pop(secret, None)
        out.append(entry)
    if host_state and not problems:
        problems.extend(port_clashes(out, host_state))
    present = any(e["state"] == "present" for e in out)
    return {"clusters": out, "kubeconfigs": kubeconfigs, "problems": problems,
            "warnings": warnings if present else []}

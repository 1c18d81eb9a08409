# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""The one HTTP(S) client of the collection (stdlib only): verified TLS with the cluster CA and an optional TLS server
name override (SNI + the name verified — the right fix for tunnels), client certificates, bearer tokens (token files
re-read per request, exec plugins cached until expiry), impersonation, HTTP CONNECT proxies, connect/read timeouts,
keep-alive connections pooled per process, and retries with backoff + jitter on 429/503/connection resets for
idempotent requests only (honouring Retry-After). Each retry and each give-up is reported to the task's reporter
(report_to) so the user sees it at -v. Nothing here logs or returns a credential.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import random
import re
import select
import socket
import ssl
import tempfile
import threading
import time

try:
    import http.client as httplib
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    import httplib
    from urlparse import urlsplit

from . import jump
from .config import exec_credential
from .errors import KubegateError, http_error

IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS"))
RETRY_STATUS = frozenset((429, 503))
MAX_RETRY_AFTER = 30.0
COLLECTION_VERSION = "0.1.0"   # galaxy.yml's version (a unit test keeps them equal)
USER_AGENT = "kubegate.multicluster/" + COLLECTION_VERSION
# The run a request belongs to, in its User-Agent so each apiserver's audit log ties calls to the run: set by the
# kubegate.multicluster.summary callback for the whole ansible-playbook process tree (AWX job id, else a new id), or by
# the caller; AWX's JOB_ID when nothing set it. Anything but a short plain token is ignored (it goes into a header).
RUN_ID_ENV = "KUBEGATE_RUN_ID"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

_CONTEXTS = {}
_REPORTER = threading.local()   # per thread: the running task's note callback (the fan-out runs tasks in threads)
_FORWARDED = {}   # id(socket) -> (ssh forward, local port) while a TLS handshake is pending
_POOL = {}
_LOCK = threading.Lock()


class Response(object):
    __slots__ = ("status", "reason", "headers", "body", "truncated")

    def __init__(self, status, reason, headers, body, truncated=False):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.truncated = truncated

    @property
    def content_type(self):
        return (self.headers.get("content-type") or "").split(";")[0].strip().lower()


# ---------------------------------------------------------------------------------------------------------------- TLS

def _load_chain(ctx, cluster, cert_data, key_data):
    if cert_data is None and cluster.cert_file:
        ctx.load_cert_chain(cluster.cert_file, cluster.key_file or cluster.cert_file)
        return
    if cert_data is None:
        return
    # ssl only loads client certificates from files: write them to a private directory just long enough to load.
    tmpdir = tempfile.mkdtemp(prefix="kubegate-")
    try:
        cert_path = os.path.join(tmpdir, "c.pem")
        key_path = os.path.join(tmpdir, "k.pem")
        for path, data in ((cert_path, cert_data), (key_path, key_data or cert_data)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_path, key_path)
    finally:
        for name in os.listdir(tmpdir):
            os.unlink(os.path.join(tmpdir, name))
        os.rmdir(tmpdir)


def ssl_context(cluster, cert_data=None, key_data=None):
    """A cached SSLContext for this cluster's CA / client certificate / verification settings."""
    cert_data = cert_data if cert_data is not None else cluster.cert_data
    key_data = key_data if key_data is not None else cluster.key_data
    key = cluster.key() + (hash(cert_data), hash(key_data))
    with _LOCK:
        ctx = _CONTEXTS.get(key)
        if ctx is not None:
            return ctx
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cluster.verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            if cluster.ca_data:
                ctx.load_verify_locations(cadata=cluster.ca_data.decode("ascii", "replace"))
            elif cluster.ca_file:
                ctx.load_verify_locations(cafile=cluster.ca_file)
            else:
                ctx.load_default_certs()
        except (ssl.SSLError, ValueError) as e:
            raise KubegateError("%s: the CA certificate (%s) could not be loaded: %s"
                                % (cluster.where, ca_description(cluster), e))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        _load_chain(ctx, cluster, cert_data, key_data)
    except ssl.SSLError as e:
        raise KubegateError("%s: the client certificate/key could not be loaded (%s); check that client_cert and "
                            "client_key are a matching PEM pair" % (cluster.where, getattr(e, "reason", None) or e))
    with _LOCK:
        _CONTEXTS[key] = ctx
    return ctx


def ca_description(cluster):
    if cluster.ca_data:
        return "certificate-authority-data from the kubeconfig"
    if cluster.ca_file:
        return cluster.ca_file
    return "the system trust store (no ca_cert given)"


def _peer_names(cluster, sock_factory):
    """The names in the server's certificate, fetched without verification — only to explain a verification failure."""
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = sock_factory()
        try:
            tls = ctx.wrap_socket(raw, server_hostname=cluster.tls_server_name or cluster.host)
            der = tls.getpeercert(binary_form=True)
            tls.close()
        finally:
            raw.close()
        pem = ssl.DER_cert_to_PEM_cert(der)
        fd, path = tempfile.mkstemp(prefix="kubegate-peer-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(pem)
            info = ssl._ssl._test_decode_cert(path)  # pylint: disable=protected-access
        finally:
            os.unlink(path)
        names = [v for k, v in info.get("subjectAltName", ()) if k in ("DNS", "IP Address")]
        return names
    except Exception:  # best effort only: the original error is what matters
        return []


# ---------------------------------------------------------------------------------------------------------------- sockets

def _proxy_for(cluster):
    if not cluster.proxy:
        return None
    if cluster.no_proxy:
        for entry in [e.strip() for e in cluster.no_proxy.split(",") if e.strip()]:
            if entry == "*" or cluster.host == entry or cluster.host.endswith("." + entry.lstrip(".")):
                return None
    parts = urlsplit(cluster.proxy)
    if parts.scheme != "http" or not parts.hostname:
        raise KubegateError("%s: proxy %r is not supported; use an HTTP CONNECT proxy URL (http://HOST:PORT)"
                            % (cluster.where, cluster.proxy))
    return parts.hostname, parts.port or 3128


def _connect_raw(cluster, timeout):
    proxy = _proxy_for(cluster)
    target = proxy or (cluster.host, cluster.port)
    forward = None
    if cluster.ssh_jump:
        # an in-process ssh local forward; TLS below still verifies the apiserver's own name
        local_host, local_port, forward = jump.local_endpoint(cluster.ssh_jump, cluster.host, cluster.port,
                                                              cluster.where)
        target = (local_host, local_port)
    try:
        sock = socket.create_connection(target, timeout=timeout)
    except socket.timeout:
        raise _Unreachable("connection timed out after %ss" % timeout, proxy, errno.ETIMEDOUT)
    except (OSError, socket.error) as e:
        raise _Unreachable(_os_reason(e), proxy, getattr(e, "errno", None))
    if forward is not None:
        _FORWARDED[id(sock)] = (forward, sock.getsockname()[1])
    if proxy:
        try:
            host = "[%s]" % cluster.host if ":" in cluster.host else cluster.host
            sock.sendall(("CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n"
                          % (host, cluster.port, host, cluster.port)).encode("ascii"))
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
            status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or parts[1] != "200":
                sock.close()
                raise KubegateError("%s: the proxy %s refused CONNECT: %s"
                                    % (cluster.where, cluster.proxy, status_line or "no answer"))
        except (OSError, socket.error) as e:
            sock.close()
            raise _Unreachable("proxy CONNECT failed: %s" % _os_reason(e), proxy)
    return sock


def _jump_failure(cluster, sock):
    """The jump host's reason for refusing the forward of this socket's connection, as an error (or None)."""
    forward, local_port = _FORWARDED.pop(id(sock), (None, None))
    reason = jump.channel_error(forward, local_port) if forward else None
    if reason is None:
        return None
    return KubegateError("%s: the ssh jump host %s could not open a connection to %s:%s: %s"
                         % (cluster.where, jump.describe(cluster.ssh_jump), cluster.host, cluster.port, reason),
                         unreachable=True)


class _Unreachable(Exception):
    def __init__(self, reason, proxy=None, code=None):
        super(_Unreachable, self).__init__(reason)
        self.reason = reason
        self.proxy = proxy
        self.code = code


def _os_reason(e):
    names = {errno.ECONNREFUSED: "connection refused (nothing listens there)",
             errno.EHOSTUNREACH: "no route to host", errno.ENETUNREACH: "network unreachable",
             errno.ETIMEDOUT: "connection timed out", errno.ECONNRESET: "connection reset by peer"}
    if isinstance(e, socket.gaierror):
        return "the host name does not resolve (%s)" % (e.strerror or e)
    return names.get(getattr(e, "errno", None)) or getattr(e, "strerror", None) or str(e)


_UNIT_RE = re.compile(r"[A-Za-z0-9:_.\-]+@[A-Za-z0-9:_.\-]*[A-Za-z0-9_\-]|[A-Za-z0-9:_.@\-]+\.service")
_ON_HOST_RE = re.compile(r"\bon ([A-Za-z0-9_.\-]+)")


def tunnel_hint(description):
    """'check the unit with systemctl status UNIT[ on HOST]' from a free-text tunnel description."""
    unit = _UNIT_RE.search(description or "")
    if not unit:
        return "check the tunnel service that should listen there (systemctl status / its journal)"
    host = _ON_HOST_RE.search(description[unit.end():])
    return "check the unit with systemctl status %s%s (and journalctl -u %s)" % (
        unit.group(0), " on %s" % host.group(1) if host else "", unit.group(0))


def tunnel_down_error(cluster, reason):
    """The error for an apiserver reached through a tunnel service (option tunnel) that did not get through."""
    return KubegateError("%s: tunnel down: %s — %s at %s:%s; %s." % (
        cluster.where, cluster.tunnel, reason, cluster.host, cluster.port, tunnel_hint(cluster.tunnel)),
        unreachable=True, tunnel_down=True)


def unreachable_error(cluster, err):
    if cluster.tunnel and not err.proxy:
        if err.code == errno.ECONNREFUSED:
            reason = "connection refused (the tunnel's local end is not listening)"
        else:
            reason = err.reason
        return tunnel_down_error(cluster, reason)
    via = " via proxy %s" % cluster.proxy if err.proxy else ""
    return KubegateError("%s: cannot reach the apiserver at %s:%s%s: %s. Check the address, that the apiserver (or the "
                         "tunnel / kubectl proxy in front of it) is running, and the network path."
                         % (cluster.where, cluster.host, cluster.port, via, err.reason), unreachable=True)


def _tls_error(cluster, e, raw_factory):
    expected = cluster.tls_server_name or cluster.host
    detail = getattr(e, "verify_message", None) or getattr(e, "reason", None) or str(e)
    msg = "%s: TLS verification failed: %s. Expected name %r; CA used: %s." % (
        cluster.where, detail, expected, ca_description(cluster))
    names = _peer_names(cluster, raw_factory) if isinstance(e, ssl.SSLCertVerificationError) else []
    if names:
        msg += " The certificate is valid for: %s." % ", ".join(names)
        if expected not in names:
            msg += (" When connecting through a tunnel or a different address, set tls_server_name to one of those "
                    "names (never validate_certs: false).")
    return KubegateError(msg, tls_error=True)


def open_socket(cluster, timeout=None, cert_data=None, key_data=None):
    """A connected (and for https, verified TLS) socket to the apiserver."""
    timeout = cluster.connect_timeout if timeout is None else timeout
    try:
        raw = _connect_raw(cluster, timeout)
    except _Unreachable as e:
        raise unreachable_error(cluster, e)
    if cluster.scheme == "http":
        return raw
    ctx = ssl_context(cluster, cert_data, key_data)
    try:
        raw.settimeout(timeout)
        tls = ctx.wrap_socket(raw, server_hostname=cluster.tls_server_name or cluster.host)
        _FORWARDED.pop(id(raw), None)
        return tls
    except ssl.SSLError as e:
        raw.close()
        if cluster.tunnel and isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            # the tunnel accepted the connection and closed it: its far end (jump host -> apiserver) is down
            raise tunnel_down_error(cluster, "the tunnel accepted the connection but closed it during the TLS "
                                             "handshake (its ssh session or the jump host cannot reach the apiserver)")
        raise _jump_failure(cluster, raw) or _tls_error(cluster, e, lambda: _connect_raw(cluster, timeout))
    except (OSError, socket.error) as e:
        raw.close()
        if cluster.tunnel and not isinstance(e, socket.timeout):
            raise tunnel_down_error(cluster, "the tunnel accepted the connection but it broke during the TLS "
                                             "handshake (%s)" % _os_reason(e))
        raise _jump_failure(cluster, raw) or unreachable_error(
            cluster, _Unreachable("TLS handshake failed: %s" % _os_reason(e), code=getattr(e, "errno", None)))


class _Connection(httplib.HTTPConnection):
    """An HTTPConnection over a socket from open_socket (TLS, proxy and SNI handled there)."""

    def __init__(self, cluster, cert_data=None, key_data=None):
        httplib.HTTPConnection.__init__(self, cluster.host, cluster.port, timeout=cluster.timeout)
        self._cluster = cluster
        self._cert = (cert_data, key_data)
        self.reused = False

    def connect(self):
        self.sock = open_socket(self._cluster, cert_data=self._cert[0], key_data=self._cert[1])
        self.sock.settimeout(self._cluster.timeout)


def _alive(conn):
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _w, _x = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable  # readable on an idle keep-alive connection means EOF or garbage: do not reuse


# ---------------------------------------------------------------------------------------------------------------- auth

def user_agent():
    """`kubegate.multicluster/<version> (run <id>)`, or without the run when none is known."""
    run = os.environ.get(RUN_ID_ENV) or ""
    if not run and (os.environ.get("JOB_ID") or "").isdigit():
        run = "awx-job-" + os.environ["JOB_ID"]
    return "%s (run %s)" % (USER_AGENT, run) if _RUN_ID.match(run) else USER_AGENT


def auth_headers(cluster):
    """(headers, cert_data, key_data) for one request, HTTP or upgrade: the identity (token files are re-read every
    time, for rotation) and the User-Agent naming the collection and the run -- the one place both are set."""
    headers = {"User-Agent": user_agent()}
    cert_data = key_data = None
    if cluster.scheme == "http":
        return headers, None, None
    token = cluster.token
    if not token and cluster.token_file:
        try:
            with open(cluster.token_file) as f:
                token = f.read().strip()
        except (IOError, OSError) as e:
            raise KubegateError("%s: cannot read token file %s: %s" % (cluster.where, cluster.token_file,
                                                                       e.strerror or e))
    if not token and cluster.exec_config:
        cred = exec_credential(cluster.exec_config, cluster.where)
        token = cred.get("token")
        cert_data, key_data = cred.get("cert_data"), cred.get("key_data")
    if token:
        headers["Authorization"] = "Bearer " + token
    if cluster.impersonate_user:
        headers["Impersonate-User"] = cluster.impersonate_user
    return headers, cert_data, key_data


def secret_values(cluster):
    """Credential values of this cluster that must never be shown (for no_log_values)."""
    values = set(v for v in cluster.secrets if v)
    try:
        headers, cert, key = auth_headers(cluster) if cluster.scheme != "http" else ({}, None, None)
    except KubegateError:
        headers, cert, key = {}, None, None
    auth = headers.get("Authorization")
    if auth:
        values.add(auth[len("Bearer "):])
    for blob in (cert, key, cluster.key_data):
        if blob:
            values.add(blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob)
    return values


# ---------------------------------------------------------------------------------------------------------------- reporting

def report_to(callback):
    """Send this thread's retry / give-up notes to `callback(message)` (None: drop them). Called once per task when
    it connects (runner.connect), so the notes reach that task's output (-v) whichever way the task runs."""
    _REPORTER.callback = callback


def _report(message):
    callback = getattr(_REPORTER, "callback", None)
    if callback is not None:
        callback(message)


def _retry_note(cluster, method, path, what, attempt, wait):
    _report("%s: %s %s %s; retry %d/%d in %.1fs"
            % (cluster.where, method, path.split("?")[0], what, attempt, cluster.retries, wait))


def _give_up_note(cluster, method, path, what, attempt):
    if method not in IDEMPOTENT:
        why = "%s is not idempotent, so it is never retried" % method
    elif attempt >= cluster.retries:
        why = "giving up after %d retr%s (retries option)" % (attempt, "y" if attempt == 1 else "ies")
    else:
        why = "giving up: the task's time budget does not allow another attempt"
    _report("%s: %s %s %s; %s" % (cluster.where, method, path.split("?")[0], what, why))


def _status_what(response):
    after = response.headers.get("retry-after")
    return "got %s %s%s" % (response.status, response.reason or "",
                            " (Retry-After: %s)" % after if after else "")


# ---------------------------------------------------------------------------------------------------------------- requests

def _backoff(attempt, retry_after=None):
    if retry_after is not None:
        return min(MAX_RETRY_AFTER, retry_after)
    return min(8.0, 0.2 * (2 ** attempt)) * (0.5 + random.random() / 2)


def _retry_after(headers):
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _take(cluster, pool_key):
    with _LOCK:
        idle = _POOL.get(pool_key) or []
        while idle:
            conn = idle.pop()
            if _alive(conn):
                conn.reused = True
                return conn
            conn.close()
    return None


def _give_back(pool_key, conn):
    with _LOCK:
        idle = _POOL.setdefault(pool_key, [])
        if len(idle) < 8:
            idle.append(conn)
            return
    conn.close()


def request(cluster, method, path, body=None, headers=None, max_body=None, deadline=None, stream_until=None):
    """Send one request; returns Response (any status). Raises KubegateError for transport failures.

    `path` includes the query string. Retries (idempotent methods only): 429/503 and connection resets, with
    exponential backoff + jitter, at most `cluster.retries` times, honouring Retry-After (capped) and `deadline`.
    `max_body` caps the bytes kept (the rest is drained up to the deadline and dropped; `truncated` tells).
    `stream_until(new_chunk) -> bool` ends a streaming read early (watch/follow).
    """
    method = method.upper()
    retryable = method in IDEMPOTENT
    attempt = 0
    full_path = cluster.base_path + path
    while True:
        auth, cert_data, key_data = auth_headers(cluster)
        send_headers = {"Accept": "application/json, */*"}
        send_headers.update(headers or {})
        send_headers.update(auth)
        pool_key = cluster.key() + (hash(cert_data),)
        conn = None if stream_until else _take(cluster, pool_key)
        fresh = conn is None
        if fresh:
            conn = _Connection(cluster, cert_data, key_data)
        try:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KubegateError("%s: %s %s timed out" % (cluster.where, method, path), timed_out=True)
                if conn.sock is not None:
                    conn.sock.settimeout(min(cluster.timeout, remaining))
            conn.putrequest(method, full_path, skip_accept_encoding=True)
            for name, value in send_headers.items():
                conn.putheader(name, value)
            for group in cluster.impersonate_groups or ():
                conn.putheader("Impersonate-Group", group)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data, truncated = _read_body(resp, max_body, deadline, stream_until, conn)
            rheaders = dict((k.lower(), v) for k, v in resp.getheaders())
            result = Response(resp.status, resp.reason, rheaders, data, truncated)
        except KubegateError as e:
            conn.close()
            # refused or reset while connecting: nothing reached the apiserver yet (a restarting apiserver, a
            # flaky forward); other connect failures (DNS, TLS, timeouts) do not heal by retrying
            transient = e.details.get("unreachable") and ("refused" in e.msg or "connection reset" in e.msg)
            cause = "connection refused" if "refused" in e.msg else "connection reset during the TLS handshake"
            what = "could not connect (%s)" % cause
            if retryable and attempt < cluster.retries and transient and \
                    (deadline is None or time.monotonic() < deadline):
                attempt += 1
                wait = _backoff(attempt)
                _retry_note(cluster, method, path, what, attempt, wait)
                time.sleep(wait)
                continue
            if transient:
                _give_up_note(cluster, method, path, what, attempt)
            raise
        except socket.timeout:
            conn.close()
            raise KubegateError("%s: %s %s timed out after %ss waiting for the apiserver (timeout option)"
                                % (cluster.where, method, path, cluster.timeout), timed_out=True)
        except (httplib.HTTPException, OSError, socket.error) as e:
            conn.close()
            reason = _os_reason(e) if isinstance(e, (OSError, socket.error)) else (type(e).__name__ + " " + str(e))
            if conn.reused and retryable:
                continue  # a stale keep-alive connection; try once more on a fresh one (not counted)
            what = "lost the connection (%s)" % reason.strip()
            if retryable and attempt < cluster.retries and (deadline is None or time.monotonic() < deadline):
                attempt += 1
                wait = _backoff(attempt)
                _retry_note(cluster, method, path, what, attempt, wait)
                time.sleep(wait)
                continue
            _give_up_note(cluster, method, path, what, attempt)
            if retryable:
                advice = "after %d retr%s; check that the apiserver is up and the network path is stable" % (
                    attempt, "y" if attempt == 1 else "ies")
            else:
                advice = ("not retried because %s is not idempotent: check on the cluster whether the change was "
                          "applied before running the task again" % method)
            raise KubegateError("%s: the connection to %s:%s broke during %s %s: %s (%s)"
                                % (cluster.where, cluster.host, cluster.port, method, path, reason.strip(), advice),
                                unreachable=True)
        if resp.will_close or stream_until or not _finished(resp):
            conn.close()
        else:
            _give_back(pool_key, conn)
        if result.status in RETRY_STATUS:
            wait = _backoff(attempt + 1, _retry_after(result.headers))
            if retryable and attempt < cluster.retries and (deadline is None or time.monotonic() + wait < deadline):
                attempt += 1
                _retry_note(cluster, method, path, _status_what(result), attempt, wait)
                time.sleep(wait)
                continue
            _give_up_note(cluster, method, path, _status_what(result), attempt)
        return result


def _finished(resp):
    """Whether the response is complete and released, so its connection may carry the next request. http.client's
    read1() leaves a response whose body was read to the last byte open (it closes only on a later read); reused in
    that state, the connection sends the next request and then cannot read its answer (ResponseNotReady): the server
    would act on a request whose answer is lost."""
    if not resp.isclosed() and resp.length == 0 and not resp.chunked:
        resp.read()
    return resp.isclosed()


def _read_body(resp, max_body, deadline, stream_until, conn):
    if max_body is None and stream_until is None:
        return resp.read(), False
    chunks = []
    size = 0
    truncated = False
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if conn.sock is not None:
                conn.sock.settimeout(remaining)
        try:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        if max_body is not None and size + len(chunk) > max_body:
            chunks.append(chunk[:max_body - size])
            size = max_body
            truncated = True
            if stream_until is not None:
                break
            continue
        if not truncated:
            chunks.append(chunk)
            size += len(chunk)
        if stream_until is not None and stream_until(chunk):
            break
    return b"".join(chunks), truncated


def check_status(cluster, method, path, response, accepted=None):
    """Raise the mapped KubegateError unless the status is accepted (default: 2xx)."""
    ok = response.status in accepted if accepted else 200 <= response.status < 300
    if not ok:
        error = http_error(cluster.where, method, path.split("?")[0], response.status, response.body, response.reason)
        if response.status == 401:
            # say which credential was rejected (never its value), or that none was sent at all
            error = KubegateError("%s Sent: %s." % (error.msg, credential_description(cluster)), **error.details)
        raise error
    return response


def credential_description(cluster):
    """Which credential a request to this cluster carries, in words (no secret values), for 401 messages."""
    if cluster.token:
        what = "a bearer token (api_key, or the kubeconfig user's token)"
    elif cluster.token_file:
        what = "the bearer token read from %s" % cluster.token_file
    elif cluster.exec_config:
        what = "the token/certificate from the kubeconfig exec plugin %s" % cluster.exec_config.get("command")
    elif cluster.cert_file:
        what = "the client certificate %s" % cluster.cert_file
    elif cluster.cert_data:
        what = "the kubeconfig user's client certificate (client-certificate-data)"
    else:
        return ("no credential at all: nothing gave a token or client certificate for this cluster; set api_key "
                "(K8S_AUTH_API_KEY) or client_cert/client_key, or use a kubeconfig context whose user has credentials")
    if cluster.impersonate_user:
        what += ", impersonating %s" % cluster.impersonate_user
    return what

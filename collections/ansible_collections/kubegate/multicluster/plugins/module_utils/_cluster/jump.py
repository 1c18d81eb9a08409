# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Ad-hoc ssh tunnel (option ssh_jump): an in-process local forward through a jump host, made with paramiko (as a
library) for the life of the process that runs the task — no tunnel service needed for a one-off playbook.

The jump host's key is checked against a pinned known_hosts file (an unknown or changed key is refused), the user
authenticates with a dedicated private key only (no agent, no passwords), and the forward listens on 127.0.0.1 on an
ephemeral port. TLS to the apiserver is still verified end to end: the TLS layer connects to the forward but verifies
the apiserver's own name (the original host, or tls_server_name).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import threading

from .errors import KubegateError

_LOCK = threading.Lock()
_FORWARDS = {}


def normalise(value):
    """A hashable (host, port, user, key_file, known_hosts, timeout) from the ssh_jump option, or None."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise KubegateError("ssh_jump must be a mapping with host, user, key_file and known_hosts (and optionally "
                            "port), got %s" % type(value).__name__)
    missing = [k for k in ("host", "user", "key_file", "known_hosts") if not value.get(k)]
    if missing:
        raise KubegateError("ssh_jump is missing %s (needs host, user, key_file and known_hosts; the jump host's key "
                            "must be pinned)" % ", ".join(missing))
    unknown = sorted(set(value) - set(("host", "port", "user", "key_file", "known_hosts", "connect_timeout")))
    if unknown:
        raise KubegateError("ssh_jump has unknown keys: %s" % ", ".join(unknown))
    try:
        port = int(value.get("port") or 22)
    except (TypeError, ValueError):
        raise KubegateError("ssh_jump port must be a number, got %r" % value.get("port"))
    for key in ("key_file", "known_hosts"):
        path = os.path.expanduser(str(value[key]))
        if not os.access(path, os.R_OK):
            raise KubegateError("ssh_jump %s %s %s" % (key, path, "is not readable" if os.path.exists(path)
                                                       else "does not exist"))
    return (str(value["host"]), port, str(value["user"]), os.path.expanduser(str(value["key_file"])),
            os.path.expanduser(str(value["known_hosts"])), float(value.get("connect_timeout") or 10))


def describe(jump):
    return "%s@%s:%d" % (jump[2], jump[0], jump[1])


def _paramiko():
    try:
        import paramiko
    except ImportError:
        raise KubegateError("ssh_jump needs the Python library paramiko on the host running the task "
                            "(pip install paramiko)")
    return paramiko


def _open_transport(jump, where):
    paramiko = _paramiko()
    host, port, user, key_file, known_hosts, timeout = jump
    name = host if port == 22 else "[%s]:%d" % (host, port)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, socket.error) as e:
        reason = getattr(e, "strerror", None) or e
        raise KubegateError("%s: cannot reach the ssh jump host %s: %s" % (where, describe(jump), reason),
                            unreachable=True)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        offered = transport.get_remote_server_key()
        pinned = paramiko.HostKeys(known_hosts).lookup(name) or {}
        expected = pinned.get(offered.get_name())
        if expected is None:
            raise KubegateError("%s: the ssh jump host %s offered a %s host key that is not in %s; refusing to "
                                "connect. Pin the host's key there (ssh-keyscan, verified out of band)."
                                % (where, describe(jump), offered.get_name(), known_hosts))
        if expected != offered:
            raise KubegateError("%s: the ssh jump host %s presented a CHANGED host key (%s, fingerprint %s) that does "
                                "not match %s; refusing to connect. Someone may be intercepting the connection, or "
                                "the host was reinstalled: verify, then update known_hosts."
                                % (where, describe(jump), offered.get_name(), offered.fingerprint, known_hosts))
        try:
            key = paramiko.PKey.from_path(key_file)
        except Exception as e:  # pylint: disable=broad-except
            raise KubegateError("%s: cannot load the ssh_jump key_file %s: %s" % (where, key_file, type(e).__name__))
        try:
            transport.auth_publickey(user, key)
        except paramiko.AuthenticationException:
            raise KubegateError("%s: the ssh jump host %s refused the key %s for user %s (authentication failed)"
                                % (where, describe(jump), key_file, user))
        transport.set_keepalive(15)
        return transport
    except KubegateError:
        transport.close()
        raise
    except (paramiko.SSHException, OSError, EOFError) as e:
        transport.close()
        raise KubegateError("%s: ssh to the jump host %s failed: %s" % (where, describe(jump), e), unreachable=True)


class _Forward(object):
    """127.0.0.1:<ephemeral> -> (jump) -> target, one direct-tcpip channel per accepted connection."""

    def __init__(self, transport, target, jump, where):
        self.transport, self.target, self.jump, self.where = transport, target, jump, where
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.errors = {}
        thread = threading.Thread(target=self._accept, name="kubegate-ssh-jump")
        thread.daemon = True
        thread.start()

    def _accept(self):
        while True:
            try:
                client, addr = self.server.accept()
            except OSError:
                return
            try:
                channel = self.transport.open_channel("direct-tcpip", self.target, ("127.0.0.1", 0),
                                                      timeout=self.jump[5])
            except Exception as e:  # pylint: disable=broad-except
                self.errors[addr[1]] = str(e) or type(e).__name__
                client.close()
                continue
            for a, b in ((client, channel), (channel, client)):
                t = threading.Thread(target=_pipe, args=(a, b))
                t.daemon = True
                t.start()

    def alive(self):
        return self.transport.is_active()


def _pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except Exception:  # pylint: disable=broad-except
        pass
    finally:
        for s in (src, dst):
            try:
                s.close()
            except Exception:  # pylint: disable=broad-except
                pass


def local_endpoint(jump, target_host, target_port, where):
    """(host, port, forward) of a local forward to target through the jump host; reused within the process."""
    key = (jump, target_host, target_port)
    with _LOCK:
        forward = _FORWARDS.get(key)
        if forward is not None and forward.alive():
            return "127.0.0.1", forward.port, forward
        transport = _open_transport(jump, where)
        forward = _Forward(transport, (target_host, target_port), jump, where)
        _FORWARDS[key] = forward
        return "127.0.0.1", forward.port, forward


def channel_error(forward, local_port):
    """Why the jump host refused to open the channel for the connection from local_port (or None)."""
    return forward.errors.pop(local_port, None) if forward else None

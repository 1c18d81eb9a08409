# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Pod exec over the apiserver's websocket channel protocol (v5.channel.k8s.io, falling back to v4).

Pure protocol code on top of a connected socket: the HTTP/1.1 Upgrade handshake (RFC 6455), client frame masking,
fragment reassembly, ping/pong, and Kubernetes' channel multiplexing — byte 0 of every binary message names the stream:
0 stdin, 1 stdout, 2 stderr, 3 status (a metav1.Status JSON), 4 resize; v5 adds 255 = close ([255, 0] half-closes stdin
so a command reading stdin sees EOF; v4 cannot, so stdin with v4 is refused rather than left to hang).

Output is collected completely up to `max_output` bytes per stream (no 32 KiB truncation); beyond it the stream is
marked truncated and the rest is drained and dropped.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import json
import os
import socket
import struct
import time

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024


class ExecProtocolError(Exception):
    """The exec stream broke the protocol or ended without a status; `kind` tells which (for clear messages)."""

    def __init__(self, message, kind="protocol", http_status=None, body=None):
        super(ExecProtocolError, self).__init__(message)
        self.kind = kind
        self.http_status = http_status
        self.body = body


class ExecResult:
    __slots__ = ("rc", "stdout", "stderr", "status", "protocol", "stdout_truncated", "stderr_truncated", "error")

    def __init__(self):
        self.rc = None
        self.stdout = b""
        self.stderr = b""
        self.status = None
        self.protocol = None
        self.stdout_truncated = False
        self.stderr_truncated = False
        self.error = None   # a failure status without an exit code (e.g. InternalError): its message


def parse_status(raw):
    """Map the status channel's payload to (rc, error message). rc None means the command did not run to an exit."""
    if not raw:
        return None, "the exec stream ended without a status from the apiserver"
    try:
        status = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return None, "the exec status was not JSON: %s" % raw[:200].decode("utf-8", "replace")
    if not isinstance(status, dict):
        return None, "the exec status was not an object"
    if status.get("status") == "Success":
        return 0, None
    details = status.get("details") if isinstance(status.get("details"), dict) else {}
    causes = details.get("causes") if isinstance(details.get("causes"), list) else []
    if status.get("reason") == "NonZeroExitCode":
        for cause in causes:
            # metav1.StatusCause serialises its type under the JSON key "reason".
            if isinstance(cause, dict) and "ExitCode" in (cause.get("reason"), cause.get("type")):
                try:
                    return int(cause.get("message")), None
                except (TypeError, ValueError):
                    break
        return None, "non-zero exit reported without a readable exit code: %s" % status.get("message", "")
    return None, status.get("message") or "exec failed with status %s" % status.get("reason", "unknown")


def handshake_request(path, host, key, extra_headers):
    lines = [
        "GET %s HTTP/1.1" % path,
        "Host: %s" % host,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: %s" % key,
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: %s" % ", ".join(PROTOCOLS),
    ]
    for name, value in extra_headers.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            lines.append("%s: %s" % (name, item))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def accept_value(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode("ascii")


class _Reader:
    """Buffered exact reads from a socket with an overall deadline."""

    def __init__(self, sock, deadline):
        self.sock = sock
        self.buf = b""
        self.deadline = deadline

    def _fill(self):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("exec timed out")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError()
        self.buf += chunk

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def until(self, marker, limit=65536):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise ExecProtocolError("the apiserver's upgrade response headers are too large")
            self._fill()
        head, self.buf = self.buf.split(marker, 1)
        return head


def _frame(opcode, payload):
    header = bytearray([0x80 | opcode])
    n = len(payload)
    if n < 126:
        header.append(0x80 | n)
    elif n < 65536:
        header.append(0x80 | 126)
        header += struct.pack("!H", n)
    else:
        header.append(0x80 | 127)
        header += struct.pack("!Q", n)
    mask = os.urandom(4)
    header += mask
    masked = bytearray(payload)
    for i in range(len(masked)):
        masked[i] ^= mask[i & 3]
    return bytes(header) + bytes(masked)


def _read_frame(reader):
    b1, b2 = bytearray(reader.exact(2))
    fin, opcode = b1 & 0x80, b1 & 0x0F
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack("!H", reader.exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", reader.exact(8))[0]
    mask = reader.exact(4) if b2 & 0x80 else None
    payload = reader.exact(n) if n else b""
    if mask:
        payload = bytes(bytearray(c ^ mask[i & 3] for i, c in enumerate(bytearray(payload))))
    return bool(fin), opcode, payload


def _parse_upgrade_response(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        code = int(parts[1])
    except (IndexError, ValueError):
        raise ExecProtocolError("the apiserver answered the exec upgrade with %r" % lines[0][:100])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return code, headers


def run(sock, path, host, headers=None, stdin=None, timeout=60.0, max_output=DEFAULT_MAX_OUTPUT):
    """Run one exec on an already connected (TLS) socket to the apiserver. Returns ExecResult.

    `path` is the exec URL path with its query (command=..., stdout=true, ...). Raises ExecProtocolError for an upgrade
    refused by the server (with its HTTP status and body, e.g. 403 or 404) or a broken stream; socket.timeout when
    `timeout` expires.
    """
    deadline = time.monotonic() + timeout
    reader = _Reader(sock, deadline)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    sock.sendall(handshake_request(path, host, key, headers or {}))
    code, resp_headers = _parse_upgrade_response(reader.until(b"\r\n\r\n"))
    if code != 101:
        length = int(resp_headers.get("content-length") or 0)
        body = b""
        try:
            body = reader.exact(length) if length else reader.buf
        except (EOFError, socket.timeout):
            body = reader.buf
        raise ExecProtocolError("exec upgrade refused with HTTP %d" % code, kind="http", http_status=code, body=body)
    if resp_headers.get("sec-websocket-accept") != accept_value(key):
        raise ExecProtocolError("the apiserver's websocket handshake did not match our key")
    result = ExecResult()
    result.protocol = resp_headers.get("sec-websocket-protocol", "")
    if result.protocol not in PROTOCOLS:
        raise ExecProtocolError("the apiserver supports neither %s (it chose %r); kubegate needs Kubernetes 1.30 or "
                                "newer for websocket exec" % (" nor ".join(PROTOCOLS), result.protocol),
                                kind="protocol-unsupported")
    if stdin is not None:
        if result.protocol != PROTOCOLS[0]:
            raise ExecProtocolError("sending stdin needs %s (stdin cannot be closed with %s)"
                                    % (PROTOCOLS[0], result.protocol), kind="protocol-unsupported")
        data = stdin if isinstance(stdin, bytes) else stdin.encode("utf-8")
        for i in range(0, len(data), 32768):
            sock.sendall(_frame(OP_BINARY, bytes(bytearray([STDIN])) + data[i:i + 32768]))
        sock.sendall(_frame(OP_BINARY, bytes(bytearray([CLOSE, STDIN]))))
    out, err, status = [], [], []
    sizes = {STDOUT: 0, STDERR: 0}
    message, message_op = b"", None
    while True:
        try:
            fin, opcode, payload = _read_frame(reader)
        except EOFError:
            break
        if opcode == OP_PING:
            try:
                sock.sendall(_frame(OP_PONG, payload))
            except OSError:   # the server may already have closed its side; keep reading what it sent
                pass
            continue
        if opcode == OP_PONG:
            continue
        if opcode == OP_CLOSE:
            try:
                sock.sendall(_frame(OP_CLOSE, payload[:2]))
            except OSError:
                pass
            break
        if opcode in (OP_TEXT, OP_BINARY):
            message, message_op = payload, opcode
        elif opcode == OP_CONT:
            message += payload
        if not fin:
            continue
        if message_op == OP_TEXT:   # base64 subprotocols are never negotiated here
            raise ExecProtocolError("unexpected text frame on a binary exec channel")
        if not message:
            continue
        channel, data = bytearray(message[:1])[0], message[1:]
        message = b""
        if channel in (STDOUT, STDERR):
            room = max_output - sizes[channel]
            if len(data) > room:
                data = data[:room]
                if channel == STDOUT:
                    result.stdout_truncated = True
                else:
                    result.stderr_truncated = True
            sizes[channel] += len(data)
            (out if channel == STDOUT else err).append(data)
        elif channel == STATUS:
            status.append(data)
    result.stdout, result.stderr = b"".join(out), b"".join(err)
    result.status = b"".join(status)
    result.rc, result.error = parse_status(result.status)
    return result

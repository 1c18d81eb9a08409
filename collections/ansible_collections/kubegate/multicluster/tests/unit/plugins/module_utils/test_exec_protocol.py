"""The websocket channel protocol of pod exec, against an in-process fake apiserver on a socket pair."""
from __future__ import annotations

import json
import socket
import struct
import threading

import pytest

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import exec as kexec


def server_frame(opcode, payload, fin=True):
    """A server-to-client frame (unmasked)."""
    header = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        header.append(n)
    elif n < 65536:
        header.append(126)
        header += struct.pack("!H", n)
    else:
        header.append(127)
        header += struct.pack("!Q", n)
    return bytes(header) + payload


def read_client_frame(conn, buf):
    while len(buf) < 2:
        buf += conn.recv(4096)
    b1, b2 = buf[0], buf[1]
    n, pos = b2 & 0x7F, 2
    if n == 126:
        while len(buf) < 4:
            buf += conn.recv(4096)
        n, pos = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        while len(buf) < 10:
            buf += conn.recv(4096)
        n, pos = struct.unpack("!Q", buf[2:10])[0], 10
    assert b2 & 0x80, "client frames must be masked"
    while len(buf) < pos + 4 + n:
        buf += conn.recv(65536)
    mask = buf[pos:pos + 4]
    payload = bytes(c ^ mask[i % 4] for i, c in enumerate(buf[pos + 4:pos + 4 + n]))
    return b1 & 0x0F, payload, buf[pos + 4 + n:]


class FakeApiserver:
    """Accepts one upgrade, records what the client sent, then plays a scripted list of frames."""

    def __init__(self, frames, protocol="v5.channel.k8s.io", status_line="HTTP/1.1 101 Switching Protocols",
                 bad_accept=False, body=b"", read_stdin=False):
        self.client, self.server = socket.socketpair()
        self.frames, self.protocol, self.status_line = frames, protocol, status_line
        self.bad_accept, self.body, self.read_stdin = bad_accept, body, read_stdin
        self.request = b""
        self.stdin = b""
        self.closed_stdin = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn = self.server
        while b"\r\n\r\n" not in self.request:
            self.request += conn.recv(4096)
        head, rest = self.request.split(b"\r\n\r\n", 1)
        key = [line.split(b": ", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")][0]
        accept = "bogus" if self.bad_accept else kexec.accept_value(key.decode())
        lines = [self.status_line, "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: %s" % accept]
        if self.protocol:
            lines.append("Sec-WebSocket-Protocol: %s" % self.protocol)
        if self.body:
            lines.append("Content-Length: %d" % len(self.body))
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + self.body)
        if self.status_line.split()[1] != "101":
            conn.close()
            return
        if self.read_stdin:
            buf = rest
            while not self.closed_stdin:
                op, payload, buf = read_client_frame(conn, buf)
                if payload[:1] == b"\x00":
                    self.stdin += payload[1:]
                elif payload == b"\xff\x00":
                    self.closed_stdin = True
        for frame in self.frames:
            conn.sendall(frame)
        # Half-close, then drain what the client still sends (pongs, close frames) before closing: closing a socket
        # with unread data resets the connection and the client could lose frames it has not read yet.
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(5)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        conn.close()


def msg(channel, data):
    return server_frame(kexec.OP_BINARY, bytes([channel]) + data)


SUCCESS = msg(3, json.dumps({"metadata": {}, "status": "Success"}).encode())


def exit_status(code):
    return msg(3, json.dumps({"status": "Failure", "reason": "NonZeroExitCode", "message": "command terminated",
                              "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}).encode())


def run(fake, **kw):
    return kexec.run(fake.client, "/api/v1/namespaces/ns/pods/p/exec?command=x&stdout=true", "apiserver:6443",
                     headers={"Authorization": "Bearer t"}, timeout=5, **kw)


def test_success_collects_stdout_and_stderr_and_sends_a_proper_handshake():
    fake = FakeApiserver([msg(1, b"hello "), msg(2, b"warn\n"), msg(1, b"world\n"), SUCCESS])
    result = run(fake)
    assert (result.rc, result.stdout, result.stderr, result.protocol) == (0, b"hello world\n", b"warn\n", "v5.channel.k8s.io")
    request = fake.request.decode()
    assert request.startswith("GET /api/v1/namespaces/ns/pods/p/exec?command=x&stdout=true HTTP/1.1\r\n")
    assert "Sec-WebSocket-Protocol: v5.channel.k8s.io, v4.channel.k8s.io" in request
    assert "Authorization: Bearer t" in request and "Upgrade: websocket" in request


def test_non_zero_exit_code_from_the_status_channel():
    result = run(FakeApiserver([msg(2, b"boom\n"), exit_status(7)]))
    assert result.rc == 7 and result.error is None and result.stderr == b"boom\n"


def test_internal_error_without_exit_code_is_an_error_not_a_crash():
    status = msg(3, json.dumps({"status": "Failure", "reason": "InternalError", "message": "exec: not found"}).encode())
    result = run(FakeApiserver([status]))
    assert result.rc is None and "exec: not found" in result.error


@pytest.mark.parametrize("payload,expected", [
    (None, "ended without a status"),
    (b"not json", "was not JSON"),
    (b"[1]", "not an object"),
    (json.dumps({"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode",
                                                                                           "message": "x"}]}}).encode(),
     "without a readable exit code"),
    (json.dumps({"status": "Failure", "reason": "NonZeroExitCode"}).encode(), "without a readable exit code"),
    (json.dumps({"status": "Failure", "details": "weird"}).encode(), "exec failed with status unknown"),
])
def test_defensive_status_parsing(payload, expected):
    frames = [msg(1, b"out")] + ([msg(3, payload)] if payload is not None else [])
    result = run(FakeApiserver(frames))
    assert result.rc is None and expected in result.error


def test_fragmented_messages_and_pings_are_handled():
    part1 = server_frame(kexec.OP_BINARY, b"\x01abc", fin=False)
    ping = server_frame(kexec.OP_PING, b"hi")
    part2 = server_frame(kexec.OP_CONT, b"def", fin=True)
    result = run(FakeApiserver([part1, ping, part2, SUCCESS]))
    assert result.stdout == b"abcdef" and result.rc == 0


def test_large_output_is_complete_beyond_32k_and_capped_with_a_flag():
    big = b"x" * 200000
    frames = [msg(1, big[i:i + 70000]) for i in range(0, len(big), 70000)] + [SUCCESS]
    assert run(FakeApiserver(frames)).stdout == big
    capped = run(FakeApiserver(frames), max_output=100000)
    assert len(capped.stdout) == 100000 and capped.stdout_truncated and capped.rc == 0


def test_stdin_is_sent_and_half_closed_with_v5():
    fake = FakeApiserver([msg(1, b"7\n"), SUCCESS], read_stdin=True)
    result = run(fake, stdin="x" * 70000)
    assert fake.stdin == b"x" * 70000 and fake.closed_stdin and result.rc == 0


def test_stdin_with_v4_is_refused_instead_of_hanging():
    with pytest.raises(kexec.ExecProtocolError) as err:
        run(FakeApiserver([SUCCESS], protocol="v4.channel.k8s.io"), stdin="data")
    assert err.value.kind == "protocol-unsupported" and "v5.channel.k8s.io" in str(err.value)


def test_v4_without_stdin_works():
    assert run(FakeApiserver([SUCCESS], protocol="v4.channel.k8s.io")).rc == 0


def test_server_without_a_supported_subprotocol_is_a_clear_error():
    with pytest.raises(kexec.ExecProtocolError) as err:
        run(FakeApiserver([SUCCESS], protocol=None))
    assert err.value.kind == "protocol-unsupported" and "1.30" in str(err.value)


def test_refused_upgrade_carries_status_and_body():
    body = json.dumps({"kind": "Status", "code": 403, "message": "pods \"p\" is forbidden"}).encode()
    with pytest.raises(kexec.ExecProtocolError) as err:
        run(FakeApiserver([], status_line="HTTP/1.1 403 Forbidden", body=body))
    assert err.value.http_status == 403 and b"forbidden" in err.value.body


def test_handshake_accept_mismatch_is_rejected():
    with pytest.raises(kexec.ExecProtocolError, match="did not match"):
        run(FakeApiserver([SUCCESS], bad_accept=True))


def test_timeout_raises():
    client, server = socket.socketpair()
    with pytest.raises(socket.timeout):
        kexec.run(client, "/x", "h", timeout=0.2)
    server.close()

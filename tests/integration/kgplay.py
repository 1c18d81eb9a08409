"""Integration helpers: run real ansible-playbook against the real lab and read structured task results."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import yaml

from kgtest import REPO, ansible_tool, repo_env

HERE = Path(__file__).resolve().parent
PLAYBOOK_BIN = ansible_tool("ansible-playbook")


class PlayRun:
    def __init__(self, proc, records):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.records = records

    def result(self, task, host=None):
        found = [r for r in self.records if r["task"] == task and (host is None or r["host"] == host)]
        if not found:
            raise AssertionError("no result for task %r host %r; output:\n%s\n%s" % (task, host, self.stdout[-4000:],
                                                                                     self.stderr[-2000:]))
        record = found[-1]
        result = dict(record["result"])
        result["failed"] = record["status"] == "failed"
        return result

    def status(self, task, host=None):
        found = [r for r in self.records if r["task"] == task and (host is None or r["host"] == host)]
        return found[-1]["status"] if found else None

    @property
    def output(self):
        return self.stdout + self.stderr


def playbook_connection(**override) -> dict:
    """The mapping of inventory variables onto the cluster modules' connection options, exactly as every playbook
    applies it (playbooks/vars/kubegate.yml, used as module_defaults of group/kubegate.multicluster.cluster)."""
    data = yaml.safe_load((REPO / "playbooks" / "vars" / "kubegate.yml").read_text())
    mapping = dict(data["kubegate_module_defaults"])
    mapping.update(override)
    return mapping


def run_playbook(tmp_path, plays, *args, env=None, inventory=None, timeout=300, cwd=None, playbook_name="play.yml",
                 on_line=None):
    """Write `plays` (YAML text or a list) to a playbook and run it with the repository's ansible.cfg.
    `on_line(line)` sees each stdout line as it is printed (to act on the cluster while the play runs)."""
    path = tmp_path / playbook_name
    path.write_text(plays if isinstance(plays, str) else yaml.safe_dump(plays, sort_keys=False))
    shared = tmp_path / "vars"
    if not shared.exists():  # a copy of a project playbook loads vars/kubegate.yml next to itself
        shared.symlink_to(REPO / "playbooks" / "vars", target_is_directory=True)
    results = tmp_path / ("results-%d.jsonl" % time.monotonic_ns())
    run_env = repo_env(KG_RESULTS_FILE=str(results), ANSIBLE_CALLBACK_PLUGINS=str(HERE / "callback_plugins"),
                       ANSIBLE_CALLBACKS_ENABLED="kg_results", ANSIBLE_NOCOLOR="1")
    run_env.update(env or {})
    argv = [PLAYBOOK_BIN, str(path)] + (["-i", str(inventory)] if inventory else []) + list(args)
    if on_line is None:
        proc = subprocess.run(argv, cwd=str(cwd or REPO), env=run_env, capture_output=True, text=True,
                              timeout=timeout)
    else:
        proc = _run_streaming(argv, cwd or REPO, run_env, timeout, on_line)
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    return PlayRun(proc, records)


def _run_streaming(argv, cwd, env, timeout, on_line):
    """subprocess.run's result, with each stdout line passed to on_line while the process runs."""
    with subprocess.Popen(argv, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          bufsize=1) as proc:
        err = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
        reader.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                on_line(line)
        finally:
            timer.cancel()
            proc.wait()
            reader.join(10)
    return subprocess.CompletedProcess(argv, proc.returncode, "".join(lines), "".join(err))


def token(lab, cluster):
    return Path(lab.clusters[cluster]["admin_token_file"]).read_text().strip()


def conn_token(lab, cluster):
    c = lab.clusters[cluster]
    return {"host": c["server"], "ca_cert": c["ca_file"], "api_key": token(lab, cluster)}


def lab_inventory(tmp_path, hosts):
    """An inventory of {name: vars} (all with a local connection)."""
    inv = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                   "hosts": hosts}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


class TcpForward:
    """A plain TCP forwarder listen_addr:port -> target (a stand-in for a tunnel's local end)."""

    def __init__(self, listen_host, target):
        self.target = target
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((listen_host, 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.host = listen_host
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.server.close()


class FaultForward(TcpForward):
    """A TCP forward to a real apiserver that injects transport faults on demand, as a flaky network or a restarting
    apiserver would: the listener goes away (connections refused) and comes back on the same port; the next N
    connections are reset during the TLS handshake; or the next N connections are reset after the request reached the
    apiserver (it acts on the request, its answer is lost). `requests` counts connections whose request reached the
    apiserver."""

    def __init__(self, listen_host, target):
        self.reset_handshakes = 0
        self.reset_after_request = 0
        self.requests = 0
        self.lock = threading.Lock()
        super().__init__(listen_host, target)

    def go_away(self):
        # shutdown first: close() alone leaves the socket listening while the accept thread is blocked in accept()
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        assert wait_for(self._refused, timeout=5), "the forward still accepts connections"

    def _refused(self):
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True

    def come_back(self):
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((self.host, self.port))
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _reset(sock):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close with RST
        sock.close()

    def _take(self, what):
        with self.lock:
            if getattr(self, what) > 0:
                setattr(self, what, getattr(self, what) - 1)
                return True
        return False

    def _accept(self):
        server = self.server
        while not self.closed:
            try:
                client, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        if self._take("reset_handshakes"):
            client.recv(65536)            # the ClientHello arrived; the network drops the connection
            self._reset(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            self._reset(client)
            return
        state = {"left": 0, "head": b"", "request_sent": False, "cut": self._take("reset_after_request")}
        threading.Thread(target=self._client_to_upstream, args=(client, upstream, state), daemon=True).start()
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if state["cut"] and state["request_sent"]:
                    continue                  # the apiserver's answer never arrives
                client.sendall(data)
        except OSError:
            pass
        for s in (client, upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _client_to_upstream(self, client, upstream, state):
        """Pipe client -> apiserver, spotting the HTTP request in the TLS stream: the first application-data record
        longer than 256 bytes (the client's encrypted handshake records without a client certificate are far smaller;
        a request with a bearer token is far larger). Only token-authenticated clients may rely on it. A connection to
        cut is reset by this thread (the only user of the client socket then) one second after the request began,
        everything the client sent meanwhile forwarded, so the apiserver has the whole request and time to act."""
        cut_at = None
        try:
            while True:
                if cut_at is not None:
                    client.settimeout(max(0.01, cut_at - time.monotonic()))
                try:
                    data = client.recv(65536)
                except socket.timeout:
                    break
                if not data:
                    break
                self._count_records(data, state)   # before forwarding: the answer must find request_sent set
                upstream.sendall(data)        # the whole request (a body may follow in its own record)
                if state["cut"] and state["request_sent"] and cut_at is None:
                    cut_at = time.monotonic() + 1.0
        except OSError:
            pass
        if cut_at is not None:
            self._reset(client)
            try:
                upstream.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _count_records(self, data, state):
        buf = state["head"] + data
        state["head"] = b""
        i = 0
        while i < len(buf):
            if state["left"]:
                step = min(state["left"], len(buf) - i)
                state["left"] -= step
                i += step
                continue
            if len(buf) - i < 5:
                state["head"] = buf[i:]
                return
            kind, length = buf[i], struct.unpack("!H", buf[i + 3:i + 5])[0]
            i += 5
            state["left"] = length
            if kind == 0x17 and length > 256 and not state["request_sent"]:
                with self.lock:
                    self.requests += 1
                state["request_sent"] = True


class ConnectProxy(TcpForward):
    """A minimal HTTP CONNECT proxy on 127.0.0.1 that records the targets it was asked for."""

    def __init__(self):
        self.targets = []
        super().__init__("127.0.0.1", None)
        self.url = "http://127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        method, target = head.split(b" ", 2)[:2]
        if method != b"CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            client.close()
            return
        host, port = target.decode().rsplit(":", 1)
        self.targets.append(target.decode())
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            client.close()
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()


def wait_for(predicate, timeout=20, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def no_traceback(text):
    return "Traceback (most recent call last)" not in text



# ------------------------------------------------------------------------------------------------ who the server saw
SSR_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
SSR_BODY = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
ADMIN_SA = ("kube-system", "kubegate-lab-admin")   # the lab's admin token (lab.json admin_token_file)


def whoami_task(name: str = "whoami", **args) -> dict:
    """A task asking the apiserver whom it authenticated the request as: a SelfSubjectReview through
    kubegate.multicluster.api_request, with the task's (or module_defaults') connection plus `args`."""
    return {"name": name, "kubegate.multicluster.api_request": {"method": "POST", "path": SSR_PATH, "body": SSR_BODY,
                                                                **args},
            "ignore_errors": True}


def seen_as(run: PlayRun, host: str, task: str = "whoami") -> dict:
    """The userInfo the apiserver reported for `task` (a whoami_task); fails with the task's message otherwise."""
    res = run.result(task, host)
    assert not res["failed"] and res["status"] == 201, (task, host, res.get("msg"), run.output[-2000:])
    return res["json"]["status"]["userInfo"]


def assert_seen_as(run: PlayRun, host: str, identity: tuple, task: str = "whoami") -> dict:
    """The apiserver saw exactly the user identity[0], member of (at least) the groups identity[1]."""
    user, groups = identity
    info = seen_as(run, host, task)
    assert info["username"] == user, (task, host, info)
    missing = set(groups) - set(info.get("groups") or [])
    assert not missing, (task, host, "groups missing: %s" % sorted(missing), info)
    return info


def sa_identity(namespace: str, name: str) -> tuple:
    """(username, groups) the apiserver gives a ServiceAccount token."""
    return ("system:serviceaccount:%s:%s" % (namespace, name),
            ["system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"])


def cert_identity(pem) -> tuple:
    """(username, groups) the apiserver gives a client certificate: CN and the O values (a path or PEM bytes)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    data = Path(pem).read_bytes() if not isinstance(pem, bytes) else pem
    subject = x509.load_pem_x509_certificate(data).subject
    cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return cn, orgs + ["system:authenticated"]


def assert_unauthorized(run: PlayRun, host: str, where: str, sent: str, task: str = "whoami") -> str:
    """The task failed with the module's clear 401: naming the cluster/address, saying which credential was sent
    (or that none was), and what to check; never a traceback."""
    res = run.result(task, host)
    assert res["failed"] and res.get("status") == 401, (task, host, res)
    msg = res["msg"]
    assert "rejected the credentials (401 Unauthorized)" in msg and where in msg, msg
    assert "Sent: " + sent in msg and "Check api_key / the kubeconfig user" in msg, msg
    assert no_traceback(run.output)
    return msg


class ServiceAccounts:
    """Dedicated test identities: ServiceAccounts created on demand (with a short-lived token) and deleted at close,
    so a test can tell exactly which credential reached the apiserver."""

    def __init__(self, lab, cluster: str, namespace: str = "demo"):
        self.lab, self.cluster, self.namespace = lab, cluster, namespace
        self.suffix = "%x" % (time.monotonic_ns() % 0xFFFFFF)
        self.made = []

    def token(self, base: str) -> tuple:
        """(token, identity) for the ServiceAccount `base-<suffix>` (created on first use)."""
        name = "%s-%s" % (base, self.suffix)
        if name not in self.made:
            self.lab.kubectl(self.cluster, "create", "serviceaccount", "-n", self.namespace, name)
            self.made.append(name)
        tok = self.lab.kubectl(self.cluster, "create", "token", "-n", self.namespace, name,
                               "--duration=1h").stdout.strip()
        return tok, sa_identity(self.namespace, name)

    def close(self):
        if self.made:
            self.lab.kubectl(self.cluster, "delete", "serviceaccount", "-n", self.namespace, *self.made,
                             "--ignore-not-found", check=False)

"""Integration helpers: run real ansible-playbook against the real lab and read structured task results."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import yaml

from kgtest import REPO, repo_env

HERE = Path(__file__).resolve().parent
PLAYBOOK_BIN = str(REPO / ".venv" / "bin" / "ansible-playbook")


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


def run_playbook(tmp_path, plays, *args, env=None, inventory=None, timeout=300, cwd=None, playbook_name="play.yml"):
    """Write `plays` (YAML text or a list) to a playbook and run it with the repository's ansible.cfg."""
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
    proc = subprocess.run(argv, cwd=str(cwd or REPO), env=run_env, capture_output=True, text=True, timeout=timeout)
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    return PlayRun(proc, records)


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


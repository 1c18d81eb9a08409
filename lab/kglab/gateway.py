"""A dedicated nginx instance for the pass-through gateway on the controller (tests, bench, demos).

It never touches the system nginx or the pods' nginx: its own prefix, main config, pid file and logs under
.lab/gateway-<name>/. The main config includes conf.d/*.conf (http context), where role `gateway` writes the site,
and main.d/*.conf (top level, like Debian's modules-enabled), where it writes worker_shutdown_timeout; the role reloads
it with `reload_command()` and tests it with `test_command()`.
PKI: a gateway CA with a serving certificate for the listener and a caller CA for caller client certificates.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import pki
from .cluster import STATE

NGINX = "/usr/sbin/nginx"

MAIN_CONF = """# kubegate lab: the gateway's own nginx (prefix {dir})
pid {dir}/run/nginx.pid;
include {dir}/main.d/*.conf;
error_log {dir}/logs/error.log info;
worker_processes {workers};
events {{
    worker_connections 1024;
}}
http {{
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    access_log off;
    include {dir}/conf.d/*.conf;
}}
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LabGateway:
    def __init__(self, name: str = "gateway", host: str = "127.0.0.1", port: int | None = None, workers: int = 2,
                 base: Path | None = None):
        self.dir = (base or STATE) / name
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.conf = self.dir / "nginx.conf"
        self.conf_dir = self.dir / "conf.d"
        self.main_conf_dir = self.dir / "main.d"
        self.data_dir = self.dir / "data"
        self.pki = self.dir / "pki"
        self.audit_log = self.dir / "logs" / "audit.log"
        self.health_socket = self.dir / "run" / "health.sock"
        self.pidfile = self.dir / "run" / "nginx.pid"

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def prepare(self):
        if self.dir.exists():
            shutil.rmtree(self.dir)
        for sub in ("conf.d", "main.d", "data", "logs", "run", "tmp", "pki"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        ca = pki.CA(self.pki, "gateway-ca", "kubegate-lab-gateway-ca")
        ca.issue("gateway", "kubegate-gateway", dns=["localhost", "kubegate-gateway"], ips=[self.host], server=True)
        self.caller_ca = pki.CA(self.pki, "caller-ca", "kubegate-lab-gateway-caller-ca")
        self.conf.write_text(MAIN_CONF.format(dir=self.dir, workers=self.workers))
        return self

    def issue_caller_cert(self, cn: str):
        return self.caller_ca.issue(f"caller-{cn}", cn, client=True)

    def base_command(self) -> list[str]:
        return [NGINX, "-p", f"{self.dir}/", "-c", str(self.conf), "-e", "stderr"]

    def test_command(self) -> list[str]:
        return self.base_command()[:1] + ["-t", "-q"] + self.base_command()[1:]

    def reload_command(self) -> list[str]:
        return self.base_command() + ["-s", "reload"]

    def role_vars(self) -> dict:
        """Role `gateway` variables for this instance."""
        return {"gateway_listen": [f"{self.host}:{self.port}"], "gateway_conf_dir": str(self.conf_dir),
                "gateway_main_conf_dir": str(self.main_conf_dir),
                "gateway_data_dir": str(self.data_dir), "gateway_audit_log": str(self.audit_log),
                "gateway_health_socket": str(self.health_socket),
                "gateway_tls_cert": str(self.pki / "gateway.crt"), "gateway_tls_key": str(self.pki / "gateway.key"),
                "gateway_caller_ca": str(self.pki / "caller-ca.crt"),
                "gateway_test_command": self.test_command(), "gateway_reload_command": self.reload_command()}

    @property
    def ca_file(self) -> str:
        return str(self.pki / "gateway-ca.crt")

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self):
        subprocess.run(self.base_command(), check=True, capture_output=True, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.pid():
            time.sleep(0.05)
        if not self.pid():
            raise RuntimeError(f"gateway nginx did not start (see {self.dir}/logs/error.log)")
        return self

    def stop(self):
        pid = self.pid()
        if not pid:
            return
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

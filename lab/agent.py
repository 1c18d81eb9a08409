"""Lab pod agent: plays the kubelet's part for one cluster's ingress-nginx pods (kwok simulates the pods).

For every Running pod of the ingress Deployment it
  * starts a real nginx with the pod's own prefix, config, pid file and loopback port;
  * creates a kwok `Exec` object (owned by the pod) so `kubectl exec` / websocket exec through the apiserver runs local
    processes in the pod's directory, where `nginx` (lab/shim/nginx) addresses that pod's nginx;
  * emulates the ConfigMap volume: the data of ConfigMap `kubegate-nginx-map` is copied into the pod's `conf.d/` after
    a sync delay (like the kubelet's periodic sync), atomically, file by file; keys that disappear are removed;
  * plays the container runtime's log driver: new lines of the pod's real nginx access log (as stdout) and error log
    (as stderr) are appended to the container's log file in the CRI format the kubelet reads
    (`<RFC 3339 time> stdout|stderr F <line>`, like ingress-nginx, whose nginx logs to /dev/stdout and /dev/stderr),
    and a kwok `Logs` object (owned by the pod) points kwok at that file, so `GET .../pods/POD/log` (also `follow`)
    returns what the pod's nginx really logged;
Pods that go away get their nginx stopped and their directory removed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

NAMESPACE = "ingress-nginx"
SELECTOR = "app.kubernetes.io/name=ingress-nginx"
CONFIGMAP = "kubegate-nginx-map"
NGINX = "/usr/sbin/nginx"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
# The container's log file (what a container runtime writes under /var/log/pods) and where it has shipped up to.
CONTAINER_LOG = "logs/container.log"
SHIPPED = "logs/.shipped.json"
# nginx's own log files and the container stream each one stands for.
NGINX_STREAMS = (("logs/access.log", "stdout"), ("logs/error.log", "stderr"))
SHIP_INTERVAL = 0.1
SHIP_CHUNK = 1 << 20

NGINX_CONF = """# kubegate lab: nginx of pod {namespace}/{pod} in {cluster}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log notice;
events {{ worker_connections 128; }}
http {{
    access_log {dir}/logs/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    default_type text/plain;
    # The mounted ConfigMap (kubegate-nginx-map): every *.conf in it is part of the http context.
    include {dir}/conf.d/*.conf;
    server {{
        listen {pod_ip}:80 default_server;
        listen {ip}:{port} default_server;
        location = /healthz {{ return 200 "ok\\n"; }}
        location / {{ return 200 "pod={pod} cluster={cluster}\\n"; }}
        # Like an ingress-nginx location: proxies to the demo echo backend; the ConfigMap's *.location files are
        # this location's snippet (ingress-nginx `location-snippet`), e.g. proxy_set_header with a map variable.
        location /kubegate/ {{
            include {dir}/conf.d/*.location;
            proxy_set_header X-Kubegate-Pod {pod};
            proxy_pass http://{echo};
        }}
    }}
}}
"""


class Api:
    def __init__(self, server: str, ca: str, cert: str, key: str):
        self.server = server.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)

    def call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, None


class Agent:
    def __init__(self, args):
        self.args = args
        self.api = Api(args.server, args.ca, args.cert, args.key)
        self.root = Path(args.state)
        self.pods_dir = self.root / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.root / "agent-state.json"
        self.state = {"next_port": args.first_port, "pods": {}}
        if self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())
        self.cm_rv = None          # resourceVersion of the ConfigMap seen last
        self.cm_data = None        # its data (None: no ConfigMap)
        self.cm_changed_at = 0.0
        self.running = True

    def save(self):
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        tmp.replace(self.state_file)

    def log(self, msg: str):
        print(f"{time.strftime('%H:%M:%S')} [{self.args.cluster}] {msg}", flush=True)

    # ---- pods ---------------------------------------------------------------------------------------------------
    def start_pod(self, pod: dict):
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        d = self.pods_dir / name
        for sub in ("conf.d", "logs", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        port = self.state["next_port"]
        self.state["next_port"] += 1
        pod_ip = pod["status"]["podIP"]
        # The pod's own address, on the lab's pod interface: the apiserver's pod/service proxy reaches it there.
        subprocess.run(["ip", "addr", "replace", f"{pod_ip}/32", "dev", self.args.pod_iface], check=False)
        (d / "nginx.conf").write_text(NGINX_CONF.format(namespace=NAMESPACE, pod=name, cluster=self.args.cluster,
                                                        dir=d, ip=self.args.listen_ip, port=port, pod_ip=pod_ip,
                                                        echo=self.args.echo))
        # A pod starts with the volume's current content (the kubelet mounts it before the container starts).
        self.sync_files(d, self.cm_data)
        proc = subprocess.run([NGINX, "-p", f"{d}/", "-c", str(d / "nginx.conf"), "-e", str(d / "logs/error.log")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            self.log(f"pod {name}: nginx failed to start: {proc.stderr.strip()}")
        exec_obj = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Exec",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}]},
            "spec": {"execs": [{"local": {"workDir": str(d), "envs": [
                {"name": "PATH", "value": f"{self.args.shim}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                {"name": "KUBEGATE_LAB_POD_DIR", "value": str(d)},
                {"name": "POD_NAME", "value": name},
                {"name": "POD_NAMESPACE", "value": NAMESPACE},
                {"name": "KUBEGATE_LAB_HTTP", "value": f"http://{self.args.listen_ip}:{port}"},
            ]}}]},
        }
        self.put_kwok_object("execs", exec_obj)
        info = {"uid": uid, "port": port, "dir": str(d), "synced_rv": self.cm_rv, "ip": pod_ip}
        self.state["pods"][name] = info
        self.wire_logs(pod, info)
        self.save()
        self.log(f"pod {name}: nginx on {self.args.listen_ip}:{port}, exec and logs wired")

    def put_kwok_object(self, plural: str, obj: dict) -> bool:
        name = obj["metadata"]["name"]
        status, _ = self.api.call("POST", f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{NAMESPACE}/{plural}", obj)
        if status == 409:
            status, _ = self.api.call("PUT", f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{NAMESPACE}/{plural}/{name}",
                                      {**obj, "metadata": {**obj["metadata"], "resourceVersion": self.rv(plural, name)}})
        if status >= 300:
            self.log(f"pod {name}: creating its kwok {plural} object failed with HTTP {status}")
            return False
        return True

    def rv(self, plural: str, name: str) -> str | None:
        status, obj = self.api.call("GET", f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{NAMESPACE}/{plural}/{name}")
        return obj["metadata"]["resourceVersion"] if status == 200 else None

    # ---- logs ---------------------------------------------------------------------------------------------------
    @staticmethod
    def container_of(pod: dict) -> str:
        """The container whose output nginx is: the default-container annotation, else the first container."""
        names = [c["name"] for c in pod["spec"]["containers"]]
        wanted = (pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
        return wanted if wanted in names else names[0]

    def wire_logs(self, pod: dict, info: dict):
        """The container log file and the kwok Logs object pointing at it (idempotent: also for pods an older agent
        started, so a restarted agent wires the logs of pods that are already running)."""
        name = pod["metadata"]["name"]
        d = Path(info["dir"])
        (d / CONTAINER_LOG).touch()
        logs_obj = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name,
                                              "uid": pod["metadata"]["uid"]}]},
            "spec": {"logs": [{"containers": [self.container_of(pod)], "logsFile": str(d / CONTAINER_LOG)}]},
        }
        info["logs_wired"] = self.put_kwok_object("logs", logs_obj)

    def stop_pod(self, name: str):
        info = self.state["pods"].pop(name, None)
        if not info:
            return
        d = Path(info["dir"])
        subprocess.run([NGINX, "-p", f"{d}/", "-c", str(d / "nginx.conf"), "-e", "stderr", "-s", "quit"],
                       capture_output=True)
        pidfile = d / "nginx.pid"
        for _ in range(50):
            if not pidfile.exists():
                break
            time.sleep(0.1)
        shutil.rmtree(d, ignore_errors=True)
        if info.get("ip"):
            subprocess.run(["ip", "addr", "del", f"{info['ip']}/32", "dev", self.args.pod_iface], check=False,
                           capture_output=True)
        self.save()
        self.log(f"pod {name}: gone, nginx stopped")

    # ---- the ConfigMap volume ----------------------------------------------------------------------------------
    def sync_files(self, d: Path, data: dict | None):
        confd = d / "conf.d"
        manifest = d / ".configmap-keys"
        old = set(manifest.read_text().split()) if manifest.exists() else set()
        new = set((data or {}).keys())
        for key, value in (data or {}).items():
            tmp = confd / f"..{key}.tmp"
            tmp.write_text(value)
            tmp.replace(confd / key)
        for key in old - new:
            (confd / key).unlink(missing_ok=True)
        manifest.write_text("\n".join(sorted(new)))

    def poll_configmap(self):
        status, cm = self.api.call("GET", f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIGMAP}")
        rv = cm["metadata"]["resourceVersion"] if status == 200 else None
        if status not in (200, 404):
            return
        if rv != self.cm_rv:
            self.cm_rv = rv
            self.cm_data = (cm.get("data") or {}) if cm else None
            self.cm_changed_at = time.monotonic()
            self.log(f"configmap {CONFIGMAP}: {'resourceVersion ' + rv if rv else 'deleted'}; syncing after "
                     f"{self.args.sync_delay}s")

    def sync_pods(self):
        for index, (name, info) in enumerate(sorted(self.state["pods"].items())):
            if info.get("synced_rv") == self.cm_rv:
                continue
            # Pods see the update at slightly different times, as with real kubelets.
            due = self.cm_changed_at + self.args.sync_delay + index * self.args.sync_spread
            if time.monotonic() >= due:
                self.sync_files(Path(info["dir"]), self.cm_data)
                info["synced_rv"] = self.cm_rv
                self.save()
                self.log(f"pod {name}: conf.d synced to {self.cm_rv or 'no configmap'}")

    def poll_pods(self):
        status, pods = self.api.call("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={SELECTOR}")
        if status != 200:
            return
        live = {}
        for pod in pods["items"]:
            if pod["metadata"].get("deletionTimestamp") or pod.get("status", {}).get("phase") != "Running" \
                    or not pod["status"].get("podIP"):
                continue
            live[pod["metadata"]["name"]] = pod
        for name, info in list(self.state["pods"].items()):
            if name not in live or live[name]["metadata"]["uid"] != info["uid"]:
                self.stop_pod(name)
        for name, pod in live.items():
            if name not in self.state["pods"]:
                self.start_pod(pod)
            elif not self.state["pods"][name].get("logs_wired"):
                self.wire_logs(pod, self.state["pods"][name])
                self.save()

    def ship_logs(self):
        """The log driver's loop (a thread): every SHIP_INTERVAL, append each pod's new nginx log lines to its
        container log. Only complete lines are shipped; offsets persist in the pod's directory, so a restarted agent
        neither repeats nor loses lines."""
        while self.running:
            for info in list(self.state["pods"].values()):
                try:
                    ship(Path(info["dir"]))
                except (OSError, ValueError) as e:   # a pod going away while shipping
                    self.log(f"shipping logs of {info['dir']} failed: {e}")
            time.sleep(SHIP_INTERVAL)

    def run(self):
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        self.log("agent started")
        threading.Thread(target=self.ship_logs, name="log-driver", daemon=True).start()
        while self.running:
            try:
                self.poll_configmap()
                self.poll_pods()
                self.sync_pods()
            except (OSError, ValueError, KeyError) as e:
                self.log(f"poll failed: {e}")
            time.sleep(self.args.interval)
        for name in list(self.state["pods"]):
            self.stop_pod(name)
        self.log("agent stopped")


def cri_time() -> str:
    """Now in RFC 3339 with sub-second digits, UTC: the timestamp format of the CRI log format."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def ship(d: Path):
    """Append the new complete lines of the pod's nginx logs to its container log, in the CRI log format."""
    if not (d / CONTAINER_LOG).exists():
        return
    marks = d / SHIPPED
    offsets = json.loads(marks.read_text()) if marks.exists() else {}
    out = []
    for rel, stream in NGINX_STREAMS:
        path = d / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        pos = offsets.get(rel, 0)
        if size < pos:          # rotated or truncated: start over
            pos = 0
        if size == pos:
            continue
        with open(path, "rb") as f:
            f.seek(pos)
            data = f.read(min(size - pos, SHIP_CHUNK))
        end = data.rfind(b"\n")
        if end < 0:
            continue
        stamp = cri_time().encode()
        out.extend(b"%s %s F %s\n" % (stamp, stream.encode(), line) for line in data[:end].split(b"\n"))
        offsets[rel] = pos + end + 1
    if out:
        with open(d / CONTAINER_LOG, "ab") as f:
            f.write(b"".join(out))
        tmp = marks.with_suffix(".tmp")
        tmp.write_text(json.dumps(offsets))
        tmp.replace(marks)


def main():
    ap = argparse.ArgumentParser()
    for opt in ("cluster", "server", "ca", "cert", "key", "state", "listen-ip", "shim", "pod-iface", "echo"):
        ap.add_argument(f"--{opt}", required=True)
    ap.add_argument("--first-port", type=int, default=18080)
    ap.add_argument("--sync-delay", type=float, default=3.0)
    ap.add_argument("--sync-spread", type=float, default=1.0)
    ap.add_argument("--interval", type=float, default=0.5)
    Agent(ap.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())

"""One lab cluster: certificates, kubeconfigs, its daemons, its starting objects, and readiness checks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import gateway_api, manifests, pki, procs
from .procs import LabError

LAB_DIR = Path(__file__).resolve().parents[1]
REPO = LAB_DIR.parent
STATE = REPO / ".lab"
CACHE = Path(os.environ.get("KUBEGATE_CACHE", Path.home() / ".cache" / "kubegate"))
BIN = CACHE / "bin"
SHIM = LAB_DIR / "shim"
SERVICE_CIDR = "198.18.128.0/20"


@dataclass
class Spec:
    name: str
    tenant: str
    local_ip: str          # etcd, controllers, kwok and the pods' nginx listen here (inside netns if any)
    api_ip: str            # the apiserver's bind address
    netns: str | None      # network namespace the whole cluster runs in (None: root)
    echo_ip: str           # the service-proxy backend's address (inside echo_netns)
    echo_netns: str
    pod_cidr: str
    wardle: bool = False
    extra: dict = field(default_factory=dict)


SPECS = [
    Spec("cluster-a", "acme", "127.0.0.11", "127.0.0.11", None, "198.18.1.2", "kglab-svc", "198.18.10.0/24", wardle=True),
    Spec("cluster-b", "acme", "127.0.0.12", "127.0.0.12", None, "198.18.1.3", "kglab-svc", "198.18.11.0/24"),
    Spec("cluster-c", "globex", "127.0.0.1", "198.18.3.2", "kglab-central", "198.18.3.2", "kglab-central",
         "198.18.12.0/24"),
]
WARDLE_IP = "198.18.1.1"   # root side of the svc veth: a non-loopback address the aggregator may proxy to
# kwok kinds the lab enables, with their CRD's plural: Exec wires `kubectl exec` to local processes, Logs points a
# pod's container log at a file (lab/agent.py creates both per ingress pod).
KWOK_CRDS = {"Exec": "execs", "ClusterExec": "clusterexecs", "Logs": "logs"}
PORTS = {"etcd": 2379, "etcd-peer": 2380, "apiserver": 6443, "kwok": 10250, "kcm": 10257, "scheduler": 10259}


def binary(name: str) -> str:
    path = BIN / name
    if not path.exists():
        raise LabError(f"{name}: binary not found at {path}; run `make deps` (builds it from Go modules)")
    return str(path)


def kubeconfig_text(name: str, server: str, ca: Path, cert: Path, key: Path) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": name, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }, indent=1)


class Cluster:
    def __init__(self, spec: Spec, sync_delay: float):
        self.spec = spec
        self.name = spec.name
        self.dir = STATE / spec.name
        self.pki_dir = self.dir / "pki"
        self.logs = self.dir / "logs"
        self.pids = self.dir / "pids"
        self.agent_pids = self.dir / "agent-pids"   # stopped first, so it can stop its pods' nginx
        self.sync_delay = sync_delay
        self.server = f"https://{spec.api_ip}:{PORTS['apiserver']}"

    # ---- preparation -----------------------------------------------------------------------------------------
    def preflight(self):
        if self.spec.netns is None:
            for comp, port in PORTS.items():
                procs.check_port_free(self.spec.local_ip, port, f"{self.name} {comp}")
        if self.spec.wardle:
            procs.check_port_free(WARDLE_IP, 8443, f"{self.name} sample-apiserver", netns="not-yet-created")

    def make_pki(self):
        s = self.spec
        d = self.pki_dir
        ca = pki.CA(d, "ca", f"kubegate-lab-{s.name}-ca")
        front = pki.CA(d, "front-proxy-ca", f"kubegate-lab-{s.name}-front-proxy-ca")
        sans_dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local", s.name]
        ca.issue("apiserver", "kube-apiserver", dns=sans_dns,
                 ips=sorted({"127.0.0.1", s.api_ip, s.local_ip, "198.18.128.1"}), server=True)
        ca.issue("admin", "kubegate-lab-admin", orgs=["system:masters"], client=True)
        ca.issue("kcm", "system:kube-controller-manager", client=True)
        ca.issue("scheduler", "system:kube-scheduler", client=True)
        ca.issue("kwok", "kwok-controller", orgs=["system:masters"], client=True)
        ca.issue("agent", "kubegate-lab-agent", orgs=["system:masters"], client=True)
        ca.issue("kubelet-client", "kube-apiserver-kubelet-client", orgs=["system:masters"], client=True)
        ca.issue("kubelet-serving", "kwok-kubelet", dns=["localhost"], ips=sorted({s.local_ip, "127.0.0.1"}),
                 server=True)
        ca.issue("echo", "echo.demo.svc", dns=["echo.demo.svc", "echo"], ips=[s.echo_ip], server=True)
        front.issue("front-proxy-client", "front-proxy-client", client=True)
        if s.wardle:
            ca.issue("wardle-serving", "api.wardle.svc", dns=["api.wardle.svc", "api.wardle.svc.cluster.local"],
                     ips=[WARDLE_IP], server=True)
            ca.issue("wardle-client", "kubegate-lab-wardle", orgs=["system:masters"], client=True)
        pki.service_account_keys(d)
        for who in ("admin", "kcm", "scheduler", "kwok", "agent") + (("wardle-client",) if s.wardle else ()):
            (self.dir / f"{who}.kubeconfig").write_text(
                kubeconfig_text(s.name, self.server, d / "ca.crt", d / f"{who}.crt", d / f"{who}.key"))

    # ---- helpers ---------------------------------------------------------------------------------------------
    def ns_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.spec.netns] if self.spec.netns else []

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = self.ns_prefix() + [binary("kubectl"), "--kubeconfig", str(self.dir / "admin.kubeconfig")] + list(args)
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise LabError(f"{self.name}: kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()}")
        return proc

    def start(self, name: str, argv: list[str], *, netns: str | None | bool = True, env=None, piddir=None) -> int:
        ns = self.spec.netns if netns is True else (netns or None)
        return procs.start(name, argv, logdir=self.logs, piddir=piddir or self.pids, netns=ns, env=env)

    def pidfiles(self) -> list[Path]:
        return sorted(self.pids.glob("*.pid")) + sorted(self.agent_pids.glob("*.pid"))

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    # ---- daemons ---------------------------------------------------------------------------------------------
    def start_etcd(self):
        s, ip = self.spec, self.spec.local_ip
        data = self.dir / "etcd-data"
        pid = self.start("etcd", [
            binary("etcd"), "--name", s.name, "--data-dir", str(data),
            "--listen-client-urls", f"http://{ip}:{PORTS['etcd']}" + (f",http://{WARDLE_IP}:{PORTS['etcd']}" if s.wardle else ""),
            "--advertise-client-urls", f"http://{ip}:{PORTS['etcd']}",
            "--listen-peer-urls", f"http://{ip}:{PORTS['etcd-peer']}",
            "--initial-advertise-peer-urls", f"http://{ip}:{PORTS['etcd-peer']}",
            "--initial-cluster", f"{s.name}=http://{ip}:{PORTS['etcd-peer']}",
            "--listen-metrics-urls", "", "--log-level", "warn", "--quota-backend-bytes", str(512 * 1024 * 1024),
            "--unsafe-no-fsync",   # a throwaway lab: speed over durability
        ])
        procs.wait_until(f"{self.name} etcd", lambda: self._etcd_healthy(), 30, self.log("etcd"), pid=pid)

    def _etcd_healthy(self) -> bool:
        argv = self.ns_prefix() + ["curl", "-fsS", "--max-time", "2", f"http://{self.spec.local_ip}:{PORTS['etcd']}/health"]
        out = subprocess.run(argv, capture_output=True, text=True)
        return out.returncode == 0 and '"health":"true"' in out.stdout.replace(" ", "")

    def write_authn_config(self) -> Path:
        # Anonymous requests are authenticated only on the health paths (KEP-4633, stable in 1.34), as a hardened
        # production cluster does: everything else answers 401 without a credential, so every auth test in the suite
        # proves that its credential was sent and accepted (nothing passes by falling back to system:anonymous).
        path = self.dir / "authentication-config.yaml"
        path.write_text(json.dumps({
            "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AuthenticationConfiguration",
            "anonymous": {"enabled": True, "conditions": [{"path": "/livez"}, {"path": "/readyz"}, {"path": "/healthz"}]},
        }, indent=1))
        return path

    def write_audit_policy(self) -> Path:
        # Metadata level: who called what, from which User-Agent, with what answer -- no bodies (no secrets in the
        # log). Tests read .lab/<cluster>/audit.log to tie requests to a kubegate run (its User-Agent).
        path = self.dir / "audit-policy.yaml"
        path.write_text(json.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                    "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}, indent=1))
        return path

    def start_apiserver(self):
        s, d = self.spec, self.pki_dir
        pid = self.start("kube-apiserver", [
            binary("kube-apiserver"),
            f"--etcd-servers=http://{s.local_ip}:{PORTS['etcd']}",
            f"--bind-address={s.api_ip}", f"--secure-port={PORTS['apiserver']}", f"--advertise-address={s.api_ip}",
            f"--client-ca-file={d / 'ca.crt'}", f"--authentication-config={self.write_authn_config()}",
            f"--tls-cert-file={d / 'apiserver.crt'}", f"--tls-private-key-file={d / 'apiserver.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'sa.pub'}", f"--service-account-signing-key-file={d / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            f"--kubelet-client-certificate={d / 'kubelet-client.crt'}", f"--kubelet-client-key={d / 'kubelet-client.key'}",
            f"--kubelet-certificate-authority={d / 'ca.crt'}", "--kubelet-preferred-address-types=InternalIP",
            f"--requestheader-client-ca-file={d / 'front-proxy-ca.crt'}", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={d / 'front-proxy-client.crt'}", f"--proxy-client-key-file={d / 'front-proxy-client.key'}",
            "--enable-aggregator-routing=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--profiling=false", "--v=1",
            f"--audit-policy-file={self.write_audit_policy()}", f"--audit-log-path={self.dir / 'audit.log'}",
            "--audit-log-maxsize=20", "--audit-log-maxbackup=1", "--audit-log-mode=batch",
            "--audit-log-batch-max-wait=1s",
        ])
        procs.wait_until(f"{self.name} kube-apiserver /readyz", self._readyz, 90, self.log("kube-apiserver"), pid=pid,
                         interval=0.5)

    def _readyz(self) -> bool:
        return self.kubectl("get", "--raw", "/readyz", check=False).stdout.strip() == "ok"

    def start_controllers(self):
        self.start_kcm()
        self.start_scheduler()

    def start_kcm(self):
        s, d = self.spec, self.pki_dir
        kcm = self.dir / "kcm.kubeconfig"
        self.start("kube-controller-manager", [
            binary("kube-controller-manager"), f"--kubeconfig={kcm}",
            f"--authentication-kubeconfig={kcm}", f"--authorization-kubeconfig={kcm}",
            f"--bind-address={s.local_ip}", f"--secure-port={PORTS['kcm']}",
            f"--service-account-private-key-file={d / 'sa.key'}", f"--root-ca-file={d / 'ca.crt'}",
            "--use-service-account-credentials=true", "--leader-elect=false", "--node-monitor-period=2s",
            f"--cluster-signing-cert-file={d / 'ca.crt'}", f"--cluster-signing-key-file={d / 'ca.key'}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
            "--profiling=false", "--v=1",
        ])

    def start_scheduler(self):
        s = self.spec
        sched = self.dir / "scheduler.kubeconfig"
        self.start("kube-scheduler", [
            binary("kube-scheduler"), f"--kubeconfig={sched}",
            f"--authentication-kubeconfig={sched}", f"--authorization-kubeconfig={sched}",
            f"--bind-address={s.local_ip}", f"--secure-port={PORTS['scheduler']}", "--leader-elect=false",
            "--profiling=false", "--v=1",
        ])

    def start_kwok(self):
        s, d = self.spec, self.pki_dir
        self.apply_kwok_crds()
        config = self.dir / "kwok.yaml"
        config.write_text(json.dumps({
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration",
            "options": {"enableCRDs": list(KWOK_CRDS), "cidr": s.pod_cidr, "nodeIP": s.local_ip,
                        "nodePort": PORTS["kwok"], "serverAddress": f"{s.local_ip}:{PORTS['kwok']}",
                        "tlsCertFile": str(d / "kubelet-serving.crt"), "tlsPrivateKeyFile": str(d / "kubelet-serving.key"),
                        "manageNodesWithAnnotationSelector": "kwok.x-k8s.io/node=fake",
                        # kwok keeps node Leases only with a duration set; without them the node lifecycle
                        # controller marks its nodes NotReady after 40s and evicts their pods.
                        "nodeLeaseDurationSeconds": 40},
        }, indent=1))
        env = {"PATH": f"{SHIM}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        self.start("kwok", [binary("kwok"), f"--kubeconfig={self.dir / 'kwok.kubeconfig'}", f"--config={config}"], env=env)

    def apply_kwok_crds(self):
        """The CRDs of the kwok kinds the lab uses (kwok only watches kinds whose CRD it was told about)."""
        crds = CACHE / "share" / "kwok-crds" / "current"
        files = [crds / f"kwok.x-k8s.io_{plural}.yaml" for plural in KWOK_CRDS.values()]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise LabError(f"{self.name}: kwok CRD files missing: {', '.join(missing)}; run `make deps` (lab/build.sh "
                           "copies them from the kwok module)")
        self.kubectl("apply", "--server-side", *(arg for f in files for arg in ("-f", str(f))))
        self.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                     *(f"crd/{plural}.kwok.x-k8s.io" for plural in KWOK_CRDS.values()))

    def start_echo(self):
        d = self.pki_dir
        self.start("echo", [sys.executable, str(LAB_DIR / "echo_server.py"), "--cluster", self.name,
                            "--bind", self.spec.echo_ip, "--http", "8080", "--https", "8443",
                            "--cert", str(d / "echo.crt"), "--key", str(d / "echo.key")], netns=self.spec.echo_netns)

    def start_agent(self):
        d = self.pki_dir
        self.start("agent", [sys.executable, str(LAB_DIR / "agent.py"), "--cluster", self.name, "--server", self.server,
                             "--ca", str(d / "ca.crt"), "--cert", str(d / "agent.crt"), "--key", str(d / "agent.key"),
                             "--state", str(self.dir), "--listen-ip", self.spec.local_ip, "--shim", str(SHIM),
                             "--sync-delay", str(self.sync_delay), "--echo", "%s:8080" % self.spec.echo_ip,
                             "--pod-iface", "lo"], piddir=self.agent_pids)

    def start_wardle(self):
        d = self.pki_dir
        kc = self.dir / "wardle-client.kubeconfig"
        self.start("sample-apiserver", [
            binary("sample-apiserver"), f"--bind-address={WARDLE_IP}", "--secure-port=8443",
            f"--etcd-servers=http://{WARDLE_IP}:{PORTS['etcd']}",
            f"--tls-cert-file={d / 'wardle-serving.crt'}", f"--tls-private-key-file={d / 'wardle-serving.key'}",
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--v=1",
        ], netns=False)

    # ---- objects and readiness -----------------------------------------------------------------------------
    def apply_fixtures(self):
        s = self.spec
        nodes = [manifests.node("kwok-ingress-0", s.local_ip, "ingress", PORTS["kwok"]),
                 manifests.node("kwok-echo-0", s.echo_ip, "echo", PORTS["kwok"])]
        if s.wardle:
            nodes.append(manifests.node("kwok-wardle-0", WARDLE_IP, "wardle", PORTS["kwok"]))
        # Nodes first: pods are scheduled once kwok reports them Ready and the not-ready taint is gone.
        self.kubectl("apply", "-f", "-", input="\n---\n".join(nodes))

        def schedulable():
            items = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
            return len(items) == len(nodes) and not any(n["spec"].get("taints") for n in items)
        procs.wait_until(f"{self.name} nodes schedulable (kwok, node lifecycle)", schedulable, 60, self.log("kwok"))
        docs = manifests.BASE
        if s.wardle:
            docs += "\n---\n" + manifests.wardle((self.pki_dir / "ca.crt").read_bytes())
        self.kubectl("apply", "-f", "-", input=docs)
        token = self.kubectl("create", "token", "kubegate-lab-admin", "-n", "kube-system", "--duration=168h").stdout.strip()
        path = self.dir / "admin.token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)

    def wait_ready(self):
        def nodes_ready():
            out = self.kubectl("get", "nodes", "-o", "json").stdout
            items = json.loads(out)["items"]
            want = 3 if self.spec.wardle else 2
            ready = [n for n in items for c in n.get("status", {}).get("conditions", [])
                     if c["type"] == "Ready" and c["status"] == "True"]
            return len(ready) >= want
        procs.wait_until(f"{self.name} nodes Ready (kwok)", nodes_ready, 60, self.log("kwok"))

        def pods_wired():
            state = self.dir / "agent-state.json"
            return state.exists() and len(json.loads(state.read_text())["pods"]) >= 2
        procs.wait_until(f"{self.name} ingress pods running with exec wired", pods_wired, 60, self.log("agent"))

        def echo_endpoints():
            out = self.kubectl("get", "endpointslices", "-n", "demo", "-l", "kubernetes.io/service-name=echo",
                               "-o", "json").stdout
            return any(ep.get("addresses") for s in json.loads(out)["items"] for ep in s.get("endpoints") or [])
        procs.wait_until(f"{self.name} echo endpoints", echo_endpoints, 60, self.log("kube-controller-manager"))
        if self.spec.wardle:
            def available():
                out = self.kubectl("get", "apiservice", "v1alpha1.wardle.example.com", "-o", "json").stdout
                return any(c["type"] == "Available" and c["status"] == "True"
                           for c in json.loads(out).get("status", {}).get("conditions", []))
            procs.wait_until(f"{self.name} APIService v1alpha1.wardle.example.com Available", available, 90,
                             self.log("sample-apiserver"))

    def up(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        steps = [self.make_pki, self.start_etcd, self.start_apiserver, self.start_controllers, self.start_kwok,
                 self.start_echo, self.start_agent] + ([self.start_wardle] if self.spec.wardle else []) + \
                [self.apply_fixtures, gateway_api.step(self), self.wait_ready]
        timings = {}
        for step in steps:
            t0 = time.monotonic()
            step()
            timings[step.__name__] = round(time.monotonic() - t0, 1)
        (self.dir / "startup-timings.json").write_text(json.dumps(timings))

    def dead_components(self) -> list[str]:
        """Lab daemons of this cluster whose process is gone (the agent included)."""
        return [p.stem for p in self.pidfiles() if not procs.pid_alive(procs.read_pid(p) or 0)]

    def repair(self) -> list[str]:
        """Restart only the daemons that died (a fault test killed an apiserver, say) on the cluster's existing state,
        so a repair does not re-create certificates, objects or the systemd test hosts other tests rely on.
        Raises LabError when a dead part cannot be restarted on its own (the caller then rebuilds the lab)."""
        restart = {"etcd": self.start_etcd, "kube-apiserver": self.start_apiserver, "kube-controller-manager": self.start_kcm,
                   "kube-scheduler": self.start_scheduler, "kwok": self.start_kwok, "echo": self.start_echo,
                   "sample-apiserver": self.start_wardle}
        dead = self.dead_components()
        unknown = [d for d in dead if d not in restart]
        if unknown:
            raise LabError(f"{self.name}: {', '.join(unknown)} died and cannot be restarted alone")
        for name in dead:
            (self.pids / f"{name}.pid").unlink(missing_ok=True)
            restart[name]()
        if dead:
            procs.wait_until(f"{self.name} kube-apiserver /readyz after repair", self._readyz, 90,
                             self.log("kube-apiserver"), interval=0.5)
            self.wait_ready()
        return dead

    def describe(self) -> dict:
        d = self.pki_dir
        return {
            "name": self.name, "tenant": self.spec.tenant, "server": self.server, "netns": self.spec.netns,
            "context": self.name, "tls_server_name": self.name,
            "ca_file": str(d / "ca.crt"), "admin_token_file": str(self.dir / "admin.token"),
            "client_cert_file": str(d / "admin.crt"), "client_key_file": str(d / "admin.key"),
            "admin_kubeconfig": str(self.dir / "admin.kubeconfig"),
            "echo_ip": self.spec.echo_ip, "pods_dir": str(self.dir / "pods"),
            "agent_state": str(self.dir / "agent-state.json"), "logs": str(self.logs),
            "wardle": self.spec.wardle,
        }

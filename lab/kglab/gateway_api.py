"""Gateway API in every lab cluster: the standard-channel CRDs of sigs.k8s.io/gateway-api (pinned in versions.env,
cached by lab/build.sh from the Go module) plus a GatewayClass and a Gateway the routes attach to.

Why: kubegate renders its routing rules as HTTPRoutes too (playbooks/migrate-gateway-api.yml). The lab has no Gateway
data plane; what it gives is the real apiserver validating every emitted route with the CRDs' OpenAPI schema and CEL
rules, so a route the lab accepts is a route any conformant cluster accepts.
"""
from __future__ import annotations

import os
from pathlib import Path

from .procs import LabError

GATEWAY_CLASS = "kubegate-lab"
GATEWAY_NAMESPACE = "gateway-system"
GATEWAY = "kubegate"
# No controller claims this class in the lab: the Gateway stays "Accepted: Unknown" (Pending), which is what an
# apiserver-only lab can honestly offer. Routes in any namespace may attach (tenants keep routes in their own).
MANIFEST = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {GATEWAY_NAMESPACE}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: {GATEWAY_CLASS}}}
spec:
  controllerName: kubegate.io/lab-no-data-plane
  description: kubegate lab (no data plane; the apiserver validates the routes)
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {GATEWAY}, namespace: {GATEWAY_NAMESPACE}}}
spec:
  gatewayClassName: {GATEWAY_CLASS}
  listeners:
  - name: http
    protocol: HTTP
    port: 80
    allowedRoutes:
      namespaces: {{from: All}}
"""
CRDS_ESTABLISHED = ("gatewayclasses", "gateways", "httproutes", "referencegrants")


def crd_dir() -> Path:
    cache = Path(os.environ.get("KUBEGATE_CACHE", Path.home() / ".cache" / "kubegate"))
    return cache / "share" / "gateway-api-crds" / "current"


def install(cluster) -> None:
    """Apply the CRDs (server-side, idempotent), wait until they are served, then the GatewayClass and Gateway."""
    files = sorted(crd_dir().glob("gateway.networking.k8s.io_*.yaml"))
    if not any(f.name.endswith("_httproutes.yaml") for f in files):
        raise LabError(f"Gateway API CRDs not found in {crd_dir()}; run `make deps` (lab/build.sh gateway-api takes "
                       "them from the Go module sigs.k8s.io/gateway-api)")
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=kubegate-lab"]
    for f in files:
        args += ["-f", str(f)]
    cluster.kubectl(*args)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *[f"crd/{name}.gateway.networking.k8s.io" for name in CRDS_ESTABLISHED])
    cluster.kubectl("apply", "--server-side", "--field-manager=kubegate-lab", "-f", "-", input=MANIFEST)


def step(cluster):
    """The `up` step for one cluster (named, so the lab's startup timings list it)."""
    def install_gateway_api():
        install(cluster)
    return install_gateway_api

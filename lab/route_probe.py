#!/usr/bin/env python3
"""Show which backend each ingress pod of a lab cluster routes a request to (`make demo` prints it before and after).

Sends a real request per pod and header value through the apiserver's pod proxy to the pod's nginx, which proxies it
to the demo echo backend; prints the X-Kubegate-Backend header the backend received (set by the routing maps)."""
from __future__ import annotations

import json
import ssl
import sys
import urllib.request
from pathlib import Path

LAB = Path(__file__).resolve().parents[1] / ".lab"


def main() -> int:
    cluster, header, values = sys.argv[1], sys.argv[2], sys.argv[3:]
    c = json.loads((LAB / "lab.json").read_text())["clusters"][cluster]
    token = Path(c["admin_token_file"]).read_text().strip()
    ctx = ssl.create_default_context(cafile=c["ca_file"])

    def get(path, headers=None):
        req = urllib.request.Request(c["server"] + path, headers={"Authorization": "Bearer " + token, **(headers or {})})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return json.loads(resp.read())

    pods = get("/api/v1/namespaces/ingress-nginx/pods?labelSelector=app.kubernetes.io/name%3Dingress-nginx")["items"]
    for pod in sorted(p["metadata"]["name"] for p in pods):
        cells = []
        for value in values:
            echo = get(f"/api/v1/namespaces/ingress-nginx/pods/{pod}:80/proxy/kubegate/check",
                       {header: value} if value != "-" else {})
            backend = echo["headers"].get("X-Kubegate-Backend", "(no routing)")
            cells.append(f"{header}: {value if value != '-' else '(none)'} -> {backend}")
        print(f"  {pod}:  " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())

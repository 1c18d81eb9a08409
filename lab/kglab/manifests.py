"""The objects every lab cluster starts with (YAML text applied with the lab's kubectl)."""
from __future__ import annotations

import base64

INGRESS_IMAGE = "registry.k8s.io/ingress-nginx/controller:v1.14.5"


def node(name: str, address: str, role: str, port: int) -> str:
    return f"""
apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    kubegate.lab/role: {role}
spec: {{}}
status:
  addresses:
  - type: InternalIP
    address: "{address}"
  - type: Hostname
    address: {name}
  daemonEndpoints:
    kubeletEndpoint:
      Port: {port}
"""


BASE = """
apiVersion: v1
kind: Namespace
metadata: {name: ingress-nginx}
---
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: kubegate-lab-admin, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kubegate-lab-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: ServiceAccount, name: kubegate-lab-admin, namespace: kube-system}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ingress-nginx-controller
  namespace: ingress-nginx
  labels: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/component: controller}
spec:
  replicas: 2
  selector:
    matchLabels: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/component: controller}
  template:
    metadata:
      labels: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/component: controller}
      annotations: {kubectl.kubernetes.io/default-container: controller}
    spec:
      nodeSelector: {kubegate.lab/role: ingress}
      containers:
      - name: controller
        image: %(image)s
        ports:
        - {name: http, containerPort: 80}
---
# The controller's Service, as the ingress-nginx chart names it: health checks go through the apiserver's service proxy
# (/api/v1/namespaces/ingress-nginx/services/ingress-nginx-controller:http/proxy/healthz, playbooks/health.yml).
apiVersion: v1
kind: Service
metadata:
  name: ingress-nginx-controller
  namespace: ingress-nginx
  labels: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/component: controller}
spec:
  selector: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/component: controller}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: demo
  labels: {app: echo}
spec:
  replicas: 1
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      hostNetwork: true
      nodeSelector: {kubegate.lab/role: echo}
      containers:
      - name: echo
        image: kubegate.invalid/lab-echo:1
        ports:
        - {name: http, containerPort: 8080}
        - {name: https, containerPort: 8443}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: demo}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: https, port: 443, targetPort: https}
""" % {"image": INGRESS_IMAGE}


def wardle(ca_pem: bytes) -> str:
    """k8s.io/sample-apiserver registered as v1alpha1.wardle.example.com (its process runs outside, on 198.18.1.1)."""
    return """
apiVersion: v1
kind: Namespace
metadata: {name: wardle}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: wardle-apiserver, namespace: wardle, labels: {apiserver: "true"}}
spec:
  replicas: 1
  selector: {matchLabels: {apiserver: "true"}}
  template:
    metadata: {labels: {apiserver: "true"}}
    spec:
      hostNetwork: true
      nodeSelector: {kubegate.lab/role: wardle}
      containers:
      - name: wardle-server
        image: registry.k8s.io/e2e-test-images/sample-apiserver:1.35
        ports:
        - {name: https, containerPort: 8443}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: wardle}
spec:
  selector: {apiserver: "true"}
  ports:
  - {name: https, port: 443, targetPort: 8443}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1alpha1.wardle.example.com}
spec:
  group: wardle.example.com
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  caBundle: %s
  service: {name: api, namespace: wardle, port: 443}
""" % base64.b64encode(ca_pem).decode()

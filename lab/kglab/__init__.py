"""The kubegate lab: real Kubernetes control planes (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
built from Go modules, kwok-managed nodes whose pods exec into real local processes, and network namespaces for
service-proxy backends and a restricted network. Driven by lab/labctl.py; see docs/lab-contract.md."""

#!/usr/bin/env bash
# `make demo`: the main job on the embedded default. Runs playbooks/reload-ingress.yml against the lab inventory,
# limited to cluster-b, and shows the routing of every ingress pod before and after with real requests.
set -euo pipefail
cd "$(dirname "$0")/.."
probe() { python3 lab/route_probe.py cluster-b X-Version v1 v2 v3-beta -; }
echo "== routing in cluster-b before (a real request per pod through the apiserver's pod proxy)"
probe
echo
echo "== ansible-playbook playbooks/reload-ingress.yml -l cluster-b"
ansible-playbook -i inventories/lab playbooks/reload-ingress.yml -l cluster-b
echo
echo "== routing in cluster-b after"
probe

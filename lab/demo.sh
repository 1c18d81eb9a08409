#!/usr/bin/env bash
# `make demo`: the main job on the embedded default, typed as a user types it from the project root:
# `ansible-playbook reload-ingress.yml -l cluster-b` (reload-ingress.yml imports playbooks/reload-ingress.yml; the
# inventory is the one ansible.cfg names, inventories/lab). Shows the routing of every ingress pod before and after
# with real requests.
set -euo pipefail
cd "$(dirname "$0")/.."
probe() { python3 lab/route_probe.py cluster-b X-Version v1 v2 v3-beta -; }
echo "== routing in cluster-b before (a real request per pod through the apiserver's pod proxy)"
probe
echo
echo "== ansible-playbook reload-ingress.yml -l cluster-b"
# the project's own ansible.cfg, as for a user (make exports ANSIBLE_CONFIG for its other targets)
env -u ANSIBLE_CONFIG ansible-playbook reload-ingress.yml -l cluster-b
echo
echo "== routing in cluster-b after"
probe

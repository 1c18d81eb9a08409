#!/usr/bin/env bash
# `make demo`: the main job on the embedded default. Runs playbooks/reload-ingress.yml against the lab inventory,
# limited to cluster-b, when the flagship playbook is present; until then it shows each lab cluster's readiness and
# one real exec through its apiserver.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f playbooks/reload-ingress.yml ]; then
  exec ansible-playbook -i inventories/lab playbooks/reload-ingress.yml -l cluster-b
fi
kubectl=$(python3 -c 'import json; print(json.load(open(".lab/lab.json"))["kubectl"])')
printf '%-10s %-26s %-8s %s\n' CLUSTER APISERVER READYZ "EXEC nginx -v (first ingress pod)"
for c in cluster-a cluster-b cluster-c; do
  ns=$(python3 -c "import json; print(json.load(open('.lab/lab.json'))['clusters']['$c']['netns'] or '')")
  server=$(python3 -c "import json; print(json.load(open('.lab/lab.json'))['clusters']['$c']['server'])")
  run=(); [ -n "$ns" ] && run=(ip netns exec "$ns")
  k=("${run[@]}" "$kubectl" --kubeconfig ".lab/$c/admin.kubeconfig")
  ready=$("${k[@]}" get --raw /readyz 2>&1 || true)
  pod=$("${k[@]}" get pods -n ingress-nginx -l app.kubernetes.io/name=ingress-nginx -o name | head -1)
  version=$("${k[@]}" exec -n ingress-nginx "$pod" -- nginx -v 2>&1 || true)
  printf '%-10s %-26s %-8s %s\n' "$c" "$server" "$ready" "${pod#pod/}: $version"
done

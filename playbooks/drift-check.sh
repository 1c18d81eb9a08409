#!/usr/bin/env bash
# Run playbooks/drift-check.yml and exit with a status CI schedules can alert on (docs/drift.md):
#   0  every check of every cluster is in sync
#   3  drift found (and every cluster was reachable and checked)
#   4  at least one cluster (or tunnel host) was unreachable or timed out
#   5  at least one check could not be evaluated (for example 403 forbidden, invalid rules)
#   1  the run itself failed before a report was written (bad inventory or options, ...)
# When several apply, the most severe wins: 1 > 5 > 4 > 3. drift.json lists every status.
#
#   playbooks/drift-check.sh -i inventories/acme [--check --diff] [-l cluster-b] [other ansible-playbook options]
#
# Environment: KUBEGATE_REPORTS_DIR (default <repository>/reports), KUBEGATE_DRIFT_RUN_ID (default the UTC time),
# ANSIBLE_PLAYBOOK (default ansible-playbook from PATH), PYTHON (reads drift.json; default python3). The report directory is printed on the last line.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
reports="${KUBEGATE_REPORTS_DIR:-$repo/reports}"
playbook_bin="${ANSIBLE_PLAYBOOK:-ansible-playbook}"
run_id="${KUBEGATE_DRIFT_RUN_ID:-}"
if [ -z "$run_id" ]; then
  run_id="$(date -u +%Y%m%dT%H%M%SZ)"
  while [ -e "$reports/$run_id" ]; do sleep 1; run_id="$(date -u +%Y%m%dT%H%M%SZ)"; done
fi
case "$run_id" in */*|.|..|"") echo "drift-check: KUBEGATE_DRIFT_RUN_ID must be a plain directory name" >&2; exit 1;; esac
if [ -e "$reports/$run_id/drift.json" ]; then
  echo "drift-check: $reports/$run_id already holds a report; choose another KUBEGATE_DRIFT_RUN_ID" >&2
  exit 1
fi

# ansible.cfg is read from the current directory only: run from the repository root unless told otherwise.
if [ -z "${ANSIBLE_CONFIG:-}" ] && [ -f "$repo/ansible.cfg" ]; then export ANSIBLE_CONFIG="$repo/ansible.cfg"; fi

"$playbook_bin" "$here/drift-check.yml" -e "drift_check_reports_dir=$reports" -e "drift_check_run_id=$run_id" "$@"
ansible_rc=$?

report="$reports/$run_id/drift.json"
if [ ! -s "$report" ]; then
  echo "drift-check: no report was written (ansible-playbook exited $ansible_rc): the run failed, see above" >&2
  exit 1
fi
status="$("${PYTHON:-python3}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["status"])' "$report" 2>/dev/null)"
case "$status" in
  in_sync)     code=0 ;;
  drifted)     code=3 ;;
  unreachable) code=4 ;;
  error)       code=5 ;;
  *) echo "drift-check: cannot read the status from $report" >&2; exit 1 ;;
esac
# A report with everything in sync but a failed play (a task outside the checks failed) is not a success.
if [ "$code" -eq 0 ] && [ "$ansible_rc" -ne 0 ]; then
  echo "drift-check: every check is in sync but ansible-playbook exited $ansible_rc: the run failed" >&2
  exit 1
fi
echo "drift-check: $status (exit $code); reports in $reports/$run_id"
exit "$code"

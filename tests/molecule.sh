#!/usr/bin/env bash
# Run `molecule test` for every scenario under molecule/<scenario>/molecule.yml.   (`make molecule` runs this.)
#
#   bash tests/molecule.sh                 every scenario, one after the other; exit status != 0 if any fails
#   bash tests/molecule.sh --destroy never extra arguments go to each `molecule test` unchanged
#
# Scenarios are found from the repository root with molecule's project-style glob (molecule/*/molecule.yml). The glob
# is set explicitly: when the working directory holds a galaxy.yml molecule switches to the collection layout
# (extensions/molecule/), which is not what this project uses. A scenario's name is `scenario.name` from its
# molecule.yml, else its directory name (molecule's own rule); each runs as `molecule test -s NAME`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
export MOLECULE_GLOB='molecule/*/molecule.yml'
PY="$ROOT/.venv/bin/python"

shopt -s nullglob
files=(molecule/*/molecule.yml)
if ((${#files[@]} == 0)); then
  echo "molecule: no scenarios yet"
  exit 0
fi
command -v molecule >/dev/null || { echo "molecule: not installed (run make venv)" >&2; exit 2; }

passed=() failed=()
for file in "${files[@]}"; do
  name="$("$PY" - "$file" <<'PYEOF'
import os, sys, yaml
with open(sys.argv[1]) as f:
    data = yaml.safe_load(f) or {}
print(((data.get("scenario") or {}).get("name")) or os.path.basename(os.path.dirname(sys.argv[1])))
PYEOF
)"
  printf '\n== molecule test -s %s   (%s)\n' "$name" "$file"
  started=$SECONDS
  if molecule test -s "$name" "$@"; then
    passed+=("$name ($((SECONDS - started)) s)")
  else
    failed+=("$name ($((SECONDS - started)) s)")
  fi
done

printf '\n== molecule summary\n'
printf 'passed %2d  %s\n' "${#passed[@]}" "$(IFS=,; echo "${passed[*]:-}")"
printf 'failed %2d  %s\n' "${#failed[@]}" "$(IFS=,; echo "${failed[*]:-}")"
((${#failed[@]} == 0))

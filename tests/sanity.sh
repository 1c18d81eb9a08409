#!/usr/bin/env bash
# ansible-test sanity for kubegate.multicluster, plus `antsibull-changelog lint`.   (`make sanity` runs this.)
#
#   bash tests/sanity.sh                     all sanity tests (exit status != 0 if any test or the changelog lint fails)
#   bash tests/sanity.sh --test pylint -v    extra arguments go to `ansible-test sanity` unchanged
#   bash tests/sanity.sh --lane 2.21 [...]   the second lane (`make lane-221`): ansible-core from .venv-221 /
#                                            requirements-221.txt on Python 3.12, ignore file tests/sanity/ignore-2.21.txt
#
# Environment:
#   KUBEGATE_CACHE   cache root (default ~/.cache/kubegate); the sanity venv lives in $KUBEGATE_CACHE/sanity-venv
#                    (lane 2.21: $KUBEGATE_CACHE/sanity-venv-2.21)
#   SANITY_PYTHON    interpreter for that venv (default python3.11; the Python controllers here run; lane 2.21:
#                    pyenv's newest 3.12, else python3.12 on PATH)
#
# How it works
# - ansible-test runs from a dedicated venv ($KUBEGATE_CACHE/sanity-venv): the same ansible-core version as the project
#   venv (.venv) plus every requirement file ansible-test ships for sanity (ansible_test/_data/requirements/
#   sanity.*.txt). It is built once and rebuilt only when its key (ansible-core version, Python version, this
#   script's venv recipe) changes; a warm run does no pip work at all. (ansible-test runs the tests themselves in the
#   per-test venvs described next; the pinned linters here, e.g. $VENV/bin/pylint, are for running them by hand.)
# - `--local` does not mean "no virtualenvs": ansible-test still gives every sanity test that has requirements its own
#   venv under ~/.ansible/test/venv/sanity.<test>/<python>/<hash> (created once, reused while the hash matches) and
#   bootstraps pip into each with a get-pip.py it downloads from ci-files.testing.ansible.com. That host is not
#   reachable from here, so this script seeds ~/.ansible/test/cache/get_pip_<version>.py with a stand-in that does the
#   same job with the interpreter's bundled ensurepip (PyPI, through pip's normal configuration, is still needed the
#   first time each venv is built).
# - Untracked files: in a git work tree ansible-test lists the collection's files with
#   `git ls-files --cached --others --exclude-standard` (minus `git ls-files --deleted`), run against the enclosing
#   repository (it walks up from the collection to /work/main/.git). So new, never-added files ARE tested without any
#   `git add`; files matched by .gitignore (tests/output/, __pycache__/, *.pyc, ...) are invisible to it, even when they
#   are real plugins; tracked files deleted from the work tree are skipped. Nothing needs committing or staging.
# - Skipped tests: none. Everything ansible-test knows runs; tests without targets (no .ps1 -> pslint, no
#   shell scripts -> shellcheck, no __init__.py -> empty-init) report "skipped" on their own.
#   --local needs no docker and, once the venvs exist, no network. If a test ever has to be disabled, add
#   `--skip-test NAME` to SKIP_TESTS below with the reason next to it.
# - Unavoidable per-file exceptions live in tests/sanity/ignore-2.19.txt (ansible-test reads only the file of its own
#   version: ignore-2.21.txt is a symlink to it, so the lanes cannot drift apart; 2.21's pylint also reports
#   subprocess calls in module_utils, which ansible-lint forbids ignoring there: those few calls carry an inline
#   `pylint: disable=ansible-bad-function` with the reason). The collection is Apache-2.0 (galaxy.yml,
#   file headers), so validate-modules reports missing-gplv3-license for every module and inventory plugin: each needs
#   a `plugins/modules/NAME.py validate-modules:missing-gplv3-license` line there (and the line must go when the
#   module goes: the `ignores` test rejects entries for files that do not exist). Nothing else belongs there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COLL="$ROOT/collections/ansible_collections/kubegate/multicluster"
CACHE="${KUBEGATE_CACHE:-$HOME/.cache/kubegate}"
RECIPE=1   # bump when the way the venv is built changes
SKIP_TESTS=()

say() { printf '\n== %s\n' "$*"; }
die() { printf 'sanity: %s\n' "$*" >&2; exit 2; }

# --- lane: which project venv / requirement file / Python -----------------------------------------------------------
LANE=2.19
if [[ "${1:-}" == "--lane" ]]; then
  LANE="${2:-}"; shift 2 || die "--lane needs a value (2.19 or 2.21)"
fi
case "$LANE" in
  2.19) VENV="$CACHE/sanity-venv"; PROJECT_VENV="$ROOT/.venv"; REQS="$ROOT/requirements-dev.txt"; PYVER=3.11
        PYTHON="${SANITY_PYTHON:-python3.11}" ;;
  2.21) VENV="$CACHE/sanity-venv-2.21"; PROJECT_VENV="$ROOT/.venv-221"; REQS="$ROOT/requirements-221.txt"; PYVER=3.12
        pyenv_py="$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V | tail -n1)"
        PYTHON="${SANITY_PYTHON:-${pyenv_py:-python3.12}}" ;;
  *) die "unknown lane '$LANE' (2.19 or 2.21)" ;;
esac

# --- which ansible-core: the one installed in the lane's project venv (else the pin in its requirements file) ------
if [[ -x "$PROJECT_VENV/bin/python" ]] &&
   CORE_VERSION="$("$PROJECT_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("ansible-core"))' 2>/dev/null)"; then
  :
else
  CORE_VERSION="$(sed -n 's/^ansible-core==\([^ #]*\).*/\1/p' "$REQS")"
fi
[[ -n "$CORE_VERSION" ]] || die "cannot tell which ansible-core version to use ($PROJECT_VENV missing and no pin in $REQS)"
[[ "$CORE_VERSION" == "$LANE".* ]] || die "lane $LANE: $PROJECT_VENV has ansible-core $CORE_VERSION (rebuild it: make venv / make venv-221)"
command -v "$PYTHON" >/dev/null 2>&1 &&
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, sys.argv[1].split("."))))' "$PYVER" 2>/dev/null ||
  die "$PYTHON is not a working Python $PYVER interpreter (set SANITY_PYTHON)"
KEY="ansible-core==$CORE_VERSION python=$("$PYTHON" -c 'import platform; print(platform.python_version())') recipe=$RECIPE"

# --- the sanity venv (built once per key; a lock keeps concurrent runs from building it twice) --------------------
mkdir -p "$CACHE"
exec 9>"$VENV.lock"
flock 9
if [[ "$(cat "$VENV/.kubegate-key" 2>/dev/null)" != "$KEY" ]]; then
  say "building $VENV ($KEY)"
  started=$SECONDS
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "ansible-core==$CORE_VERSION"
  reqdir="$("$VENV/bin/python" -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_data", "requirements"))')"
  reqs=()
  for f in "$reqdir"/sanity.*.txt; do reqs+=(-r "$f"); done
  # One resolve for ansible-core and all sanity pins together, so they cannot drift apart.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "ansible-core==$CORE_VERSION" "${reqs[@]}"
  printf '%s\n' "$KEY" >"$VENV/.kubegate-key"
  echo "sanity venv built in $((SECONDS - started)) s"
fi
flock -u 9

# --- seed ansible-test's pip bootstrap script (see above) ----------------------------------------------------------
PIP_VERSION="$("$VENV/bin/python" -c '
from ansible_test._internal.host_configs import NativePythonConfig
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(NativePythonConfig(version="'"$PYVER"'", path="python"))["pip"])')"
GET_PIP="$HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py"
STANDIN_MARK='# kubegate stand-in for get-pip.py'
if [[ ! -e "$GET_PIP" ]] || head -n1 "$GET_PIP" | grep -q '^# kubegate stand-in'; then
  mkdir -p "$(dirname "$GET_PIP")"
  standin="$(cat <<EOF
$STANDIN_MARK (written by kubegate tests/sanity.sh; safe to delete).
# ansible-test runs get-pip.py with pip's arguments ("pip==X", --no-setuptools, --no-wheel) inside a new, empty sanity
# venv; it would download it from ci-files.testing.ansible.com, which is not reachable here. Same job, done with the
# interpreter's bundled ensurepip, then the exact pip version ansible-test asked for (from PyPI / pip's config).
import subprocess
import sys

OWN = ("--no-setuptools", "--no-wheel")
args = [a for a in sys.argv[1:] if a not in OWN]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade"] + args)
if "--no-setuptools" in sys.argv[1:]:
    # ensurepip before Python 3.12 also installs setuptools; the real get-pip.py would not have.
    subprocess.call([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"], stderr=subprocess.DEVNULL)
EOF
)"
  [[ "$(cat "$GET_PIP" 2>/dev/null)" == "$standin" ]] || printf '%s\n' "$standin" >"$GET_PIP"
fi

# --- run -------------------------------------------------------------------------------------------------------------
cd "$COLL"
JUNIT="$COLL/tests/output/junit"
rm -f "$JUNIT"/ansible-test-sanity-*.xml

say "ansible-test sanity, lane $LANE (ansible-core $CORE_VERSION, Python $PYVER, --local)"
started=$SECONDS
set +e
"$VENV/bin/ansible-test" sanity --local --python "$PYVER" --junit --color no "${SKIP_TESTS[@]}" "$@"
sanity_rc=$?
set -e
sanity_secs=$((SECONDS - started))

say "antsibull-changelog lint"
CHANGELOG_BIN="$ROOT/.venv/bin/antsibull-changelog"
[[ -x "$CHANGELOG_BIN" ]] || CHANGELOG_BIN="$(command -v antsibull-changelog || true)"
if [[ -z "$CHANGELOG_BIN" ]]; then
  echo "antsibull-changelog not found (run make venv)"; changelog_rc=1
else
  set +e
  "$CHANGELOG_BIN" lint && "$CHANGELOG_BIN" lint-changelog-yaml changelogs/changelog.yaml
  changelog_rc=$?
  set -e
  [[ $changelog_rc -eq 0 ]] && echo "ok"
fi

# --- summary (from ansible-test's junit files) -------------------------------------------------------------------------
say "summary"
"$VENV/bin/python" - "$JUNIT" <<'EOF'
import glob, os, sys
import xml.etree.ElementTree as ET

rows = {"passed": [], "skipped": [], "failed": []}
issues = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "ansible-test-sanity-*.xml"))):
    for case in ET.parse(path).iter("testcase"):
        name = case.get("name") or os.path.basename(path)
        bad = [el for el in case if el.tag in ("failure", "error")]
        if bad:
            lines = [line for el in bad for line in (el.text or el.get("message") or "failed").splitlines() if line.strip()]
            rows["failed"].append("%s (%d)" % (name, len(lines)))
            issues += ["  %s: %s" % (name, line) for line in lines]
        elif case.find("skipped") is not None:
            rows["skipped"].append(name)
        else:
            rows["passed"].append(name)
for status in ("passed", "skipped", "failed"):
    print("%-8s %2d  %s" % (status, len(rows[status]), ", ".join(rows[status]) or "-"))
if issues:
    print("issues:")
    print("\n".join(issues))
EOF
printf 'ansible-test sanity: %s (%s s)   antsibull-changelog lint: %s\n' \
  "$([[ $sanity_rc -eq 0 ]] && echo PASS || echo "FAIL (exit $sanity_rc)")" "$sanity_secs" \
  "$([[ $changelog_rc -eq 0 ]] && echo PASS || echo FAIL)"
[[ $sanity_rc -eq 0 && $changelog_rc -eq 0 ]]

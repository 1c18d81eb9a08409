"""The execution environment definition renders with `ansible-builder create`, and the rendered context builds what
AWX jobs need: the Debian trixie base (Python 3.13), ansible-core 2.21, ansible-runner, this repository's collection,
its Python libraries and system packages. The galaxy and introspection stages of the build are replayed locally on the
rendered context (ansible-galaxy from the build's requirements.yml, then the builder's own introspect.py), so the
dependency lists the image would get are checked, not just the file names — and the collection exactly as the galaxy
stage installs it is run: ansible-doc (the image's own smoke test) and a task against the lab apiserver that reports
who the apiserver saw, with nothing but that installed copy on the collections path. The image itself is built and
run by test_ee_image.py (`make test EE=1`)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from packaging.requirements import Requirement

from kgplay import ADMIN_SA, assert_seen_as, conn_token, run_playbook, sa_identity, whoami_task
from kgtest import REPO

BIN = REPO / ".venv" / "bin"
COLL = REPO / "collections" / "ansible_collections" / "kubegate" / "multicluster"


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    ctx = tmp_path_factory.mktemp("ee") / "context"
    proc = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", str(REPO / "execution-environment.yml"),
                           "-c", str(ctx), "--output-filename", "Containerfile"],
                          capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return ctx


def args(containerfile: str) -> dict:
    return dict(re.findall(r'^ARG (\w+)="(.*)"$', containerfile, re.M))


def test_containerfile_has_the_local_base_ansible_core_221_and_the_runner(context):
    text = (context / "Containerfile").read_text()
    a = args(text)
    # the base image ee/base-image.sh makes (Debian's python3 + pip in it; apt-get behind its kg-pkgmgr front end)
    assert a["EE_BASE_IMAGE"] == "localhost/kubegate-ee-base:trixie"
    assert a["PYCMD"] == "/usr/bin/python3" and a["PKGMGR"] == "/usr/local/bin/kg-pkgmgr"
    refs = a["ANSIBLE_INSTALL_REFS"].split()
    core = Requirement(next(r for r in refs if r.startswith("ansible-core")))
    # the exact version the 2.21 test lane runs (requirements-221.txt)
    lane = re.search(r"^ansible-core==(\S+)", (REPO / "requirements-221.txt").read_text(), re.M).group(1)
    assert lane.startswith("2.21.") and list(core.specifier) and all(s.operator == "==" for s in core.specifier)
    assert lane in core.specifier and str(core.specifier) == f"=={lane}"
    runner = Requirement(next(r for r in refs if r.startswith("ansible-runner")))
    assert "2.4.3" in runner.specifier   # the version the integration tests run jobs with (requirements-dev.txt)
    # build stages: galaxy installs the collection, the builder introspects it, the final image installs bindep output
    assert "ansible-galaxy collection install" in text and "-r requirements.yml" in text
    assert "introspect.py introspect" in text and "install-from-bindep" in text
    assert "nginx -v" in text and "ansible-doc kubegate.multicluster.pod_exec" in text


def test_context_carries_an_identical_copy_of_this_repositorys_collection(context):
    reqs = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    local = [c for c in reqs["collections"] if c.get("type") == "dir"]
    assert len(local) == 1
    copied = context / "_build" / local[0]["name"]
    galaxy = yaml.safe_load((copied / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == ("kubegate", "multicluster")
    assert galaxy["version"] == yaml.safe_load((COLL / "galaxy.yml").read_text())["version"]
    for rel in ("plugins/modules/pod_exec.py", "plugins/module_utils/_cluster/config.py", "meta/runtime.yml",
                "meta/execution-environment.yml", "requirements.txt", "bindep.txt"):
        assert (copied / rel).read_bytes() == (COLL / rel).read_bytes(), rel
    # external collections AWX's project sync installs must be in the image too
    external = yaml.safe_load((REPO / "collections" / "requirements.yml").read_text()).get("collections") or []
    names = {c["name"] if isinstance(c, dict) else c for c in reqs["collections"]}
    assert {c["name"] if isinstance(c, dict) else c for c in external} <= names


@pytest.fixture(scope="module")
def introspected(context, tmp_path_factory):
    """Replay the build's galaxy stage (offline) and the builder stage's introspection on the rendered context."""
    out = tmp_path_factory.mktemp("ee-build")
    collections = out / "collections"
    # As in the image's galaxy stage: no project ansible.cfg (`make` exports ANSIBLE_CONFIG, whose collections path
    # holds this very collection, and galaxy would then skip it as "already installed").
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    proc = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-r", "requirements.yml",
                           "--collections-path", str(collections)],
                          cwd=str(context / "_build"), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = collections / "ansible_collections" / "kubegate" / "multicluster"
    assert (installed / "MANIFEST.json").exists() and (installed / "plugins" / "modules" / "pod_exec.py").exists()
    assert not (installed / "tests" / "output").exists()
    pip, bindep = out / "requirements.txt", out / "bindep.txt"
    proc = subprocess.run([sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect",
                           str(collections), "--write-pip", str(pip), "--write-bindep", str(bindep)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return pip.read_text(), bindep.read_text(), collections


def _lines(text):
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_introspection_lists_the_collections_python_libraries(introspected):
    pip, _, _ = introspected
    names = {Requirement(line).name.lower(): Requirement(line) for line in _lines(pip)}
    assert set(names) == {"jmespath", "paramiko"}, pip
    assert "kubegate.multicluster" in pip
    # the versions the project is tested with satisfy the collection's requirements
    pins = dict(line.split("==") for line in _lines((REPO / "requirements-dev.txt").read_text()) if "==" in line)
    for name, req in names.items():
        assert pins[name] in req.specifier, (name, pins[name], str(req))


def test_introspection_lists_nginx_and_the_ssh_client_for_bindep(introspected):
    _, bindep, _ = introspected
    packages = {line.split()[0]: line for line in _lines(bindep)}
    assert "nginx" in packages and "platform:rpm" in packages["nginx"]
    assert "openssh-clients" in packages and "platform:rpm" in packages["openssh-clients"]
    assert "openssh-client" in packages and "platform:dpkg" in packages["openssh-client"]


def test_static_collection_metadata_points_at_its_requirement_files():
    meta = yaml.safe_load((COLL / "meta" / "execution-environment.yml").read_text())
    assert meta["version"] == 1
    assert (COLL / meta["dependencies"]["python"]).is_file() and (COLL / meta["dependencies"]["system"]).is_file()
    # every Python library the collection imports outside the standard library / ansible-core is declared
    declared = {Requirement(line).name.lower() for line in _lines((COLL / "requirements.txt").read_text())}
    used = set()
    for path in (COLL / "plugins").rglob("*.py"):
        for mod in re.findall(r"^\s*import (jmespath|paramiko)\b", path.read_text(), re.M):
            used.add(mod)
    assert used and used <= declared, (used, declared)



def test_the_collection_as_the_galaxy_stage_installs_it_runs(introspected, lab, tmp_path):
    """No project ansible.cfg, no repository collection: only the galaxy stage's installed copy is loaded."""
    _, _, collections = introspected
    installed = collections / "ansible_collections" / "kubegate" / "multicluster"
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\ncollections_path = %s\n" % collections)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update({"ANSIBLE_CONFIG": str(cfg), "HOME": str(tmp_path), "KUBECONFIG": ""})
    doc = subprocess.run([str(BIN / "ansible-doc"), "kubegate.multicluster.pod_exec"], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=120)
    assert doc.returncode == 0 and str(installed / "plugins" / "modules" / "pod_exec.py") in doc.stdout, doc.stderr
    defaults = {"group/kubegate.multicluster.cluster": conn_token(lab, "cluster-b")}
    run = run_playbook(tmp_path, [{"name": "ee", "hosts": "localhost", "gather_facts": False,
                                   "module_defaults": defaults, "tasks": [whoami_task()]}],
                       "-vvvv", env={"ANSIBLE_CONFIG": str(cfg), "ANSIBLE_COLLECTIONS_PATH": str(collections),
                                    "HOME": str(tmp_path)}, cwd=tmp_path)
    assert "Loading collection kubegate.multicluster from %s" % installed in run.output, run.output[-3000:]
    assert_seen_as(run, "localhost", sa_identity(*ADMIN_SA))

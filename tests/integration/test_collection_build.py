"""The collection as users get it: `ansible-galaxy collection build` makes the tarball, which installs into an empty
collections path and works from there (ansible-doc for every plugin type, a filter and a module in a play) without
this repository's ansible.cfg or collections/ directory. Also the metadata a publication needs: no placeholder URLs,
a README that names every module, filter and inventory plugin, the release in the changelog. No lab needed; runs in
both lanes (`make lane-221` includes it)."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from kgtest import REPO, ansible_tool

COLL = REPO / "collections" / "ansible_collections" / "kubegate" / "multicluster"
GALAXY = yaml.safe_load((COLL / "galaxy.yml").read_text())
FQ = f"{GALAXY['namespace']}.{GALAXY['name']}"


def clean_env(collections_path: Path, home: Path) -> dict:
    """No project ansible.cfg, no ANSIBLE_* of the caller, no user collections: only `collections_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_path), HOME=str(home), ANSIBLE_NOCOLOR="1")
    return env


def ansible(*argv: str, env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([ansible_tool(argv[0]), *argv[1:]], env=env, cwd=str(cwd), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc


def plugins(kind: str) -> list[str]:
    """Public plugin names of one kind, from the source tree (what the README and ansible-doc must cover)."""
    if kind == "filter":   # one documentation file per filter (several filters can share one .py)
        return sorted(p.stem for p in (COLL / "plugins" / "filter").glob("*.yml"))
    return sorted(p.stem for p in (COLL / "plugins" / kind).glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("galaxy")
    home = work / "home"
    home.mkdir()
    dist, target = work / "dist", work / "clean" / "collections"
    env = clean_env(target, home)
    ansible("ansible-galaxy", "collection", "build", str(COLL), "--output-path", str(dist), env=env, cwd=work)
    tarballs = list(dist.glob("*.tar.gz"))
    assert [t.name for t in tarballs] == [f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"]
    ansible("ansible-galaxy", "collection", "install", str(tarballs[0]), "-p", str(target), env=env, cwd=work)
    return {"tarball": tarballs[0], "path": target / "ansible_collections" / "kubegate" / "multicluster",
            "env": env, "work": work}


def test_tarball_holds_the_release_and_nothing_local(installed):
    with tarfile.open(installed["tarball"]) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    for needed in ("README.md", "CHANGELOG.rst", "LICENSE", "meta/runtime.yml", "meta/execution-environment.yml",
                   "requirements.txt", "bindep.txt", "changelogs/changelog.yaml", "plugins/modules/api_request.py"):
        assert needed in names, needed
    assert not any(n.startswith("tests/output") or "__pycache__" in n or n.endswith(".pyc") for n in names)
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("kubegate", "multicluster", GALAXY["version"])
    assert info["license"] == ["Apache-2.0"]
    for key in ("repository", "documentation", "homepage", "issues"):
        value = info.get(key)
        assert value is None or (value.startswith("https://") and ".invalid" not in value and "example" not in value), \
            (key, value)
    # the version being built is the latest release in the changelog
    releases = yaml.safe_load((COLL / "changelogs" / "changelog.yaml").read_text())["releases"]
    assert GALAXY["version"] in releases
    assert f"v{GALAXY['version']}" in (COLL / "CHANGELOG.rst").read_text()


def test_installed_collection_documents_every_plugin(installed):
    env, work = installed["env"], installed["work"]
    listed = ansible("ansible-galaxy", "collection", "list", FQ, "--format", "json", env=env, cwd=work)
    assert list(json.loads(listed.stdout)) == [str(installed["path"].parents[1])]
    for kind, doc_type in (("modules", "module"), ("filter", "filter"), ("inventory", "inventory")):
        names = plugins(kind)
        assert names, kind
        out = ansible("ansible-doc", "-t", doc_type, "--list", FQ, "--json", env=env, cwd=work)
        assert sorted(json.loads(out.stdout)) == [f"{FQ}.{n}" for n in names], doc_type
        doc = json.loads(ansible("ansible-doc", "-t", doc_type, *[f"{FQ}.{n}" for n in names], "--json",
                                 env=env, cwd=work).stdout)
        for name in names:
            data = doc[f"{FQ}.{name}"]["doc"]
            assert data["short_description"] and data["collection"] == FQ, name


def test_installed_collection_runs_a_filter_and_a_module(installed, tmp_path):
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "filter", "ansible.builtin.set_fact": {"problems": "{{ {'maps': []} | kubegate.multicluster.nginx_map_problems }}"}},
        {"name": "module", "kubegate.multicluster.warn": {"msg": "from the installed copy"}},
    ]}]))
    env = dict(installed["env"], ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    out = ansible("ansible-playbook", str(play), env=env, cwd=tmp_path)
    assert "[WARNING]: from the installed copy" in out.stdout + out.stderr
    assert "ok=2" in out.stdout


def test_collection_readme_names_every_plugin_and_the_roles_choice():
    readme = (COLL / "README.md").read_text()
    for kind in ("modules", "filter", "inventory"):
        for name in plugins(kind):
            assert f"`{FQ}.{name}`" in readme, f"{kind} {name} missing from the collection README"
    for role in sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir()):
        assert f"`{role}`" in readme, f"role {role} missing from the collection README"
    assert "docs/collection.md" in readme and (REPO / "docs" / "collection.md").is_file()

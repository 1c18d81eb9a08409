"""A local stand-in for an AWX / Automation Platform job: a private data directory laid out the way AWX hands it to
ansible-runner (env/envvars, env/extravars, env/cmdline, inventory/, project/), with the credential files and
environment produced by applying a credential type's injectors — the ones in awx/credential-type.yml — to input
values, then run with ansible_runner.run, the engine AWX uses inside the execution environment.

What is mimicked from AWX (documented behaviour, re-implemented here): injector templates are rendered with a
sandboxed Jinja2 (ImmutableSandboxedEnvironment) whose namespace holds the non-empty inputs and `tower.filename`
(a path, or `tower.filename.<name>` per `template.<name>`); every file template becomes a 0600 file under env/ of the
private data directory; ssh private keys get a trailing newline; env templates are rendered after the files.
The built-in "OpenShift or Kubernetes API Bearer Token" credential injects K8S_AUTH_HOST / K8S_AUTH_API_KEY /
K8S_AUTH_VERIFY_SSL and writes the CA to a file named by K8S_AUTH_SSL_CA_CERT (verification on only with a CA).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from types import SimpleNamespace

import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kgtest import REPO

CREDENTIAL_TYPES = REPO / "awx" / "credential-type.yml"
# what an AWX project checkout of this repository holds and a job can use
PROJECT_PARTS = ("ansible.cfg", "playbooks", "collections", "roles", "inventories")


def credential_type(name: str = "kubegate clusters") -> dict:
    for ct in yaml.safe_load(CREDENTIAL_TYPES.read_text())["credential_types"]:
        if ct["name"] == name:
            return ct
    raise AssertionError("credential type %r not in %s" % (name, CREDENTIAL_TYPES))


class Injected:
    """What a credential contributed to a job: environment, extra vars and the files written for it."""

    def __init__(self):
        self.env: dict[str, str] = {}
        self.extra_vars: dict = {}
        self.files: list[Path] = []


def inject(cred_type: dict, inputs: dict, private_data_dir: Path) -> Injected:
    """Apply a custom credential type's injectors to `inputs` as AWX does before a job starts."""
    fields = {f["id"]: f for f in cred_type["inputs"]["fields"]}
    unknown = sorted(set(inputs) - set(fields))
    if unknown:
        raise AssertionError("inputs not defined by credential type %s: %s" % (cred_type["name"], unknown))
    missing = [f for f in cred_type["inputs"].get("required", []) if not inputs.get(f)]
    if missing:
        raise AssertionError("required inputs missing: %s" % missing)
    namespace = {k: v for k, v in inputs.items() if v not in (None, "")}
    for field_id, field in fields.items():
        if field.get("type") == "boolean":
            namespace.setdefault(field_id, False)
        if field.get("format") == "ssh_private_key" and field_id in namespace and not namespace[field_id].endswith("\n"):
            namespace[field_id] += "\n"
    sandbox = ImmutableSandboxedEnvironment()
    injectors = cred_type.get("injectors") or {}
    out = Injected()
    env_dir = private_data_dir / "env"
    env_dir.mkdir(parents=True, exist_ok=True)
    single, named = None, {}
    for label, template in (injectors.get("file") or {}).items():
        fd, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(fd, "w") as f:
            f.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        out.files.append(Path(path))
        if "." in label:
            named[label.split(".", 1)[1]] = path
        else:
            single = path
    tower = SimpleNamespace(filename=single or SimpleNamespace(**named))
    for name, template in (injectors.get("env") or {}).items():
        out.env[name] = sandbox.from_string(template).render(tower=tower, **namespace)

    def extra(node):
        if isinstance(node, dict):
            return {str(extra(k)): extra(v) for k, v in node.items()}
        if isinstance(node, list):
            return [extra(v) for v in node]
        return sandbox.from_string(node).render(tower=tower, **namespace)
    out.extra_vars = extra(injectors.get("extra_vars") or {})
    return out


def inject_kubernetes_bearer_token(host: str, bearer_token: str, ssl_ca_cert: str | None,
                                   private_data_dir: Path, verify_ssl: bool = True) -> Injected:
    """AWX's built-in Kubernetes (bearer token) credential."""
    out = Injected()
    out.env = {"K8S_AUTH_HOST": host, "K8S_AUTH_API_KEY": bearer_token}
    if verify_ssl and ssl_ca_cert:
        env_dir = private_data_dir / "env"
        env_dir.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(fd, "w") as f:
            f.write(ssl_ca_cert)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        out.files.append(Path(path))
        out.env.update({"K8S_AUTH_VERIFY_SSL": "True", "K8S_AUTH_SSL_CA_CERT": path})
    else:
        out.env["K8S_AUTH_VERIFY_SSL"] = "False"
    return out


def _ignore(directory, names):
    return {n for n in names if n in ("__pycache__", "output", ".pytest_cache") or n.endswith(".pyc")}


def private_data_dir(root: Path, *, inventory: dict, group_vars: dict[str, dict] | None = None,
                     credentials: list[Injected] = (), extravars: dict | None = None,
                     cmdline: str = "") -> Path:
    """Lay out a private data directory like AWX's for a job of the kubegate project."""
    pdd = root / "awx_job"
    (pdd / "env").mkdir(parents=True, exist_ok=True)
    project = pdd / "project"
    project.mkdir()
    for part in PROJECT_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, project / part, ignore=_ignore, symlinks=True)
        else:
            shutil.copy2(src, project / part)
    (pdd / "requirements_collections").mkdir()
    inv = pdd / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    for group, values in (group_vars or {}).items():
        (inv / "group_vars" / ("%s.yml" % group)).write_text(yaml.safe_dump(values, sort_keys=False))
    env = {
        # as AWX computes it: its requirements_collections, the project's collections_path(s) from its ansible.cfg,
        # then the image's defaults (relative entries resolve against the job's working directory, the project)
        "ANSIBLE_COLLECTIONS_PATH": ":".join([str(pdd / "requirements_collections"), "./collections",
                                              "~/.ansible/collections", "/usr/share/ansible/collections"]),
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "AWX_HOST": "https://awx.example.invalid",
        "JOB_ID": "1",
        "PYTHONUNBUFFERED": "1",
    }
    extra = dict(extravars or {})
    for cred in credentials:
        env.update(cred.env)
        extra.update(cred.extra_vars)
    (pdd / "env" / "envvars").write_text(yaml.safe_dump(env))
    (pdd / "env" / "extravars").write_text(yaml.safe_dump(extra))
    if cmdline:
        (pdd / "env" / "cmdline").write_text(cmdline)
    return pdd


class Job:
    """The outcome of one runner job: status, rc, events, stats and the artifact directory."""

    def __init__(self, pdd: Path, runner):
        self.pdd = pdd
        self.status = runner.status
        self.rc = runner.rc
        self.events = list(runner.events)
        self.stats = runner.stats or {}
        self.artifacts = pdd / "artifacts" / runner.config.ident
        self.stdout = (self.artifacts / "stdout").read_text() if (self.artifacts / "stdout").exists() else ""

    def host_events(self, event: str, host: str | None = None) -> list[dict]:
        return [e for e in self.events if e.get("event") == event
                and (host is None or (e.get("event_data") or {}).get("host") == host)]

    def task_result(self, task: str, host: str) -> dict:
        """`host`'s own result of `task`: its event, or its entry in a fan-out task's results_by_host (a run_once
        fan-out task reports once, on the host that ran it, for every host)."""
        found = []
        for e in self.host_events("runner_on_ok"):
            data = e["event_data"]
            if data.get("task") != task:
                continue
            own = (data["res"].get("results_by_host") or {}).get(host)
            if own is not None:
                found.append(own)
            elif data.get("host") == host:
                found.append(data["res"])
        if not found:
            raise AssertionError("no runner_on_ok for %r on %s; stdout:\n%s" % (task, host, self.stdout[-4000:]))
        return found[-1]

    def ok_tasks(self, host: str) -> list[str]:
        return [e["event_data"]["task"] for e in self.host_events("runner_on_ok", host)]

    def hosts_seen(self) -> set[str]:
        return {(e.get("event_data") or {}).get("host") for e in self.events if (e.get("event_data") or {}).get("host")}

    def files_containing(self, needles: list[str], exclude: list[Path] = ()) -> list[str]:
        """Every file of the private data directory (artifacts included) holding one of `needles`."""
        excluded = {p.resolve() for p in exclude}
        hits = []
        for path in sorted(self.pdd.rglob("*")):
            if not path.is_file() or path.resolve() in excluded:
                continue
            data = path.read_bytes()
            if any(n.encode() in data for n in needles):
                hits.append(str(path.relative_to(self.pdd)))
        return hits

    def events_text(self) -> str:
        return "\n".join(json.dumps(e, sort_keys=True) for e in self.events)


def run(pdd: Path, playbook: str, ident: str = "1") -> Job:
    import ansible_runner
    runner = ansible_runner.run(private_data_dir=str(pdd), playbook=playbook, ident=ident, quiet=True)
    return Job(pdd, runner)

"""The AWX configuration data (awx/*.yml) against the repository. Most checks here are static — they read files:
templates name playbooks that exist and mention their survey variables, schedules name templates and tenants that
exist, the credential type declares only file injectors (that those injectors really hand the job files and nothing
else, and that the jobs run, is proven by test_awx_runner.py with ansible-runner against the lab). One is behaviour:
the reload template's default limit selects no host of any tenant inventory AWX imports, asked of ansible-inventory
exactly as the job's --limit would be. No lab."""
from __future__ import annotations

import json
import re
import subprocess

import yaml

import awxjob
from kgtest import REPO, repo_env

AWX = REPO / "awx"


def data():
    return yaml.safe_load((AWX / "job-templates.yml").read_text())


def test_static_job_templates_name_existing_playbooks_that_mention_each_survey_variable():
    d = data()
    names = [t["name"] for t in d["kubegate_awx_job_templates"]]
    assert len(names) == len(set(names))
    playbooks = {t["name"]: t["playbook"] for t in d["kubegate_awx_job_templates"]}
    assert {"playbooks/reload-ingress.yml", "playbooks/health.yml", "playbooks/drift-check.yml"} <= set(
        playbooks.values())
    for template in d["kubegate_awx_job_templates"]:
        playbook = REPO / template["playbook"]
        assert playbook.is_file(), template["playbook"]
        text = playbook.read_text()
        for question in (template.get("survey_spec") or {}).get("spec", []):
            assert re.search(r"\b%s\b" % re.escape(question["variable"]), text), \
                "%s: survey variable %s is not used by %s" % (template["name"], question["variable"], playbook.name)
            if question["type"] == "multiplechoice":
                assert question["default"] in question["choices"]
            if question["type"] == "integer":
                assert question["min"] <= question["default"] <= question["max"]
    drift = next(t for t in d["kubegate_awx_job_templates"] if t["playbook"] == "playbooks/drift-check.yml")
    assert drift["job_type"] == "check" and drift["diff_mode"] is True


def hosts_selected(source: str, limit: str) -> list[str]:
    """The hosts `--limit limit` selects from an inventory source, as ansible-inventory (the job's view) reports."""
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", str(REPO / source), "--limit",
                           limit, "--list"], capture_output=True, text=True, timeout=120, env=repo_env(),
                          cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    return sorted(json.loads(proc.stdout).get("_meta", {}).get("hostvars", {}))


def test_reload_template_default_limit_selects_no_host_of_any_tenant_inventory():
    d = data()
    reload = next(t for t in d["kubegate_awx_job_templates"] if t["playbook"] == "playbooks/reload-ingress.yml")
    assert {**d["kubegate_awx_job_template_defaults"], **reload}["ask_limit_on_launch"] is True
    placeholder = reload["limit"]
    assert placeholder
    for tenant in d["kubegate_awx_tenants"]:
        # the same inventory does select hosts (so an empty answer means the limit, not a broken source)
        assert hosts_selected(tenant["source_path"], "all"), tenant["source_path"]
        assert hosts_selected(tenant["source_path"], placeholder) == [], (tenant["source_path"], placeholder)


def test_static_schedules_and_tenants_name_existing_templates_tenants_and_files():
    d = data()
    templates = {t["name"] for t in d["kubegate_awx_job_templates"]}
    tenants = {t["name"]: t for t in d["kubegate_awx_tenants"]}
    for tenant in tenants.values():
        assert (REPO / tenant["source_path"]).is_file(), tenant["source_path"]
        assert (REPO / "inventories" / tenant["name"]).is_dir()
        assert tenant["credentials"]
    for schedule in d["kubegate_awx_schedules"]:
        assert schedule["job_template"] in templates and schedule["tenant"] in tenants
        assert re.match(r"^DTSTART:\d{8}T\d{6}Z RRULE:FREQ=\w+;INTERVAL=\d+", schedule["rrule"])
    assert {s["tenant"] for s in d["kubegate_awx_schedules"]} == set(tenants)


def test_static_credential_type_declares_only_file_injectors():
    ct = awxjob.credential_type()
    fields = {f["id"]: f for f in ct["inputs"]["fields"]}
    assert set(ct["inputs"]["required"]) <= set(fields)
    injectors = ct["injectors"]
    assert not injectors.get("extra_vars")
    used_in_files = set()
    for label, template in injectors["file"].items():
        assert label.startswith("template.")
        used_in_files |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", template))
        # every file is handed to the job by an environment variable naming it
        assert any("tower.filename.%s" % label.split(".", 1)[1] in t for t in injectors["env"].values()), label
    assert used_in_files == set(fields), "every input reaches the job, each through a file"
    for name, template in injectors["env"].items():
        values = set(re.findall(r"\{\{\s*([\w.]+)\s*\}\}", template))
        assert all(v.startswith("tower.filename.") for v in values), (name, template)
    assert all(fields[f].get("secret") for f in ("kubeconfig", "jump_ssh_key"))
    natural = ct["natural_key"]
    assert natural == {"name": ct["name"], "kind": ct["kind"], "type": "credential_type"}

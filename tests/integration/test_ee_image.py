"""The execution environment for real: `make ee` builds kubegate-ee:0.1.0 with podman and ansible-builder
(execution-environment.yml, base image from ee/base-image.sh), then AWX-shaped jobs run INSIDE that image through
ansible-runner's process isolation (podman), with the "kubegate clusters" credential type's injected files — the
closest local stand-in for an AWX job on a container-based execution node.

AWX hands the container the private data directory mounted at /runner and rewrites the injected file paths to that
mount (`containerize` does the same). AWX's own podman job options are `--user=root` (its podman runs rootless as the
awx user, who owns the private data directory with the 0600 credential files, and is root inside the container);
the same options are used here, plus the host network so that the job reaches the lab's apiservers on 127.0.0.x.
Run with `make ee-test` (builds the image first; cold about 6 minutes, see docs/awx.md "Execution environment")."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

import awxjob
from kgplay import no_traceback
from kgtest import REPO
from test_awx_runner import AWX_META, RELOAD, RELOAD_TASKS, SURVEY, lab_group_vars, lab_kubeconfig, secrets, \
    tenant_inventory

IMAGE = os.environ.get("KUBEGATE_EE_IMAGE", "localhost/kubegate-ee:0.1.0")
CONTAINERS_CONF = REPO / "ee" / "containers.conf"
MOUNT = "/runner"        # where ansible-runner mounts the private data directory in the container
IMAGE_UID = 1000         # options.user of ansible-builder: what the image runs as unless told otherwise


def _engine(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)})


@pytest.fixture(scope="module")
def image() -> str:
    """The built image (`make ee` builds it; cached by podman's layers and ee/base-image.sh)."""
    if os.environ.get("KUBEGATE_EE_IMAGE") is None:
        proc = subprocess.run(["make", "--no-print-directory", "ee"], cwd=str(REPO), capture_output=True, text=True,
                              timeout=1800)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    proc = _engine("image", "exists", IMAGE)
    assert proc.returncode == 0, f"image {IMAGE} not built (make ee): {proc.stderr}"
    return IMAGE


@pytest.fixture(autouse=True)
def job_environment(monkeypatch, tmp_path):
    """Only what the job defines: no kubeconfig / K8S_AUTH_* / ANSIBLE_* of the machine running the tests."""
    for name in list(os.environ):
        if name == "KUBECONFIG" or name.startswith(("K8S_AUTH_", "KUBEGATE_", "ANSIBLE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONTAINERS_CONF", str(CONTAINERS_CONF))


def containerize(pdd: Path) -> None:
    """What AWX does for a containerized job: injected paths point into the container's /runner mount."""
    envvars = pdd / "env" / "envvars"
    env = yaml.safe_load(envvars.read_text())
    env = {k: v.replace(str(pdd), MOUNT) if isinstance(v, str) else v for k, v in env.items()}
    envvars.write_text(yaml.safe_dump(env))


def run_in_image(pdd: Path, image: str, playbook: str, ident: str = "1") -> awxjob.Job:
    import ansible_runner
    containerize(pdd)
    runner = ansible_runner.run(private_data_dir=str(pdd), playbook=playbook, ident=ident, quiet=True,
                                process_isolation=True, process_isolation_executable="podman",
                                container_image=image, container_options=["--user=root", "--network=host"])
    return awxjob.Job(pdd, runner)


@pytest.fixture
def credential(lab) -> dict:
    edge = lab.desc["edge"]
    return {"kubeconfig": lab_kubeconfig(lab), "jump_ssh_key": Path(edge["key_file"]).read_text(),
            "jump_known_hosts": Path(edge["known_hosts"]).read_text()}


def test_image_contents(image):
    probe = ("import ansible.release, platform, jmespath, paramiko; "
             "print(ansible.release.__version__, platform.python_version())")
    proc = _engine("run", "--rm", image, "python3", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    core, python = proc.stdout.split()
    pin = yaml.safe_load((REPO / "execution-environment.yml").read_text())["dependencies"]["ansible_core"]["package_pip"]
    assert pin == f"ansible-core=={core}" and core.startswith("2.21.")
    assert python.startswith("3.13.")
    proc = _engine("run", "--rm", image, "bash", "-c",
                   "id -u && nginx -v 2>&1 && ssh -V 2>&1 && ansible-runner --version && "
                   "ansible-doc -t inventory kubegate.multicluster.clusters | head -n1")
    assert proc.returncode == 0, proc.stderr
    uid, nginx, ssh, runner, doc = proc.stdout.splitlines()[:5]
    assert uid == str(IMAGE_UID) and nginx.startswith("nginx version") and ssh.startswith("OpenSSH")
    assert runner.startswith("2.4.") and "kubegate.multicluster.clusters" in doc


def test_reload_job_inside_the_image_with_the_injected_credential(lab, tmp_path, image, credential):
    lab.kubectl("cluster-b", "delete", "configmap", "-n", "ingress-nginx", "kubegate-nginx-map",
                "kubegate-nginx-map-previous", "--ignore-not-found")
    cred = awxjob.inject(awxjob.credential_type(), credential, tmp_path / "awx_job")
    pdd = awxjob.private_data_dir(tmp_path, inventory=tenant_inventory(lab), group_vars=lab_group_vars(),
                                  credentials=[cred], extravars={**SURVEY, **AWX_META},
                                  cmdline="--limit cluster-b --diff")
    job = run_in_image(pdd, image, RELOAD)
    assert job.status == "successful" and job.rc == 0, job.stdout[-4000:]
    # it ran in the image: runner's record of the command is a podman run of it, with the credential file inside /runner
    command = yaml.safe_load((job.artifacts / "command").read_text())
    argv = command["command"]
    assert argv[:2] == ["podman", "run"] and image in argv and "ansible-playbook" in argv, argv
    assert command["env"]["KUBECONFIG"] == f"{MOUNT}/env/{Path(cred.env['KUBECONFIG']).name}"
    ok = job.ok_tasks("cluster-b")
    assert [t for t in RELOAD_TASKS if t not in ok] == [], ok
    assert job.hosts_seen() == {"cluster-b"} and job.stats["failures"] == {} and job.stats["dark"] == {}
    pods = lab.ingress_pods("cluster-b")
    reload = job.task_result("Reload nginx pod by pod", "cluster-b")
    assert [r["pod"] for r in reload["results"]] == pods and all(r["rc"] == 0 for r in reload["results"])
    # what the cluster now serves is what the job applied
    cm = lab.get_json("cluster-b", "get", "configmap", "-n", "ingress-nginx", "kubegate-nginx-map")
    assert '"v2" "canary";' in cm["data"]["kubegate-map.conf"]
    needles = secrets(lab)
    assert not any(s in job.stdout or s in job.events_text() for s in needles)
    assert job.files_containing(needles, exclude=cred.files) == []
    assert no_traceback(job.stdout)


def test_the_images_own_collection_and_interpreter_serve_a_job(lab, tmp_path, image, credential):
    """Without the project's embedded collection the job uses the image's copy (/usr/share/ansible/collections):
    the apiserver sees the credential's identity, and the job ran on the image's ansible-core and Python."""
    cred = awxjob.inject(awxjob.credential_type(), {"kubeconfig": credential["kubeconfig"]}, tmp_path / "awx_job")
    pdd = awxjob.private_data_dir(tmp_path, inventory=tenant_inventory(lab), credentials=[cred],
                                  cmdline="--limit cluster-a")
    subprocess.run(["rm", "-rf", str(pdd / "project" / "collections")], check=True)
    (pdd / "project" / "probe.yml").write_text(yaml.safe_dump([{
        "name": "probe", "hosts": "all", "gather_facts": False,
        "module_defaults": {"group/kubegate.multicluster.cluster": {"context": "{{ kubegate_context }}"}},
        "tasks": [
            {"name": "whoami", "kubegate.multicluster.api_request": {
                "method": "POST", "path": "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                "body": {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}}},
            {"name": "where", "ansible.builtin.debug": {
                "msg": "{{ ansible_version.full }} {{ ansible_playbook_python }} "
                       "{{ lookup('ansible.builtin.pipe', 'ansible-galaxy collection list kubegate.multicluster "
                       "--format json') | from_json | list | first }}"}}]}], sort_keys=False))
    job = run_in_image(pdd, image, "probe.yml")
    assert job.status == "successful", job.stdout[-4000:]
    user = job.task_result("whoami", "cluster-a")["json"]["status"]["userInfo"]["username"]
    assert user == "kubegate-lab-admin" or user.endswith(":kubegate-lab-admin"), user
    core, python, collections = job.task_result("where", "cluster-a")["msg"].split()
    assert core.startswith("2.21.") and python == "/usr/bin/python3"
    assert collections == "/usr/share/ansible/collections/ansible_collections"

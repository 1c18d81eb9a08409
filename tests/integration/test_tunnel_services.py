"""Role ssh_tunnel on real systemd hosts (lab/labctl.py hosts-up): kg-tunnel (root network namespace, the platform's
tunnel host) runs kubegate-tunnel@cluster-c through kg-jump (a jump host in the edge namespace the role prepares),
and kubegate-tunnel@cluster-c-edge through the lab's pre-provisioned edge sshd. cluster-c is reached through the
tunnel with TLS verified: api_request, pod_exec and the reload playbook; faults: a killed ssh process, sshd stopped on
the jump host, a changed host key; check mode, idempotence, drift, bad definitions.

The tests of this module run in order on the same hosts (fresh at the start and again at the end)."""
from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kgplay import no_traceback, run_playbook, wait_for
from kgtest import REPO

sys.path.insert(0, str(REPO / "lab"))
from kglab import hosts as kghosts  # noqa: E402

PORT = 16444          # kubegate-tunnel@cluster-c (molecule's scenario uses 16443)
EDGE_PORT = 16445     # kubegate-tunnel@cluster-c-edge
UNIT = "kubegate-tunnel@cluster-c.service"
DESC = "kubegate-tunnel@cluster-c on kg-tunnel"
LABCTL = [sys.executable, str(REPO / "lab" / "labctl.py")]


def fresh_hosts():
    """Pristine test hosts: stop them (if up) and boot fresh copies of the cached root filesystem."""
    for cmd in ("hosts-down", "hosts-up"):
        proc = subprocess.run(LABCTL + [cmd], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr


class Env:
    def __init__(self, lab, inventory):
        self.lab = lab
        self.inventory = inventory
        self.hosts = json.loads(kghosts.DESCRIPTION.read_text())["hosts"]
        c = lab.clusters["cluster-c"]
        self.ca = c["ca_file"]
        self.api_host, port = c["server"].split("://", 1)[1].rsplit(":", 1)
        self.api_port = int(port)


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    fresh_hosts()
    inv = yaml.safe_load(kghosts.INVENTORY.read_text())
    c = lab.clusters["cluster-c"]
    inv["all"]["children"]["clusters"] = {"hosts": {"cluster-c": {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "kubegate_kubeconfig": lab.desc["kubeconfig"], "kubegate_context": "cluster-c", "kubegate_ca_cert": c["ca_file"],
        "kubegate_host": c["server"]}}}
    path = tmp_path_factory.mktemp("tunnel-inventory") / "inventory.yml"
    path.write_text(yaml.safe_dump(inv))
    yield Env(lab, path)
    fresh_hosts()


def tunnels(env, **override):
    jump = env.hosts["kg-jump"]
    edge = env.lab.desc["edge"]
    edge_key = " ".join(Path(edge["known_hosts"]).read_text().split()[1:3])
    out = [
        {"name": "cluster-c", "apiserver_host": env.api_host, "apiserver_port": env.api_port, "local_port": PORT,
         "jump_host": jump["ssh_host"], "jump_port": jump["ssh_port"], "jump_host_keys": [jump["host_key"]],
         "jump_inventory_host": "kg-jump", "prepare_jump": True},
        # the lab's edge sshd: a jump host provisioned by someone else (user and key exist; no preparation)
        {"name": "cluster-c-edge", "apiserver_host": env.api_host, "apiserver_port": env.api_port,
         "local_port": EDGE_PORT, "jump_host": edge["host"], "jump_port": edge["port"], "jump_user": edge["user"],
         "jump_host_keys": [edge_key], "private_key": "{{ lookup('ansible.builtin.file', '%s') }}" % edge["key_file"],
         "tls_server_name": "cluster-c", "ca_cert": env.ca, "inventory_host": "none"},
    ]
    out[0].update(override)
    return out


def converge_play(env, **role_vars):
    role_vars.setdefault("ssh_tunnel_clusters", tunnels(env))
    return [
        {"name": "Tunnels", "hosts": "tunnel_hosts", "gather_facts": False,
         "roles": [{"role": "ssh_tunnel", "vars": role_vars}]},
        {"name": "Use the published connection settings", "hosts": "clusters", "gather_facts": False,
         "module_defaults": {"group/kubegate.multicluster.cluster": {
             "kubeconfig": "{{ kubegate_kubeconfig }}", "context": "{{ kubegate_context }}",
             "host": "{{ kubegate_host }}", "ca_cert": "{{ kubegate_ca_cert }}",
             "tls_server_name": "{{ kubegate_tls_server_name | default(omit) }}",
             "tunnel": "{{ kubegate_tunnel | default(omit) }}"}},
         "tasks": [{"name": "published", "ansible.builtin.debug": {
             "msg": "{{ {'host': kubegate_host, 'tls': kubegate_tls_server_name | default(''), "
                    "'tunnel': kubegate_tunnel | default('')} }}"}},
                   {"name": "version", "kubegate.multicluster.api_request": {"path": "/version"},
                    "when": "not ansible_check_mode"}]},
    ]


def play(env, tmp_path, plays, *args, **kw):
    return run_playbook(tmp_path, plays, *args, inventory=env.inventory, **kw)


def changed_tasks(run):
    return [(r["host"], r["task"]) for r in run.records if r["status"] == "ok" and r["result"].get("changed")]


def changed(run, fragment, host="kg-tunnel"):
    return any(h == host and fragment in t for h, t in changed_tasks(run))


def records(run, fragment, host="kg-tunnel"):
    return [r for r in run.records if fragment in r["task"] and r["host"] == host]


def sh(host, script, **kw):
    return kghosts.run_in(host, ["sh", "-c", script], **kw)


def unit_props(*props, unit=UNIT):
    out = kghosts.run_in("kg-tunnel", ["systemctl", "show", unit] + ["--property=" + p for p in props]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def readyz(port=PORT, ca=None):
    """GET /readyz through the tunnel's local end with TLS verified (the cluster CA, server name cluster-c)."""
    ctx = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            with ctx.wrap_socket(raw, server_hostname="cluster-c") as tls:
                tls.sendall(b"GET /readyz HTTP/1.1\r\nHost: cluster-c\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        return data.startswith(b"HTTP/1.1 200") and data.rstrip().endswith(b"ok")
    except (OSError, ssl.SSLError):
        return False


def api_tasks(env, **conn):
    base = {"kubeconfig": env.lab.desc["kubeconfig"], "context": "cluster-c", "host": "https://127.0.0.1:%d" % PORT,
            "ca_cert": env.ca, "tls_server_name": "cluster-c", "tunnel": DESC}
    base.update(conn)
    return [{"name": "through the tunnel", "hosts": "cluster-c", "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": base},
             "tasks": [{"name": "version", "kubegate.multicluster.api_request": {"path": "/version"},
                        "ignore_errors": True},
                       {"name": "exec", "kubegate.multicluster.pod_exec": {
                           "namespace": "ingress-nginx", "label_selector": "app.kubernetes.io/name=ingress-nginx",
                           "command": ["nginx", "-t"], "read_only": True}, "ignore_errors": True}]}]


# ---------------------------------------------------------------------------------------------------------------------
def test_check_mode_on_fresh_hosts_changes_nothing(env, tmp_path):
    run = play(env, tmp_path, converge_play(env), "--check", "--diff")
    assert run.rc == 0, run.output[-4000:]
    assert changed(run, "Write the tunnel settings")   # it says what it would do
    assert sh("kg-tunnel", "test -e /etc/kubegate || test -e /etc/systemd/system/kubegate-tunnel@.service || "
                           "getent passwd kubegate-tunnel").returncode != 0
    assert sh("kg-jump", "getent passwd kubegate-tunnel || test -e /var/lib/kubegate-tunnel").returncode != 0


def test_binding_beyond_loopback_needs_the_dangerous_switch_and_warns(env, tmp_path):
    wide = tunnels(env, bind_address="0.0.0.0")
    refused = play(env, tmp_path, converge_play(env, ssh_tunnel_clusters=wide), "--check")
    assert refused.rc != 0 and "Set ssh_tunnel_dangerous_bind_non_loopback: true" in refused.output, refused.output[-3000:]
    warned = play(env, tmp_path, converge_play(env, ssh_tunnel_clusters=wide,
                                               ssh_tunnel_dangerous_bind_non_loopback=True), "--check")
    assert warned.rc == 0, warned.output[-3000:]
    assert "[WARNING]: dangerous: kubegate-tunnel@cluster-c on kg-tunnel listens on" in " ".join(warned.output.split())
    assert sh("kg-tunnel", "test -e /etc/systemd/system/kubegate-tunnel@.service").returncode != 0


def test_converge_proves_the_tunnel_publishes_settings_and_is_idempotent(env, tmp_path):
    run = play(env, tmp_path, converge_play(env))
    assert run.rc == 0, run.output[-5000:]
    proofs = records(run, "GET /readyz through the tunnel with TLS verified")
    assert len(proofs) == 2 and all(r["status"] == "ok" for r in proofs), proofs
    published = run.result("published", "cluster-c")["msg"]
    assert published == {"host": "https://127.0.0.1:%d" % PORT, "tls": "cluster-c", "tunnel": DESC}
    assert run.result("version", "cluster-c")["json"]["gitVersion"].startswith("v1.")
    edge_key = Path(env.lab.desc["edge"]["key_file"]).read_text().splitlines()[1]
    assert edge_key not in run.output

    for unit, port in ((UNIT, PORT), ("kubegate-tunnel@cluster-c-edge.service", EDGE_PORT)):
        props = unit_props("ActiveState", "UnitFileState", "User", "Restart", "MainPID", unit=unit)
        assert props["ActiveState"] == "active" and props["UnitFileState"] == "enabled", props
        assert props["User"] == "kubegate-tunnel" and props["Restart"] == "always"
        assert kghosts.run_in("kg-tunnel", ["ps", "-o", "user=", "-p", props["MainPID"]]).stdout.strip() == \
            "kubegate-tunnel"
        assert readyz(port, env.ca)
    listen = kghosts.run_in("kg-tunnel", ["ss", "-Hltn", "sport = :%d" % PORT]).stdout.split()
    assert listen[3] == "127.0.0.1:%d" % PORT                 # loopback only
    assert sh("kg-tunnel", "stat -c '%U %a' /etc/kubegate/tunnels/cluster-c.key").stdout.strip() == \
        "kubegate-tunnel 600"
    authorized = sh("kg-jump", "cat /var/lib/kubegate-tunnel/.ssh/authorized_keys").stdout.splitlines()
    assert len(authorized) == 1 and authorized[0].startswith(
        'restrict,port-forwarding,permitopen="%s:%d",command="/bin/false" ssh-ed25519 ' % (env.api_host, env.api_port))
    assert authorized[0].endswith(" kubegate-tunnel kg-tunnel/cluster-c")

    again = play(env, tmp_path, converge_play(env))
    assert again.rc == 0 and changed_tasks(again) == [], changed_tasks(again)
    check = play(env, tmp_path, converge_play(env), "--check", "--diff")
    assert check.rc == 0 and changed_tasks(check) == [], changed_tasks(check)


def test_the_jump_key_may_only_forward_to_the_apiserver(env):
    """The key authorized on kg-jump opens no shell and forwards nowhere but cluster-c's apiserver."""
    jump = env.hosts["kg-jump"]
    key = "/etc/kubegate/tunnels/cluster-c.key"
    base = ["ssh", "-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/etc/kubegate/tunnels/cluster-c.known_hosts",
            "-p", str(jump["ssh_port"])]
    dest = "kubegate-tunnel@" + jump["ssh_host"]
    shell = kghosts.run_in("kg-tunnel", base + [dest, "id"], input="", timeout=30)
    assert shell.returncode != 0 and "uid=" not in shell.stdout
    elsewhere = kghosts.run_in("kg-tunnel", base + ["-W", "%s:22" % jump["ssh_host"], dest], input="", timeout=30)
    assert elsewhere.returncode != 0 and "SSH-" not in elsewhere.stdout
    assert "prohibited" in elsewhere.stderr, elsewhere.stderr


def test_drift_check_is_read_only_and_names_the_difference(env, tmp_path):
    drift_play = [{"name": "Drift", "hosts": "tunnel_hosts", "gather_facts": False, "tasks": [
        {"name": "drift", "ansible.builtin.include_role": {"name": "ssh_tunnel", "tasks_from": "drift"},
         "vars": {"ssh_tunnel_clusters": tunnels(env)}},
        {"name": "report", "ansible.builtin.debug": {"var": "kubegate_tunnel_drift"}}]}]
    run = play(env, tmp_path, drift_play)
    assert run.rc == 0, run.output[-3000:]
    report = {d["cluster"]: d for d in run.result("report", "kg-tunnel")["kubegate_tunnel_drift"]}
    assert report["cluster-c"] == {"cluster": "cluster-c", "in_sync": True, "diff": "", "active": True}
    assert report["cluster-c-edge"]["in_sync"] and report["cluster-c-edge"]["active"]

    f = "/etc/kubegate/tunnels/cluster-c.env"     # rewritten in place: same owner and mode, only the content drifts
    sh("kg-tunnel", "sed s/ALIVE_INTERVAL=15/ALIVE_INTERVAL=99/ %s > /tmp/env && cat /tmp/env > %s" % (f, f), check=True)
    run = play(env, tmp_path, drift_play)
    report = {d["cluster"]: d for d in run.result("report", "kg-tunnel")["kubegate_tunnel_drift"]}
    assert report["cluster-c"]["in_sync"] is False and report["cluster-c"]["active"] is True
    assert report["cluster-c"]["diff"].splitlines() == [
        "--- /etc/kubegate/tunnels/cluster-c.env", "-KUBEGATE_TUNNEL_ALIVE_INTERVAL=99",
        "+KUBEGATE_TUNNEL_ALIVE_INTERVAL=15"]
    assert report["cluster-c-edge"]["in_sync"] is True
    assert changed_tasks(run) == []
    assert "ALIVE_INTERVAL=99" in sh("kg-tunnel", "cat /etc/kubegate/tunnels/cluster-c.env").stdout   # untouched

    fix = play(env, tmp_path, converge_play(env))
    assert fix.rc == 0 and changed(fix, "Start and enable the tunnel")
    assert "ALIVE_INTERVAL=15" in sh("kg-tunnel", "cat /etc/kubegate/tunnels/cluster-c.env").stdout


def test_api_exec_and_reload_playbook_through_the_tunnel(env, tmp_path):
    run = play(env, tmp_path, api_tasks(env))
    assert run.result("version", "cluster-c")["json"]["gitVersion"].startswith("v1."), run.output[-3000:]
    assert all(r["rc"] == 0 for r in run.result("exec", "cluster-c")["results"])

    env.lab.kubectl("cluster-c", "delete", "configmap", "-n", "ingress-nginx", "kubegate-nginx-map",
                    "kubegate-nginx-map-previous", "--ignore-not-found")
    extra = tmp_path / "tunnel-vars.json"
    extra.write_text(json.dumps({"kubegate_host": "https://127.0.0.1:%d" % PORT, "kubegate_tls_server_name": "cluster-c",
                                 "kubegate_tunnel": DESC, "kubegate_jump": None}))
    # the lab inventory's cluster-c and the committed routing rules (group_vars), with the connection variables
    # pointing at the tunnel service instead of the lab's ssh_jump
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "group_vars").symlink_to(REPO / "inventories" / "lab" / "group_vars")
    c = env.lab.clusters["cluster-c"]
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "children": {c["tenant"]: {"hosts": {"cluster-c": {
            "kubegate_tenant": c["tenant"], "kubegate_kubeconfig": env.lab.desc["kubeconfig"],
            "kubegate_context": "cluster-c", "kubegate_ca_cert": env.ca, "kubegate_host": c["server"],
            "kubegate_jump": {k: v for k, v in env.lab.desc["edge"].items() if k != "netns"}}}}}}}))
    reload = run_playbook(tmp_path, (REPO / "playbooks" / "reload-ingress.yml").read_text(), "-l", "cluster-c",
                          "-e", "@%s" % extra, inventory=inv, playbook_name="reload-ingress.yml")
    assert reload.rc == 0, reload.output[-4000:]
    assert "routing check(s) passed" in reload.result("Summary", "cluster-c")["msg"]


def test_killed_ssh_process_is_restarted_and_calls_succeed_again(env, tmp_path):
    before = unit_props("MainPID", "NRestarts")
    assert readyz(PORT, env.ca)
    started = time.monotonic()
    kghosts.run_in("kg-tunnel", ["kill", "-9", before["MainPID"]], check=True)
    assert wait_for(lambda: readyz(PORT, env.ca), timeout=30, interval=0.05)
    recovery = time.monotonic() - started
    print("\nkubegate-tunnel@cluster-c: ssh killed with SIGKILL, calls succeed again after %.2f s" % recovery)
    after = unit_props("MainPID", "NRestarts", "ActiveState")
    assert after["MainPID"] != before["MainPID"] and after["ActiveState"] == "active"
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    run = play(env, tmp_path, api_tasks(env))
    assert run.result("version", "cluster-c")["json"]["gitVersion"].startswith("v1.")


def test_sshd_stopped_on_the_jump_host_unit_retries_and_calls_report_tunnel_down(env, tmp_path):
    sh("kg-jump", "systemctl stop ssh.service", check=True)
    try:
        base = int(unit_props("NRestarts")["NRestarts"])
        # the jump host is gone: the established session dies with it (sshd's session processes keep running after
        # `systemctl stop ssh`, so end the client side the way a lost connection does)
        kghosts.run_in("kg-tunnel", ["systemctl", "kill", "--signal=SIGKILL", UNIT], check=True)
        assert wait_for(lambda: int(unit_props("NRestarts")["NRestarts"]) >= base + 4, timeout=30)
        props = unit_props("ActiveState", "SubState")
        assert props["ActiveState"] != "failed", props              # never gives up
        journal = kghosts.run_in("kg-tunnel", ["journalctl", "-u", UNIT, "-o", "cat", "--no-pager", "-n", "20"]).stdout
        assert "Connection refused" in journal, journal

        run = play(env, tmp_path, api_tasks(env), timeout=120)       # no hang: bounded by connect_timeout/retries
        for task in ("version", "exec"):
            res = run.result(task, "cluster-c")
            assert res["failed"], res
            assert ("tunnel down: %s" % DESC) in res["msg"], res["msg"]
            assert "systemctl status kubegate-tunnel@cluster-c on kg-tunnel" in res["msg"]
        assert no_traceback(run.output)
    finally:
        sh("kg-jump", "systemctl start ssh.service", check=True)
    assert wait_for(lambda: readyz(PORT, env.ca), timeout=30, interval=0.1)


def test_changed_host_key_on_the_jump_host_is_refused(env, tmp_path):
    original = kghosts.DIR / "kg-jump" / "ssh_host_ed25519_key"
    sh("kg-jump", "rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub && "
                  "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && systemctl restart ssh.service",
       check=True)
    try:
        kghosts.run_in("kg-tunnel", ["systemctl", "kill", "--signal=SIGKILL", UNIT], check=True)

        def refused():
            out = kghosts.run_in("kg-tunnel", ["journalctl", "-u", UNIT, "-o", "cat", "--no-pager", "-n", "40"]).stdout
            return "REMOTE HOST IDENTIFICATION HAS CHANGED" in out and "Host key verification failed" in out
        assert wait_for(refused, timeout=30)
        assert not readyz(PORT, env.ca)

        run = play(env, tmp_path, converge_play(env, ssh_tunnel_check_retries=2))
        assert run.rc != 0
        failed = [r for r in records(run, "Report the tunnel that does not get through") if r["status"] == "failed"]
        msg = failed[-1]["result"]["msg"]
        assert "kubegate-tunnel@cluster-c on kg-tunnel does not get through" in msg
        assert "Host key verification failed" in msg and "tunnel down" in msg
        assert no_traceback(run.output)
    finally:
        sh("kg-jump", "cat > /etc/ssh/ssh_host_ed25519_key && chmod 600 /etc/ssh/ssh_host_ed25519_key && "
                      "ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub && "
                      "systemctl restart ssh.service", input=original.read_text(), check=True)
    assert wait_for(lambda: readyz(PORT, env.ca), timeout=30, interval=0.1)


def test_bad_definitions_are_refused_before_anything_changes(env, tmp_path):
    good = tunnels(env)[0]
    cases = {
        "no host key": ({**good, "name": "bad-1", "jump_host_keys": []}, "jump_host_keys must list the jump host"),
        "not a key": ({**good, "name": "bad-2", "jump_host_keys": ["ssh-ed25519 not-base64!"]},
                      "jump_host_keys entry 1 is not an OpenSSH public key"),
        "public bind": ({**good, "name": "bad-3", "bind_address": "0.0.0.0"},
                        "bind_address 0.0.0.0 is not loopback"),
        "bad name": ({**good, "name": "bad/4"}, "name may only contain"),
        "bad port": ({**good, "name": "bad-5", "local_port": 70000}, "local_port must be a port number 1-65535"),
        "no jump inventory host": ({**good, "name": "bad-6", "jump_inventory_host": "nowhere"},
                                   "needs jump_inventory_host"),
        "missing field": ({k: v for k, v in good.items() if k != "jump_host"} | {"name": "bad-7"}, "jump_host"),
    }
    tasks = []
    for name, (tunnel, _) in cases.items():
        tasks.append({"name": "case " + name, "block": [
            {"name": "apply " + name, "ansible.builtin.include_role": {"name": "ssh_tunnel"},
             "vars": {"ssh_tunnel_clusters": [tunnel]}}],
            "rescue": [{"name": "error " + name, "ansible.builtin.debug": {"msg": "{{ ansible_failed_result.msg }}"}}]})
    dup = {"name": "case duplicate", "block": [
        {"name": "apply duplicate", "ansible.builtin.include_role": {"name": "ssh_tunnel"},
         "vars": {"ssh_tunnel_clusters": [{**good, "name": "bad-8"}, {**good, "name": "bad-8", "local_port": 16498}]}}],
        "rescue": [{"name": "error duplicate", "ansible.builtin.debug": {"msg": "{{ ansible_failed_result.msg }}"}}]}
    run = play(env, tmp_path, [{"name": "bad", "hosts": "tunnel_hosts", "gather_facts": False,
                                "tasks": tasks + [dup]}])
    for name, (_, expected) in list(cases.items()) + [("duplicate", (None, "name is listed more than once"))]:
        msg = run.result("error " + name, "kg-tunnel")["msg"]
        assert expected in msg, (name, msg)
    assert no_traceback(run.output)
    listing = sh("kg-tunnel", "ls /etc/kubegate/tunnels; systemctl list-units --all --plain --no-legend "
                              "'kubegate-tunnel@*'").stdout
    assert "bad" not in listing, listing

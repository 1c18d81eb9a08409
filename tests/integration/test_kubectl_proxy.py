"""Role kubectl_proxy on a real systemd host (kg-tunnel: systemd-nspawn sharing the root network namespace, reached
over ssh): one kubectl proxy unit per cluster, loopback only, upstream's Host and exec filters kept, hardened,
credentials only in a 0600 kubeconfig; readiness through the proxy and published connection settings that kubegate's
modules then use; each dangerous variable warns and changes the behaviour; idempotence, check mode, drift and clear
refusals of bad input.

cluster-a: token, direct. cluster-b: client certificate (and a unix socket in one test). cluster-c: through an ssh
tunnel's local end with tls_server_name - in the first test the ssh_tunnel role's service on the same host
(kubegate-tunnel@kproxy-c through the lab's edge sshd, its published kubegate_host feeding the proxy's server), in the
others the session's `ssh -L` forward on the controller (kg-tunnel shares its network namespace).
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kgplay import no_traceback, playbook_connection, run_playbook
from kgtest import LAB, REPO

PROXY_HOST = "kg-tunnel"
HOSTS_INVENTORY = LAB / "hosts" / "inventory" / "hosts.yml"
CLUSTER_INVENTORY = REPO / "inventories" / "lab"
UNIT = "kubegate-kubectl-proxy@%s.service"
CONF = "/etc/kubegate-kubectl-proxy"
USER = "kubegate-kubectl-proxy"
# A lab address of the root network namespace (kgl-svc0): "beyond loopback" without touching a real network.
EXPOSED_ADDRESS = "198.18.1.1"
# The connection mapping of playbooks/reload-ingress.yml: what a user's playbook does with the inventory variables.
CONNECTION = playbook_connection(retries=0)


# ---------------------------------------------------------------------------------------------------------- fixtures
def _hosts_module():
    sys.path.insert(0, str(REPO / "lab"))
    from kglab import hosts  # noqa: E402  (the lab's own module: run_in, healthy)
    return hosts


@pytest.fixture(scope="module")
def host(lab):
    """kg-tunnel, booted if needed (and powered off again at the end if this module booted it)."""
    hosts = _hosts_module()
    was_up = hosts.healthy(PROXY_HOST)
    if not was_up:
        proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(REPO / "lab" / "labctl.py"), "hosts-up"],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert HOSTS_INVENTORY.exists()
    wipe(hosts)
    yield hosts
    wipe(hosts)
    if not was_up:
        subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(REPO / "lab" / "labctl.py"), "hosts-down"],
                       capture_output=True, text=True, timeout=300)


def sh(hosts, command, check=False):
    proc = hosts.run_in(PROXY_HOST, ["sh", "-c", command], timeout=60)
    if check:
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
    return proc


def wipe(hosts):
    """Remove everything the role installs (units, files, user, kubectl), whatever state a test left."""
    sh(hosts, "systemctl disable --now kubegate-tunnel@kproxy-c.service >/dev/null 2>&1;"
              " rm -f /etc/kubegate/tunnels/kproxy-c.*; true")
    sh(hosts, "for u in $(systemctl list-units --all --plain --no-legend 'kubegate-kubectl-proxy@*' | awk '{print $1}');"
              " do systemctl disable --now \"$u\" >/dev/null 2>&1; done;"
              " rm -f /etc/systemd/system/kubegate-kubectl-proxy@.service"
              " /etc/systemd/system/multi-user.target.wants/kubegate-kubectl-proxy@*;"
              " rm -rf /etc/kubegate-kubectl-proxy /usr/local/bin/kubectl; systemctl daemon-reload;"
              " systemctl reset-failed 'kubegate-kubectl-proxy@*' >/dev/null 2>&1;"
              " userdel kubegate-kubectl-proxy >/dev/null 2>&1; groupdel kubegate-kubectl-proxy >/dev/null 2>&1; true")


@pytest.fixture
def clean(host):
    wipe(host)
    yield host
    wipe(host)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ports():
    return {name: free_port() for name in ("cluster-a", "cluster-b", "cluster-c")}


# ----------------------------------------------------------------------------------------------------------- helpers
def lookup(path):
    return "{{ lookup('ansible.builtin.file', '%s') }}" % path


def entry(lab, name, port=None, server=None, cert=False, **kw):
    c = lab.clusters[name]
    e = {"name": name, "server": server or c["server"], "ca_cert": lookup(c["ca_file"])}
    if cert:
        e.update(client_cert=lookup(c["client_cert_file"]), client_key=lookup(c["client_key_file"]))
    else:
        e["token"] = lookup(c["admin_token_file"])
    if port is not None:
        e["port"] = port
    e.update(kw)
    return e


def standard(lab, ports, forward):
    """cluster-a with a token, cluster-b with a client certificate, cluster-c through the ssh tunnel's local end."""
    return [entry(lab, "cluster-a", ports["cluster-a"]),
            entry(lab, "cluster-b", ports["cluster-b"], cert=True),
            entry(lab, "cluster-c", ports["cluster-c"], server=forward, tls_server_name="cluster-c")]


def tunnel_play(lab, local_port):
    """The ssh_tunnel role: kubegate-tunnel@kproxy-c on kg-tunnel through the lab's edge sshd to cluster-c's apiserver;
    it publishes kubegate_host (https://127.0.0.1:<local_port>) and kubegate_tls_server_name for cluster-c."""
    edge, c = lab.desc["edge"], lab.clusters["cluster-c"]
    api_host, api_port = c["server"].split("://", 1)[1].rsplit(":", 1)
    tunnel = {"name": "kproxy-c", "inventory_host": "cluster-c", "tls_server_name": "cluster-c", "ca_cert": c["ca_file"],
              "apiserver_host": api_host, "apiserver_port": int(api_port), "local_port": local_port,
              "jump_host": edge["host"], "jump_port": edge["port"], "jump_user": edge["user"],
              "jump_host_keys": [" ".join(Path(edge["known_hosts"]).read_text().split()[1:3])],
              "private_key": lookup(edge["key_file"]),
              # not prepared (prepare_jump is false: the edge's user and key already exist)
              "jump_inventory_host": "kg-jump"}
    return {"name": "tunnel", "hosts": PROXY_HOST, "gather_facts": False,
            "roles": [{"role": "ssh_tunnel", "vars": {"ssh_tunnel_clusters": [tunnel]}}]}


def proxy_play(lab, clusters, **role_vars):
    return {"name": "kubectl proxies", "hosts": PROXY_HOST, "gather_facts": False,
            "roles": [{"role": "kubectl_proxy", "vars": {"kubectl_proxy_kubectl_src": lab.kubectl_bin,
                                                         "kubectl_proxy_clusters": clusters, **role_vars}}]}


def through_proxy_play(hosts="cluster-a:cluster-b:cluster-c"):
    """What a user's next play does: kubegate modules against the published connection (no credentials given)."""
    return {"name": "through the proxies", "hosts": hosts, "gather_facts": False,
            "module_defaults": {"group/kubegate.multicluster.cluster": CONNECTION},
            "tasks": [
                {"name": "published", "ansible.builtin.debug": {"msg": "{{ kubegate_host }}"}},
                {"name": "version", "kubegate.multicluster.api_request": {"path": "/version"}},
                {"name": "pods", "kubegate.multicluster.api_request": {
                    "path": "/api/v1/namespaces/ingress-nginx/pods"}},
                {"name": "echo", "kubegate.multicluster.service_proxy": {
                    "namespace": "demo", "service": "echo", "port": "http"}},
                {"name": "exec", "kubegate.multicluster.pod_exec": {
                    "namespace": "ingress-nginx", "label_selector": "app.kubernetes.io/name=ingress-nginx",
                    "command": ["nginx", "-t"], "read_only": True}, "ignore_errors": True},
            ]}


def play(tmp_path, plays, *args, **kw):
    return run_playbook(tmp_path, plays, "-i", str(HOSTS_INVENTORY), "-i", str(CLUSTER_INVENTORY), *args, **kw)


def recap(run, host=PROXY_HOST):
    m = re.search(r"^%s\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)" % re.escape(host),
                  run.stdout, re.M)
    assert m, run.output[-3000:]
    return {"ok": int(m.group(1)), "changed": int(m.group(2)), "unreachable": int(m.group(3)),
            "failed": int(m.group(4))}


def http_get(address, port, path, host_header=None, method="GET"):
    conn = http.client.HTTPConnection(address, port, timeout=15)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host_header or "%s:%d" % (address, port))
    conn.endheaders()
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, body


def secrets(lab):
    out = []
    for name, c in lab.clusters.items():
        out.append(open(c["admin_token_file"]).read().strip())
        key = open(c["client_key_file"]).read().strip().splitlines()
        out.append(key[1])
    return out


def assert_no_secret(lab, text):
    for secret in secrets(lab):
        assert secret not in text


def file_state(hosts):
    """The role's files on the host (path, mode, owner, sha) — compared to prove that nothing changed."""
    return sh(hosts, "ls -ln --time-style=+ /etc/systemd/system/kubegate-kubectl-proxy@.service %s 2>&1;"
                     " sha256sum %s/* /etc/systemd/system/kubegate-kubectl-proxy@.service 2>&1;"
                     " getent passwd %s; systemctl list-units --all --plain --no-legend 'kubegate-kubectl-proxy@*'"
                     % (CONF, CONF, USER)).stdout


def exec_path(lab, cluster):
    pod = lab.ingress_pods(cluster)[0]
    return "/api/v1/namespaces/ingress-nginx/pods/%s/exec?command=true&stdout=true" % pod


# ------------------------------------------------------------------------------------------------------------- tests
def test_converge_serves_loopback_refuses_foreign_hosts_and_exec(lab, clean, ports, tmp_path):
    hosts = clean
    tunnel_port = free_port()
    # cluster-c: the proxy's upstream is whatever the ssh_tunnel role published for cluster-c (its local end + TLS name)
    clusters = standard(lab, ports, "{{ hostvars['cluster-c'].kubegate_host }}")
    clusters[2]["tls_server_name"] = "{{ hostvars['cluster-c'].kubegate_tls_server_name }}"
    run = play(tmp_path, [tunnel_play(lab, tunnel_port), proxy_play(lab, clusters), through_proxy_play()], "-vvv")
    assert run.rc == 0, run.output[-5000:]
    kubeconfig = sh(hosts, "python3 -c \"import json; c = json.load(open('%s/cluster-c.kubeconfig'))['clusters'][0]"
                           "['cluster']; print(c['server'], c['tls-server-name'])\"" % CONF, check=True).stdout.split()
    assert kubeconfig == ["https://127.0.0.1:%d" % tunnel_port, "cluster-c"]
    assert not re.search(r"\[WARNING\]: kubectl_proxy_dangerous", run.output)
    assert_no_secret(lab, run.output)
    assert no_traceback(run.output)

    for name, port in ports.items():
        # /version on loopback, straight from the controller (kg-tunnel shares its network namespace)
        status, body = http_get("127.0.0.1", port, "/version")
        assert status == 200 and json.loads(body)["gitVersion"].startswith("v1."), (name, status, body)
        # each proxy reaches its own cluster: the demo echo service names the cluster that served it
        status, body = http_get("127.0.0.1", port, "/api/v1/namespaces/demo/services/echo:http/proxy/")
        assert status == 200 and json.loads(body)["cluster"] == name
        # a foreign Host header is refused by kubectl proxy's accept-hosts (DNS rebinding / XSRF guard)
        assert http_get("127.0.0.1", port, "/version", host_header="evil.example") == (403, b"Forbidden\n")
        # exec (and attach) are refused by its reject-paths: a plain 403, not the apiserver's Status
        assert http_get("127.0.0.1", port, exec_path(lab, name), method="POST") == (403, b"Forbidden\n")
        # loopback only: a non-loopback address of the same host does not answer
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((EXPOSED_ADDRESS, port), timeout=5).close()

        # published for the cluster's inventory host; kubegate's modules use it without any credentials of their own
        assert run.result("published", name)["msg"] == "http://127.0.0.1:%d" % port
        assert run.result("version", name)["json"]["gitVersion"].startswith("v1.")
        pods = run.result("pods", name)["json"]["items"]
        assert len(pods) >= 2
        assert run.result("echo", name)["json"]["cluster"] == name
        # pod_exec through the proxy: the plain 403 is explained as the proxy blocking exec (not as missing RBAC)
        exec_result = run.result("exec", name)
        assert exec_result["failed"]
        assert "refused by the kubectl proxy with a plain 403" in exec_result["msg"], exec_result["msg"]
        assert "kubectl proxy blocks pods/exec and pods/attach by default (--reject-paths)" in exec_result["msg"]

        # the service: enabled, active, unprivileged user, hardened, arguments without credentials or filter overrides
        unit = UNIT % name
        show = dict(line.split("=", 1) for line in sh(hosts, "systemctl show %s -p ActiveState -p UnitFileState -p User"
                                                             " -p NoNewPrivileges -p ProtectSystem -p ProtectHome"
                                                             " -p PrivateTmp -p CapabilityBoundingSet -p Restart"
                                                             " -p RestrictAddressFamilies -p MainPID" % unit,
                                                     check=True).stdout.splitlines())
        assert show["ActiveState"] == "active" and show["UnitFileState"] == "enabled"
        assert show["User"] == USER and show["NoNewPrivileges"] == "yes" and show["ProtectSystem"] == "strict"
        assert show["ProtectHome"] == "yes" and show["PrivateTmp"] == "yes" and show["CapabilityBoundingSet"] == ""
        assert show["Restart"] == "always"
        argv = sh(hosts, "tr '\\0' ' ' </proc/%s/cmdline; echo; ps -o user= -p %s" % (show["MainPID"], show["MainPID"]),
                  check=True).stdout.splitlines()
        assert argv[0].split() == ["/usr/local/bin/kubectl", "proxy", "--kubeconfig=%s/%s.kubeconfig" % (CONF, name),
                                   "--address=127.0.0.1", "--port=%d" % port]
        assert argv[1].strip() == USER
        assert_no_secret(lab, argv[0])
        mode = sh(hosts, "stat -c '%%a %%U %%G' %s/%s.kubeconfig" % (CONF, name), check=True).stdout.split()
        assert mode == ["600", USER, USER]
        assert_no_secret(lab, sh(hosts, "journalctl --no-pager -u %s" % unit).stdout)
    # the user has no login and no home
    assert sh(hosts, "getent passwd %s" % USER, check=True).stdout.strip().endswith(":/nonexistent:/usr/sbin/nologin")


def test_idempotent_and_check_mode_changes_nothing(lab, clean, ports, cluster_c_forward, tmp_path):
    hosts = clean
    clusters = standard(lab, ports, cluster_c_forward)
    # check mode on a pristine host: predicts changes, installs nothing
    before = file_state(hosts)
    run = play(tmp_path, [proxy_play(lab, clusters)], "--check", "--diff")
    assert run.rc == 0, run.output[-5000:]
    assert recap(run)["changed"] > 0
    assert file_state(hosts) == before
    assert sh(hosts, "getent passwd %s" % USER).returncode != 0
    assert_no_secret(lab, run.output)

    first = play(tmp_path, [proxy_play(lab, clusters)])
    assert first.rc == 0 and recap(first)["changed"] > 0, first.output[-5000:]
    second = play(tmp_path, [proxy_play(lab, clusters)])
    assert second.rc == 0 and recap(second) == dict(recap(second), changed=0, failed=0), second.output[-5000:]
    pids = sh(hosts, "systemctl show -p MainPID --value %s" % " ".join(UNIT % n for n in ports)).stdout

    # check mode + diff of a real change (a new port for cluster-a): reported, shown for the arguments, not applied
    converged = file_state(hosts)
    moved = free_port()
    changed = [dict(clusters[0], port=moved)] + clusters[1:]
    run = play(tmp_path, [proxy_play(lab, changed)], "--check", "--diff")
    assert run.rc == 0 and recap(run)["changed"] > 0, run.output[-5000:]
    assert "+KUBEGATE_KUBECTL_PROXY_ARGS='--address=127.0.0.1 --port=%d'" % moved in run.output
    assert_no_secret(lab, run.output)
    assert file_state(hosts) == converged
    assert sh(hosts, "systemctl show -p MainPID --value %s" % " ".join(UNIT % n for n in ports)).stdout == pids
    assert http_get("127.0.0.1", ports["cluster-a"], "/version")[0] == 200
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", moved), timeout=5).close()

    # and applied for real: only cluster-a's proxy restarts, on its new port
    run = play(tmp_path, [proxy_play(lab, changed)])
    assert run.rc == 0, run.output[-5000:]
    assert http_get("127.0.0.1", moved, "/version")[0] == 200
    new_pids = sh(hosts, "systemctl show -p MainPID --value %s" % " ".join(UNIT % n for n in ports)).stdout.split()
    assert new_pids[0] != pids.split()[0] and new_pids[1:] == pids.split()[1:]


def test_dangerous_variables_warn_and_change_behaviour(lab, clean, ports, cluster_c_forward, tmp_path):
    hosts = clean
    clusters = [entry(lab, "cluster-a", ports["cluster-a"])]
    port = ports["cluster-a"]
    cases = {
        "kubectl_proxy_dangerous_address": EXPOSED_ADDRESS,
        "kubectl_proxy_dangerous_accept_hosts": "^*$",
        "kubectl_proxy_dangerous_allow_exec": True,
    }
    # one at a time: each prints its own warning (and only its own) and changes only its own behaviour
    for var, value in cases.items():
        exposed = var == "kubectl_proxy_dangerous_address"
        # (exposed: kubegate's own requests would name the address as Host, which kubectl proxy refuses by default)
        plays = [proxy_play(lab, clusters, **{var: value})] + ([] if exposed else [through_proxy_play("cluster-a")])
        run = play(tmp_path, plays)
        assert run.rc == 0, run.output[-5000:]
        warnings = re.findall(r"\[WARNING\]: (kubectl_proxy_dangerous_\w+)", run.output)
        assert warnings == [var], (var, run.output[-3000:])
        any_host = var == "kubectl_proxy_dangerous_accept_hosts"
        exec_allowed = var == "kubectl_proxy_dangerous_allow_exec"
        if exposed:
            # reachable beyond loopback; kubectl proxy's Host check still applies (localhost names only)
            assert http_get(EXPOSED_ADDRESS, port, "/version", host_header="localhost")[0] == 200
            assert http_get(EXPOSED_ADDRESS, port, "/version")[0] == 403
            assert sh(hosts, "ss -Hltn 'sport = :%d'" % port).stdout.split()[3] == "%s:%d" % (EXPOSED_ADDRESS, port)
        else:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((EXPOSED_ADDRESS, port), timeout=5).close()
            assert http_get("127.0.0.1", port, "/version")[0] == 200
        foreign = http_get("127.0.0.1" if not exposed else EXPOSED_ADDRESS, port, "/version",
                           host_header="evil.example")
        assert foreign[0] == (200 if any_host else 403), (var, foreign)
        if not exposed:
            exec_result = run.result("exec", "cluster-a")
            if exec_allowed:
                assert not exec_result["failed"], exec_result
                assert all(r["rc"] == 0 for r in exec_result["results"])
            else:
                assert "refused by the kubectl proxy with a plain 403" in exec_result["msg"]
        status = http_get("127.0.0.1" if not exposed else EXPOSED_ADDRESS, port, exec_path(lab, "cluster-a"),
                          host_header="localhost", method="POST")
        # allowed: the request reaches the apiserver (which wants a protocol upgrade: 400), else kubectl proxy's 403
        assert status[0] == (400 if exec_allowed else 403), (var, status)

    # back to the defaults: no warning, filters and loopback restored
    run = play(tmp_path, [proxy_play(lab, clusters)])
    assert run.rc == 0 and "kubectl_proxy_dangerous" not in run.output, run.output[-3000:]
    assert http_get("127.0.0.1", port, "/version", host_header="evil.example")[0] == 403
    assert http_get("127.0.0.1", port, exec_path(lab, "cluster-a"), method="POST") == (403, b"Forbidden\n")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((EXPOSED_ADDRESS, port), timeout=5).close()
    assert "--accept-hosts" not in sh(hosts, "cat %s/cluster-a.env" % CONF).stdout


def test_unix_socket(lab, clean, tmp_path):
    hosts = clean
    run = play(tmp_path, [proxy_play(lab, [entry(lab, "cluster-b", cert=True, unix_socket=True)])])
    assert run.rc == 0, run.output[-5000:]
    sock = "/run/kubegate-kubectl-proxy/cluster-b/proxy.sock"
    # kubectl proxy creates its socket with umask 0077, in the unit's 0750 runtime directory
    assert sh(hosts, "stat -c '%%a %%U %%F' %s" % sock, check=True).stdout.split() == ["700", USER, "socket"]
    assert sh(hosts, "stat -c '%%a %%U' %s" % sock.rsplit("/", 1)[0], check=True).stdout.split() == ["750", USER]
    out = sh(hosts, "curl -s --unix-socket %s http://localhost/api/v1/namespaces/demo/services/echo:http/proxy/" % sock,
             check=True).stdout
    assert json.loads(out)["cluster"] == "cluster-b"
    out = sh(hosts, "curl -s -o /dev/null -w '%%{http_code}' -H 'Host: evil.example' --unix-socket %s "
                    "http://localhost/version" % sock).stdout
    assert out == "403"
    # not usable by other users of the host
    assert sh(hosts, "setpriv --reuid=65534 --regid=65534 --clear-groups curl -s --unix-socket %s "
                     "http://localhost/version" % sock).returncode != 0


def test_drift_is_read_only_and_names_what_differs(lab, clean, ports, cluster_c_forward, tmp_path):
    hosts = clean
    clusters = standard(lab, ports, cluster_c_forward)
    assert play(tmp_path, [proxy_play(lab, clusters)]).rc == 0
    drift_play = {"name": "drift", "hosts": PROXY_HOST, "gather_facts": False, "tasks": [
        {"name": "drift check", "ansible.builtin.include_role": {"name": "kubectl_proxy", "tasks_from": "drift"},
         "vars": {"kubectl_proxy_kubectl_src": lab.kubectl_bin, "kubectl_proxy_clusters": clusters}},
        {"name": "report", "ansible.builtin.debug": {"var": "kubegate_kubectl_proxy_drift"}}]}
    run = play(tmp_path, [drift_play])
    assert run.rc == 0 and recap(run)["changed"] == 0, run.output[-5000:]
    report = run.result("report")["kubegate_kubectl_proxy_drift"]
    assert report == [{"cluster": n, "in_sync": True, "diff": [], "active": True} for n in ports]

    # out-of-band changes: a filter override in cluster-a's arguments, a readable kubeconfig, a stopped unit
    sh(hosts, "sed -i \"s/--port=/--accept-hosts=^.*\\$ --port=/\" %s/cluster-a.env; chmod 0644 %s/cluster-a.kubeconfig;"
              " systemctl stop %s" % (CONF, CONF, UNIT % "cluster-b"), check=True)
    tampered = file_state(hosts)
    run = play(tmp_path, [drift_play], "--check")
    assert run.rc == 0 and recap(run)["changed"] == 0, run.output[-5000:]
    report = {r["cluster"]: r for r in run.result("report")["kubegate_kubectl_proxy_drift"]}
    a = report["cluster-a"]
    assert not a["in_sync"] and a["active"]
    assert [d["path"] for d in a["diff"]] == ["%s/cluster-a.env" % CONF, "%s/cluster-a.kubeconfig" % CONF]
    assert "--accept-hosts=^.*$" in a["diff"][0]["before"] and "--accept-hosts" not in a["diff"][0]["after"]
    assert "not shown" in a["diff"][1]["what"] and "before" not in a["diff"][1]
    assert report["cluster-b"] == {"cluster": "cluster-b", "in_sync": True, "diff": [], "active": False}
    assert report["cluster-c"]["in_sync"] and report["cluster-c"]["active"]
    assert_no_secret(lab, run.output)
    assert file_state(hosts) == tampered

    # converging repairs all of it
    run = play(tmp_path, [proxy_play(lab, clusters), drift_play])
    assert run.rc == 0, run.output[-5000:]
    assert all(r["in_sync"] and r["active"] for r in run.result("report")["kubegate_kubectl_proxy_drift"])


def test_removed_cluster_is_stopped_and_cleaned(lab, clean, ports, tmp_path):
    hosts = clean
    assert play(tmp_path, [proxy_play(lab, [entry(lab, "cluster-a", ports["cluster-a"]),
                                            entry(lab, "cluster-b", ports["cluster-b"])])]).rc == 0
    run = play(tmp_path, [proxy_play(lab, [entry(lab, "cluster-a", ports["cluster-a"]),
                                           {"name": "cluster-b", "state": "absent"}])])
    assert run.rc == 0, run.output[-5000:]
    assert sh(hosts, "systemctl is-active %s" % (UNIT % "cluster-b")).stdout.strip() == "inactive"
    assert sh(hosts, "systemctl is-enabled %s" % (UNIT % "cluster-b")).stdout.strip() == "disabled"
    assert sh(hosts, "ls %s" % CONF).stdout.split() == ["cluster-a.env", "cluster-a.kubeconfig"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", ports["cluster-b"]), timeout=5).close()
    again = play(tmp_path, [proxy_play(lab, [entry(lab, "cluster-a", ports["cluster-a"]),
                                             {"name": "cluster-b", "state": "absent"}])])
    assert again.rc == 0 and recap(again)["changed"] == 0, again.output[-5000:]


def test_bad_input_is_refused_clearly_before_any_change(lab, clean, ports, tmp_path):
    hosts = clean
    a, b = entry(lab, "cluster-a", ports["cluster-a"]), entry(lab, "cluster-b", ports["cluster-b"])
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    no_creds = {k: v for k, v in a.items() if k != "token"}
    cases = {
        "unknown cluster": ({"kubectl_proxy_clusters": [dict(a, name="cluster-zz")]},
                            "cluster cluster-zz is not a host of the inventory"),
        "port clash": ({"kubectl_proxy_clusters": [a, dict(b, port=ports["cluster-a"])]},
                       "port clash: clusters cluster-a and cluster-b both use port %d" % ports["cluster-a"]),
        "port in use": ({"kubectl_proxy_clusters": [dict(a, port=taken)]},
                        "port clash: port %d for cluster cluster-a is already in use on this host (listening: "
                        "127.0.0.1:%d)" % (taken, taken)),
        "missing credentials": ({"kubectl_proxy_clusters": [no_creds]},
                                "cluster cluster-a (kubectl_proxy_clusters[0]): missing credentials: set token, or "
                                "client_cert and client_key"),
        "no ca": ({"kubectl_proxy_clusters": [dict(a, ca_cert="")]}, "ca_cert is missing"),
        "plain http upstream": ({"kubectl_proxy_clusters": [dict(a, server="http://127.0.0.11:6443")]},
                                "server must be the apiserver URL as seen from the proxy host, https://HOST[:PORT]"),
        "bad port type": ({"kubectl_proxy_clusters": [dict(a, port="eighty")]}, "port"),
        "no kubectl": ({"kubectl_proxy_clusters": [a], "kubectl_proxy_kubectl_src": "/nonexistent/kubectl"},
                       "kubectl_proxy_kubectl_src /nonexistent/kubectl is not a file on the controller"),
        "bad accept hosts": ({"kubectl_proxy_clusters": [a], "kubectl_proxy_dangerous_accept_hosts": "^a$ ^b$"},
                             "kubectl_proxy_dangerous_accept_hosts must be comma-separated regular expressions"),
    }
    tasks = []
    for name, (role_vars, _) in cases.items():
        tasks.append({"name": "case " + name, "block": [
            {"name": "role " + name, "ansible.builtin.include_role": {"name": "kubectl_proxy"},
             "vars": dict({"kubectl_proxy_kubectl_src": lab.kubectl_bin}, **role_vars)}],
            "rescue": [{"name": "error " + name, "ansible.builtin.debug": {"msg": "{{ ansible_failed_result.msg }}"}}]})
    before = file_state(hosts)
    try:
        run = play(tmp_path, [{"name": "bad input", "hosts": PROXY_HOST, "gather_facts": False, "tasks": tasks}])
    finally:
        busy.close()
    assert no_traceback(run.output)
    assert_no_secret(lab, run.output)
    for name, (_, expected) in cases.items():
        msg = run.result("error " + name, PROXY_HOST)["msg"]
        assert expected in msg, (name, msg)
    assert "Validation of arguments failed" in run.result("error bad port type", PROXY_HOST)["msg"]
    assert file_state(hosts) == before
    assert sh(hosts, "test -e %s" % CONF).returncode != 0

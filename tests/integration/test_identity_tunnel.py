"""Who cluster-c sees through a tunnel service: the ssh_tunnel role's kubegate-tunnel@gw-c on the lab's tunnel host
(conftest.cluster_c_tunnel_service) forwards only bytes, so the apiserver behind it authenticates exactly the
credential the task sent — the admin token, a client certificate, a dedicated ServiceAccount — and a wrong one is a
clear 401 naming the cluster, never a tunnel error. (The ssh_jump path: test_ssh_jump.py; direct paths:
test_connection.py.)"""
from __future__ import annotations

from kgplay import (ADMIN_SA, ServiceAccounts, assert_seen_as, assert_unauthorized, cert_identity, run_playbook,
                    sa_identity, token, whoami_task)

TUNNEL = "kubegate-tunnel@gw-c on kg-tunnel"


def test_identity_through_the_tunnel_service(lab, tmp_path, cluster_c_tunnel_service):
    c = lab.clusters["cluster-c"]
    accounts = ServiceAccounts(lab, "cluster-c")
    try:
        sa_token, sa_id = accounts.token("kg-tunnel-sa")
        base = {"host": cluster_c_tunnel_service, "ca_cert": c["ca_file"], "tls_server_name": "cluster-c",
                "tunnel": TUNNEL, "retries": 0}
        tasks = [whoami_task("admin token", api_key=token(lab, "cluster-c")),
                 whoami_task("client certificate", client_cert=c["client_cert_file"], client_key=c["client_key_file"]),
                 whoami_task("service account", api_key=sa_token),
                 whoami_task("wrong token", api_key="kg-wrong-token"),
                 whoami_task("no credential")]
        play = [{"name": "tunnel identity", "hosts": "cluster-c", "gather_facts": False,
                 "module_defaults": {"group/kubegate.multicluster.cluster": base}, "tasks": tasks}]
        for fastpath in ("0", "1"):
            run = run_playbook(tmp_path, play, env={"KUBEGATE_NO_FASTPATH": fastpath, "KUBECONFIG": "",
                                                    "HOME": str(tmp_path)})
            assert_seen_as(run, "cluster-c", sa_identity(*ADMIN_SA), task="admin token")
            assert_seen_as(run, "cluster-c", cert_identity(c["client_cert_file"]), task="client certificate")
            assert_seen_as(run, "cluster-c", sa_id, task="service account")
            where = cluster_c_tunnel_service.split("//")[1]
            msg = assert_unauthorized(run, "cluster-c", where, "a bearer token", task="wrong token")
            assert "tunnel down" not in msg
            assert_unauthorized(run, "cluster-c", where, "no credential at all", task="no credential")
            assert sa_token not in run.output
    finally:
        accounts.close()

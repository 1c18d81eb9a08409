# -*- coding: utf-8 -*-
"""Messages for a refused exec upgrade: RBAC (a Kubernetes Status) vs a proxy's plain 403 (kubectl proxy)."""
from __future__ import annotations

import json

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import exec as kexec
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.podexec import describe_refused_upgrade


def refused(status, body):
    return kexec.ExecProtocolError("exec upgrade refused with HTTP %d" % status, kind="http", http_status=status,
                                   body=body)


def test_rbac_403_names_the_missing_verbs():
    body = json.dumps({"kind": "Status", "code": 403, "message": 'pods "p" is forbidden: User "u" cannot create '
                       'resource "pods/exec"'}).encode()
    msg = describe_refused_upgrade(refused(403, body), "ns", "p")
    assert msg.startswith('exec forbidden in pod ns/p: pods "p" is forbidden')
    assert "RBAC verbs get and create on pods/exec in namespace ns" in msg


def test_kubectl_proxy_plain_403_says_the_proxy_blocks_exec():
    msg = describe_refused_upgrade(refused(403, b"Forbidden\n"), "ingress-nginx", "p", via_proxy=True)
    assert msg.startswith("exec in pod ingress-nginx/p was refused by the kubectl proxy with a plain 403 ('Forbidden', "
                          "not a Kubernetes Status, so not RBAC): kubectl proxy blocks pods/exec and pods/attach by "
                          "default (--reject-paths)")
    assert "kubectl_proxy_dangerous_allow_exec" in msg
    assert "RBAC verbs" not in msg


def test_plain_403_over_https_blames_a_proxy_in_front():
    msg = describe_refused_upgrade(refused(403, b""), "ns", "p")
    assert "refused by a proxy in front of the apiserver with a plain 403 ('Forbidden'" in msg

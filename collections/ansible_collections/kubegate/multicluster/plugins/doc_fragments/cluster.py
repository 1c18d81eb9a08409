# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Connection options shared by every cluster module (one place, so they never drift apart)."""
from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  host:
    description:
      - "URL of the apiserver, C(https://HOST[:PORT]). A URL starting with C(http://) is a C(kubectl proxy) (or a
        similar authenticating proxy), and no credentials are sent to it."
      - "Resolution order for every connection option: the task option (including C(module_defaults)), then the
        C(K8S_AUTH_*) environment variable named below (as AWX's Kubernetes credential injects them), then the
        kubeconfig (used when O(host) is not given, or when O(kubeconfig) or O(context) is given explicitly, in which
        case explicit options override its fields), then the in-cluster service account
        (C(KUBERNETES_SERVICE_HOST)/C(KUBERNETES_SERVICE_PORT) and C(/var/run/secrets/kubernetes.io/serviceaccount))."
      - Environment variable C(K8S_AUTH_HOST).
    type: str
  api_key:
    description:
      - Bearer token. Never shown in output, diffs, errors or logs.
      - Environment variable C(K8S_AUTH_API_KEY).
    type: str
  kubeconfig:
    description:
      - Path of a kubeconfig file, or a list of paths merged like C(KUBECONFIG) does (the first file defining a name
        wins). Defaults to C(KUBECONFIG), else C(~/.kube/config). Relative paths inside a kubeconfig are relative to
        that file. C(exec) credential plugins and cached C(auth-provider) tokens are supported; basic auth is not.
      - Environment variable C(K8S_AUTH_KUBECONFIG).
    type: raw
  context:
    description:
      - Name of the kubeconfig context to use (default the kubeconfig's current-context).
      - Environment variable C(K8S_AUTH_CONTEXT).
    type: str
  ca_cert:
    description:
      - PEM file of the CA that signed the apiserver's serving certificate.
      - Environment variable C(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - PEM client certificate file (with O(client_key)).
      - Environment variable C(K8S_AUTH_CERT_FILE).
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - PEM private key file of O(client_cert). Key material is never shown.
      - Environment variable C(K8S_AUTH_KEY_FILE).
    type: path
    aliases: [key_file]
  validate_certs:
    description:
      - Verify the apiserver's certificate against the CA. Defaults to C(true). Setting it to C(false) makes the task
        warn; through a tunnel or port forward set O(tls_server_name) instead.
      - Environment variable C(K8S_AUTH_VERIFY_SSL).
    type: bool
    aliases: [verify_ssl]
  tls_server_name:
    description:
      - Name sent as TLS SNI and verified in the apiserver's certificate instead of the host in O(host). The right fix
        when connecting through an ssh tunnel or a TCP forward on C(127.0.0.1).
      - Environment variable C(K8S_AUTH_TLS_SERVER_NAME).
    type: str
  proxy:
    description:
      - HTTP CONNECT proxy URL, C(http://HOST:PORT).
      - Environment variable C(K8S_AUTH_PROXY).
    type: str
  no_proxy:
    description:
      - Comma-separated host names or domains reached without O(proxy).
      - Environment variable C(K8S_AUTH_NO_PROXY).
    type: str
  ssh_jump:
    description:
      - Reach the apiserver through an ssh jump host with an in-process local forward (paramiko), for the duration
        of the task, without a tunnel service. TLS is still verified end to end against the apiserver's name.
      - The jump host's key must be pinned in O(ssh_jump.known_hosts); an unknown or changed key is refused. Only the
        given private key is used (no agent, no password). Cannot be combined with O(proxy).
    type: dict
    suboptions:
      host:
        description: Jump host address.
        type: str
        required: true
      port:
        description: Jump host ssh port.
        type: int
        default: 22
      user:
        description: User on the jump host (ideally restricted to port forwarding to the apiserver).
        type: str
        required: true
      key_file:
        description: Private key file for that user.
        type: path
        required: true
      known_hosts:
        description: known_hosts file that pins the jump host's key.
        type: path
        required: true
      connect_timeout:
        description: Seconds to wait for the ssh connection and the forwarded channel.
        type: float
        default: 10
  tunnel:
    description:
      - Free-text description of the tunnel service whose local end is O(host), for example
        C(kubegate-tunnel@cluster-c on tunnel-1) (what the C(ssh_tunnel) role publishes as C(kubegate_tunnel)).
      - When the apiserver cannot be reached through it (nothing listens on the local end, or the tunnel closes the
        connection because its far end is down), the task fails at once with C(tunnel down) followed by this
        description and the C(systemctl status) command to run, instead of a generic connection error. Timeouts stay
        bounded by O(connect_timeout).
      - Cannot be combined with O(ssh_jump).
    type: str
  impersonate_user:
    description:
      - Act as this user (needs the C(impersonate) verb on C(users) for the authenticated identity).
      - Environment variable C(K8S_AUTH_IMPERSONATE_USER).
    type: str
  impersonate_groups:
    description:
      - Groups to impersonate together with O(impersonate_user).
      - Environment variable C(K8S_AUTH_IMPERSONATE_GROUPS) (comma separated).
    type: list
    elements: str
  timeout:
    description:
      - Seconds to wait for the apiserver to answer (read timeout). Also bounds watches, streaming reads and each
        pod exec.
    type: float
    default: 30
  connect_timeout:
    description:
      - Seconds to wait for a TCP connection and TLS handshake.
    type: float
    default: 10
  retries:
    description:
      - How many times an idempotent request (GET, HEAD, OPTIONS) is retried after HTTP 429/503, a connection reset or
        a refused connection, with exponential backoff and jitter, honouring C(Retry-After) (capped at 30 seconds).
        Writes are never retried blindly. Each retry and each give-up is shown at C(-v).
    type: int
    default: 3
  fanout:
    description:
      - "Run this task's call for every listed inventory host from one controller process (a thread pool), instead of
        once per host in Ansible's per-host workers. Give inventory hostnames, usually C(\"{{ ansible_play_hosts
        }}\"), on a task with C(run_once: true) (required when the play has more than one host). Host patterns and
        group names are not expanded; an unknown host, a string or anything but a list of hostnames fails the task
        before anything runs."
      - "Every option is templated per listed host with that host's variables, exactly as if the task ran on that
        host (C(module_defaults) such as C(host: \"{{ kubegate_host }}\"), inventory, group, host, play and task
        variables), then validated and run by the same code as without fan-out. O(fanout) and O(fanout_concurrency)
        come from the host running the task; the task's C(environment) (for C(K8S_AUTH_*)) is evaluated once, for
        that host. Hosts reaching the same cluster share its TLS context, connections and ssh forward."
      - "The result holds RV(results_by_host), RV(failed_hosts) and RV(fanout_summary); each host's usual return
        values are in RV(results_by_host). C(changed) is true when any host changed; C(diff) lists each host's diff
        under its name. Check mode and diff mode apply to each host as without fan-out."
      - "The task fails when any listed host failed, and its message names every failed host with its error. To go
        on, set C(failed_when: false) (or C(ignore_errors)), C(register) the result and act on RV(failed_hosts), for
        example with a following task (without C(run_once)) that fails only C(when: inventory_hostname in
        result.failed_hosts). A failed C(run_once) task otherwise stops every host of the play, as with any
        C(run_once) task."
      - "Runs only on the controller, in the action plugin's fast path. A task that would execute the module instead
        (C(become), C(async), C(delegate_to) a host whose connection is not local, C(KUBEGATE_NO_FASTPATH=1)) is
        refused, as is a listed host whose C(ansible_connection) is not C(local); the module itself refuses O(fanout)
        as well."
    type: list
    elements: str
  fanout_concurrency:
    description:
      - Most listed hosts called at the same time with O(fanout). Each host's call may itself run several requests
        at once (for example C(max_concurrency) pods of M(kubegate.multicluster.pod_exec)).
      - Ignored without O(fanout).
    type: int
    default: 32
notes:
  - When the task's connection is C(local) (cluster hosts in an inventory usually are), the action plugin runs the
    request in the controller's worker process instead of shipping the module. Same options, same results, much less
    overhead. Set C(KUBEGATE_NO_FASTPATH=1) to force module execution.
  - Per-host connection variables (for example C(host) set to C({{ kubegate_host }}) and C(ca_cert) to
    C({{ kubegate_ca_cert }})) in C(module_defaults) for C(group/kubegate.multicluster.cluster) let one playbook fan out over the clusters selected
    with C(-l).
  - With many clusters, O(fanout) on a C(run_once) task makes the same call for every selected cluster from one
    controller process, which saves Ansible's per-host worker and templating cost (see C(docs/fanout.md)).
"""

    # Attributes every cluster module shares (check_mode and diff_mode differ per module and stay in the module).
    ATTRIBUTES = r"""
attributes:
  action_group:
    description: Part of an action group for C(module_defaults).
    support: full
    membership: [kubegate.multicluster.cluster]
  platform:
    description: Where the module runs (any POSIX host with Python; usually the controller).
    support: full
    platforms: posix
"""

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

DOCUMENTATION = r"""
module: pod_exec
short_description: Run a command in one or many pods through the apiserver
version_added: 0.1.0
description:
  - Runs a command in one pod (O(pod)) or in every Running pod matching O(label_selector) / O(field_selector), over
    the apiserver's websocket exec (C(v5.channel.k8s.io), falling back to C(v4.channel.k8s.io)).
  - Rolling execution with O(batch_size) and O(max_concurrency); after a batch with a failure the remaining pods are
    not touched (when O(fail_on_rc) is true).
  - The exit code comes from the exec status channel. Output is complete (no 32 KiB truncation) up to
    O(max_output_bytes) per stream.
  - The identity needs C(get) and C(list) on C(pods) and C(get) and C(create) on C(pods/exec) in the namespace.
author: kubegate developers (@kubegate)
extends_documentation_fragment:
  - kubegate.multicluster.cluster
  - kubegate.multicluster.cluster.attributes
attributes:
  check_mode:
    description: Can run in check mode and predict the change without making it.
    support: partial
    details: Pods are selected and validated, but the command is not run unless O(read_only=true).
  diff_mode:
    description: Returns what changed (or would change in check mode) in diff mode.
    support: none
options:
  namespace:
    description: Namespace of the pods.
    type: str
    default: default
  pod:
    description: Name of one pod. Mutually exclusive with O(label_selector) and O(field_selector).
    type: str
  label_selector:
    description: Label selector of the pods, for example C(app.kubernetes.io/name=ingress-nginx).
    type: str
  field_selector:
    description: Field selector of the pods, for example C(spec.nodeName=node-1).
    type: str
  container:
    description:
      - Container to run in. Default the pod's C(kubectl.kubernetes.io/default-container) annotation, else its first
        container.
    type: str
  command:
    description:
      - The command as an argv list (recommended), or a string split like a POSIX shell would split it (quotes are
        honoured; no variables, globbing, pipes or redirections; wrap in C([sh, -c, "..."]) for those).
    type: raw
    required: true
  stdin:
    description: Text sent to the command's standard input, which is then closed (needs C(v5.channel.k8s.io)).
    type: str
  read_only:
    description:
      - Declares that the command changes nothing. It then runs in check mode as well, and C(changed) is false.
    type: bool
    default: false
  fail_on_rc:
    description:
      - Fail the task when the command exits non-zero in any pod.
      - With V(false), a non-zero exit is reported (RV(rc), RV(results[].rc)) and the task is not failed.
    type: bool
    default: true
  max_concurrency:
    description: Most pods running the command at the same time.
    type: int
    default: 10
  batch_size:
    description: Pods per rolling batch; the next batch starts when the previous one finished. C(0) means all at once.
    type: int
    default: 0
  max_output_bytes:
    description: Most bytes of stdout and of stderr kept per pod; the rest is dropped and the result marked truncated.
    type: int
    default: 16777216
"""

EXAMPLES = r"""
- name: Reload nginx in every ingress controller pod, one at a time
  kubegate.multicluster.pod_exec:
    namespace: ingress-nginx
    label_selector: app.kubernetes.io/name=ingress-nginx
    command: [nginx, -s, reload]
    batch_size: 1

- name: Checksum a config file in one pod (safe in check mode)
  kubegate.multicluster.pod_exec:
    namespace: ingress-nginx
    pod: ingress-nginx-controller-7d9f-abcde
    command: sha256sum conf.d/kubegate-map.conf
    read_only: true
  register: sums

- name: Reload nginx in every ingress pod of every selected cluster, from one controller process
  kubegate.multicluster.pod_exec:
    namespace: ingress-nginx
    label_selector: app.kubernetes.io/name=ingress-nginx
    command: [nginx, -s, reload]
    fanout: "{{ ansible_play_hosts }}"
    fanout_concurrency: 24
  run_once: true
"""

RETURN = r"""
results:
  description: One entry per pod, in pod name order.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: list
  elements: dict
  contains:
    pod:
      description: Pod name.
      type: str
    container:
      description: Container the command ran in.
      type: str
    rc:
      description: Exit code (null when the command could not run; see C(msg)).
      type: int
    stdout:
      description: Standard output.
      type: str
    stderr:
      description: Standard error.
      type: str
    duration:
      description: Seconds the exec took.
      type: float
    msg:
      description: What went wrong in this pod, when something did.
      type: str
rc:
  description:
    - Exit code, when O(pod) was given, also when it is non-zero and tolerated with O(fail_on_rc=false). The result
      then says C(failed=false) explicitly, so Ansible does not fail the task for the non-zero C(rc).
  returned: when O(pod) was given and the command ran
  type: int
  sample: 3
exit_code:
  description: Alias of RV(rc), kept for playbooks written before RV(rc) was always returned.
  returned: when O(pod) was given and the command ran
  type: int
stdout:
  description: Standard output, when O(pod) was given.
  returned: when O(pod) was given and the command ran
  type: str
stderr:
  description: Standard error, when O(pod) was given.
  returned: when O(pod) was given and the command ran
  type: str
pods:
  description: Names of the selected pods.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: list
  elements: str
command:
  description: The argv that was (or would be) run.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: list
  elements: str
skipped_pods:
  description: Pods not run because an earlier batch failed.
  returned: when pods were skipped
  type: list
  elements: str
results_by_host:
  description:
    - With O(fanout), each listed host's result by inventory hostname, in the order listed, holding the return values
      described here for a single host, plus C(changed), and C(failed) and C(msg) for a host that failed.
  returned: with O(fanout)
  type: dict
  sample: {"cluster-a": {"changed": false, "msg": "..."}, "cluster-b": {"changed": false, "msg": "..."}}
failed_hosts:
  description: With O(fanout), the listed hosts whose call failed, in the order listed (empty when none failed).
  returned: with O(fanout)
  type: list
  elements: str
  sample: [cluster-c]
fanout_summary:
  description: With O(fanout), how many listed hosts were called, succeeded, failed and changed.
  returned: with O(fanout)
  type: dict
  contains:
    hosts:
      description: Listed hosts (without repeats).
      type: int
    ok:
      description: Hosts whose call succeeded.
      type: int
    failed:
      description: Hosts whose call failed.
      type: int
    changed:
      description: Hosts whose call changed something (or would, in check mode).
      type: int
  sample: {"hosts": 24, "ok": 23, "failed": 1, "changed": 23}
"""

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.module import run_module
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.podexec import run_pod_exec


def main():
    run_module("pod_exec", run_pod_exec)


if __name__ == "__main__":
    main()

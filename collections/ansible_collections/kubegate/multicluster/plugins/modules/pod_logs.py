#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

DOCUMENTATION = r"""
module: pod_logs
short_description: Read or follow container logs of one or many pods through the apiserver
version_added: 0.1.0
description:
  - Reads the log of one container in one pod (O(name)) or in every pod matching O(label_selector) /
    O(field_selector), through the apiserver's C(pods/log) subresource (what C(kubectl logs) does), in parallel.
  - O(follow=true) streams new lines as they are written, like C(kubectl logs -f), until O(follow_timeout) seconds
    pass, O(max_lines) lines or O(max_bytes) bytes arrived, or a line matches O(until); the read never outlives
    O(follow_timeout) and never keeps more than O(max_bytes) bytes per pod.
  - Without O(follow), the read is bounded by the connection option O(timeout) and by the same line and byte caps.
  - Read-only; it runs in check mode as well and never reports a change.
  - The identity needs C(get) on C(pods/log) and C(get) (with O(name)) or C(list) (with a selector) on C(pods) in the
    namespace.
author: kubegate developers (@kubegate)
extends_documentation_fragment:
  - kubegate.multicluster.cluster
  - kubegate.multicluster.cluster.attributes
attributes:
  check_mode:
    description: Can run in check mode and predict the change without making it.
    support: full
    details: The module only reads, so it does the same in check mode.
  diff_mode:
    description: Returns what changed (or would change in check mode) in diff mode.
    support: none
options:
  namespace:
    description: Namespace of the pods.
    type: str
    default: default
  name:
    description: Name of one pod. Mutually exclusive with O(label_selector) and O(field_selector).
    type: str
    aliases: [pod]
  label_selector:
    description: Label selector of the pods, for example C(app.kubernetes.io/name=ingress-nginx).
    type: str
  field_selector:
    description: Field selector of the pods, for example C(spec.nodeName=node-1).
    type: str
  container:
    description:
      - Container whose log is read. Default the pod's C(kubectl.kubernetes.io/default-container) annotation, else its
        first container.
    type: str
  since_seconds:
    description: Only lines written in the last this many seconds (C(kubectl logs --since)).
    type: int
  tail_lines:
    description: Only the last this many lines already written (C(kubectl logs --tail)); with O(follow), new lines follow.
    type: int
  limit_bytes:
    description:
      - Most bytes the server sends (C(kubectl logs --limit-bytes)); the server ends the stream there, possibly
        mid-line. Use O(max_bytes) for a client-side cap that keeps whole lines.
    type: int
  previous:
    description:
      - Read the log of the previous instance of the container (C(kubectl logs --previous)), which exists only after it
        restarted.
    type: bool
    default: false
  timestamps:
    description: Prefix every line with the time the container runtime received it (RFC 3339 with nanoseconds, UTC).
    type: bool
    default: false
  follow:
    description: Keep the stream open and collect new lines until one of the bounds is reached (C(kubectl logs -f)).
    type: bool
    default: false
  follow_timeout:
    description:
      - Seconds a O(follow) read lasts at most (one deadline for all selected pods, which are followed at the same
        time). When it passes the read ends normally with RV(results[].stopped=timeout); it is not an error.
    type: float
    default: 10
  max_lines:
    description: Most lines kept per pod; reading stops once they arrived (RV(results[].stopped=max_lines)).
    type: int
  max_bytes:
    description:
      - Most bytes kept per pod (whole lines only); reading stops there and the result is marked truncated. This is
        the memory bound of the task.
    type: int
    default: 1048576
  until:
    description:
      - A Python regular expression searched in every line (with O(timestamps), the line includes its timestamp).
        Reading a pod's log stops at the first matching line, which is the last line returned for that pod, and
        RV(results[].matched) is true. Not matching within the bounds is not an error; check RV(matched) or
        RV(matched_pods) (for example in C(failed_when) or C(until) of the task).
      - Each selected pod stops at its own first match.
    type: str
  max_concurrency:
    description:
      - Most pods read at the same time. With O(follow) every selected pod is followed at once, so the task fails
        before reading when more pods match than this.
    type: int
    default: 10
notes:
  - With O(fanout), the reads of every listed host run from the controller process in parallel; each host's result is
    in RV(results_by_host).
"""

EXAMPLES = r"""
- name: Last 50 lines of every ingress controller pod
  kubegate.multicluster.pod_logs:
    namespace: ingress-nginx
    label_selector: app.kubernetes.io/name=ingress-nginx
    tail_lines: 50
  register: ingress_logs

- name: Wait (at most 60 s) for one controller to log its reload, after triggering it
  kubegate.multicluster.pod_logs:
    namespace: ingress-nginx
    name: ingress-nginx-controller-7d9f-abcde
    follow: true
    tail_lines: 0
    follow_timeout: 60
    until: "signal process started|reload"
  register: reload_log
  failed_when: not reload_log.matched

- name: Errors of the last ten minutes, with timestamps, in every selected cluster from one controller process
  kubegate.multicluster.pod_logs:
    namespace: ingress-nginx
    label_selector: app.kubernetes.io/name=ingress-nginx
    since_seconds: 600
    timestamps: true
    max_bytes: 262144
    fanout: "{{ ansible_play_hosts }}"
  run_once: true
"""

RETURN = r"""
results:
  description: One entry per selected pod, in pod name order.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: list
  elements: dict
  contains:
    pod:
      description: Pod name.
      type: str
    namespace:
      description: Pod namespace.
      type: str
    container:
      description: Container whose log was read.
      type: str
    lines:
      description: The log lines read (without their newline), after the bounds were applied.
      type: list
      elements: str
    truncated:
      description: Lines were left out because of O(max_bytes) or O(max_lines).
      type: bool
    matched:
      description: A line matched O(until) (always false without it).
      type: bool
    stopped:
      description:
        - Why the read ended. C(end) the server ended the log (no O(follow), or the container stopped),
          C(timeout) the deadline passed, C(until) a line matched O(until), C(max_lines) or C(max_bytes) a cap was
          reached, C(error) the read failed (see C(msg)).
      type: str
      sample: timeout
    bytes:
      description: Bytes received for this pod.
      type: int
    duration:
      description: Seconds the read took.
      type: float
    msg:
      description: What went wrong for this pod, when something did.
      type: str
pods:
  description: Names of the selected pods.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: list
  elements: str
elapsed:
  description: Seconds the reads took, all pods together.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: float
matched_pods:
  description: Pods in which a line matched O(until).
  returned: when O(until) was given
  type: list
  elements: str
lines:
  description: With O(name), the lines of that pod (as in RV(results)).
  returned: when O(name) was given
  type: list
  elements: str
text:
  description: With O(name), the lines of that pod as one text, each line ending with a newline.
  returned: when O(name) was given
  type: str
container:
  description: With O(name), the container whose log was read.
  returned: when O(name) was given
  type: str
truncated:
  description: With O(name), whether lines were left out because of a cap.
  returned: when O(name) was given
  type: bool
matched:
  description: With O(name), whether a line matched O(until).
  returned: when O(name) was given
  type: bool
stopped:
  description: With O(name), why the read ended (see RV(results[].stopped)).
  returned: when O(name) was given
  type: str
results_by_host:
  description:
    - With O(fanout), each listed host's result by inventory hostname, in the order listed, holding the return values
      described here for a single host, plus C(changed), and C(failed) and C(msg) for a host that failed.
  returned: with O(fanout)
  type: dict
  sample: {"cluster-a": {"changed": false, "pods": ["ingress-nginx-controller-7d9f-abcde"]}}
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
      description: Hosts whose call changed something (always 0 for this module).
      type: int
  sample: {"hosts": 24, "ok": 23, "failed": 1, "changed": 0}
"""

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.module import run_module
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.podlogs import run_pod_logs


def main():
    run_module("pod_logs", run_pod_logs)


if __name__ == "__main__":
    main()

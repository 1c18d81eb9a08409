#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

DOCUMENTATION = r"""
module: api_request
short_description: Send any request to a Kubernetes apiserver (raw API pass-through)
version_added: 0.1.0
description:
  - Sends one request with any method, path, query and body to the apiserver of a cluster and returns the answer.
    Works for core, grouped and aggregated APIs and for non-resource paths such as C(/version), C(/readyz) or C(/metrics).
  - Writes report C(changed) honestly. The object is read before the write; C(changed) is true when its
    C(resourceVersion) moved (the apiserver does not bump it for a no-op write) and its content, without
    C(managedFields), C(resourceVersion) and C(generation), differs. Check mode sends writes with server-side
    C(dryRun=All) and compares the content; diff mode shows the object before and after.
  - With O(watch), lists and then watches the path until the JMESPath expression O(until) is true for an object, or
    O(timeout) expires.
author: kubegate developers (@kubegate)
extends_documentation_fragment:
  - kubegate.multicluster.cluster
  - kubegate.multicluster.cluster.attributes
attributes:
  check_mode:
    description: Can run in check mode and predict the change without making it.
    support: full
    details: Writes are sent with C(dryRun=All). Paths the apiserver cannot dry-run (C(proxy), C(exec), C(attach),
      C(portforward) and non-resource paths) are not sent in check mode.
  diff_mode:
    description: Returns what changed (or would change in check mode) in diff mode.
    support: full
    details: Shown for writes of Kubernetes objects. C(managedFields) are left out and Secret values are masked.
options:
  method:
    description: HTTP method.
    type: str
    default: GET
    choices: [GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS]
  path:
    description:
      - Path on the apiserver, starting with C(/), for example C(/api/v1/namespaces/demo/configmaps/web).
      - No scheme or host, no C(..) segments, no query string (use O(query)).
    type: str
    required: true
  query:
    description:
      - Query parameters. A mapping; a list value repeats the parameter (C(labelSelector), C(fieldSelector), ...).
        A list of one-key mappings is accepted too, to keep an order.
      - C(follow=true) (logs) or C(watch=true) make a streaming read, bounded by O(timeout) and O(max_body_bytes).
    type: raw
  body:
    description:
      - Request body. A mapping or list is sent as JSON; a string is sent as is with O(content_type=text), or parsed
        as JSON for the JSON content types.
    type: raw
  content_type:
    description:
      - How the body is sent. Defaults to V(merge-patch) for PATCH and V(json) otherwise.
      - V(apply-patch) is server-side apply (PATCH only) with O(field_manager) and O(force).
    type: str
    choices: [json, merge-patch, json-patch, strategic-merge-patch, apply-patch, text]
  field_manager:
    description:
      - Field manager name for writes. For V(apply-patch) it defaults to C(kubegate).
    type: str
  force:
    description:
      - Force server-side apply conflicts (only with O(content_type=apply-patch)).
    type: bool
    default: false
  status_code:
    description:
      - Accepted HTTP status codes. Default any 2xx. Other statuses fail the task with the apiserver's message.
    type: list
    elements: int
  headers:
    description:
      - Extra request headers. C(Authorization), C(Impersonate-*) and framing headers cannot be set here; they come
        from the connection options.
    type: dict
  watch:
    description:
      - Watch the path (a collection or one object) instead of a single read. Needs O(method=GET).
      - With O(until), returns the first object for which it is true (including objects that already match);
        without it, returns every event seen until O(timeout).
    type: bool
    default: false
  until:
    description:
      - JMESPath expression evaluated on each object (the current ones, then each watch event's object). The watch
        ends at the first object for which it is true (JMESPath truthiness). Needs O(watch=true) and the C(jmespath)
        Python library.
      - "Example: C(status.conditions[?type=='Ready'].status | [0] == 'True')."
    type: str
  max_body_bytes:
    description:
      - Most bytes of response body kept; the rest is dropped and RV(truncated) is set.
    type: int
    default: 16777216
"""

EXAMPLES = r"""
- name: Apiserver version of every selected cluster
  kubegate.multicluster.api_request:
    path: /version
  register: version

- name: Create or update a ConfigMap with server-side apply
  kubegate.multicluster.api_request:
    method: PATCH
    path: /api/v1/namespaces/demo/configmaps/routing
    content_type: apply-patch
    field_manager: platform-team
    body:
      apiVersion: v1
      kind: ConfigMap
      metadata: {name: routing, namespace: demo}
      data: {mode: blue}

- name: Change one key (merge patch); changed is false when the value was already there
  kubegate.multicluster.api_request:
    method: PATCH
    path: /api/v1/namespaces/demo/configmaps/routing
    body: {data: {mode: green}}

- name: Wait until a Deployment has all replicas available
  kubegate.multicluster.api_request:
    path: /apis/apps/v1/namespaces/ingress-nginx/deployments/ingress-nginx-controller
    watch: true
    until: status.availableReplicas == spec.replicas
    timeout: 120

- name: The same connection settings for every cluster module, per inventory host
  module_defaults:
    group/kubegate.multicluster.cluster:
      host: "{{ kubegate_host }}"
      ca_cert: "{{ kubegate_ca_cert }}"
      api_key: "{{ kubegate_token }}"
  block:
    - name: Pods matching a selector
      kubegate.multicluster.api_request:
        path: /api/v1/namespaces/ingress-nginx/pods
        query:
          labelSelector: app.kubernetes.io/name=ingress-nginx

- name: Read the version of every cluster in the play from one controller process, and go on with the reachable ones
  kubegate.multicluster.api_request:
    path: /version
    fanout: "{{ ansible_play_hosts }}"
  run_once: true
  register: versions
  failed_when: false

- name: Fail only the clusters that did not answer
  ansible.builtin.fail:
    msg: "{{ versions.results_by_host[inventory_hostname].msg }}"
  when: inventory_hostname in versions.failed_hosts
"""

RETURN = r"""
status:
  description: HTTP status of the answer (null when a check-mode request was not sent).
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: int
  sample: 200
json:
  description: The answer parsed as JSON, when it was JSON (with O(watch), the matching object).
  returned: when the answer is JSON
  type: raw
  sample: {"major": "1", "minor": "35"}
body:
  description: The answer as text, when it was not JSON.
  returned: when the answer is not JSON
  type: str
headers:
  description: Response headers (lower-case names), without cookies or authentication headers.
  returned: when a request was sent
  type: dict
  sample: {"content-type": "application/json"}
truncated:
  description: True when the body was larger than O(max_body_bytes) and was cut.
  returned: when the body was cut
  type: bool
dry_run:
  description: True when the write was sent with C(dryRun=All) (check mode).
  returned: in check mode, for writes
  type: bool
matched:
  description: With O(watch), whether an object matched O(until).
  returned: with O(watch)
  type: bool
event:
  description: With O(watch), the event type of the match (C(EXISTING) when an object already matched).
  returned: with O(watch) when matched
  type: str
  sample: MODIFIED
events:
  description: With O(watch) and no O(until), the events seen until O(timeout).
  returned: with O(watch) and no O(until)
  type: list
  elements: dict
elapsed:
  description: With O(watch), seconds until the match.
  returned: with O(watch)
  type: float
msg:
  description: Explanation when the request was not sent in check mode.
  returned: sometimes
  type: str
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
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.passthrough import run_api_request


def main():
    run_module("api_request", run_api_request)


if __name__ == "__main__":
    main()

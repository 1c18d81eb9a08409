#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

DOCUMENTATION = r"""
module: service_proxy
short_description: Send an HTTP request to a Service through the apiserver's service proxy
version_added: 0.1.0
description:
  - Builds C(/api/v1/namespaces/NAMESPACE/services/[SCHEME:]NAME[:PORT]/proxy/PATH) with correct escaping and sends
    the request through the apiserver, so a Service is reachable without any network path to the cluster's pods.
  - The identity needs the C(get) (and for writes C(create)/C(update)/C(delete)) verb on C(services/proxy).
author: kubegate developers (@kubegate)
extends_documentation_fragment:
  - kubegate.multicluster.cluster
  - kubegate.multicluster.cluster.attributes
attributes:
  check_mode:
    description: Can run in check mode and predict the change without making it.
    support: partial
    details: Reads are sent; writes (any method other than GET, HEAD, OPTIONS) are not sent in check mode.
  diff_mode:
    description: Returns what changed (or would change in check mode) in diff mode.
    support: none
options:
  namespace:
    description: Namespace of the Service.
    type: str
    default: default
  service:
    description: Name of the Service.
    type: str
    required: true
  scheme:
    description: Scheme the apiserver uses to reach the endpoints. Default as the apiserver decides (http).
    type: str
    choices: [http, https]
  port:
    description: Service port, by number or by name. Default the Service's only/first port.
    type: str
  path:
    description: Path on the service, starting with C(/). No query string (use O(query)) and no C(..) segments.
    type: str
    default: /
  query:
    description: Query parameters, as for P(kubegate.multicluster.api_request#module).
    type: raw
  method:
    description: HTTP method.
    type: str
    default: GET
    choices: [GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS]
  headers:
    description:
      - Extra request headers passed to the service. C(Authorization) and C(Impersonate-*) cannot be set (the
        apiserver does not forward them anyway).
    type: dict
  body:
    description: Request body; a mapping or list is sent as JSON, a string as text.
    type: raw
  status_code:
    description: Accepted HTTP status codes of the service's answer. Default any 2xx.
    type: list
    elements: int
  max_body_bytes:
    description: Most bytes of response body kept; the rest is dropped and RV(truncated) is set.
    type: int
    default: 16777216
"""

EXAMPLES = r"""
- name: Ask the echo service, through the apiserver
  kubegate.multicluster.service_proxy:
    namespace: demo
    service: echo
    port: http
    path: /routing
    headers:
      X-Version: v2
  register: answer

- name: Same service over its https port
  kubegate.multicluster.service_proxy:
    namespace: demo
    service: echo
    scheme: https
    port: https

- name: Health of the same service in every cluster of the play, from one controller process
  kubegate.multicluster.service_proxy:
    namespace: logging
    service: https:elasticsearch:9200
    path: /_cluster/health
    fanout: "{{ ansible_play_hosts }}"
  run_once: true
  register: health
"""

RETURN = r"""
status:
  description: HTTP status of the service's answer (null when a check-mode write was not sent).
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: int
  sample: 200
json:
  description: The answer parsed as JSON, when it was JSON.
  returned: when the answer is JSON
  type: raw
body:
  description: The answer as text, when it was not JSON.
  returned: when the answer is not JSON
  type: str
headers:
  description: Response headers (lower-case names), without cookies or authentication headers.
  returned: when a request was sent
  type: dict
truncated:
  description: True when the body was larger than O(max_body_bytes) and was cut.
  returned: when the body was cut
  type: bool
msg:
  description: Explanation when a write was not sent in check mode.
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
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.passthrough import run_service_proxy


def main():
    run_module("service_proxy", run_service_proxy)


if __name__ == "__main__":
    main()

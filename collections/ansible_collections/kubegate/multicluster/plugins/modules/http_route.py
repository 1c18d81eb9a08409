#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

DOCUMENTATION = r"""
module: http_route
short_description: Apply the nginx map routing rules as Gateway API HTTPRoutes, with a per-rule difference report
version_added: 0.1.0
description:
  - Renders the same routing rules as M(kubegate.multicluster.nginx_map) (C(kubegate_routing_maps)) as
    C(gateway.networking.k8s.io/v1) C(HTTPRoute) objects, one per map, and applies them with server-side apply
    (field manager C(kubegate)).
  - Exact keys become C(Exact) header matches, regex keys and host masks C(RegularExpression) matches
    (implementation-specific), the default the catch-all rule. Each map value names a Service unless the map's
    C(backends) mapping gives one (value to C(name), C(port), C(namespace)).
  - Every semantic difference to nginx (letter case of exact keys, regex dialect, host masks, precedence, values
    with variables, the empty key, no default) is listed per rule in RV(report); rules that cannot be expressed are
    not emitted and are reported, never approximated silently.
  - Input problems (the nginx map validation plus C(backends), O(parent_refs), O(hostnames)) fail the task before
    anything is sent.
  - Idempotent; check mode sends the writes with C(dryRun=All); diff mode shows each route before and after.
  - The same renderer is available as the filters P(kubegate.multicluster.http_routes#filter) and
    P(kubegate.multicluster.http_route_report#filter).
author: kubegate developers (@kubegate)
extends_documentation_fragment:
  - kubegate.multicluster.cluster
  - kubegate.multicluster.cluster.attributes
attributes:
  check_mode:
    description: Can run in check mode and predict the change without making it.
    support: full
  diff_mode:
    description: Returns what changed (or would change in check mode) in diff mode.
    support: full
options:
  maps:
    description:
      - The routing rules in the format of M(kubegate.multicluster.nginx_map) O(kubegate.multicluster.nginx_map#module:maps),
        plus an optional C(backends) mapping per map from map value to a Service name or C({name, port, namespace}).
    type: list
    elements: dict
    required: true
  namespace:
    description: Namespace of the HTTPRoutes (and of the Services that have no namespace in C(backends)).
    type: str
    default: default
  parent_refs:
    description:
      - The Gateway(s) the routes attach to, each C({name, namespace, sectionName}) (C(namespace) and
        C(sectionName) optional).
    type: list
    elements: dict
    required: true
  hostnames:
    description: The routes' C(spec.hostnames) (lower-case DNS names, optionally starting with C(*.)). Unset means all.
    type: list
    elements: str
  backend_port:
    description: Service port for map values whose C(backends) entry gives none.
    type: int
    default: 80
  name_prefix:
    description: Route names are C(<name_prefix>-<variable>) (C(_) written as C(-); the prefix is not repeated).
    type: str
    default: kubegate
  map_hash_bucket_size:
    description: As for M(kubegate.multicluster.nginx_map), so both render the same rules or reject the same input.
    type: int
    default: 64
notes:
  - The Gateway API CRDs (standard channel) must be installed; the apiserver's schema and CEL rules validate every route.
  - Routes of maps that were removed from the rules are not deleted.
seealso:
  - module: kubegate.multicluster.nginx_map
"""

EXAMPLES = r"""
- name: Apply the tenant's routing rules as HTTPRoutes next to the nginx maps
  kubegate.multicluster.http_route:
    maps: "{{ kubegate_routing_maps }}"
    namespace: demo
    parent_refs:
      - {name: kubegate, namespace: gateway-system}
  register: routes

- name: Show what differs from nginx, rule by rule
  ansible.builtin.debug:
    msg: "{{ routes.report | selectattr('differences') | list }}"
"""

RETURN = r"""
routes:
  description: The rendered HTTPRoute objects (as sent).
  returned: success
  type: list
  elements: dict
applied:
  description: Per route C(name) (C(namespace/name)), C(changed) and C(resource_version) after the task.
  returned: success
  type: list
  elements: dict
report:
  description:
    - One item per map entry and one per map default (C(entry) is V(default)) with C(map), C(route), C(entry),
      C(key), C(value), C(emitted) (the rule written, or null when not emitted) and C(differences) (a list of
      C({kind, text, what_to_do})).
  returned: success
  type: list
  elements: dict
differences:
  description: How many report items carry at least one difference.
  returned: success
  type: int
not_emitted:
  description: How many report items were not emitted.
  returned: success
  type: int
dry_run:
  description: True in check mode when routes were sent with C(dryRun=All).
  returned: in check mode
  type: bool
problems:
  description: Every input problem, when the rules were rejected.
  returned: on failure
  type: list
  elements: str
results_by_host:
  description:
    - With O(fanout), each listed host's result by inventory hostname, in the order listed, holding the return values
      described here for a single host, plus C(changed), and C(failed) and C(msg) for a host that failed.
  returned: with O(fanout)
  type: dict
failed_hosts:
  description: With O(fanout), the listed hosts whose call failed, in the order listed (empty when none failed).
  returned: with O(fanout)
  type: list
  elements: str
fanout_summary:
  description: With O(fanout), how many listed hosts were called, succeeded, failed and changed.
  returned: with O(fanout)
  type: dict
"""

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.module import run_module
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.routetask import run_http_route


def main():
    run_module("http_route", run_http_route)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

DOCUMENTATION = r"""
module: nginx_map
short_description: Render, validate and apply nginx map blocks for header-based routing to a ConfigMap
version_added: 0.1.0
description:
  - Validates the maps strictly before anything is sent (names, quoting and escaping of every key and value,
    duplicate and case-insensitively duplicate keys, special words, variables that collide with nginx or
    ingress-nginx built-ins, key length against O(map_hash_bucket_size)) and reports every problem at once.
  - Runs a real C(nginx -t) on the rendered text when nginx is installed where the task runs (O(nginx_check)).
  - Writes the deterministic text to key O(key) of the ConfigMap O(configmap) in O(namespace) (created when
    missing), and the C(proxy_set_header) lines of maps that have one to O(location_snippet_key).
  - Idempotent; check mode changes nothing; diff mode shows the rendered text before and after.
  - Before every change the current content of the managed keys is saved in the ConfigMap C(<configmap>-previous);
    O(restore=true) puts it back. The same renderer is available as the filters
    P(kubegate.multicluster.nginx_map#filter) and P(kubegate.multicluster.nginx_map_problems#filter).
  - "Both ConfigMaps are written with optimistic concurrency: the copy is replaced whole only if it is unchanged since
    it was read, and the map keys are written only if the ConfigMap's C(resourceVersion) is still the one read
    (a create only if it still does not exist). When another run or a person changed either meanwhile, the task fails
    with C(changed by someone else ... re-run) and puts the copy back, so it still holds the winner's predecessor."
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
      - The maps. Each has C(source) (for example C($http_x_version)), C(variable) (for example
        C($kubegate_backend)), optional C(default), C(hostnames), C(volatile), C(allow_variables_in_values),
        C(proxy_set_header) (header name under which the variable is passed upstream) and C(entries) (a list of
        C({key, value}) or a mapping; keys are exact strings, C(~regex), C(~*regex) or host masks). Exact keys are
        literal text (V(;), V({), V(}), V($), quotes included); only V(default) and V(include) are refused as keys.
      - A regex entry in list form may declare C(sample), a header value the regex matches, which RV(checks) sends
        to prove the rule (without it a sample is derived from the regex when possible).
      - Required unless O(restore=true).
    type: list
    elements: dict
  map_hash_bucket_size:
    description: The target nginx's C(map_hash_bucket_size) (ingress-nginx C(map-hash-bucket-size), default 64).
    type: int
    default: 64
  namespace:
    description: Namespace of the ConfigMap (the ingress controller's namespace).
    type: str
    default: ingress-nginx
  configmap:
    description: Name of the ConfigMap mounted into the controller pods.
    type: str
    default: kubegate-nginx-map
  key:
    description: ConfigMap key (file name in the mounted directory) for the map blocks.
    type: str
    default: kubegate-map.conf
  location_snippet_key:
    description:
      - ConfigMap key for the location snippet (C(proxy_set_header) lines). Not written when unset; removed when no
        map has C(proxy_set_header).
    type: str
  nginx_check:
    description:
      - V(auto) runs C(nginx -t) when nginx is found and warns otherwise; V(always) fails without nginx; V(never)
        skips it.
    type: str
    default: auto
    choices: [auto, always, never]
  nginx_binary:
    description: Path of the nginx binary for the check (default the first nginx found).
    type: path
  keep_previous:
    description: Save the current content in C(<configmap>-previous) before changing it.
    type: bool
    default: true
  restore:
    description:
      - Put back the content saved before the last change instead of rendering O(maps).
      - Refused (nothing changed) when the saved copy is not the predecessor of the live content, that is when the
        map keys were changed again after the copy was taken (by another run or by hand).
    type: bool
    default: false
  expected_sha256:
    description:
      - With O(restore=true), restore only while the live map key still holds this content (the RV(sha256) the apply
        of the same run returned); otherwise fail with "changed by someone else" and change nothing. A rollout's
        rollback uses it so it never undoes a concurrent run's later change.
    type: str
"""

EXAMPLES = r"""
- name: Route on the X-Version header
  kubegate.multicluster.nginx_map:
    location_snippet_key: kubegate-routing.location
    maps:
      - source: $http_x_version
        variable: $kubegate_backend
        default: stable
        proxy_set_header: X-Kubegate-Backend
        entries:
          - {key: v2, value: canary}
          - {key: "~*^v3-", value: next}
  register: routing

- name: Undo the last change
  kubegate.multicluster.nginx_map:
    restore: true

- name: Preview the rendered maps of every selected cluster at once (each cluster's own rules)
  kubegate.multicluster.nginx_map:
    maps: "{{ kubegate_routing_maps }}"
    fanout: "{{ ansible_play_hosts }}"
  run_once: true
  check_mode: true
  diff: true
"""

RETURN = r"""
rendered:
  description: The rendered map text (after the change).
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: str
sha256:
  description: SHA-256 of RV(rendered), to compare with the file the pods see.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: str
previous_sha256:
  description: SHA-256 of the content before the change (null when there was none).
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: str
location_snippet:
  description: The rendered location snippet.
  returned: when O(location_snippet_key) is set
  type: str
configmap:
  description: C(namespace/name) of the ConfigMap.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: str
key:
  description: The ConfigMap key of the map text.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: str
resource_version:
  description: resourceVersion of the ConfigMap after the task.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: str
nginx_checked:
  description: Whether C(nginx -t) accepted the rendered text on the host running the task.
  returned: always (with O(fanout), per host in RV(results_by_host))
  type: bool
dry_run:
  description: True in check mode when a change was predicted (sent with C(dryRun=All)).
  returned: in check mode with a change
  type: bool
checks:
  description:
    - Requests that prove the routing, derived from maps with a single request-header C(source) and
      C(proxy_set_header) - one per exact key, one per regex key with its C(sample) (declared, or derived from the
      regex), one without the header. Each has C(headers) (to send), C(response_header) (the header the backend
      receives), C(expect) (what nginx answers - exact keys first, then regexes in order, else the default) and
      C(key) (the rule, null for the request without the header).
    - Not checked - declare a C(sample) where possible - regex keys whose sample cannot be derived (lookarounds,
      PCRE-only syntax) or that come after a regex Python cannot evaluate, values that reference variables, keys that
      are not printable ASCII, and hostnames maps.
  returned: unless O(restore=true)
  type: list
  elements: dict
problems:
  description: Every validation problem, when the maps were rejected.
  returned: on failure
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

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.maptask import run_nginx_map
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.module import run_module


def main():
    run_module("nginx_map", run_nginx_map)


if __name__ == "__main__":
    main()

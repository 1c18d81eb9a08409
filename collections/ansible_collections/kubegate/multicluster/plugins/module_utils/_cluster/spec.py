# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Argument specs: the connection options shared by every cluster module (documented once in the `cluster` doc
fragment) and each module's own options. Modules and the controller fast path read them from here, so both validate
exactly the same way."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

CONNECTION = dict(
    host=dict(type="str"),
    api_key=dict(type="str", no_log=True),
    kubeconfig=dict(type="raw", no_log=False),
    context=dict(type="str"),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"]),
    client_cert=dict(type="path", aliases=["cert_file"]),
    client_key=dict(type="path", aliases=["key_file"], no_log=False),
    validate_certs=dict(type="bool", aliases=["verify_ssl"]),
    tls_server_name=dict(type="str"),
    proxy=dict(type="str"),
    no_proxy=dict(type="str"),
    ssh_jump=dict(type="dict", options=dict(
        host=dict(type="str", required=True),
        port=dict(type="int", default=22),
        user=dict(type="str", required=True),
        key_file=dict(type="path", required=True, no_log=False),
        known_hosts=dict(type="path", required=True),
        connect_timeout=dict(type="float", default=10),
    )),
    tunnel=dict(type="str"),
    impersonate_user=dict(type="str"),
    impersonate_groups=dict(type="list", elements="str"),
    timeout=dict(type="float", default=30),
    connect_timeout=dict(type="float", default=10),
    retries=dict(type="int", default=3),
)

# Controller-side fan-out (plugin_utils/_fanout.py): accepted by every cluster module so one argument spec serves both
# ways a task runs, but only the action plugin's controller fast path acts on them; the module refuses `fanout`.
FANOUT = dict(
    fanout=dict(type="list", elements="str"),
    fanout_concurrency=dict(type="int", default=32),
)
DEFAULT_FANOUT_CONCURRENCY = 32

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
CONTENT_TYPES = ["json", "merge-patch", "json-patch", "strategic-merge-patch", "apply-patch", "text"]
DEFAULT_MAX_BODY = 16 * 1024 * 1024

MODULES = {
    "api_request": dict(
        argument_spec=dict(
            method=dict(type="str", default="GET", choices=METHODS),
            path=dict(type="str", required=True),
            query=dict(type="raw"),
            body=dict(type="raw"),
            content_type=dict(type="str", choices=CONTENT_TYPES),
            field_manager=dict(type="str"),
            force=dict(type="bool", default=False),
            status_code=dict(type="list", elements="int"),
            headers=dict(type="dict"),
            watch=dict(type="bool", default=False),
            until=dict(type="str"),
            max_body_bytes=dict(type="int", default=DEFAULT_MAX_BODY),
        ),
        required_by=dict(until=["watch"]),
    ),
    "service_proxy": dict(
        argument_spec=dict(
            namespace=dict(type="str", default="default"),
            service=dict(type="str", required=True),
            scheme=dict(type="str", choices=["http", "https"]),
            port=dict(type="str"),
            path=dict(type="str", default="/"),
            query=dict(type="raw"),
            method=dict(type="str", default="GET", choices=METHODS),
            headers=dict(type="dict"),
            body=dict(type="raw"),
            status_code=dict(type="list", elements="int"),
            max_body_bytes=dict(type="int", default=DEFAULT_MAX_BODY),
        ),
    ),
    "pod_exec": dict(
        argument_spec=dict(
            namespace=dict(type="str", default="default"),
            pod=dict(type="str"),
            label_selector=dict(type="str"),
            field_selector=dict(type="str"),
            container=dict(type="str"),
            command=dict(type="raw", required=True),
            stdin=dict(type="str"),
            read_only=dict(type="bool", default=False),
            fail_on_rc=dict(type="bool", default=True),
            max_concurrency=dict(type="int", default=10),
            batch_size=dict(type="int", default=0),
            max_output_bytes=dict(type="int", default=DEFAULT_MAX_BODY),
        ),
        mutually_exclusive=[["pod", "label_selector"], ["pod", "field_selector"]],
        required_one_of=[["pod", "label_selector", "field_selector"]],
    ),
    "pod_logs": dict(
        argument_spec=dict(
            namespace=dict(type="str", default="default"),
            name=dict(type="str", aliases=["pod"]),
            label_selector=dict(type="str"),
            field_selector=dict(type="str"),
            container=dict(type="str"),
            since_seconds=dict(type="int"),
            tail_lines=dict(type="int"),
            limit_bytes=dict(type="int"),
            previous=dict(type="bool", default=False),
            timestamps=dict(type="bool", default=False),
            follow=dict(type="bool", default=False),
            follow_timeout=dict(type="float", default=10),
            max_lines=dict(type="int"),
            max_bytes=dict(type="int", default=1048576),
            until=dict(type="str"),
            max_concurrency=dict(type="int", default=10),
        ),
        mutually_exclusive=[["name", "label_selector"], ["name", "field_selector"]],
        required_one_of=[["name", "label_selector", "field_selector"]],
    ),
    "nginx_map": dict(
        argument_spec=dict(
            maps=dict(type="list", elements="dict"),
            map_hash_bucket_size=dict(type="int", default=64),
            namespace=dict(type="str", default="ingress-nginx"),
            configmap=dict(type="str", default="kubegate-nginx-map"),
            key=dict(type="str", default="kubegate-map.conf", no_log=False),
            location_snippet_key=dict(type="str", no_log=False),
            nginx_check=dict(type="str", default="auto", choices=["auto", "always", "never"]),
            nginx_binary=dict(type="path"),
            keep_previous=dict(type="bool", default=True),
            restore=dict(type="bool", default=False),
            expected_sha256=dict(type="str"),
        ),
    ),
    "http_route": dict(
        argument_spec=dict(
            maps=dict(type="list", elements="dict", required=True),
            namespace=dict(type="str", default="default"),
            parent_refs=dict(type="list", elements="dict", required=True),
            hostnames=dict(type="list", elements="str"),
            backend_port=dict(type="int", default=80),
            name_prefix=dict(type="str", default="kubegate"),
            map_hash_bucket_size=dict(type="int", default=64),
        ),
    ),
}


def module_spec(name):
    """{argument_spec, mutually_exclusive, required_together, ...} for AnsibleModule / ArgumentSpecValidator."""
    spec = copy.deepcopy(MODULES[name])
    argument_spec = copy.deepcopy(CONNECTION)
    argument_spec.update(copy.deepcopy(FANOUT))
    argument_spec.update(spec["argument_spec"])
    spec["argument_spec"] = argument_spec
    return spec

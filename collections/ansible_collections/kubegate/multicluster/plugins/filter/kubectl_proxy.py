# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Filter ``kubectl_proxy_plan``: the validated plan of the ``kubectl_proxy`` role (files, arguments, warnings).

Documentation: kubectl_proxy_plan.yml next to this file; logic in plugin_utils/_kubectl_proxy.py.
"""
from __future__ import annotations

from ansible_collections.kubegate.multicluster.plugins.plugin_utils._kubectl_proxy import plan


def kubectl_proxy_plan(clusters, inventory_hosts=None, publish=True, dangerous_address="", dangerous_accept_hosts="",
                       dangerous_allow_exec=False, kubectl_path="/usr/local/bin/kubectl",
                       config_dir="/etc/kubegate-kubectl-proxy", host_state=None):
    """See plugin_utils/_kubectl_proxy.plan: {clusters, problems, warnings}; never raises on bad input."""
    return plan(clusters, inventory_hosts=inventory_hosts, publish=publish, dangerous_address=dangerous_address,
                dangerous_accept_hosts=dangerous_accept_hosts, dangerous_allow_exec=dangerous_allow_exec,
                kubectl_path=kubectl_path, config_dir=config_dir, host_state=host_state)


class FilterModule(object):
    """kubegate.multicluster kubectl proxy filters."""

    def filters(self):
        return {"kubectl_proxy_plan": kubectl_proxy_plan}

# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Filter ``gateway_model``: the validated model of the ``gateway`` role (clusters, callers, settings, problems).

Documentation: gateway_model.yml next to this file; logic in plugin_utils/_gateway.py.
"""
from __future__ import annotations

from ansible_collections.kubegate.multicluster.plugins.plugin_utils._gateway import model


def gateway_model(hosts, hostvars, settings, gateway_host="", gateway_hosts=None):
    """See plugin_utils/_gateway.model: {clusters, callers, settings, problems, ...}; never raises on bad input."""
    return model(hosts, hostvars, settings, gateway_host=gateway_host, gateway_hosts=list(gateway_hosts or []))


class FilterModule(object):
    """kubegate.multicluster gateway filters."""

    def filters(self):
        return {"gateway_model": gateway_model}

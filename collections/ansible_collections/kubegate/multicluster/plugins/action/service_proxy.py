# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin for kubegate.multicluster.service_proxy: runs on the controller when the connection is local."""
from __future__ import annotations

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.passthrough import run_service_proxy
from ansible_collections.kubegate.multicluster.plugins.plugin_utils._fastpath import FastPathAction


class ActionModule(FastPathAction):
    MODULE = "service_proxy"
    runner = staticmethod(run_service_proxy)

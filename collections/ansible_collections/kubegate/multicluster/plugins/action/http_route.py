# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin for kubegate.multicluster.http_route: runs on the controller when the connection is local."""
from __future__ import annotations

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.routetask import run_http_route
from ansible_collections.kubegate.multicluster.plugins.plugin_utils._fastpath import FastPathAction


class ActionModule(FastPathAction):
    MODULE = "http_route"
    runner = staticmethod(run_http_route)

# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin for kubegate.multicluster.nginx_map: runs on the controller when the connection is local."""
from __future__ import annotations

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.maptask import run_nginx_map
from ansible_collections.kubegate.multicluster.plugins.plugin_utils._fastpath import FastPathAction


class ActionModule(FastPathAction):
    MODULE = "nginx_map"
    runner = staticmethod(run_nginx_map)

# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin for kubegate.multicluster.pod_logs: runs on the controller when the connection is local."""
from __future__ import annotations

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.podlogs import run_pod_logs
from ansible_collections.kubegate.multicluster.plugins.plugin_utils._fastpath import FastPathAction


class ActionModule(FastPathAction):
    MODULE = "pod_logs"
    runner = staticmethod(run_pod_logs)

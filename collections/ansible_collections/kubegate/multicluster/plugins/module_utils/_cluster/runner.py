# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""The task context shared by both ways a task runs: a runner `run_xxx(params, ctx)` is called by the module (on the
target host) and by the controller fast path (action plugin) alike, so both behave identically.

Context carries the task's check/diff modes and collects warnings, values that must be hidden from output, and the
transport's notes (retries, give-ups) that the task shows at -v.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import transport
from .api import Client
from .config import resolve


class Context(object):
    def __init__(self, check_mode=False, diff=False, env=None):
        self.check_mode = check_mode
        self.diff = diff
        self.env = env            # environment for K8S_AUTH_* (None = os.environ)
        self.warnings = []
        self.secrets = set()
        self.notes = []
        self.on_note = None       # the controller fast path displays notes as they happen

    def note(self, message):
        self.notes.append(message)
        if self.on_note is not None:
            self.on_note(message)

    def warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)


def connect(params, ctx):
    """Resolve the connection options into a Client; registers its secrets and warnings with the context."""
    cluster = resolve(params, env=ctx.env, name=None)
    transport.report_to(ctx.note)
    ctx.secrets.update(transport.secret_values(cluster))
    for warning in cluster.warnings:
        ctx.warn(warning)
    return Client(cluster)

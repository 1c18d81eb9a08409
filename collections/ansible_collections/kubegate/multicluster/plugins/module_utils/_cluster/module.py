# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""The module side of a cluster module: argument validation by AnsibleModule, then the shared runner.

Every cluster module's main() is `run_module(NAME, runner)`; the action plugin's controller fast path calls the same
runner with the same argument spec, so a task behaves identically whichever way it runs.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule

from .errors import FANOUT_REFUSED, KubegateError, internal_error_message
from .runner import Context
from .spec import module_spec

NOTES_KEY = "_kubegate_notes"


def run_module(name, runner):
    module = AnsibleModule(supports_check_mode=True, **module_spec(name))
    if module.params.get("fanout") is not None:
        import platform
        why = "this task executed the module itself on %s" % (platform.node() or "a target host")
        module.fail_json(msg=FANOUT_REFUSED.format(why=why), changed=False)
    ctx = Context(check_mode=module.check_mode, diff=module._diff)
    try:
        result = runner(module.params, ctx)
    except Exception as e:  # pylint: disable=broad-except
        module.no_log_values.update(ctx.secrets)
        for warning in ctx.warnings:
            module.warn(warning)
        if isinstance(e, KubegateError):
            module.fail_json(**dict(e.result(), **_notes(ctx)))
        module.fail_json(msg=internal_error_message(name, e), **_notes(ctx))
    module.no_log_values.update(ctx.secrets)
    for warning in ctx.warnings:
        module.warn(warning)
    module.exit_json(**dict(result, **_notes(ctx)))


def _notes(ctx):
    """The transport's notes (retries, give-ups) for the action plugin to display at -v (it removes the key)."""
    return {NOTES_KEY: list(ctx.notes)} if ctx.notes else {}

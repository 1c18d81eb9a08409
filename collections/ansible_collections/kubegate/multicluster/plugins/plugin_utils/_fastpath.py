# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Controller fast path for cluster modules.

A cluster module only talks HTTPS to an apiserver, so when the task's connection is `local` (cluster hosts in an
inventory are API endpoints), packaging the module and starting a fresh interpreter per task is pure overhead. The
action plugin then validates the arguments with the module's own argument spec and runs the same runner in the worker
process. Anything that changes where or how a module would run falls back to executing the real module: a non-local
connection (delegate_to a jump host), become, async, or KUBEGATE_NO_FASTPATH=1.
"""
from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.errors import (
    FANOUT_REFUSED, KubegateError, internal_error_message)
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.module import NOTES_KEY
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.runner import Context
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.spec import module_spec

COLLECTION = "kubegate.multicluster"
display = Display()


def _plain(value):
    """Plain Python containers and scalars (tagged template results become their base types)."""
    if isinstance(value, dict):
        return dict((str(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


class FastPathAction(ActionBase):
    """Subclasses set MODULE (the module's short name) and RUNNER (a function (params, ctx) -> result)."""

    MODULE = None
    _supports_check_mode = True
    _supports_async = True

    @staticmethod
    def runner(params, ctx):
        raise NotImplementedError

    def _fast_path_possible(self):
        return self._fast_path_refusal() is None

    def _task_environment(self):
        env = dict(os.environ)
        raw = {}
        self._compute_environment_string(raw_environment_out=raw)
        env.update(dict((str(k), str(v)) for k, v in raw.items()))
        return env

    def _fast_path_refusal(self):
        """Why the request cannot run in this process (None when it can)."""
        if os.environ.get("KUBEGATE_NO_FASTPATH", "") not in ("", "0"):
            return "KUBEGATE_NO_FASTPATH is set"
        transport = getattr(self._connection, "transport", None)
        if transport != "local":
            return "the task's connection is %s, not local" % transport
        if self._task.async_val:
            return "the task is async"
        if self._play_context.become:
            return "the task uses become"
        return None

    def run(self, tmp=None, task_vars=None):
        result = super(FastPathAction, self).run(tmp, task_vars)
        del tmp
        refusal = self._fast_path_refusal()
        if refusal and self._task.args.get("fanout") is not None:
            # nothing is shipped anywhere: the module would refuse fanout as well (module_utils/_cluster/module.py)
            why = "this task would execute the module instead, because %s" % refusal
            raise AnsibleActionFail(FANOUT_REFUSED.format(why=why))
        if refusal:
            wrap_async = self._task.async_val and not self._connection.has_native_async
            result = merge_hash(result, self._execute_module(module_name="%s.%s" % (COLLECTION, self.MODULE),
                                                             task_vars=task_vars, wrap_async=wrap_async))
            for note in result.pop(NOTES_KEY, None) or ():
                self._show_note(note)
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result

        args = _plain(dict((k, v) for k, v in self._task.args.items() if not k.startswith("_ansible_")))
        if args.get("fanout") is not None:
            from ansible_collections.kubegate.multicluster.plugins.plugin_utils._fanout import run_fanout
            result.update(run_fanout(self, args, task_vars))
            return result
        validated = self._validate(args)
        out, secrets = self._call(validated)
        out["invocation"] = {"module_args": validated.params}
        result.update(remove_values(out, secrets))
        return result

    def _validate(self, args):
        """Validate task args with the module's own argument spec; raises AnsibleActionFail with every problem."""
        validator = ArgumentSpecValidator(**module_spec(self.MODULE))
        validation = validator.validate(args)
        if validation.error_messages:
            messages = []
            for error in validation.errors.errors:
                text = error.args[0] if error.args else str(error)
                if isinstance(error, UnsupportedError):
                    text = "Unsupported parameters for (%s.%s) module: %s" % (COLLECTION, self.MODULE, text)
                messages.append(text)
            raise AnsibleActionFail("; ".join(messages))
        return _Validated(validation)

    def _call(self, validated):
        """Run the module's runner with validated params in this process (thread-safe: used by the fan-out pool).
        Returns (result without `invocation`, the values to hide from it)."""
        ctx = Context(check_mode=bool(self._task.check_mode), diff=bool(self._task.diff), env=self._task_env)
        ctx.on_note = self._show_note
        try:
            out = type(self).runner(validated.params, ctx)
        except KubegateError as e:
            out = e.result()
            out["failed"] = True
            out.setdefault("changed", False)
        except Exception as e:  # pylint: disable=broad-except
            out = {"failed": True, "changed": False, "msg": internal_error_message(self.MODULE, e)}
        secrets = set(validated.no_log_values)
        secrets.update(ctx.secrets)
        warnings = list(validated.warnings) + list(ctx.warnings)
        if warnings:
            out["warnings"] = [w if isinstance(w, str) else w.get("warning", str(w)) for w in warnings]
        if validated.deprecations:
            out["deprecations"] = list(validated.deprecations)
        return out, secrets

    def _show_note(self, message):
        """A retry or give-up of the transport, shown at -v as it happens (the module path shows it afterwards)."""
        display.v("kubegate: %s" % message, host=self._play_context.remote_addr or None)

    @property
    def _task_env(self):
        env = getattr(self, "_kubegate_env", None)
        if env is None:
            env = self._kubegate_env = self._task_environment()
        return env


class _Validated(object):
    """The outcome of a successful argument validation: params plus what must be hidden or reported."""

    def __init__(self, validation):
        self.params = validation.validated_parameters
        self.no_log_values = set(validation._no_log_values)
        self.warnings = list(validation._warnings)
        self.deprecations = list(validation._deprecations)

# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin kubegate.multicluster.warn: emit real Ansible warnings ([WARNING] lines) from a playbook or role."""
from __future__ import annotations

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("msg",))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        msg = self._task.args.get("msg")
        messages = msg if isinstance(msg, list) else [msg]
        if not messages or any(not isinstance(m, str) or not m.strip() for m in messages):
            result.update(failed=True, msg="warn: msg must be a non-empty string or a list of non-empty strings, got %r"
                          % (msg,))
            return result
        result.update(changed=False, warnings=[m.strip() for m in messages],
                      msg="%d warning(s)" % len(messages))
        return result

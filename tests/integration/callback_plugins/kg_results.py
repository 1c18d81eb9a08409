# Test-only callback: writes every task result as JSON lines to $KG_RESULTS_FILE, so integration tests assert on
# structured results instead of scraping the screen.
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: kg_results
type: aggregate
short_description: write task results as JSON lines (tests only)
description: Writes one JSON object per task result to the file named by KG_RESULTS_FILE.
requirements: [enabled in callbacks_enabled]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kg_results"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, status):
        path = os.environ.get("KG_RESULTS_FILE")
        if not path:
            return
        record = {"host": result._host.get_name(), "task": result._task.get_name(), "status": status,
                  "result": result._result}
        with open(path, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._write(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._write(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._write(result, "unreachable")

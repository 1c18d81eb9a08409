"""The User-Agent every request carries: the collection's version (kept equal to galaxy.yml) and the run, set in the
one place that builds request headers (transport.auth_headers); run ids that are not plain tokens are never sent."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import transport

GALAXY = Path(__file__).resolve().parents[4] / "galaxy.yml"


class _Cluster:
    scheme = "http"


def test_version_is_galaxy_version():
    assert transport.COLLECTION_VERSION == yaml.safe_load(GALAXY.read_text())["version"]


@pytest.mark.parametrize("env, agent", [
    ({"KUBEGATE_RUN_ID": "awx-job-42"}, "(run awx-job-42)"),
    ({"JOB_ID": "7"}, "(run awx-job-7)"),
    ({"KUBEGATE_RUN_ID": "ci-1", "JOB_ID": "7"}, "(run ci-1)"),
    ({}, None),
    ({"KUBEGATE_RUN_ID": "x\r\nX-Evil: 1"}, None),
    ({"KUBEGATE_RUN_ID": "a b"}, None),
    ({"JOB_ID": "7; rm"}, None),
])
def test_auth_headers_name_the_run(monkeypatch, env, agent):
    for name in ("KUBEGATE_RUN_ID", "JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    headers = transport.auth_headers(_Cluster())[0]
    expected = "kubegate.multicluster/%s" % transport.COLLECTION_VERSION + (" " + agent if agent else "")
    assert headers["User-Agent"] == expected

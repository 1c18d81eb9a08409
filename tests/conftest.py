"""Shared fixtures for the repository-level tests (tests/lab, tests/integration, ...): the running lab."""
from __future__ import annotations

import json

import pytest

from kgtest import CLUSTERS, LAB, Lab


@pytest.fixture(scope="session")
def lab() -> Lab:
    ready, desc = LAB / "ready", LAB / "lab.json"
    if not ready.exists() or not desc.exists():
        pytest.fail("lab not up: run `make lab` first (tests/ need the real lab; they never skip)")
    return Lab(json.loads(desc.read_text()))


@pytest.fixture(params=CLUSTERS)
def cluster(request) -> str:
    return request.param

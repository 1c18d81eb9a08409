# -*- coding: utf-8 -*-
"""The drift_report module: files written (or not, in check mode), return values, bad input."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kubegate.multicluster.plugins.modules import drift_report

MAP = "map $http_x_version $kubegate_backend {\n    \"v2\" \"canary\";\n}\n"
CLUSTERS = [
    {"cluster": "cluster-a", "tenant": "acme", "probe": {"status": 200}, "checks": [
        {"name": "map_configmap", "kind": "configmap", "expected": {"kubegate-map.conf": MAP},
         "result": {"status": 200, "json": {"metadata": {"name": "m"}, "data": {"kubegate-map.conf": MAP}}}}]},
    {"cluster": "cluster-b", "tenant": "acme", "probe": {"status": 200}, "checks": [
        {"name": "map_configmap", "kind": "configmap", "expected": {"kubegate-map.conf": MAP},
         "result": {"status": 200, "json": {"metadata": {"name": "m"},
                                            "data": {"kubegate-map.conf": MAP.replace("canary", "oob")}}}}]},
]


def run(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            drift_report.main()
    return json.loads(capsys.readouterr().out)


def test_writes_the_three_reports(tmp_path, capsys):
    out = run({"clusters": CLUSTERS, "reports_dir": str(tmp_path), "run_id": "r1",
               "tunnel_hosts": [{"host": "edge", "probe": {"ping": "pong"}, "facts": {"ssh_tunnel": [
                   {"cluster": "cluster-a", "in_sync": False, "diff": "-a\n+b\n", "active": True}]}}],
               "tenants": {"cluster-a": "acme"}}, capsys)
    assert out["status"] == "drifted" and out["exit_code"] == 3 and out["changed"] is True
    assert out["report_dir"] == str(tmp_path / "r1")
    assert out["statuses"]["acme"] == {"cluster-a": {"map_configmap": "in_sync", "ssh_tunnel@edge": "drifted"},
                                       "cluster-b": {"map_configmap": "drifted"}}
    report = json.loads((tmp_path / "r1" / "drift.json").read_text())
    assert report["tenants"]["acme"]["cluster-b"]["checks"]["map_configmap"]["diff"].count('"oob"') == 1
    assert ET.parse(tmp_path / "r1" / "junit.xml").getroot().get("failures") == "2"
    assert "| cluster-b | map_configmap | **DRIFTED** |" in (tmp_path / "r1" / "summary.md").read_text()
    assert any(p.startswith("acme/cluster-b/map_configmap: drifted") for p in out["problems"])
    # a second run with the same id never overwrites the first report
    again = run({"clusters": CLUSTERS[:1], "reports_dir": str(tmp_path), "run_id": "r1", "formats": ["json"]}, capsys)
    assert again["report_dir"] == str(tmp_path / "r1-2") and again["status"] == "in_sync"
    assert json.loads((tmp_path / "r1" / "drift.json").read_text())["status"] == "drifted"
    assert not (tmp_path / "r1-2" / "junit.xml").exists()


def test_check_mode_writes_nothing_and_diff_mode_returns_the_diffs(tmp_path, capsys):
    out = run({"clusters": CLUSTERS, "reports_dir": str(tmp_path / "rep"), "_ansible_check_mode": True,
               "_ansible_diff": True}, capsys)
    assert out["changed"] is False and out["status"] == "drifted"
    assert not (tmp_path / "rep").exists()
    assert "acme/cluster-b/map_configmap" in out["diff"]["prepared"] and '+    "v2" "oob";' in out["diff"]["prepared"]


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    out = run({"clusters": [], "reports_dir": str(tmp_path), "run_id": "../x"}, capsys)
    assert out["failed"] and "run_id must be a plain directory name" in out["msg"]
    (tmp_path / "file").write_text("")
    out = run({"clusters": CLUSTERS, "reports_dir": str(tmp_path / "file")}, capsys)
    assert out["failed"] and "cannot write the drift reports" in out["msg"]
    empty = run({"clusters": [], "reports_dir": str(tmp_path / "e"), "run_id": "r"}, capsys)
    assert empty["status"] == "error" and empty["exit_code"] == 5

# -*- coding: utf-8 -*-
"""Filters kubegate.multicluster.nginx_map / nginx_map_problems: direct calls, the real Jinja pipeline, and docs."""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible.errors import AnsibleError, AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.kubegate.multicluster.plugins.filter import nginx_map as plugin
from ansible_collections.kubegate.multicluster.plugins.module_utils._nginx_map import (
    HEADER_COMMENT,
    render,
    render_snippets,
)

FILTER_DIR = Path(plugin.__file__).parent
COLLECTIONS_ROOT = FILTER_DIR.parents[4]  # .../collections (holds ansible_collections/)

MAPS = [{
    "source": "$http_x_version",
    "variable": "kubegate_backend",
    "default": "backend-stable",
    "proxy_set_header": "X-Kubegate-Backend",
    "entries": [{"key": "v1", "value": "backend-v1"}, {"key": "~^v2\\.\\d+$", "value": 'be "two"'}],
}]
BAD = [{"source": "$http_x_version", "variable": "host", "entries": {"v2": "a\n}", "V2": "b"}}]
BAD_PROBLEMS = [
    "map[0] ($host): variable $host collides with the nginx built-in variable $host; choose a name of your own such "
    "as $kubegate_host",
    'map[0] ($host) entry[0] (key "v2"): value contains a control character (U+000A)',
    'map[0] ($host) entry[1] (key "V2"): differs only in letter case from entry[0] (key "v2"); nginx compares exact '
    'keys case-insensitively and rejects such a map ("conflicting parameter")',
]


def test_filters_are_registered():
    filters = plugin.FilterModule().filters()
    assert filters == {"nginx_map": plugin.nginx_map, "nginx_map_problems": plugin.nginx_map_problems}


def test_nginx_map_renders_like_the_module_utils():
    assert plugin.nginx_map(MAPS) == render(MAPS)
    assert plugin.nginx_map(MAPS, part="location_snippet") == render_snippets(MAPS)["location_snippet"]
    assert plugin.nginx_map(MAPS, part="location_snippet") == (
        HEADER_COMMENT + "\nproxy_set_header X-Kubegate-Backend $kubegate_backend;\n")


def test_nginx_map_raises_one_error_with_every_problem():
    with pytest.raises(AnsibleFilterError) as info:
        plugin.nginx_map(BAD)
    message = str(info.value)
    assert message.startswith("nginx_map: 3 problems in the nginx map definitions:")
    for problem in BAD_PROBLEMS:
        assert "  - " + problem in message


def test_nginx_map_problems_lists_and_never_raises():
    assert plugin.nginx_map_problems(MAPS) == []
    assert plugin.nginx_map_problems(BAD) == BAD_PROBLEMS
    assert plugin.nginx_map_problems("not a list") == ["maps must be a list of map definitions, got a string"]


def test_bucket_size_option_accepts_templated_strings():
    long_key = [{"source": "$http_a", "variable": "kg", "entries": {"k" * 60: "x"}}]
    assert plugin.nginx_map_problems(long_key) == [
        'map[0] ($kg) entry[0] (key "%s"): key of 60 bytes needs map_hash_bucket_size >= 80 (configured: 64)'
        % ("k" * 60)]
    assert plugin.nginx_map_problems(long_key, map_hash_bucket_size="128") == []
    assert plugin.nginx_map(long_key, map_hash_bucket_size=128) == render(long_key, 128)
    assert plugin.nginx_map_problems(long_key, map_hash_bucket_size="big") == [
        'map_hash_bucket_size must be a positive integer, got "big"']


def test_unknown_part_is_an_error():
    with pytest.raises(AnsibleFilterError, match="part must be one of map, location_snippet"):
        plugin.nginx_map(MAPS, part="server_snippet")


# the real Jinja pipeline (ansible-core 2.19 lazy containers, tagged strings, keyword arguments)


def template(expression, **variables):
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression))


def test_through_templar():
    assert template("{{ maps | kubegate.multicluster.nginx_map }}", maps=MAPS) == render(MAPS)
    assert template("{{ maps | kubegate.multicluster.nginx_map(part='location_snippet') }}", maps=MAPS) == \
        render_snippets(MAPS)["location_snippet"]
    assert template("{{ bad | kubegate.multicluster.nginx_map_problems(map_hash_bucket_size=128) }}",
                    bad=BAD) == BAD_PROBLEMS


def test_through_templar_failure_carries_all_problems():
    with pytest.raises(AnsibleError) as info:
        template("{{ bad | kubegate.multicluster.nginx_map }}", bad=BAD)
    for problem in BAD_PROBLEMS:
        assert problem in str(info.value)


# documentation


@pytest.mark.parametrize("name", ["nginx_map", "nginx_map_problems"])
def test_doc_options_match_the_signature(name):
    docs = yaml.safe_load((FILTER_DIR / (name + ".yml")).read_text(encoding="utf-8"))
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    doc = docs["DOCUMENTATION"]
    assert doc["name"] == name
    parameters = list(inspect.signature(getattr(plugin, name)).parameters)
    assert ["_input"] + parameters[1:] == list(doc["options"])
    for option in parameters[1:]:
        assert doc["options"][option]["default"] == inspect.signature(getattr(plugin, name)).parameters[option].default
    assert "kubegate.multicluster." + name in docs["EXAMPLES"]
    assert isinstance(yaml.safe_load(docs["EXAMPLES"]), list)


def test_example_maps_are_valid():
    """The maps in the nginx_map EXAMPLES render (documentation that fails validation would be worse than none)."""
    examples = yaml.safe_load(yaml.safe_load((FILTER_DIR / "nginx_map.yml").read_text(encoding="utf-8"))["EXAMPLES"])
    routing_maps = examples[0]["ansible.builtin.set_fact"]["routing_maps"]
    assert plugin.nginx_map_problems(routing_maps) == []
    snippet = plugin.nginx_map(routing_maps, part="location_snippet")
    assert "proxy_set_header X-Kubegate-Backend $kubegate_backend;" in snippet


def test_map_suboptions_document_every_map_option():
    from ansible_collections.kubegate.multicluster.plugins.module_utils._nginx_map import MAP_OPTIONS

    doc = yaml.safe_load((FILTER_DIR / "nginx_map.yml").read_text(encoding="utf-8"))["DOCUMENTATION"]
    assert sorted(doc["options"]["_input"]["suboptions"]) == sorted(MAP_OPTIONS)


def test_ansible_doc_renders_both_filters():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_ROOT), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [sys.executable, "-m", "ansible.cli.doc", "-t", "filter", "--json",
         "kubegate.multicluster.nginx_map", "kubegate.multicluster.nginx_map_problems"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    docs = json.loads(proc.stdout)
    assert sorted(docs["kubegate.multicluster.nginx_map"]["doc"]["options"]) == ["_input", "map_hash_bucket_size",
                                                                                 "part"]
    assert docs["kubegate.multicluster.nginx_map_problems"]["return"]["_value"]["type"] == "list"


def test_part_checks_is_the_modules_routing_checks():
    from ansible_collections.kubegate.multicluster.plugins.module_utils._nginx_map import routing_checks
    maps = [{"source": "$http_x_version", "variable": "$kubegate_backend", "default": "stable",
             "proxy_set_header": "X-Kubegate-Backend",
             "entries": [{"key": "v2", "value": "canary"}, {"key": "~^v3-", "value": "next"}]}]
    assert plugin.nginx_map(maps, part="checks") == routing_checks(maps) == [
        {"headers": {"X-Version": "v2"}, "response_header": "X-Kubegate-Backend", "expect": "canary", "key": "v2"},
        {"headers": {"X-Version": "v3-"}, "response_header": "X-Kubegate-Backend", "expect": "next", "key": "~^v3-"},
        {"headers": {}, "response_header": "X-Kubegate-Backend", "expect": "stable", "key": None}]
    with pytest.raises(AnsibleFilterError, match="nginx_map"):
        plugin.nginx_map([{"source": "$http_x", "variable": "$host", "entries": {"a;": "b"}}], part="checks")

# -*- coding: utf-8 -*-
"""The nginx map renderer/validator, proven against the real nginx binary.

* golden renders (golden/*.yml -> *.conf, *.location_snippet), each accepted by `nginx -t` and probed on a live
  nginx: requests carrying the header get the expected value back;
* rejection cases, each asserting the exact message;
* PCRE syntax Python's `re` rejects is not rejected (nginx -t agrees), and what the pre-check rejects nginx rejects;
* a seeded property test: random valid maps with awkward keys/values validate, pass `nginx -t`, and a live nginx
  answers every entry's probe with the value a model of nginx's matching predicts;
* random invalid inputs always yield problems and never an exception other than NginxMapError.

nginx is a project dependency (lab/deps.sh installs it): when it is missing these tests fail, they do not skip.
Set KUBEGATE_UPDATE_GOLDEN=1 to rewrite the expected golden files.
"""
from __future__ import annotations

import http.client
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.kubegate.multicluster.plugins.module_utils import _nginx_check as nc
from ansible_collections.kubegate.multicluster.plugins.module_utils._nginx_map import (
    HEADER_COMMENT,
    NginxMapError,
    hash_bucket_size_needed,
    quote,
    regex_precheck,
    regex_sample,
    render,
    render_snippets,
    routing_checks,
    validate,
)

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_CASES = sorted(p.stem for p in GOLDEN.glob("*.yml"))


# ---------------------------------------------------------------------------------------------------------------
# helpers: nginx -t and a live nginx on a loopback port


def nginx_binary():
    binary = nc.find_nginx()
    assert binary, "nginx is required for these tests (lab/deps.sh installs it)"
    return binary


def assert_nginx_accepts(text, map_hash_bucket_size=None):
    ok, message = nc.check_with_nginx(text, map_hash_bucket_size=map_hash_bucket_size)
    assert ok is not None, message  # nginx missing: fail, never skip
    assert ok, "nginx -t rejected the rendered maps:\n%s\n--- rendered ---\n%s" % (message, text)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveNginx(object):
    """A real nginx (no daemon, no master) on 127.0.0.1:<free port> serving /kubegate/<variable>."""

    def __init__(self, text, map_hash_bucket_size=None):
        self.text = text
        self.map_hash_bucket_size = map_hash_bucket_size
        self.workdir = tempfile.mkdtemp(prefix="kubegate-nginx-live-")
        self.proc = None
        self.port = None
        self.conn = None

    def __enter__(self):
        binary = nginx_binary()
        last_error = ""
        for _attempt in range(5):
            self.port = free_port()
            conf = nc.write_test_config(self.workdir, self.text, listen="127.0.0.1:%d" % self.port,
                                        map_hash_bucket_size=self.map_hash_bucket_size,
                                        main_directives=["daemon off;", "master_process off;"])
            log = open(os.path.join(self.workdir, "stderr.log"), "wb")
            self.proc = subprocess.Popen(nc.nginx_command(binary, self.workdir, conf, test=False),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            log.close()
            if self._wait_ready():
                return self
            last_error = Path(self.workdir, "stderr.log").read_text(errors="replace")
            self._stop()
            if "Address already in use" not in last_error:
                break
        self._cleanup()
        raise AssertionError("nginx did not start:\n%s" % last_error)

    def _wait_ready(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.01)
        return False

    def get(self, variable, headers):
        """GET /kubegate/<variable> with ``headers`` (name -> str/bytes); returns the body bytes."""
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                self.conn.putrequest("GET", "/kubegate/" + variable.lstrip("$"), skip_accept_encoding=True)
                for name, value in headers.items():
                    self.conn.putheader(name, value.encode("utf-8") if isinstance(value, str) else value)
                self.conn.endheaders()
                response = self.conn.getresponse()
                body = response.read()
                assert response.status == 200, (response.status, body)
                return body
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _stop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def _cleanup(self):
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __exit__(self, *exc_info):
        self._stop()
        self._cleanup()


# ---------------------------------------------------------------------------------------------------------------
# golden files


def load_golden(name):
    data = yaml.safe_load((GOLDEN / (name + ".yml")).read_text(encoding="utf-8"))
    return data["maps"], data.get("map_hash_bucket_size", 64), data.get("probes", [])


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_render(name):
    maps, bucket, _probes = load_golden(name)
    assert validate(maps, bucket) == []
    text = render(maps, bucket)
    snippet = render_snippets(maps, bucket)["location_snippet"]
    conf_path = GOLDEN / (name + ".conf")
    snippet_path = GOLDEN / (name + ".location_snippet")
    if os.environ.get("KUBEGATE_UPDATE_GOLDEN"):
        conf_path.write_bytes(text.encode("utf-8"))
        if snippet:
            snippet_path.write_bytes(snippet.encode("utf-8"))
        elif snippet_path.exists():
            snippet_path.unlink()
    assert text == conf_path.read_bytes().decode("utf-8")
    assert snippet == (snippet_path.read_bytes().decode("utf-8") if snippet_path.exists() else "")
    # deterministic text: LF only, one trailing newline, the managed-by header first
    assert "\r" not in text and text.endswith("}\n") and not text.endswith("\n\n")
    assert text.splitlines()[0] == HEADER_COMMENT
    assert render(maps, bucket) == text


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_live(name):
    """nginx -t accepts the golden render and a live nginx answers each probe with the expected value."""
    maps, bucket, probes = load_golden(name)
    text = render(maps, bucket)
    assert_nginx_accepts(text, bucket)
    assert probes, "every golden case carries probes"
    with LiveNginx(text, bucket) as server:
        for probe in probes:
            body = server.get(probe["variable"], probe["headers"])
            assert body.decode("utf-8") == probe["expect"], probe


def test_golden_bucket_size_matters():
    """combined_source needs map_hash_bucket_size 128: the validator and nginx both refuse it at 64."""
    maps, _bucket, _probes = load_golden("combined_source")
    assert validate(maps, 64) == [
        'map[0] ($kubegate_route) entry[3] (key "a-very-long-tenant-name-that-needs-a-bigger-bucket:v1"): key of 53 '
        'bytes needs map_hash_bucket_size >= 72 (configured: 64)']
    ok, message = nc.check_with_nginx(render(maps, 128), map_hash_bucket_size=64)
    assert ok is False and "could not build map_hash" in message, message


# ---------------------------------------------------------------------------------------------------------------
# routing checks (what the reload playbook sends through every controller pod), answered by a live nginx

REGEX_ROUTES = [{
    "source": "$http_x_version", "variable": "kubegate_rx", "default": "stable", "proxy_set_header": "X-Kg-Rx",
    "entries": [
        {"key": "v1", "value": "one"},
        {"key": "~^v2\\.\\d+$", "value": "two"},                       # derived sample
        {"key": "~*^canary-[a-f0-9]{4}$", "value": "canary"},       # derived, case-insensitive
        {"key": "~^[^a-z]{3};$", "value": "digits"},                # negated class, ';' in the key
        {"key": "~^(?<ver>v3)(-rc\\d)?$", "value": "three", "sample": "v3-rc1"},  # PCRE-only: declared
        {"key": "~^v", "value": "other-v"},      # after a regex Python cannot evaluate: answer unknown, not checked
        {"key": "~(?<=x)y", "value": "lookbehind"},                 # no derivable sample: not checked
    ]}]


def _routing_cases():
    cases = [("regex_routes", REGEX_ROUTES)]
    for name in GOLDEN_CASES:
        maps, bucket, _probes = load_golden(name)
        if bucket == 64:
            cases.append((name, maps))
    return cases


def test_routing_checks_cover_regex_rules_with_a_sample_each():
    checks = routing_checks(REGEX_ROUTES)
    by_key = dict((c["key"], c) for c in checks)
    assert by_key["~^v2\\.\\d+$"]["headers"] == {"X-Version": "v2.0"} and by_key["~^v2\\.\\d+$"]["expect"] == "two"
    assert by_key["~*^canary-[a-f0-9]{4}$"]["headers"] == {"X-Version": "canary-aaaa"}
    assert by_key["~^(?<ver>v3)(-rc\\d)?$"]["headers"] == {"X-Version": "v3-rc1"}
    assert by_key["~^[^a-z]{3};$"]["headers"] == {"X-Version": "xxx;".replace("x", "0")}
    assert "~^v" not in by_key and "~(?<=x)y" not in by_key
    assert by_key[None] == {"headers": {}, "response_header": "X-Kg-Rx", "expect": "stable", "key": None}
    assert by_key["v1"]["headers"] == {"X-Version": "v1"} and len(checks) == 6


def test_routing_checks_absent_header_answered_by_the_empty_key():
    maps, _bucket, _probes = load_golden("header_routing")
    absent = [c for c in routing_checks(maps) if c["headers"] == {}]
    assert absent == [{"headers": {}, "response_header": "X-Kubegate-Backend", "expect": "backend-no-header",
                       "key": ""}]


def test_routing_checks_refuse_invalid_maps():
    with pytest.raises(NginxMapError):
        routing_checks([m([{"key": "v1", "value": "a\n"}], proxy_set_header="X-Kg")])


@pytest.mark.parametrize("key,sample", [
    ("~^v2\\.\\d+$", "v2.0"), ("~^(ab|cd)+\\1$", "abab"), ("~^[^\\w]$", "-"), ("~^a;b{2}$", "a;bb"),
    ("~*^X", "X"), ("~^(?<n>v)$", None), ("~(?=a)", None), ("~^$", ""),
])
def test_regex_sample(key, sample):
    assert regex_sample(key) == sample


@pytest.mark.parametrize("name,maps", _routing_cases(), ids=[c[0] for c in _routing_cases()])
def test_routing_checks_are_answered_as_expected_by_live_nginx(name, maps):
    """Every check the playbook would send gets the expected value from a real nginx loading the rendered maps."""
    checks = routing_checks(maps)
    variables = dict((mp["proxy_set_header"], mp["variable"]) for mp in maps if mp.get("proxy_set_header"))
    if not checks:
        assert not variables or all(mp.get("hostnames") for mp in maps if mp.get("proxy_set_header"))
        return
    with LiveNginx(render(maps)) as server:
        for check in checks:
            body = server.get(variables[check["response_header"]], check["headers"])
            assert body.decode("utf-8") == check["expect"], (name, check)


# ---------------------------------------------------------------------------------------------------------------
# rendering details


def test_render_shape_and_escaping():
    maps = [{
        "source": "$http_x_version",
        "variable": "kubegate_backend",
        "hostnames": False,
        "volatile": True,
        "default": "",
        "entries": [
            {"key": "\\lead", "value": 'a"b'},
            {"key": "~^v\\d+$", "value": "c\\d"},
        ],
    }]
    assert render(maps) == (
        HEADER_COMMENT + "\n"
        "\n"
        'map "$http_x_version" $kubegate_backend {\n'
        "    volatile;\n"
        '    default "";\n'
        '    "\\\\\\\\lead" "a\\"b";\n'
        '    "~^v\\\\d+$" "c\\\\d";\n'
        "}\n")


def test_render_empty_list_is_just_the_header():
    assert render([]) == HEADER_COMMENT + "\n"
    assert render_snippets([]) == {"location_snippet": ""}


def test_quote():
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert quote("") == '""'


@pytest.mark.parametrize("key_bytes,needed", [(0, 24), (6, 24), (7, 32), (46, 64), (47, 72), (110, 128), (111, 136)])
def test_hash_bucket_size_needed(key_bytes, needed):
    assert hash_bucket_size_needed(key_bytes) == needed


@pytest.mark.parametrize("length,bucket,accepted", [(46, 64, True), (47, 64, False), (110, 128, True),
                                                    (111, 128, False)])
def test_bucket_formula_matches_nginx(length, bucket, accepted):
    """The formula agrees with nginx at the boundaries (checked on a hand-written map that skips validation)."""
    text = 'map $http_x_a $kubegate_len {\n    %s "x";\n}\n' % quote("k" * length)
    ok, message = nc.check_with_nginx(text, map_hash_bucket_size=bucket)
    assert ok is accepted, message
    assert (hash_bucket_size_needed(length) <= bucket) is accepted


def test_exact_keys_match_case_insensitively_in_nginx():
    """The fact behind the case-duplicate rule: nginx folds exact keys, and rejects v2 next to V2."""
    text = render([{"source": "$http_x_v", "variable": "kubegate_case", "entries": {"MiXeD": "hit"}}])
    with LiveNginx(text) as server:
        for header in ("mixed", "MIXED", "MiXeD"):
            assert server.get("kubegate_case", {"X-V": header}) == b"hit"
    ok, message = nc.check_with_nginx('map $http_x_v $kubegate_dup {\n    "v2" a;\n    "V2" b;\n}\n')
    assert ok is False and 'conflicting parameter "v2"' in message


def test_map_parameter_words_in_nginx():
    """The facts behind the special-word rule."""
    ok, message = nc.check_with_nginx('map $http_x_v $kubegate_dd {\n    default a;\n    "default" b;\n}\n')
    assert ok is False and "duplicate default map parameter" in message
    ok, message = nc.check_with_nginx('map $http_x_v $HOST {\n    a b;\n}\n')
    assert ok is False and 'the duplicate "HOST" variable' in message


def test_check_with_nginx_reports_missing_binary():
    ok, message = nc.check_with_nginx(render([]), nginx_binary="/nonexistent/nginx")
    assert ok is None and message.startswith(nc.NGINX_NOT_FOUND)


def test_check_with_nginx_message_is_readable():
    ok, message = nc.check_with_nginx('map $http_x_v $kubegate_x {\n    "~^(a" b;\n}\n')
    assert ok is False
    assert message.startswith("[emerg] pcre") and "<maps>:2" in message and "/tmp" not in message


def test_nginx_command_uses_e_only_where_supported():
    assert nc.nginx_command("nginx", "/w", "/w/nginx.conf", version=(1, 22, 1)) == [
        "nginx", "-t", "-q", "-p", "/w/", "-c", "/w/nginx.conf", "-e", "stderr"]
    assert nc.nginx_command("nginx", "/w/", "/w/nginx.conf", test=False, version=(1, 18, 0)) == [
        "nginx", "-p", "/w/", "-c", "/w/nginx.conf"]
    version = nc.nginx_version(nginx_binary())
    assert isinstance(version, tuple) and len(version) == 3


def test_error_lists_problems_and_pickles():
    import pickle

    error = pickle.loads(pickle.dumps(NginxMapError(["first", "second"])))
    assert error.problems == ["first", "second"]
    assert str(error) == "2 problems in the nginx map definitions:\n  - first\n  - second"


def test_defined_variables():
    text = render([{"source": "$http_a", "variable": "kg_one", "default": "x"},
                   {"source": "$http_b:$http_c", "variable": "kg_two", "default": "y"}])
    assert nc.defined_variables(text) == ["kg_one", "kg_two"]


# ---------------------------------------------------------------------------------------------------------------
# rejections: every case asserts the exact problem list


def m(entries=None, **options):
    """A valid map with overrides."""
    base = {"source": "$http_x_version", "variable": "kg"}
    base.update(options)
    if entries is not None:
        base["entries"] = entries
    elif "default" not in options:
        base["entries"] = [{"key": "v1", "value": "backend-v1"}]
    return base


REJECTIONS = [
    ("not_a_list", "x", ["maps must be a list of map definitions, got a string"]),
    ("dict_instead_of_list", m(), ["maps must be a list of map definitions, got a dict (wrap a single map in a list)"]),
    ("map_not_a_dict", [["x"]], ["map[0]: must be a dict with source, variable and entries, got a list"]),
    ("bucket_size", ([m()], 0), ["map_hash_bucket_size must be a positive integer, got 0 (an integer)"]),
    ("missing_source", [{"variable": "kg", "default": "x"}],
     ["map[0] ($kg): source is required (the expression the map reads, e.g. $http_x_version)"]),
    ("missing_variable", [{"source": "$http_a", "default": "x"}],
     ["map[0]: variable is required (the name the map defines, e.g. $kubegate_backend)"]),
    ("unknown_option_collects_all", [{"source": "$http_a", "variable": "kg", "entires": {"a": "b"}}],
     ["map[0] ($kg): unknown option \"entires\" (allowed: source, variable, default, hostnames, volatile, "
      "allow_variables_in_values, proxy_set_header, entries)",
      "map[0] ($kg): has no entries and no default; the variable would always be empty"]),
    ("invalid_variable_name", [m(variable="$kg-backend")],
     ['map[0]: variable "$kg-backend" is not a valid nginx variable name (letters, digits and _, not starting with '
      'a digit; written $name or name)']),
    ("builtin_variable", [m(variable="$host")],
     ["map[0] ($host): variable $host collides with the nginx built-in variable $host; choose a name of your own "
      "such as $kubegate_host"]),
    ("builtin_prefix", [m(variable="http_x_route")],
     ["map[0] ($http_x_route): variable $http_x_route collides with nginx's built-in $http_* variables; choose a "
      "name of your own such as $kubegate_http_x_route"]),
    ("ingress_variable", [m(variable="$proxy_upstream_name")],
     ["map[0] ($proxy_upstream_name): variable $proxy_upstream_name collides with the variable "
      "$proxy_upstream_name that ingress-nginx defines; choose a name of your own such as "
      "$kubegate_proxy_upstream_name"]),
    ("same_variable_twice", [m(), m(variable="$KG", source="$http_x_other")],
     ["map[1] ($KG): variable $KG is already defined by map[0] ($kg); nginx would silently let the later map win "
      "(variable names are case-insensitive)"]),
    ("uppercase_header_variable", [m(source="$http_X_Version")],
     ["map[0] ($kg): source variable $http_X_Version: write header variables in lower case with '-' replaced by "
      "'_' (e.g. $http_x_version for the header X-Version)"]),
    ("dash_in_header_variable", [m(source="$http_x-version")],
     ['map[0] ($kg): source "$http_x-version": nginx reads $http_x followed by the literal text "-version"; header '
      "variables use '_' for '-' (e.g. $http_x_version)"]),
    ("source_without_variable", [m(source="http_x_version")],
     ['map[0] ($kg): source "http_x_version" references no variable (did you mean $http_x_version?)']),
    ("source_bad_literal", [m(source="$http_a $http_b")],
     ['map[0] ($kg): source "$http_a $http_b" contains " " (U+0020); only variables and the literal characters '
      "letters, digits and _ - . : , / @ = + | are allowed"]),
    ("source_bad_reference", [m(source="$http_a:$")],
     ['map[0] ($kg): source "$http_a:$" has an invalid variable reference "$" at offset 8 (use $name or ${name})']),
    ("source_cycle", [m(source="$kg")],
     ['map[0] ($kg): source "$kg" reads the map\'s own variable $kg (a cycle)']),
    ("newline_in_key", [m([{"key": "v1\n", "value": "a"}])],
     ['map[0] ($kg) entry[0] (key "v1\\n"): key contains a control character (U+000A)']),
    # directives smuggled through a line break stay refused, whatever the rest of the text looks like
    ("newline_directive_in_value", [m([{"key": "v1", "value": "a\";\n}\nserver { listen 1; }\n#"}])],
     ['map[0] ($kg) entry[0] (key "v1"): value contains a control character (U+000A)']),
    ("carriage_return_in_key", [m([{"key": "v1\r\ninclude /etc/passwd;", "value": "a"}])],
     ['map[0] ($kg) entry[0] (key "v1\\r\\ninclude /etc/passwd;"): key contains a control character (U+000D)']),
    ("line_separator_in_regex", [m([{"key": "~^a\u2028b", "value": "a"}])],
     ['map[0] ($kg) entry[0] (key "~^a\u2028b"): key contains a line separator (U+2028)']),
    ("nul_in_value", [m([{"key": "v1", "value": "a\x00b"}])],
     ['map[0] ($kg) entry[0] (key "v1"): value contains a control character (U+0000)']),
    ("dollar_directive_in_value", [m([{"key": "v1", "value": "x\"; return 302 $scheme://evil; #"}])],
     ['map[0] ($kg) entry[0] (key "v1"): value contains \'$\' at offset 15; nginx reads it as a variable reference '
      "and has no escape for a literal '$' (set allow_variables_in_values to reference variables)"]),
    ("unterminated_reference_in_value", [m([{"key": "v1", "value": "${http_x"}], allow_variables_in_values=True)],
     ['map[0] ($kg) entry[0] (key "v1"): value has an invalid variable reference "${http_x" at offset 0 (use $name, '
      "${name} or $1..$9)"]),
    ("dollar_space_in_value", [m([{"key": "v1", "value": "a$ b"}], allow_variables_in_values=True)],
     ['map[0] ($kg) entry[0] (key "v1"): value has an invalid variable reference "$" at offset 1 (use $name, '
      "${name} or $1..$9)"]),
    ("zero_width_space_in_value", [m([{"key": "v1", "value": "a\u200bb"}])],
     ['map[0] ($kg) entry[0] (key "v1"): value contains an invisible formatting character (U+200B)']),
    ("dollar_in_value", [m([{"key": "v1", "value": "cost$5"}])],
     ['map[0] ($kg) entry[0] (key "v1"): value contains \'$\' at offset 4; nginx reads it as a variable reference '
      "and has no escape for a literal '$' (set allow_variables_in_values to reference variables)"]),
    ("bad_reference_in_value", [m([{"key": "v1", "value": "x-$"}], allow_variables_in_values=True)],
     ['map[0] ($kg) entry[0] (key "v1"): value has an invalid variable reference "$" at offset 2 (use $name, '
      "${name} or $1..$9)"]),
    ("value_cycle", [m([{"key": "v1", "value": "${kg}"}], allow_variables_in_values=True)],
     ['map[0] ($kg) entry[0] (key "v1"): value references the map\'s own variable $kg (a cycle)']),
    ("duplicate_key", [m([{"key": "v1", "value": "a"}, {"key": "v1", "value": "b"}])],
     ['map[0] ($kg) entry[1] (key "v1"): duplicate of entry[0]']),
    ("case_only_duplicate", [m({"v2": "a", "V2": "b"})],
     ['map[0] ($kg) entry[1] (key "V2"): differs only in letter case from entry[0] (key "v2"); nginx compares exact '
      'keys case-insensitively and rejects such a map ("conflicting parameter")']),
    ("unicode_case_only_duplicate", [m({"é": "a", "É": "b"})],
     ['map[0] ($kg) entry[1] (key "É"): differs only in the case of non-ASCII letters from entry[0] (key "é"); nginx '
      "folds only ASCII letters, so these keys would match differently than they read; use a single spelling"]),
    ("duplicate_default", [m({"default": "b"}, default="a")],
     ['map[0] ($kg) entry[0] (key "default"): duplicate default: the map already sets default, and nginx reads the '
      "key 'default' as a second default (\"duplicate default map parameter\")"]),
    ("default_as_key", [m({"Default": "b"})],
     ['map[0] ($kg) entry[0] (key "Default"): \'default\' is a map parameter, not a key (in any letter case it is '
      "ambiguous); set the map's default option instead, or match the literal text with the regex key ~*^default$"]),
    ("include_as_key", [m({"include": "b"})],
     ['map[0] ($kg) entry[0] (key "include"): \'include\' is a map parameter word in nginx (in any letter case it is '
      "ambiguous); match the literal text with the regex key ~*^include$ instead"]),
    ("include_as_key_any_case", [m({"INCLUDE": "/etc/nginx/nginx.conf"})],
     ['map[0] ($kg) entry[0] (key "INCLUDE"): \'include\' is a map parameter word in nginx (in any letter case it is '
      "ambiguous); match the literal text with the regex key ~*^include$ instead"]),
    ("sample_on_exact_key", [m([{"key": "v1", "value": "a", "sample": "v1"}])],
     ['map[0] ($kg) entry[0] (key "v1"): sample is only for regex keys (an exact key is its own sample)']),
    ("sample_not_matching", [m([{"key": "~^v2\\.\\d+$", "value": "a", "sample": "v3.1"}])],
     ['map[0] ($kg) entry[0] (key "~^v2\\\\.\\\\d+$"): sample "v3.1" does not match the regex']),
    ("sample_not_header_text", [m([{"key": "~^v", "value": "a", "sample": "v\u00e9"}])],
     ['map[0] ($kg) entry[0] (key "~^v"): sample "v\u00e9" must be printable ASCII without leading or trailing '
      "whitespace (it is sent as a request header)"]),
    ("sample_with_combined_source", [m([{"key": "~^a:", "value": "a", "sample": "a:b"}], source="$http_a:$http_b")],
     ['map[0] ($kg) entry[0] (key "~^a:"): sample needs a source that reads one request header ($http_<name>); the '
      "routing check sends it as that header"]),
    ("sample_answered_earlier", [m([{"key": "V2.1", "value": "a"}, {"key": "~^v", "value": "b"},
                                    {"key": "~^v2", "value": "c", "sample": "v2.1"},
                                    {"key": "~2$", "value": "d", "sample": "v2"}])],
     ['map[0] ($kg) entry[2] (key "~^v2"): sample "v2.1" is answered by entry[0] (key "V2.1") first (nginx tries '
      "exact keys, then regexes in order); declare a sample only this rule matches",
      'map[0] ($kg) entry[3] (key "~2$"): sample "v2" is answered by entry[1] (key "~^v") first (nginx tries exact '
      "keys, then regexes in order); declare a sample only this rule matches"]),
    ("regex_missing_paren", [m({"~^(v1": "a"})],
     ['map[0] ($kg) entry[0] (key "~^(v1"): regex does not compile: missing closing parenthesis']),
    ("regex_reversed_range", [m({"~*^[z-a]$": "a"})],
     ['map[0] ($kg) entry[0] (key "~*^[z-a]$"): regex does not compile: range out of order in a character class '
      "(z-a)"]),
    ("duplicate_regex", [m([{"key": "~^v", "value": "a"}, {"key": "~^v", "value": "b"}])],
     ['map[0] ($kg) entry[1] (key "~^v"): duplicate of entry[0]; nginx tries regexes in order, so this one can '
      "never match"]),
    ("key_too_long_for_bucket", [m({"k" * 47: "a"})],
     ['map[0] ($kg) entry[0] (key "%s"): key of 47 bytes needs map_hash_bucket_size >= 72 (configured: 64)'
      % ("k" * 47)]),
    ("key_too_long_for_bigger_bucket", ([m({"k" * 111: "a"})], 128),
     ['map[0] ($kg) entry[0] (key "%s"): key of 111 bytes needs map_hash_bucket_size >= 136 (configured: 128)'
      % ("k" * 111)]),
    ("unicode_key_counts_bytes", [m({"é" * 24: "a"})],
     ['map[0] ($kg) entry[0] (key "%s"): key of 48 bytes needs map_hash_bucket_size >= 72 (configured: 64)'
      % ("é" * 24)]),
    ("whitespace_never_matches", [m({" v1": "a"})],
     ['map[0] ($kg) entry[0] (key " v1"): can never match: nginx strips leading and trailing whitespace from header '
      "values"]),
    ("invalid_mask", [m({"*.example.*": "a"}, hostnames=True)],
     ['map[0] ($kg) entry[0] (key "*.example.*"): invalid host mask: at most one \'*\' is allowed']),
    ("misplaced_star", [m({"ex*ample.com": "a"}, hostnames=True)],
     ['map[0] ($kg) entry[0] (key "ex*ample.com"): invalid host mask: \'*\' is only allowed as a leading \'*.\' or a '
      "trailing '.*' (e.g. *.example.com, www.example.*)"]),
    ("dot_mask_conflict", [m({".example.com": "a", "Example.com": "b"}, hostnames=True)],
     ['map[0] ($kg) entry[1] (key "Example.com"): conflicts with entry[0] (key ".example.com"): ".example.com" '
      'already matches "Example.com"']),
    ("star_and_dot_mask_conflict", [m({"*.example.com": "a", ".example.com": "b"}, hostnames=True)],
     ['map[0] ($kg) entry[1] (key ".example.com"): conflicts with entry[0] (key "*.example.com"): both are masks for '
      '"example.com"']),
    ("hostname_trailing_dot", [m({"example.com.": "a"}, hostnames=True)],
     ['map[0] ($kg) entry[0] (key "example.com."): can never match: in hostnames maps nginx removes a trailing dot '
      "from the value before looking it up"]),
    ("yaml_boolean_and_null_and_float", [m({True: "a", "v2": None, "v3": 1.10})],
     ["map[0] ($kg) entry[0]: key is a boolean (YAML reads unquoted yes/no/true/false/on/off as booleans); quote it",
      'map[0] ($kg) entry[1] (key "v2"): value is null; write "" for an empty string',
      'map[0] ($kg) entry[2] (key "v3"): value is a number with a fraction (1.1); quote it so it is kept verbatim']),
    ("flag_not_boolean", [m(hostnames="yes")],
     ['map[0] ($kg): hostnames must be true or false, got "yes"']),
    ("entries_wrong_type", [m(entries=5)],
     ["map[0] ($kg): entries must be a list of {key, value} dicts or a dict of key: value, got an integer"]),
    ("entry_fields", [m([{"key": "v1"}, {"key": "v2", "value": "b", "weight": 1}, "v3"])],
     ["map[0] ($kg) entry[0]: value is required",
      'map[0] ($kg) entry[1]: unknown field "weight" (allowed: key, value, sample)',
      "map[0] ($kg) entry[2]: must be a dict with key and value, got a string"]),
    ("empty_map", [m([])], ["map[0] ($kg): has no entries and no default; the variable would always be empty"]),
    ("reserved_header", [m(proxy_set_header="Host")],
     ["map[0] ($kg): proxy_set_header Host would override a header ingress-nginx/nginx proxying sets itself; use a "
      "header of your own such as X-Kubegate-Backend"]),
    ("invalid_header", [m(proxy_set_header="X Kubegate")],
     ['map[0] ($kg): proxy_set_header "X Kubegate" is not a valid header name (letters, digits and \'-\', e.g. '
      "X-Kubegate-Backend)"]),
    ("duplicate_header", [m(proxy_set_header="X-Kg"), m(variable="kg2", proxy_set_header="x-kg")],
     ["map[1] ($kg2): proxy_set_header x-kg is already set by map[0] ($kg)"]),
    ("regex_too_long", [m({"~^" + "a" * 2100: "x"})],
     ['map[0] ($kg) entry[0] (key "~^%s"): key is 2104 bytes long once quoted; at most 2048 are allowed'
      % ("a" * 2100)]),
]


@pytest.mark.parametrize("maps,expected", [pytest.param(c[1], c[2], id=c[0]) for c in REJECTIONS])
def test_rejections(maps, expected):
    args = maps if isinstance(maps, tuple) else (maps,)
    assert validate(*args) == expected
    with pytest.raises(NginxMapError) as info:
        render(*args)
    assert info.value.problems == expected
    text = str(info.value)
    assert text.splitlines()[0] == "%d problem%s in the nginx map definitions:" % (
        len(expected), "" if len(expected) == 1 else "s")
    assert all(("  - " + p) in text for p in expected)


def test_all_problems_are_collected_across_maps():
    maps = [m({"v1": "a\n", "V1": "b"}, variable="host"), "oops", m(variable="kg2", source="$http_x-y")]
    problems = validate(maps)
    assert len(problems) == 5
    assert problems[0].startswith("map[0] ($host): variable $host collides")
    assert problems[1].startswith("map[0] ($host) entry[0] (key \"v1\"): value contains a control character")
    assert problems[2].startswith("map[0] ($host) entry[1] (key \"V1\"): differs only in letter case")
    assert problems[3] == "map[1]: must be a dict with source, variable and entries, got a string"
    assert problems[4].startswith('map[2] ($kg2): source "$http_x-y": nginx reads $http_x')


def test_snippets_need_valid_maps():
    with pytest.raises(NginxMapError):
        render_snippets([m(proxy_set_header="Host")])
    assert render_snippets([m(proxy_set_header="X-Kubegate-Backend"), m(variable="kg2", source="$http_b")]) == {
        "location_snippet": HEADER_COMMENT + "\nproxy_set_header X-Kubegate-Backend $kg;\n"}


def test_variable_normalisation_and_dict_order():
    text = render([{"source": "$http_a", "variable": "$kg", "entries": {"b": "1", "a": "2", "~c": "3"}}])
    assert text.splitlines()[2:] == ['map "$http_a" $kg {', '    "b" "1";', '    "a" "2";', '    "~c" "3";', "}"]


# ---------------------------------------------------------------------------------------------------------------
# regex pre-check: never reject valid PCRE; what it rejects, nginx rejects too

PCRE_ONLY_VALID = [
    r"^(?<ver>v\d)$", r"(*UTF)^é$", r"^a++$", r"\Qa(b\E", r"^[[:alpha:]]+$", r"\p{L}+", r"(?i)ab(?-i)c",
    r"ab(?i)c", r"\x{41}", r"(?|(a)|(b))", r"(a)(?1)", r"\h+", r"a\K", r"a\z", r"(?<=a|bc)x",
    r"\1(a)", r"\N", r"a{,3}", r"a(*SKIP)(*F)|b", r"\g{1}(a)", r"\R", r"\e", r"\cA", r"(?>a+)b", r"\o{12}",
]
PRECHECK_REJECTED = [r"^(v1", r"a)", r"[abc", "abc\\", r"a{2,1}", r"[z-a]", r"a|*b", r"(+a)", r"(*UTF)(a"]


def test_pcre_only_syntax_is_accepted_by_validator_and_nginx():
    maps = [{"source": "$http_x_a", "variable": "kg_pcre",
             "entries": [{"key": "~" + p, "value": "v%d" % i} for i, p in enumerate(PCRE_ONLY_VALID)]}]
    assert validate(maps) == []
    assert_nginx_accepts(render(maps))


@pytest.mark.parametrize("pattern", PRECHECK_REJECTED)
def test_precheck_rejections_are_nginx_rejections(pattern):
    assert regex_precheck(pattern)
    ok, message = nc.check_with_nginx('map $http_x_a $kubegate_rx {\n    %s "x";\n}\n' % quote("~" + pattern))
    assert ok is False and "pcre" in message, message


# ---------------------------------------------------------------------------------------------------------------
# property test: random valid maps

ASCII_AWKWARD = list("abcdefXYZ0189 _-.:/=@!%&*()[]|~^`,<>?+#'\"\\;{}")
UNICODE_AWKWARD = ["é", "ß", "Ж", "日本", "🙂", "ñ", "Ø", "ǅ", "€"]
SOURCES = [  # (source text, [header slots]) - literal parts are part of every key
    ("$http_x_kg_a", [("", "X-Kg-A", "")]),
    ("${http_x_kg_a}", [("", "X-Kg-A", "")]),
    ("$http_x_kg_a:$http_x_kg_b", [("", "X-Kg-A", ":"), ("", "X-Kg-B", "")]),
    ("t=${http_x_kg_a}/v$http_x_kg_b", [("t=", "X-Kg-A", "/v"), ("", "X-Kg-B", "")]),
]
REGEX_PIECES = [(r"\d{2,3}", "123"), (r"[a-c]+", "abca"), (r"(?:x|yz)", "yz"), (r".", "%"), (r"\\", "\\")]


def pcre_escape(text):
    """Escape ASCII punctuation (literal in both PCRE and Python when backslashed); keep letters and Unicode."""
    return "".join("\\" + ch if ord(ch) < 128 and not (ch.isalnum() or ch == "_") else ch for ch in text)


def ascii_lower(text):
    return "".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in text)


def random_text(rng, min_len, max_len, unicode_share=0.2):
    pieces = []
    for _piece in range(rng.randint(min_len, max_len)):
        pieces.append(rng.choice(UNICODE_AWKWARD) if rng.random() < unicode_share else rng.choice(ASCII_AWKWARD))
    return "".join(pieces)


def random_segment(rng, min_len=1, max_len=10):
    """Header text for one slot: no leading/trailing whitespace (nginx strips it)."""
    while True:
        text = random_text(rng, min_len, max_len)
        if text == text.strip(" "):
            return text


def flip_ascii_case(rng, text):
    return "".join(ch.swapcase() if ch.isascii() and ch.isalpha() and rng.random() < 0.5 else ch for ch in text)


def random_map(rng, name):
    """One valid map plus probes [(headers, source value)]; keys unique the way nginx and the validator see them."""
    source, slots = rng.choice(SOURCES)
    entries, probes, folded, casefolded = [], [], set(), set()
    for _attempt in range(rng.randint(1, 8)):
        if rng.random() < 0.6:  # exact key
            segments = [random_segment(rng) for _slot in slots]
            if len(slots) == 1 and rng.random() < 0.1:
                segments = [""]
            key = "".join(pre + seg + post for (pre, _h, post), seg in zip(slots, segments))
            if (key.startswith("~") or ascii_lower(key) in folded or key.casefold() in casefolded
                    or key.lower() in ("default", "include") or len(key.encode()) > 46):
                continue
            folded.add(ascii_lower(key))
            casefolded.add(key.casefold())
            probe_segments = [flip_ascii_case(rng, seg) for seg in segments]
        else:  # regex key built from pieces whose sample both PCRE and Python match the same way
            caseless = rng.random() < 0.4
            pattern, probe_segments = "^", []
            for pre, _header, post in slots:
                parts, sample = [], []
                for _piece in range(rng.randint(1, 3)):
                    if rng.random() < 0.5:
                        literal = random_segment(rng, 1, 5)
                        parts.append(pcre_escape(literal))
                        sample.append(literal)
                    else:
                        piece, piece_sample = rng.choice(REGEX_PIECES)
                        parts.append(piece)
                        sample.append(piece_sample)
                segment = "".join(sample)  # no leading/trailing space: pieces never start or end with one
                pattern += pcre_escape(pre) + "".join(parts) + pcre_escape(post)
                probe_segments.append(flip_ascii_case(rng, segment) if caseless else segment)
            key = ("~*" if caseless else "~") + pattern + "$"
            if any(e["key"] == key for e in entries):
                continue
        value = random_text(rng, 0, 14)
        entries.append({"key": key, "value": value})
        headers = dict((header, seg) for (_pre, header, _post), seg in zip(slots, probe_segments) if seg != "")
        value_seen = "".join(pre + seg + post for (pre, _h, post), seg in zip(slots, probe_segments))
        probes.append((headers, value_seen))
    miss = ["zz-miss-%d" % rng.randint(0, 999) for _slot in slots]
    probes.append((dict((h, seg) for (_p, h, _q), seg in zip(slots, miss)),
                   "".join(pre + seg + post for (pre, _h, post), seg in zip(slots, miss))))
    definition = {"source": source, "variable": name, "entries": entries}
    if rng.random() < 0.3:
        definition["entries"] = dict((e["key"], e["value"]) for e in entries)
    if rng.random() < 0.6:
        definition["default"] = random_text(rng, 0, 10)
    if rng.random() < 0.2:
        definition["volatile"] = True
    return definition, probes


def expected_value(definition, source_value):
    """What nginx returns: exact keys (ASCII case-insensitive), then regexes in order on the bytes, else default."""
    entries = definition["entries"]
    pairs = list(entries.items()) if isinstance(entries, dict) else [(e["key"], e["value"]) for e in entries]
    for key, value in pairs:
        if not key.startswith("~") and ascii_lower(key) == ascii_lower(source_value):
            return value
    for key, value in pairs:
        if key.startswith("~"):
            caseless = key.startswith("~*")
            pattern = key[2:] if caseless else key[1:]
            flags = re.IGNORECASE if caseless else 0
            if re.search(pattern.encode("utf-8"), source_value.encode("utf-8"), flags):
                return value
    return definition.get("default") or ""


def random_cases(seed, count):
    rng = random.Random(seed)
    cases = []
    for case in range(count):
        maps, probes = [], []
        for index in range(rng.randint(1, 3)):
            definition, map_probes = random_map(rng, "kg_p%d_%d" % (case, index))
            maps.append(definition)
            probes.extend((definition, headers, seen) for headers, seen in map_probes)
        cases.append((maps, probes))
    return cases


PROPERTY_SEED = 20261122
PROPERTY_CASES = random_cases(PROPERTY_SEED, 120)


def test_property_random_valid_maps_pass_validate_and_nginx():
    for maps, _probes in PROPERTY_CASES:
        assert validate(maps) == [], maps
        assert_nginx_accepts(render(maps))


def test_property_live_nginx_matches_the_model():
    """A sample of the random maps in one live nginx: every probe gets the value nginx's rules predict."""
    rng = random.Random(PROPERTY_SEED + 1)
    sample = rng.sample(PROPERTY_CASES, 30)
    maps = [definition for case_maps, _probes in sample for definition in case_maps]
    text = render(maps)
    checked = 0
    with LiveNginx(text) as server:
        for _case_maps, probes in sample:
            for definition, headers, seen in probes:
                body = server.get(definition["variable"], headers)
                assert body.decode("utf-8") == expected_value(definition, seen), (definition, headers)
                checked += 1
    assert checked > 150


# ---------------------------------------------------------------------------------------------------------------
# random invalid inputs

def _inject(rng, maps):
    """Break one random thing in a copy of valid ``maps``; every fault is one the validator must report."""
    target = rng.choice(maps)
    entries = target["entries"]
    pairs = list(entries.items()) if isinstance(entries, dict) else [(e["key"], e["value"]) for e in entries]
    exact = [k for k, _v in pairs if not k.startswith("~")]
    faults = [
        lambda: target.update(variable=rng.choice(["$host", "$uri", "$http_x", "$arg_a", "$upstream_addr",
                                                   "$best_http_host", "$namespace", "9x", "$", "a-b", 5, None])),
        lambda: target.update(source=rng.choice(["", "http_x", "$http_X", "$http_x-y", "$", "${x", "$a b", 7,
                                                 "$" + target["variable"].lstrip("$")])),
        lambda: target.pop("source"),
        lambda: target.update(entries=rng.choice([5, "x", None, []]), default=None),
        lambda: pairs.append((rng.choice(["x\ny", "x\x00", "a\r\n}", "default", "include", "Include", "~(",
                                          "~[z-a]", "k" * 47, True, None, 1.5]), "v")),
        lambda: pairs.append(("kg-fault", rng.choice(["a\n}", "$", "x$y", "\t", "\u2029", None, False, ["x"]]))),
        lambda: pairs.extend([(rng.choice(exact).swapcase(), "dup")] if exact else [("x", "a"), ("X", "b")]),
        lambda: target.update(hostnames=rng.choice(["yes", 1, "true"])),
        lambda: target.update(unknown_option=1),
        lambda: target.update(proxy_set_header=rng.choice(["Host", "X Bad", "", 3, "X-Forwarded-For"])),
        lambda: maps.append(dict(target)),
        lambda: maps.append(rng.choice(["str", 1, None, ["x"]])),
    ]
    rng.choice(faults)()
    if target.get("entries") is entries:
        target["entries"] = [{"key": k, "value": v} for k, v in pairs]
    return maps


def test_random_invalid_inputs_report_problems_without_crashing():
    rng = random.Random(PROPERTY_SEED + 2)
    for _round in range(400):
        maps, _probes = random_cases(rng.randint(0, 10 ** 9), 1)[0]
        broken = _inject(rng, maps)
        problems = validate(broken)
        assert problems and all(isinstance(p, str) and p for p in problems), broken
        with pytest.raises(NginxMapError) as info:
            render(broken)
        assert info.value.problems == problems


@pytest.mark.parametrize("garbage", [None, 1, "x", b"x", {"a": 1}, [None], [[]], [{}], [{"entries": {1: 2}}],
                                     [{"source": "$http_a", "variable": "kg", "entries": [[1, 2]]}],
                                     [{"source": object(), "variable": object(), "entries": object()}],
                                     [{"source": "$http_a", "variable": "kg", "entries": {"\ud800": "x"}}]])
def test_garbage_inputs(garbage):
    problems = validate(garbage)
    assert problems
    with pytest.raises(NginxMapError):
        render(garbage)

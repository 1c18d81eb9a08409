"""pod_logs without a cluster: line splitting under the byte/line caps, `until` matching, stop reasons and the
deadline, option checks, and a fake apiserver for the per-pod flow (errors, single-pod convenience, check mode)."""
from __future__ import annotations

import time

import pytest

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import podlogs
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.errors import KubegateError
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.transport import Response


# ---------------------------------------------------------------------------------------------------------------- split_lines

def test_split_keeps_whole_lines_within_the_byte_cap():
    data = b"aaaa\nbbbb\ncccc\n"
    assert podlogs.split_lines(data, max_bytes=10) == (["aaaa", "bbbb"], True, False)
    assert podlogs.split_lines(data, max_bytes=15) == (["aaaa", "bbbb", "cccc"], False, False)
    assert podlogs.split_lines(data, max_bytes=9) == (["aaaa"], True, False)


def test_split_line_cap_and_unfinished_last_line():
    assert podlogs.split_lines(b"1\n2\n3\n", max_lines=2) == (["1", "2"], True, False)
    # a line still being written when a follow ended is real content ...
    assert podlogs.split_lines(b"1\n2") == (["1", "2"], False, False)
    # ... but one cut by the byte cap is incomplete and dropped
    assert podlogs.split_lines(b"1\n2", cut=True) == (["1"], True, False)


def test_split_decodes_invalid_utf8_without_failing():
    assert podlogs.split_lines(b"caf\xc3\xa9\n\xff\xfe\n") == (["caf\u00e9", "\ufffd\ufffd"], False, False)


def test_until_stops_at_the_first_matching_line():
    until = podlogs.compile_until(r"GET /kg-[0-9a-f]+ ")
    data = b"x\n10.0.0.1 - GET /kg-1f HTTP/1.1 200\nafter\n"
    assert podlogs.split_lines(data, until=until) == (["x", "10.0.0.1 - GET /kg-1f HTTP/1.1 200"], False, True)
    assert podlogs.split_lines(b"x\ny\n", until=until) == (["x", "y"], False, False)


def test_until_bad_regex_is_a_clear_error():
    with pytest.raises(KubegateError, match=r"until '\(unclosed' is not a valid Python regular expression"):
        podlogs.compile_until("(unclosed")
    assert podlogs.compile_until(None) is None and podlogs.compile_until("") is None


# ---------------------------------------------------------------------------------------------------------------- StreamStop

def test_stream_stop_matches_across_chunk_boundaries():
    stop = podlogs.StreamStop(podlogs.compile_until("needle"))
    assert stop(b"hay\nnee") is False       # the match is not complete yet
    assert stop(b"dle here") is False       # still no newline: the line may go on
    assert stop(b"\nmore\n") is True and stop.reason == podlogs.UNTIL


def test_stream_stop_counts_complete_lines():
    stop = podlogs.StreamStop(max_lines=3)
    assert stop(b"1\n2") is False
    assert stop(b"\n3\n4\n") is True and stop.reason == podlogs.MAX_LINES


def test_stop_reason_order_and_deadline():
    now = time.monotonic()
    idle = podlogs.StreamStop()
    assert podlogs.stop_reason(idle, False, False, False, deadline=now + 5, now=now) == podlogs.END
    assert podlogs.stop_reason(idle, False, False, False, deadline=now, now=now) == podlogs.TIMEOUT
    assert podlogs.stop_reason(idle, True, False, False, deadline=now + 5, now=now) == podlogs.MAX_BYTES
    assert podlogs.stop_reason(idle, True, False, True, deadline=now, now=now) == podlogs.MAX_LINES
    assert podlogs.stop_reason(idle, True, True, True, deadline=now, now=now) == podlogs.UNTIL


@pytest.mark.parametrize("option,value,message", [
    ("since_seconds", 0, "since_seconds must be at least 1, got 0"),
    ("tail_lines", -1, "tail_lines must be at least 0, got -1"),
    ("limit_bytes", 0, "limit_bytes must be at least 1"),
    ("max_bytes", 0, "max_bytes must be at least 1"),
    ("max_lines", 0, "max_lines must be at least 1"),
    ("follow_timeout", 0, "follow_timeout must be more than 0 seconds"),
])
def test_bad_numbers_are_refused_by_name(option, value, message):
    with pytest.raises(KubegateError, match=message):
        podlogs.check_params({option: value})


def test_log_query_sends_only_what_was_set():
    assert podlogs.log_query({"follow": False, "previous": False, "timestamps": False}, "c") == [("container", "c")]
    params = {"since_seconds": 60, "tail_lines": 0, "limit_bytes": 100, "follow": True, "previous": True,
              "timestamps": True}
    assert podlogs.log_query(params, "controller") == [
        ("container", "controller"), ("sinceSeconds", "60"), ("tailLines", "0"), ("limitBytes", "100"),
        ("follow", "true"), ("previous", "true"), ("timestamps", "true")]


# ---------------------------------------------------------------------------------------------------------------- the flow

def pod(name, containers=("controller",)):
    return {"metadata": {"name": name, "namespace": "ns", "annotations": {}},
            "spec": {"containers": [{"name": c} for c in containers]}, "status": {"phase": "Running"}}


class FakeClient:
    """Answers pod GET/list from `pods` and log GETs from `logs` {pod: (status, body)}; records the log requests."""
    where = "cluster-x (https://198.51.100.1:6443)"

    def __init__(self, pods, logs):
        self.pods = pods
        self.logs = logs
        self.log_requests = []

    def get_json(self, path, query=None, accepted=None):
        if path.endswith("/pods"):
            return {"items": list(self.pods.values())}
        name = path.rsplit("/", 1)[1]
        if name not in self.pods and accepted and 404 in accepted:
            return None
        return self.pods[name]

    def request(self, method, path, query=None, check=True, max_body=None, deadline=None, stream_until=None):
        name = path.split("/")[-2]
        self.log_requests.append((name, query, max_body))
        status, body = self.logs[name]
        truncated = max_body is not None and len(body) > max_body
        if 200 <= status < 300 and stream_until is not None:
            stream_until(body[:max_body])
        return Response(status, "OK" if status == 200 else "Bad Request", {}, body[:max_body], truncated)


class Ctx:
    check_mode = True
    env = {}

    def __init__(self):
        self.secrets, self.warnings = set(), []

    def warn(self, message):
        self.warnings.append(message)


@pytest.fixture
def fake(monkeypatch):
    def install(pods, logs):
        client = FakeClient(dict((p["metadata"]["name"], p) for p in pods), logs)
        monkeypatch.setattr(podlogs, "connect", lambda params, ctx: client)
        return client
    return install


def params(**kw):
    base = {"namespace": "ns", "name": None, "label_selector": None, "field_selector": None, "container": None,
            "follow": False, "follow_timeout": 10, "timeout": 5, "max_bytes": 1024, "max_lines": None,
            "until": None, "max_concurrency": 10, "previous": False, "timestamps": False}
    base.update(kw)
    return base


def test_selector_gives_per_pod_results_and_check_mode_reads(fake):
    client = fake([pod("b"), pod("a")], {"a": (200, b"a1\na2\n"), "b": (200, b"b1\n")})
    out = podlogs.run_pod_logs(params(label_selector="app=x"), Ctx())
    assert out["changed"] is False and out["pods"] == ["a", "b"]
    assert [(r["pod"], r["container"], r["lines"], r["stopped"]) for r in out["results"]] == [
        ("a", "controller", ["a1", "a2"], "end"), ("b", "controller", ["b1"], "end")]
    assert "text" not in out and len(client.log_requests) == 2


def test_single_pod_convenience_and_byte_cap(fake):
    fake([pod("a")], {"a": (200, b"0123456789\nabc\n")})
    out = podlogs.run_pod_logs(params(name="a", max_bytes=13), Ctx())
    assert out["lines"] == ["0123456789"] and out["text"] == "0123456789\n"
    assert out["truncated"] is True and out["stopped"] == "max_bytes"


def test_missing_pod_and_failed_read_are_clear_errors(fake):
    fake([pod("a")], {"a": (400, b'{"kind":"Status","apiVersion":"v1","message":"no previous","code":400}')})
    with pytest.raises(KubegateError, match="pod nope not found in namespace ns") as missing:
        podlogs.run_pod_logs(params(name="nope"), Ctx())
    assert "cluster-x" in missing.value.msg
    with pytest.raises(KubegateError, match="reading logs failed in 1 of 1 pod.*no previous.*previous instance") as e:
        podlogs.run_pod_logs(params(name="a", previous=True), Ctx())
    assert e.value.details["results"][0]["http_status"] == 400


def test_unknown_container_is_named(fake):
    fake([pod("a", containers=("one", "two"))], {"a": (200, b"")})
    with pytest.raises(KubegateError, match=r"container 'three' not found in pod a \(containers: one, two\)"):
        podlogs.run_pod_logs(params(name="a", container="three"), Ctx())


def test_follow_needs_every_pod_at_once(fake):
    fake([pod("a"), pod("b"), pod("c")], {})
    with pytest.raises(KubegateError, match="3 pods match and max_concurrency is 2"):
        podlogs.run_pod_logs(params(label_selector="x=y", follow=True, max_concurrency=2), Ctx())

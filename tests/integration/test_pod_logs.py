"""kubegate.multicluster.pod_logs against the lab's ingress pods, whose container log is their real nginx's access and
error log (lab agent + kwok `Logs`, docs/lab-contract.md). Every request in these tests goes through the apiserver's
pod proxy to the pod's nginx, and the tests compare what the module returned with what that nginx wrote on disk."""
from __future__ import annotations

import re
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from kgplay import conn_token, no_traceback, playbook_connection, run_playbook

NS = "ingress-nginx"
SELECTOR = "app.kubernetes.io/name=ingress-nginx"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")


def logs(task, /, **args):
    base = {"namespace": NS}
    base.update(args)
    return {"name": task, "kubegate.multicluster.pod_logs": base, "ignore_errors": True}


def proxied(name, pod, path):
    """A task sending GET PATH to the pod's nginx through the apiserver's pod proxy."""
    return {"name": name, "kubegate.multicluster.api_request": {
        "path": "/api/v1/namespaces/%s/pods/%s:80/proxy/%s" % (NS, pod, path)}}


def play(lab, cluster, tasks, hosts=None, conn=None):
    return [{"name": "logs", "hosts": hosts or cluster, "gather_facts": False,
             "module_defaults": {"group/kubegate.multicluster.cluster": conn or conn_token(lab, cluster)},
             "tasks": tasks}]


def hit(lab, cluster, pod, path):
    """GET PATH on the pod's nginx through the pod proxy (kubectl, outside the playbook)."""
    out = lab.kubectl(cluster, "get", "--raw", "/api/v1/namespaces/%s/pods/%s:80/proxy/%s" % (NS, pod, path))
    assert ("pod=%s" % pod) in out.stdout  # the pod's own nginx answered


def pod_dir(lab, cluster, pod) -> Path:
    return Path(lab.clusters[cluster]["pods_dir"]) / pod


def container_log(lab, cluster, pod) -> list[str]:
    """The content of the pod's container log file (CRI format: TIME STREAM TAG CONTENT)."""
    text = (pod_dir(lab, cluster, pod) / "logs" / "container.log").read_text()
    return [line.split(" ", 3)[3] for line in text.splitlines()]


def access_log(lab, cluster, pod) -> str:
    return (pod_dir(lab, cluster, pod) / "logs" / "access.log").read_text()


def wait_logged(lab, cluster, pod, marker, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(marker in line for line in container_log(lab, cluster, pod)):
            return
        time.sleep(0.1)
    raise AssertionError("%s never reached the container log of %s" % (marker, pod))


@contextmanager
def traffic(lab, cluster, pod, prefix, interval=0.3, delay=0.0):
    """Requests /PREFIX-N to the pod's nginx through the pod proxy every `interval` seconds while the block runs."""
    stop = threading.Event()
    sent = []

    def loop():
        if stop.wait(delay):
            return
        n = 0
        while not stop.is_set():
            n += 1
            try:
                hit(lab, cluster, pod, "%s-%d" % (prefix, n))
                sent.append(n)
            except AssertionError:
                pass   # a transient kubectl failure; the test's assertions decide
            stop.wait(interval)
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(30)


def is_window(lines, file_lines, after):
    """`lines` is a contiguous block of the file's lines that ends after index `after` (it was read later)."""
    n = len(lines)
    return any(file_lines[j - n:j] == lines for j in range(max(n, after + 1), len(file_lines) + 1))


# ---------------------------------------------------------------------------------------------------------------- reads

@pytest.mark.parametrize("fastpath", ["0", "1"], ids=["controller", "module"])
def test_tail_since_limit_bytes_timestamps_and_check_mode_on_real_nginx_logs(lab, tmp_path, fastpath):
    pod = lab.ingress_pods("cluster-b")[0]
    tag = "kg-read-" + uuid.uuid4().hex[:8]
    tasks = [
        proxied("old request", pod, tag + "-old"),
        {"name": "let it age", "ansible.builtin.pause": {"seconds": 10}},
        proxied("new request", pod, tag + "-new"),
        {"name": "let the agent ship it", "ansible.builtin.pause": {"seconds": 1}},
        # first, so the new line is still young (a task costs a second or two when the module is shipped)
        logs("since", name=pod, since_seconds=6),
        logs("tail", name=pod, tail_lines=3),
        logs("limit", name=pod, limit_bytes=150),
        logs("stamped", name=pod, tail_lines=2, timestamps=True),
        dict(logs("checked", name=pod, tail_lines=2), check_mode=True),
    ]
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks), env={"KUBEGATE_NO_FASTPATH": fastpath})
    file_lines = container_log(lab, "cluster-b", pod)
    new_at = next(i for i, line in enumerate(file_lines) if tag + "-new" in line)
    old_at = next(i for i, line in enumerate(file_lines) if tag + "-old" in line)
    assert '"GET /%s-new HTTP/1.1" 200' % tag in file_lines[new_at]   # nginx's own access-log line

    tail = run.result("tail", "cluster-b")
    assert not tail["failed"], tail
    assert len(tail["lines"]) == 3 and tail["stopped"] == "end" and tail["changed"] is False, tail
    assert is_window(tail["lines"], file_lines, new_at), (tail["lines"], file_lines[new_at - 3:])
    assert tail["text"] == "".join(line + "\n" for line in tail["lines"]) and tail["container"] == "controller"
    assert tail["results"][0]["pod"] == pod and tail["pods"] == [pod]

    since = run.result("since", "cluster-b")
    assert any(tag + "-new" in line for line in since["lines"]), since
    assert not any(tag + "-old" in line for line in since["lines"]), since     # older than since_seconds
    assert since["lines"] and is_window(since["lines"], file_lines, new_at)

    limit = run.result("limit", "cluster-b")
    assert 0 < limit["results"][0]["bytes"] <= 150
    whole = "".join(line + "\n" for line in file_lines)
    assert whole.startswith(limit["text"].rstrip("\n"))                # the log's first bytes, cut by the server
    assert old_at > len(limit["lines"])

    stamped = run.result("stamped", "cluster-b")
    assert len(stamped["lines"]) == 2 and all(STAMP.match(line) for line in stamped["lines"]), stamped["lines"]
    assert is_window([STAMP.sub("", line) for line in stamped["lines"]], file_lines, new_at)

    checked = run.result("checked", "cluster-b")
    assert not checked["failed"] and checked["changed"] is False and len(checked["lines"]) == 2
    assert is_window(checked["lines"], file_lines, new_at)
    assert no_traceback(run.output)


# ---------------------------------------------------------------------------------------------------------------- follow

def test_follow_is_bounded_by_time_lines_and_bytes(lab, tmp_path):
    pod = lab.ingress_pods("cluster-b")[0]
    tag = "kg-follow-" + uuid.uuid4().hex[:8]
    tasks = [
        logs("lines", name=pod, follow=True, tail_lines=0, max_lines=3, follow_timeout=40),
        logs("bytes", name=pod, follow=True, tail_lines=0, max_bytes=400, follow_timeout=40),
        logs("time", name=pod, follow=True, tail_lines=0, follow_timeout=3),
    ]
    started = time.monotonic()
    with traffic(lab, "cluster-b", pod, tag, interval=0.3):
        run = run_playbook(tmp_path, play(lab, "cluster-b", tasks))
    assert time.monotonic() - started < 60
    on_disk = access_log(lab, "cluster-b", pod)

    lines = run.result("lines", "cluster-b")
    assert not lines["failed"], lines
    assert lines["stopped"] == "max_lines" and len(lines["lines"]) == 3 and lines["truncated"] is False
    assert lines["results"][0]["duration"] < 20
    assert all(line in on_disk for line in lines["lines"] if "GET /%s-" % tag in line)
    assert any("GET /%s-" % tag in line for line in lines["lines"])

    capped = run.result("bytes", "cluster-b")
    assert capped["stopped"] == "max_bytes" and capped["truncated"] is True
    assert 0 < sum(len(line.encode()) + 1 for line in capped["lines"]) <= 400
    assert capped["results"][0]["duration"] < 20
    assert any("GET /%s-" % tag in line for line in capped["lines"])

    timed = run.result("time", "cluster-b")
    assert timed["stopped"] == "timeout" and not timed["failed"]
    assert 2.9 <= timed["results"][0]["duration"] < 6    # follow_timeout=3 (durations are rounded to ms)
    assert any("GET /%s-" % tag in line for line in timed["lines"])     # the traffic kept flowing
    assert no_traceback(run.output)


def test_until_stops_early_on_a_line_of_a_request_made_during_the_follow(lab, tmp_path):
    pod = lab.ingress_pods("cluster-b")[1]
    tag = "kg-until-" + uuid.uuid4().hex[:8]
    tasks = [logs("wait for it", name=pod, follow=True, tail_lines=0, follow_timeout=60,
                  until=r'"GET /%s-\d+ HTTP' % re.escape(tag))]
    started = time.monotonic()
    # the first request only after the playbook has started; tail_lines: 0 means only lines logged during the follow
    with traffic(lab, "cluster-b", pod, tag, interval=1.0, delay=2.0) as sent:
        run = run_playbook(tmp_path, play(lab, "cluster-b", tasks))
    res = run.result("wait for it", "cluster-b")
    assert not res["failed"], res
    assert res["matched"] is True and res["stopped"] == "until" and res["matched_pods"] == [pod]
    assert re.search(r'"GET /%s-\d+ HTTP/1.1" 200' % tag, res["lines"][-1])
    assert not any(tag in line for line in res["lines"][:-1])          # stopped at the first match
    assert res["results"][0]["duration"] < 40 and time.monotonic() - started < 60
    assert sent and res["lines"][-1] in access_log(lab, "cluster-b", pod)   # the line nginx wrote for our request


@pytest.mark.parametrize("fastpath", ["0", "1"], ids=["controller", "module"])
def test_selector_over_both_ingress_pods_gives_per_pod_results(lab, tmp_path, fastpath):
    pods = lab.ingress_pods("cluster-b")
    assert len(pods) == 2
    tag = "kg-sel-" + uuid.uuid4().hex[:8]
    for pod in pods:
        hit(lab, "cluster-b", pod, "%s-%s" % (tag, pod))
        wait_logged(lab, "cluster-b", pod, "%s-%s" % (tag, pod))
    tasks = [logs("both", label_selector=SELECTOR, tail_lines=30),
             logs("both follow", label_selector=SELECTOR, follow=True, tail_lines=30, follow_timeout=15,
                  until=re.escape(tag))]
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks), env={"KUBEGATE_NO_FASTPATH": fastpath})
    both = run.result("both", "cluster-b")
    assert not both["failed"], both
    assert both["pods"] == pods and [r["pod"] for r in both["results"]] == pods
    assert "lines" not in both and "text" not in both       # the single-pod convenience is for `name` only
    for result in both["results"]:
        own, other = ["%s-%s" % (tag, p) for p in (result["pod"], [p for p in pods if p != result["pod"]][0])]
        assert result["container"] == "controller"
        assert any(own in line for line in result["lines"]) and not any(other in line for line in result["lines"])
    follow = run.result("both follow", "cluster-b")
    assert sorted(follow["matched_pods"]) == pods
    assert all(r["stopped"] == "until" and r["duration"] < 8 for r in follow["results"])  # well before 15 s


def test_fanout_reads_every_listed_cluster(lab, tmp_path):
    tasks = [{"name": "fan", "run_once": True,
              "kubegate.multicluster.pod_logs": {"namespace": NS, "label_selector": SELECTOR, "tail_lines": 2,
                                                 "fanout": "{{ ansible_play_hosts }}"}}]
    run = run_playbook(tmp_path, play(lab, None, tasks, hosts="cluster-a:cluster-b",
                                      conn=playbook_connection()))
    res = run.result("fan")
    assert not res["failed"], res
    assert res["failed_hosts"] == [] and list(res["results_by_host"]) == ["cluster-a", "cluster-b"]
    for cluster in ("cluster-a", "cluster-b"):
        host = res["results_by_host"][cluster]
        assert host["pods"] == lab.ingress_pods(cluster)
        for result in host["results"]:
            tail = container_log(lab, cluster, result["pod"])
            assert len(result["lines"]) == 2 and all(line in tail for line in result["lines"])


def test_every_cluster_serves_nginx_access_log_as_stdout_and_error_log_as_stderr(lab, tmp_path):
    """The lab contract on all three clusters (cluster-c through its jump host, with the playbooks' connection
    mapping): a proxied request is an access-log line on stdout, a reload (exec `nginx -s reload`) error-log lines on
    stderr, and pod_logs returns both."""
    tag = "kg-streams-" + uuid.uuid4().hex[:8]
    first = {}
    for cluster in ("cluster-a", "cluster-b", "cluster-c"):
        pod = first[cluster] = lab.ingress_pods(cluster)[0]
        hit(lab, cluster, pod, tag)
        lab.kubectl(cluster, "exec", "-n", NS, pod, "--", "nginx", "-s", "reload")
        wait_logged(lab, cluster, pod, tag)
        wait_logged(lab, cluster, pod, "reconfiguring")
        raw = (pod_dir(lab, cluster, pod) / "logs" / "container.log").read_text().splitlines()
        assert any(" stdout F " in line and "GET /%s HTTP/1.1" % tag in line for line in raw)
        assert any(" stderr F " in line and "[notice]" in line for line in raw)
    tasks = [{"name": "read", "kubegate.multicluster.pod_logs": {
        "namespace": NS, "name": "{{ first_pods[inventory_hostname] }}", "tail_lines": 200}}]
    plays = [{"name": "logs", "hosts": "cluster-a:cluster-b:cluster-c", "gather_facts": False,
              "vars": {"first_pods": first},
              "module_defaults": {"group/kubegate.multicluster.cluster": playbook_connection()}, "tasks": tasks}]
    run = run_playbook(tmp_path, plays)
    for cluster, pod in first.items():
        res = run.result("read", cluster)
        assert not res["failed"], res
        at = [i for i, line in enumerate(res["lines"]) if "GET /%s HTTP/1.1" % tag in line]
        assert len(at) == 1, res["lines"]
        assert any("reconfiguring" in line for line in res["lines"][at[0] + 1:])   # the reload, after the request
        text = "\n".join(container_log(lab, cluster, pod))
        assert all(line in text for line in res["lines"])


# ---------------------------------------------------------------------------------------------------------------- errors

def test_missing_pod_and_bad_input_fail_clearly(lab, tmp_path):
    pod = lab.ingress_pods("cluster-b")[0]
    tasks = [
        logs("missing", name="kg-no-such-pod"),
        logs("no match", label_selector="app=kg-no-such-app"),
        logs("bad container", name=pod, container="sidecar"),
        logs("bad regex", name=pod, until="(unclosed"),
        logs("no previous", name=pod, previous=True),
        logs("both", name=pod, label_selector=SELECTOR),
        logs("zero tail", name=pod, tail_lines=-1),
    ]
    run = run_playbook(tmp_path, play(lab, "cluster-b", tasks))
    missing = run.result("missing", "cluster-b")
    assert missing["failed"] and lab.clusters["cluster-b"]["server"] in missing["msg"]
    assert "pod kg-no-such-pod not found in namespace ingress-nginx" in missing["msg"]
    assert "no pod matches labels 'app=kg-no-such-app' in namespace ingress-nginx" in run.result("no match", "cluster-b")["msg"]
    assert "container 'sidecar' not found in pod %s (containers: controller)" % pod in \
        run.result("bad container", "cluster-b")["msg"]
    assert "until '(unclosed' is not a valid Python regular expression" in run.result("bad regex", "cluster-b")["msg"]
    previous = run.result("no previous", "cluster-b")
    assert previous["failed"] and "HTTP 400" in previous["msg"] and "previous instance" in previous["msg"]
    assert "mutually exclusive: name|label_selector" in run.result("both", "cluster-b")["msg"]
    assert "tail_lines must be at least 0, got -1" in run.result("zero tail", "cluster-b")["msg"]
    assert all(run.result(t, "cluster-b")["failed"] for t in ("missing", "no match", "bad container", "both"))
    assert no_traceback(run.output)

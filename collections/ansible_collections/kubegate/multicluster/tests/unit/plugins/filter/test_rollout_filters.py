"""The rollout filters read a step's result the same whether the task ran per host or as one fan-out task, and name
each failed cluster's first failed step (the fan-out mode of reload-ingress.yml stops clusters by it)."""
from __future__ import annotations

from ansible_collections.kubegate.multicluster.plugins.filter.rollout import (
    fanout_hosts, fanout_view, rollout_failures, rollout_misses, rollout_plan, rollout_plan_hosts)

CHECK = {"headers": {"X-Version": "v2"}, "response_header": "X-Kubegate-Backend", "expect": "canary"}


def fan(**by_host):
    return {"results_by_host": by_host, "failed_hosts": [h for h, r in by_host.items() if r.get("failed")]}


def test_view_reads_per_host_fanout_and_looped_fanout_alike():
    own = {"changed": True, "sha256": "a"}
    assert fanout_view(own, "a") == own
    assert fanout_view(fan(a=own), "a") == own
    assert fanout_view(fan(b=own), "a") == {"skipped": True, "changed": False}
    looped = {"results": [dict(fan(a={"status": 200}), item=0), dict(fan(a={"status": 200}, b={}), item=1)]}
    assert fanout_view(looped, "a")["results"] == [{"status": 200, "item": 0}, {"status": 200, "item": 1}]
    assert len(fanout_view(looped, "b")["results"]) == 1


def test_hosts_that_go_on():
    reg = fan(a={"changed": True}, b={"changed": False}, c={"failed": True, "msg": "x"})
    assert fanout_hosts(reg, ["c", "b", "a", "d"]) == ["b", "a"]
    assert fanout_hosts(reg, ["a", "b", "c"], changed_only=True) == ["a"]


def test_plan_and_misses():
    maps = fan(a={"checks": [CHECK]}, b={"checks": [CHECK, CHECK]})
    sync = fan(a={"pods": ["p1", "p2"]}, b={"pods": ["q1"]})
    plan = rollout_plan(maps, sync, ["a", "b"])
    assert plan == {"a": [["p1", CHECK], ["p2", CHECK]], "b": [["q1", CHECK], ["q1", CHECK]]}
    assert rollout_plan_hosts(plan, 1) == ["a", "b"] and rollout_plan_hosts(plan, 2) == []
    answer = {"json": {"headers": {"X-Kubegate-Backend": "canary"}}}
    wrong = {"json": {"headers": {"X-Kubegate-Backend": "stable"}}}
    assert rollout_misses(fan(a=answer, b=wrong), plan, 0) == ["b"]
    assert rollout_misses(wrong, plan, 0, "a") == ["a"] and rollout_misses(answer, plan, 0, "a") == []


def test_first_failed_step_per_host():
    plan = {"a": [["p1", CHECK]], "b": [["q1", CHECK]], "c": [["r1", CHECK]]}
    steps = [
        {"name": "sync", "kind": "synced", "result": fan(a={"results": [{"pod": "p1", "rc": 1}]},
                                                         b={"results": [{"pod": "q1", "rc": 0}]},
                                                         c={"results": [{"pod": "r1", "rc": 0}]})},
        {"name": "test", "result": fan(b={"failed": True, "msg": "nginx: bad\n config"}, c={})},
        {"name": "checks", "kind": "checks", "result": {"results": [
            dict(fan(c={"json": {"headers": {"X-Kubegate-Backend": "stable"}}}), item=0)]}},
        {"name": "never", "result": {}},
    ]
    failed = rollout_failures(steps, plan)
    assert list(failed) == ["a", "b", "c"]
    assert failed["a"]["step"] == "sync" and "p1" in failed["a"]["msg"]
    assert failed["b"] == {"step": "test", "msg": "nginx: bad config"}
    assert failed["c"]["step"] == "checks" and "'stable'" in failed["c"]["msg"] and "'canary'" in failed["c"]["msg"]
    # per-host results (no results_by_host) are not judged here: per host, Ansible fails the host itself
    assert rollout_failures([{"name": "test", "result": {"failed": True}}]) == {}

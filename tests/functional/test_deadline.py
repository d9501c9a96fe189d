"""The run deadline and the answer caps, through the handler, against servers that misbehave:
an answer trickled a byte at a time, a Prometheus that never answers, an answer far too large,
a CS API that is slow. Each run ends near its deadline and never scales on what it could not
read. (Wall times are asserted only as generous bounds on "it ended", not as speed goals.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgescaler.pipeline import MAX_POLICY_WORKERS
from tests.support.prometheus import FaultServer
from tests.support.world import build_world

RUN = {"policies": ["edge-a"]}


def test_a_trickled_prometheus_answer_is_cut_at_the_deadline(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    fault_server.trickle(0.2)  # never a read timeout: a byte every 0.2 s
    with build_world(
        tmp_path,
        prometheus_url=fault_server.url,
        prometheus_timeout="30s",
        extra_env={"EDGESCALER_DEADLINE": "3"},
    ) as w:
        started = time.monotonic()
        out = w.outcome(RUN)
        elapsed = time.monotonic() - started
    assert out["outcome"] == "metrics_unavailable", out
    assert "timeout" in out["reason"] and "still arriving" in out["reason"]
    assert w.posts() == []
    assert elapsed < 15, elapsed  # the 30 s query timeout did not apply; the 3 s deadline did


def test_an_unresponsive_prometheus_costs_one_timeout_not_one_per_policy(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    fault_server.hang()
    wave = MAX_POLICY_WORKERS  # policies evaluated at once
    names = [f"edge-{i:03d}" for i in range(wave + 16)]
    with build_world(
        tmp_path, names, prometheus_url=fault_server.url, prometheus_timeout="1s"
    ) as w:
        report = w.run(b"")
    outcomes = report["outcomes"]
    assert len(outcomes) == len(names)
    assert {o["outcome"] for o in outcomes} == {"metrics_unavailable"}
    fast = [o for o in outcomes if "earlier in this run" in o["reason"]]
    # the first wave of workers waited; every later policy failed at once
    assert len(fast) >= len(names) - wave, [o["reason"] for o in outcomes][:3]
    assert len(fault_server.requests) <= wave
    assert w.posts() == []


def test_an_oversized_prometheus_answer_is_a_bad_response(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    series = [
        {"metric": {"instance": f"edge-{i}", "job": "node"}, "value": [1795000000, "1"]}
        for i in range(200_000)
    ]
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}})
    fault_server.reply(200, body)
    with build_world(tmp_path, prometheus_url=fault_server.url) as w:
        out = w.outcome(RUN)
    assert out["outcome"] == "metrics_unavailable" and "bad_response" in out["reason"]
    assert "larger than 4194304 bytes" in out["reason"]
    assert w.posts() == []


def test_too_many_series_is_a_bad_response(tmp_path: Path, fault_server: FaultServer) -> None:
    series = [{"metric": {"i": str(i)}, "value": [1795000000, "1"]} for i in range(1500)]
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}})
    fault_server.reply(200, body)
    with build_world(tmp_path, prometheus_url=fault_server.url) as w:
        out = w.outcome(RUN)
    assert out["outcome"] == "metrics_unavailable"
    assert "1500 series, more than 1000" in out["reason"]


def test_a_slow_cs_api_ends_the_run_at_its_deadline_without_scaling(tmp_path: Path) -> None:
    with build_world(tmp_path, extra_env={"EDGESCALER_DEADLINE": "3"}) as w:
        w.emulator.inject("DescribeClusterNodes", "slow", count=10, seconds=30)
        started = time.monotonic()
        out = w.outcome(RUN)
        elapsed = time.monotonic() - started
    assert out["outcome"] == "error" and "capacity unavailable" in out["reason"], out
    assert w.posts() == [] and w.activities(w.clusters["edge-a"]) == []
    assert elapsed < 15, elapsed  # not 30 s per attempt, not 4 attempts

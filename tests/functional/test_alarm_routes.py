"""Every alarm route through ``index.handler``'s code path: MNS (envelope and STREAM),
EventBridge, the callback as an FC 3.0 HTTP trigger event; alarms that name their policies; an
alarm's value standing in for Prometheus; alarms that are not firing."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgescaler.handler import handle
from tests.support import builders
from tests.support.events import load_event
from tests.support.prometheus import FaultServer
from tests.support.world import LOAD, PASSWORD_ENV, REGION, FakeClock, World, build_world

TOKEN = "Zq8Lw3Nr6Tb1Xv5Hk9Pd"
RULE_ID = "applyTemplate1a2b3c4d-0000-1111-2222-333344445555"


def mns_event(
    w: World,
    *,
    level: str = "WARN",
    message_id: str = "M-1",
    value: float = 91.37,
    rule_id: str = RULE_ID,
    rule_name: str = "edge-cpu-high",
    metric: str = "CPUUtilization",
) -> bytes:
    """An MNS JSON-envelope event of a CloudMonitor alarm stamped at the world's now."""
    envelope = json.loads(load_event("fc3-mns-topic-json.json"))
    body = json.loads(envelope["Message"])
    stamp = int(w.clock() * 1000)
    body.update(ruleId=rule_id, curLevel=level, ruleName=rule_name, metricName=metric, time=stamp)
    body["metricData"] = {"timestamp": stamp, "Average": value}
    return json.dumps({**envelope, "Message": json.dumps(body), "MessageId": message_id}).encode()


def write(w: World, name: str, **overrides: Any) -> None:
    """Replace the world's policy ``name`` (its cluster stays) with one saying ``overrides``."""
    builders.write_policy(
        w.policies,
        name=name,
        cluster_id=w.clusters[name],
        region=REGION,
        password_env=PASSWORD_ENV,
        limits={"min_nodes": 1, "max_nodes": 40, "max_step": 5},
        **{"metrics": {"load": {"query": LOAD}}, **overrides},
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """One policy, edge-a; tests that need more name them (their clusters exist)."""
    with build_world(
        tmp_path, clock=FakeClock(), extra_env={"EDGESCALER_CALLBACK_TOKEN": TOKEN}
    ) as w:
        yield w


@pytest.fixture
def four(tmp_path: Path) -> Iterator[World]:
    names = ("edge-a", "edge-b", "edge-c", "edge-d")
    with build_world(tmp_path, names, clock=FakeClock()) as w:
        yield w


def run(w: World, event: bytes) -> dict[str, Any]:
    return handle(event, None, env=w.env, now=w.now)


def test_an_mns_alarm_scales_once_and_its_redelivery_does_nothing(world: World) -> None:
    first = run(world, mns_event(world))
    assert first["trigger"] == "mns" and first["event_key"] == "mns:M-1"
    assert [o["outcome"] for o in first["outcomes"]] == ["scaled"]
    again = run(world, mns_event(world))
    assert [o["outcome"] for o in again["outcomes"]] == ["duplicate_event"]
    assert len(world.posts()) == 1


@pytest.mark.parametrize(
    "event",
    [
        "mns-alert-ok.json",
        "eventbridge-alert-ok.json",
        "eventbridge-alert-insufficient-data.json",
    ],
)
def test_an_alarm_that_is_not_firing_evaluates_nothing(world: World, event: str) -> None:
    report = run(world, load_event(event))
    assert report["error"] is None and report["outcomes"] == []
    assert "nothing evaluated" in report["note"] and "nothing evaluated" in report["summary"]
    assert world.emulator.state()["calls"]["PrometheusQuery"] == 0 and world.posts() == []


def test_an_alarm_wakes_the_policies_that_name_it_and_no_others(four: World) -> None:
    world = four
    write(world, "edge-b", alarms=["edge-cpu-high"])
    write(world, "edge-c", alarms=[RULE_ID])
    write(world, "edge-d", alarms=["another-alarm"])
    named = run(world, mns_event(world, message_id="M-2"))
    assert sorted(o["policy"] for o in named["outcomes"]) == ["edge-b", "edge-c"]
    # an alarm no policy names: every policy that names no alarms (edge-a only)
    other = run(world, mns_event(world, message_id="M-3", rule_id="r-9", rule_name="disk-full"))
    assert [o["policy"] for o in other["outcomes"]] == ["edge-a"]


def test_an_alarm_value_stands_in_when_prometheus_cannot_answer(
    four: World, fault_server: FaultServer
) -> None:
    world = four
    fault_server.reply(503, "overloaded", "text/plain")
    prometheus = {"url": fault_server.url, "timeout": "1s"}
    opted_in = {"load": {"query": LOAD, "alarm": {"metric": "CPUUtilization", "max_age": "2m"}}}
    write(world, "edge-b", prometheus=prometheus, metrics=opted_in, alarms=[RULE_ID])
    write(world, "edge-c", prometheus=prometheus, alarms=[RULE_ID])
    report = run(world, mns_event(world, value=10.0, message_id="M-4"))
    by = {o["policy"]: o for o in report["outcomes"]}
    b = by["edge-b"]
    assert b["outcome"] == "scaled", b["reason"]
    assert b["decision"]["readings"]["load"]["source"] == "alarm"
    assert b["decision"]["readings"]["load"]["value"] == 10.0
    assert by["edge-c"]["outcome"] == "metrics_unavailable"  # did not opt in


def test_a_stale_alarm_value_does_not_stand_in(world: World, fault_server: FaultServer) -> None:
    fault_server.reply(503, "overloaded", "text/plain")
    opted_in = {"load": {"query": LOAD, "alarm": {"metric": "CPUUtilization", "max_age": "1m"}}}
    write(
        world,
        "edge-a",
        prometheus={"url": fault_server.url, "timeout": "1s"},
        metrics=opted_in,
    )
    event = mns_event(world, value=10.0, message_id="M-5")
    world.clock.advance(120)  # type: ignore[attr-defined]
    (a,) = run(world, event)["outcomes"]
    assert a["outcome"] == "metrics_unavailable" and "alarm" not in a["reason"], a


def fc3_http(body: bytes, *, method: str = "POST", token: str = TOKEN, b64: bool = False) -> bytes:
    event = json.loads(load_event("fc3-http-callback.json"))
    event["requestContext"]["http"]["method"] = method
    event["queryParameters"] = {"token": token}
    event["body"] = base64.b64encode(body).decode() if b64 else body.decode()
    event["isBase64Encoded"] = b64
    return json.dumps(event).encode()


def test_the_callback_as_an_fc3_http_trigger_event(world: World) -> None:
    body = load_event("cloudmonitor-callback.form")
    ok = run(world, fc3_http(body))
    assert ok["statusCode"] == 200 and "scaled=1" in json.loads(ok["body"])["summary"]
    again = run(world, fc3_http(body, b64=True))  # CloudMonitor's retry, body base64-encoded
    assert again["statusCode"] == 200
    assert "duplicate_event=1" in json.loads(again["body"])["summary"]
    assert run(world, fc3_http(body, token="wrong-token-0000000"))["statusCode"] == 403
    got = run(world, fc3_http(body, method="GET"))
    assert got["statusCode"] == 405 and got["headers"]["Allow"] == "POST"
    assert run(world, fc3_http(b"{}"))["statusCode"] == 400  # not a callback: runs nothing
    assert len(world.posts()) == 1


def test_an_oversized_fc3_event_is_refused_by_size_unparsed(world: World) -> None:
    """8 MB of event is never parsed (0.3 s of CPU): refused as any event over the limit."""
    event = json.loads(fc3_http(load_event("cloudmonitor-callback.form")))
    event["body"] += "&pad=" + "x" * 8_000_000
    # requestContext first: the marker sits in the event's first bytes, as FC may order it
    huge = json.dumps({"requestContext": event.pop("requestContext"), **event}).encode()
    report = run(world, huge)
    assert "statusCode" not in report and "larger than 262144" in (report["error"] or "")
    assert world.posts() == []


def test_a_predictive_policy_reads_its_history_from_the_emulator(world: World) -> None:
    """The emulator answers query_range too: a predictive rule gets its history end to end."""
    write(
        world,
        "edge-a",
        rules=[
            {
                "type": "predictive",
                "metric": "load",
                "target_per_node": 2,
                "horizon": "30m",
                "history": {"window": "1h", "step": "1m"},
                "seasons": [],
                "noise_window": "30m",
                "surprise_window": "30m",
                "growth_window": "30m",
            }
        ],
    )
    world.clock.advance(3600)  # type: ignore[attr-defined]  # an hour of scripted history
    (o,) = run(world, b'{"policies": ["edge-a"], "dry_run": true}')["outcomes"]
    forecast = o["decision"]["rules"][0]["forecast"]
    assert forecast["points"] >= 50, forecast  # read through query_range, not "no history"
    assert o["outcome"] == "dry_run" and o["add"] >= 3

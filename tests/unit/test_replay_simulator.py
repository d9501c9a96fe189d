"""The replay simulator on tiny series whose scores are computed by hand: join delay, failures,
cooldown, gaps, idle scale-in, and the scoring definitions."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from edgescaler.policy import Policy
from edgescaler.replay.cluster import IdleReclaim, JoinDelay, SimCluster
from edgescaler.replay.errors import ReplayError
from edgescaler.replay.scoring import Score, Scorer, demand
from edgescaler.replay.simulator import LOAD, Run, Setup, simulate
from edgescaler.replay.traces import Grid, Trace
from tests.support.builders import policy

FEEDS = {"load": LOAD}


def grid(values: Sequence[float | None]) -> Grid:
    times = [60.0 * i for i, v in enumerate(values) if v is not None]
    present = [v for v in values if v is not None]
    return Grid(Trace("test", "load", times, present, 60.0, False), 0.0, 60.0, list(values))


def tt(cooldown: str = "0s", **limits: Any) -> Policy:
    return policy(
        cooldown=cooldown,
        limits={"min_nodes": 0, "max_nodes": 100, "max_step": 10, **limits},
        rules=[{"type": "target_tracking", "metric": "load", "target_per_node": 10}],
    )


def run(p: Policy, values: Sequence[float | None], **setup: Any) -> Run:
    s = Setup(**{"per_node": 10, "join_delay": JoinDelay(10, 10), "initial": 1, **setup})
    return simulate(p, grid(values), s, FEEDS, record=True)


def test_nodes_join_after_the_delay_and_unmet_demand_is_counted_until_then() -> None:
    # demand 1 for 5 minutes, then 3 for 20: the run at the end of minute 5 asks for +2,
    # which joins 10 minutes later, ready from minute 16
    r = run(tt(), [10.0] * 5 + [30.0] * 20)
    (e,) = r.events
    assert (e.at, e.add, e.ends_at) == (6 * 60, 2, 16 * 60)
    tl = r.timeline
    assert tl is not None
    assert tl.ready[15] == 1 and tl.ready[16] == 3
    assert tl.requested[6] == 3  # joining nodes are listed from the call on
    assert r.score == Score(
        unmet_node_minutes=11 * 2,  # minutes 5..15, two nodes short
        unmet_minutes=11,
        nodes_added=2,
        node_hours=(25 * 1 + 19 * 2) / 60,  # the initial node all along; the two from the call
        scale_out_calls=1,
        largest_step=2,
    )
    assert r.outcomes["in_flight"] == 9  # the runs at the end of minutes 6-14 were held


def test_a_failed_scale_out_adds_nothing_and_backs_off() -> None:
    r = run(tt(), [30.0] * 40, failure_rate=1.0)
    assert r.score.nodes_added == 0 and r.score.scale_out_calls >= 2
    assert r.score.unmet_node_minutes == 40 * 2  # two nodes short all along
    assert r.score.node_hours == pytest.approx(40 / 60)  # failed nodes are never billed
    assert r.outcomes.get("backoff", 0) > 0
    first, second = r.events[:2]
    # failed after 10 min, then 5 min of backoff (cooldown does not apply to failures)
    assert second.at - first.at == 15 * 60


def test_cooldown_and_in_flight_space_the_calls() -> None:
    threshold = policy(
        cooldown="5m",
        limits={"min_nodes": 0, "max_nodes": 100, "max_step": 10},
        rules=[{"type": "threshold", "metric": "load", "above": 0, "add": 1}],
    )
    r = run(threshold, [100.0] * 120)
    gaps = {b.at - a.at for a, b in zip(r.events, r.events[1:], strict=False)}
    # in flight for the 10-minute join, then 5 minutes of cooldown after the task ended
    assert gaps == {15 * 60}
    assert all(e.add == 1 for e in r.events)


def test_a_timed_out_task_that_ends_late_is_followed_and_cooled_down_after() -> None:
    """Provisioning takes 10 minutes, the policy gives it 5: each scale-out is recorded
    timed_out, held while its task runs, and followed to its late end; the cooldown runs from
    that end, as in the product, not just the backoff from the timeout."""
    threshold = policy(
        cooldown="5m",
        limits={"min_nodes": 0, "max_nodes": 100, "max_step": 10},
        rules=[{"type": "threshold", "metric": "load", "above": 0, "add": 1}],
        scale_out={"timeout_mins": 5},
    )
    r = run(threshold, [100.0] * 120)
    gaps = {b.at - a.at for a, b in zip(r.events, r.events[1:], strict=False)}
    assert gaps == {15 * 60}
    assert r.score.nodes_added == len(r.events)


def test_gaps_are_never_scored_nor_read_as_zero() -> None:
    values: list[float | None] = [50.0] * 3 + [None] * 10 + [50.0] * 3
    r = run(tt(), values, initial=5)
    assert r.score.unmet_node_minutes == 0 and r.score.scale_out_calls == 0
    assert r.outcomes["metrics_unavailable"] == 10
    low = run(tt(), [None, 10.0, None], initial=1)
    assert low.outcomes["metrics_unavailable"] == 2 and low.score.unmet_minutes == 0


def test_idle_scale_in_reclaims_spare_nodes_after_the_duration() -> None:
    values = [50.0] * 10 + [10.0] * 120
    none = run(tt(), values, initial=5)
    idle = run(tt(), values, initial=5, scale_in_idle=timedelta(minutes=30))
    assert none.timeline is not None and idle.timeline is not None
    assert none.timeline.ready[-1] == 5
    # demand 1 from minute 10: 4 spare nodes for 30 minutes by minute 39, reclaimed after it
    assert idle.timeline.ready[39] == 5 and idle.timeline.ready[40] == 1
    assert idle.score.node_hours == pytest.approx((40 * 5 + 90 * 1) / 60)
    floor = run(tt(min_nodes=3), values, initial=5, scale_in_idle=timedelta(minutes=30))
    assert floor.timeline is not None and floor.timeline.ready[-1] == 3  # never below min_nodes


def test_idle_reclaim_restarts_after_a_gap() -> None:
    cluster = SimCluster(4, join_delay=JoinDelay(), failure_rate=0.0, seed=1)
    idle = IdleReclaim(3, floor=0)
    assert [idle.observe(i, d, cluster) for i, d in enumerate([1, 1, None, 1, 1, 1])] == [
        0,
        0,
        0,
        0,
        0,
        3,
    ]
    assert cluster.ready == 1


def test_the_cluster_counts_joining_nodes_and_seeds_its_delays() -> None:
    a = SimCluster(2, join_delay=JoinDelay(5, 20), failure_rate=0.0, seed=7)
    b = SimCluster(2, join_delay=JoinDelay(5, 20), failure_rate=0.0, seed=7)
    ta, tb = a.scale_out(0.0, 3), b.scale_out(0.0, 3)
    assert ta.ends_at == tb.ends_at and 300 <= ta.ends_at <= 1200
    assert ta.ends_at % 60 == 0  # whole minutes
    assert (a.ready, a.current(), a.billed()) == (2, 5, 5)
    assert a.advance(ta.ends_at - 1) == [] and a.advance(ta.ends_at) == [ta]
    assert (a.ready, a.current()) == (5, 5)
    draws = {JoinDelay(5, 20).draw(random.Random(s)) for s in range(200)}
    assert min(draws) == 5 and max(draws) == 20


@pytest.mark.parametrize(
    ("text", "low", "high"), [("10m", 10, 10), ("5m-20m", 5, 20), ("1m..3m", 1, 3)]
)
def test_join_delay_parsing(text: str, low: int, high: int) -> None:
    assert JoinDelay.parse(text) == JoinDelay(low, high)


@pytest.mark.parametrize("text", ["90s", "20m-5m", "soon", "5m-10m-20m"])
def test_bad_join_delays(text: str) -> None:
    with pytest.raises(ReplayError, match="--join-delay"):
        JoinDelay.parse(text)


def test_scoring_definitions() -> None:
    assert [demand(v, 10) for v in (None, 0.0, 0.5, 10.0, 10.0001, 25.0)] == [
        None,
        0,
        1,
        1,
        2,
        3,
    ]
    s = Scorer(interval_minutes=5)
    s.tick(demand=4, ready=2, billed=3)  # 2 nodes short for 5 minutes
    s.tick(demand=None, ready=0, billed=3)  # a gap: paid, not scored
    s.tick(demand=1, ready=2, billed=3)
    s.call(4, fails=False)
    s.call(6, fails=True)
    assert s.score() == Score(10, 5, 4, 0.75, 2, 6)
    assert Score.mean([Score(1, 2, 3, 4, 5, 6), Score(2, 2, 3, 5, 5, 6)]).to_dict() == {
        "unmet_node_minutes": 1.5,
        "unmet_minutes": 2,
        "nodes_added": 3,
        "node_hours": 4.5,
        "scale_out_calls": 5,
        "largest_step": 6,
    }


def test_a_predictive_rule_reads_its_history_from_the_trace_without_the_future() -> None:
    p = policy(
        cooldown="0s",
        limits={"min_nodes": 0, "max_nodes": 100, "max_step": 50},
        rules=[
            {
                "type": "predictive",
                "metric": "load",
                "target_per_node": 10,
                "horizon": "10m",
                "history": {"window": "1h", "step": "1m"},
                "seasons": [],
                "uncertainty": 0,
                "surprise_quantile": None,
                "max_growth": None,
                "trend_window": "30m",
                "noise_window": "30m",
            }
        ],
    )
    values = [10.0 + i for i in range(60)] + [500.0] * 5
    r = run(p, values, initial=1)
    first = r.events[0]
    # the future spike to 500 is never seen before it happens: the first call follows the ramp
    assert first.at < 60 * 60 and "peak over 10m forecast" in first.explanation
    assert first.add < 10

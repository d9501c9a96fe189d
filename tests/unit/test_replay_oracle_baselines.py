"""The oracle (the floor) and the baselines (real policies built from the user's)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from edgescaler.decision import decide
from edgescaler.policy import StepRule, TargetTrackingRule, ThresholdRule
from edgescaler.replay import baselines
from edgescaler.replay.cluster import JoinDelay
from edgescaler.replay.compare import compare, prepare
from edgescaler.replay.errors import ReplayError
from edgescaler.replay.oracle import needs_ahead, simulate_oracle
from edgescaler.replay.simulator import Setup, simulate
from edgescaler.replay.traces import Grid, Trace
from tests.support.builders import BASE, policy, readings


def grid(values: list[float | None]) -> Grid:
    times = [60.0 * i for i, v in enumerate(values) if v is not None]
    present = [v for v in values if v is not None]
    return Grid(Trace("test", "load", times, present, 60.0, False), 0.0, 60.0, list(values))


def test_needs_ahead_is_the_largest_demand_in_the_coming_window() -> None:
    assert needs_ahead([1, 5, None, 2, 7, 3], 2) == [5, 2, 7, 7, 3, 0]
    assert needs_ahead([None, None], 3) == [0, 0]


def test_the_oracle_adds_exactly_what_will_be_needed_one_maximum_join_delay_ahead() -> None:
    values: list[float | None] = [10.0] * 30 + [60.0] * 10 + [30.0] * 30 + [80.0] * 5 + [20.0] * 20
    setup = Setup(per_node=10, join_delay=JoinDelay(5, 20), initial=1, seed=3)
    r = simulate_oracle(grid(values), setup, max_nodes=100, record=True)
    assert r.score.nodes_added == 8 - 1  # the peak, never more
    assert r.score.unmet_node_minutes == 0  # every rise is more than 20 minutes away
    tl = r.timeline
    assert tl is not None
    assert all(d is None or d <= ready for d, ready in zip(tl.demand, tl.ready, strict=True))
    assert [e.add for e in r.events] == [5, 2]  # +5 for 6 nodes, then +2 for 8


def test_the_oracle_is_unmet_only_where_nothing_could_have_joined_in_time() -> None:
    setup = Setup(per_node=10, join_delay=JoinDelay(10, 10), initial=1)
    r = simulate_oracle(grid([10.0, 50.0] + [50.0] * 20), setup, max_nodes=100)
    # asked at the end of minute 0, ready at minute 11: minutes 1-10 are four nodes short
    assert r.score.unmet_node_minutes == 10 * 4 and r.score.nodes_added == 4
    capped = simulate_oracle(grid([10.0] + [50.0] * 20), setup, max_nodes=3)
    assert capped.score.nodes_added == 2  # never above max_nodes


def test_the_oracle_makes_good_a_failed_scale_out() -> None:
    setup = Setup(per_node=10, join_delay=JoinDelay(5, 5), initial=1, failure_rate=0.5, seed=2)
    r = simulate_oracle(grid([10.0] * 5 + [40.0] * 60), setup, max_nodes=100)
    assert r.score.nodes_added == 3
    assert r.score.scale_out_calls > 1 and any(e.fails for e in r.events)


def test_baselines_are_real_policies_with_the_users_cooldown_and_limits() -> None:
    user = policy(
        cooldown="7m",
        limits={"min_nodes": 2, "max_nodes": 30, "max_step": 4},
        budget={"nodes_per_hour": 3},
    )
    built = baselines.baselines(user, per_node=25)
    assert set(built) == {"target_tracking", "step", "threshold"}
    for p in built.values():
        assert p.cooldown == timedelta(minutes=7) and p.limits == user.limits
        assert p.budget is None and p.cluster_id == user.cluster_id
    tt, step, threshold = built["target_tracking"], built["step"], built["threshold"]
    assert isinstance(tt.rules[0], TargetTrackingRule) and tt.rules[0].target_per_node == 25
    assert isinstance(step.rules[0], StepRule) and step.rules[0].metric == "utilisation"
    assert isinstance(threshold.rules[0], ThresholdRule) and threshold.rules[0].add == 1


@pytest.mark.parametrize(
    ("util", "add"), [(99.9, 0), (100.0, 1), (105.0, 1), (130.0, 3), (170.0, 5), (400.0, 10)]
)
def test_step_scaling_follows_the_utilisation_of_ready_nodes(util: float, add: int) -> None:
    step = baselines.baseline(policy(), "step", per_node=10)
    d = decide(step, 10, readings(load=0, utilisation=util))
    assert d.add == add


def test_target_tracking_counts_joining_nodes_and_threshold_adds_one_per_breach() -> None:
    user = policy(cooldown="0s", limits={"min_nodes": 0, "max_nodes": 100, "max_step": 10})
    setup = Setup(per_node=10, join_delay=JoinDelay(10, 10), initial=1)
    g = grid([10.0] + [55.0] * 60)
    tt = simulate(baselines.baseline(user, "target_tracking", 10), g, setup, baselines.FEEDS)
    assert [e.add for e in tt.events] == [5]  # 6 nodes in one call
    th = simulate(baselines.baseline(user, "threshold", 10), g, setup, baselines.FEEDS)
    assert {e.add for e in th.events} == {1} and th.score.nodes_added == 5


def test_compare_scores_the_policy_the_baselines_and_the_oracle() -> None:
    user = policy(
        cooldown="0s",
        limits={"min_nodes": 0, "max_nodes": 100, "max_step": 10},
        rules=[{"type": "target_tracking", "metric": "load", "target_per_node": 10}],
    )
    prepared = prepare(user)
    setup = Setup(per_node=10, join_delay=JoinDelay(5, 20))
    c = compare(prepared, grid([10.0] * 30 + [45.0] * 60), setup, [1, 2, 3])
    d = c.to_dict()
    assert list(d) == ["policy", "oracle", "baselines"]
    assert list(d["baselines"]) == ["target_tracking", "step", "threshold"]
    assert d["policy"]["nodes_added"] == 4 and d["oracle"]["unmet_node_minutes"] == 0


def test_prepare_keeps_the_rules_the_trace_can_feed() -> None:
    two = policy(
        metrics={**BASE["metrics"], "pending": {"query": "sum(pending)"}},
        rules=[
            {"type": "step", "metric": "pending", "steps": [{"lower": 1, "add": 2}]},
            {"type": "target_tracking", "metric": "load", "target_per_node": 2},
        ],
    )
    p = prepare(two, metric="load")
    assert [r.metric for r in p.policy.rules] == ["load"] and set(p.policy.metrics) == {"load"}
    assert p.dropped == ("rule 0 (step on pending): left out, the trace does not feed 'pending'",)
    with pytest.raises(ReplayError, match="has no metric 'cpu'"):
        prepare(two, metric="cpu")
    with pytest.raises(ReplayError, match="no rule on metric 'pending'"):
        prepare(policy(metrics={**BASE["metrics"], "pending": {"query": "x"}}), metric="pending")

"""The decision engine: formulas, largest add wins, clamps in order, reasons recorded."""

from __future__ import annotations

import pytest

from edgescaler.decision import decide
from tests.support.builders import policy, readings

LOAD = {"load": {"query": "sum(edge_load)"}}


def tt(**kw: object) -> dict[str, object]:
    return {"type": "target_tracking", "metric": "load", **kw}


@pytest.mark.parametrize(
    ("value", "current", "add"),
    [(7.0, 1, 3), (8.0, 4, 0), (8.1, 4, 1), (0.0, 3, 0), (100.0, 0, 10), (3.9, 2, 0)],
)
def test_target_per_node(value: float, current: int, add: int) -> None:
    p = policy(rules=[tt(target_per_node=2)], limits={"max_nodes": 100, "max_step": 10})
    d = decide(p, current, readings(load=value))
    # ceil(value / 2) - current, never negative, capped by max_step 10
    assert d.add == add


@pytest.mark.parametrize(
    "rule",
    [
        tt(target_per_node=0.5),
        tt(target_value=0.5),
        {"type": "predictive", "metric": "load", "target_per_node": 0.5},
    ],
    ids=["per-node", "utilisation", "predictive-without-history"],
)
def test_a_value_too_large_to_count_nodes_from_adds_nothing(rule: dict[str, object]) -> None:
    """1e308 / 0.5 is no number of nodes: the rule says so instead of raising."""
    p = policy(rules=[rule], limits={"max_nodes": 100, "max_step": 10})
    d = decide(p, 2, readings(load=1e308))
    assert d.add == 0 and "too large to count nodes from" in d.rules[0].detail


@pytest.mark.parametrize(
    ("util", "current", "add"),
    [(90.0, 4, 2), (60.0, 4, 0), (61.0, 4, 1), (30.0, 4, 0), (120.0, 5, 5)],
)
def test_target_value_average_utilisation(util: float, current: int, add: int) -> None:
    # ceil(current * util / 60) - current
    p = policy(rules=[tt(target_value=60)], limits={"max_nodes": 100, "max_step": 10})
    assert decide(p, current, readings(load=util)).add == add


def test_tolerance_band_holds_within_and_acts_outside() -> None:
    p = policy(
        rules=[tt(target_value=60, tolerance=0.1)], limits={"max_nodes": 100, "max_step": 10}
    )
    inside = decide(p, 10, readings(load=65.0))  # ratio 1.083
    assert inside.add == 0 and "within tolerance" in inside.rules[0].detail
    outside = decide(p, 10, readings(load=67.0))  # ratio 1.117 -> ceil(11.17) - 10 = 2
    assert outside.add == 2


def test_utilisation_with_zero_nodes_relies_on_min_nodes() -> None:
    p = policy(rules=[tt(target_value=60)], limits={"min_nodes": 2, "max_nodes": 10, "max_step": 5})
    d = decide(p, 0, readings(load=95.0))
    assert d.rules[0].add == 0
    assert d.add == 2 and d.reason == "min_nodes"


def test_step_intervals_are_half_open() -> None:
    steps = [{"lower": 1, "upper": 10, "add": 1}, {"lower": 10, "add": 3}]
    p = policy(rules=[{"type": "step", "metric": "load", "steps": steps}])
    assert [decide(p, 5, readings(load=v)).add for v in (0.5, 1, 9.99, 10, 500)] == [0, 1, 1, 3, 3]


def test_threshold_is_strictly_above() -> None:
    p = policy(rules=[{"type": "threshold", "metric": "load", "above": 60, "add": 2}])
    assert decide(p, 5, readings(load=60.0)).add == 0
    assert decide(p, 5, readings(load=60.01)).add == 2


def test_largest_add_wins_and_is_explained() -> None:
    p = policy(
        metrics={**LOAD, "pending": {"query": "sum(pending)"}},
        rules=[
            tt(target_per_node=2),  # ceil(9/2)-3 = 2
            {"type": "step", "metric": "pending", "steps": [{"lower": 1, "add": 4}]},
            {"type": "threshold", "metric": "load", "above": 5, "add": 1},
        ],
    )
    d = decide(p, 3, readings(load=9.0, pending=2.0))
    assert [r.add for r in d.rules] == [2, 4, 1]
    assert d.add == 4 and d.reason == "rule"
    assert d.explanation.startswith("rule 1 (step on pending)")
    assert set(d.to_dict()["readings"]) == {"load", "pending"}


def test_clamps_apply_in_order_and_are_recorded() -> None:
    p = policy(
        rules=[tt(target_per_node=1)], limits={"min_nodes": 0, "max_nodes": 20, "max_step": 5}
    )
    d = decide(p, 17, readings(load=40.0))  # wants +23
    assert d.proposed == 23 and d.add == 3
    assert [(c.limit, c.before, c.after) for c in d.clamps] == [
        ("max_step", 23, 5),
        ("max_nodes", 5, 3),
    ]
    assert "clamped: max_step 23->5, max_nodes 5->3" in d.explanation


def test_at_max_nodes_is_capped_not_no_change() -> None:
    p = policy(rules=[tt(target_per_node=1)], limits={"max_nodes": 10, "max_step": 5})
    d = decide(p, 10, readings(load=40.0))
    assert d.add == 0 and d.reason == "capped"
    assert d.clamps[-1].limit == "max_nodes"


def test_min_nodes_floor_wins_over_max_step() -> None:
    p = policy(
        rules=[tt(target_per_node=100)], limits={"min_nodes": 6, "max_nodes": 10, "max_step": 2}
    )
    d = decide(p, 1, readings(load=1.0))
    assert d.add == 5 and d.reason == "min_nodes"
    assert [c.limit for c in d.clamps] == ["min_nodes"]


def test_no_rule_fired_is_no_change() -> None:
    p = policy(rules=[tt(target_per_node=2)])
    d = decide(p, 5, readings(load=3.0))
    assert (d.add, d.reason, d.clamps) == (0, "no_change", ())


def test_negative_current_is_refused() -> None:
    with pytest.raises(ValueError):
        decide(policy(), -1, readings(load=1.0))


# -- exact arithmetic at the edges ----------------------------------------------------------------


@pytest.mark.parametrize("k", range(1, 101))
def test_an_exact_multiple_of_the_target_asks_for_exactly_that_many_nodes(k: int) -> None:
    """8.4 / 1.4 is 6.000000000000001 in floats: 38 of these 100 used to ask for one more."""
    value = k * 1.4
    p = policy(
        metrics=LOAD,
        rules=[tt(target_per_node=1.4)],
        limits={"min_nodes": 0, "max_nodes": 500, "max_step": 500},
    )
    assert decide(p, k, readings(load=value)).add == 0
    predictive = policy(
        metrics=LOAD,
        rules=[{"type": "predictive", "metric": "load", "target_per_node": 1.4}],
        limits={"min_nodes": 0, "max_nodes": 500, "max_step": 500},
    )
    assert decide(predictive, k, readings(load=value)).add == 0  # no history: current value


def test_a_utilisation_exactly_on_target_adds_nothing() -> None:
    p = policy(metrics=LOAD, rules=[tt(target_value=0.7)])
    assert decide(p, 15, readings(load=0.7)).add == 0


@pytest.mark.parametrize(
    ("rule", "value"),
    [(tt(target_per_node=1, tolerance=0.1), 11.0), (tt(target_value=60, tolerance=0.1), 66.0)],
)
def test_the_tolerance_band_includes_its_edge(rule: dict[str, object], value: float) -> None:
    """1.1 - 1 is 0.10000000000000009: a load exactly at +tolerance must not add a node."""
    d = decide(policy(metrics=LOAD, rules=[rule]), 10, readings(load=value))
    assert d.add == 0 and "within tolerance" in d.rules[0].detail


def test_the_min_nodes_top_up_stays_within_one_calls_ceiling() -> None:
    """600 below min_nodes: 500 now (the API refuses more in one call), the rest next time."""
    p = policy(
        metrics=LOAD,
        rules=[tt(target_per_node=1)],
        limits={"min_nodes": 600, "max_nodes": 1000, "max_step": 5},
    )
    d = decide(p, 0, readings(load=0.0))
    assert (d.add, d.reason) == (500, "min_nodes")
    assert decide(p, 500, readings(load=0.0)).add == 100


def test_average_utilisation_is_the_ready_nodes_and_joining_ones_are_capacity() -> None:
    """90 % over the ready nodes, target 60 %: ready * 1.5 nodes are needed, and joining nodes
    count towards them; they used to count as load (ready 4 with 2 stuck joining asked +3)."""
    p = policy(metrics=LOAD, rules=[tt(target_value=60)])
    assert decide(p, 4, readings(load=90.0), ready=4).add == 2
    d = decide(p, 6, readings(load=90.0), ready=4)
    assert d.add == 0 and "ceil(4 ready * 90 / 60) = 6" in d.rules[0].detail, d.rules[0].detail
    assert decide(p, 10, readings(load=90.0), ready=4).add == 0
    assert decide(p, 5, readings(load=90.0), ready=4).add == 1


def test_no_ready_node_leaves_average_utilisation_to_min_nodes() -> None:
    p = policy(metrics=LOAD, rules=[tt(target_value=60)])
    d = decide(p, 3, readings(load=90.0), ready=0)
    assert d.add == 0 and "at least one ready node" in d.rules[0].detail
    with pytest.raises(ValueError):
        decide(p, 3, readings(load=90.0), ready=4)


def test_a_tiny_positive_load_still_asks_for_its_node() -> None:
    """The rounding slack is relative: 5 / 1e10 is not rounded down to no node."""
    p = policy(
        metrics=LOAD,
        rules=[tt(target_per_node=1e10)],
        limits={"min_nodes": 0, "max_nodes": 10, "max_step": 5},
    )
    assert decide(p, 0, readings(load=5.0)).add == 1

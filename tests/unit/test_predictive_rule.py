"""The predictive rule in the decision engine: what it proposes, what it records, its fallbacks."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from edgescaler.decision import decide
from edgescaler.metrics.series import Series
from edgescaler.policy import PredictiveRule
from tests.support.builders import NOW, policy, readings

MIN = timedelta(minutes=1)


def predictive(**kw: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "type": "predictive",
        "metric": "load",
        "target_per_node": 10,
        "horizon": "30m",
        "history": {"window": "1d", "step": "1m"},
        "seasons": [],
        "uncertainty": 0,
        "surprise_quantile": None,
        "max_growth": None,
    }
    rule.update(kw)
    return rule


def ramp(n: int = 180) -> Series:
    """10 + 0.5 per minute, ending at NOW."""
    return Series("load", NOW - (n - 1) * MIN, MIN, [10 + 0.5 * i for i in range(n)])


def test_it_adds_what_the_forecast_peak_needs_counting_joining_nodes() -> None:
    p = policy(rules=[predictive(trend_damping=1.0)], limits={"max_nodes": 100, "max_step": 50})
    d = decide(p, 6, readings(load=99.5), {"load": ramp()})
    r = d.rules[0]
    assert r.forecast is not None
    # level 97.25 (median of the newest 10) + trend 0.5 x 30 = 112.25 -> 12 nodes
    assert r.forecast.bound == 112.25
    assert r.add == 12 - 6 and d.add == 6
    assert "peak over 30m forecast 112.2" in r.detail and "6 current (incl. joining)" in r.detail


def test_the_current_value_is_a_floor() -> None:
    p = policy(rules=[predictive()], limits={"max_nodes": 100, "max_step": 50})
    flat = Series("load", NOW - 59 * MIN, MIN, [20.0] * 60)
    d = decide(p, 2, readings(load=75.0), {"load": flat})
    assert d.rules[0].forecast is not None and d.rules[0].forecast.bound == 20
    assert d.add == 8 - 2 and "current value 75 is higher" in d.rules[0].detail


def test_without_history_it_acts_on_the_current_value_and_says_so() -> None:
    p = policy(rules=[predictive()], limits={"max_nodes": 100, "max_step": 50})
    d = decide(p, 2, readings(load=45.0))
    assert d.add == 3 and d.rules[0].forecast is None
    assert d.rules[0].detail.startswith("no history: ceil(45 / 10) = 5")
    gaps = Series("load", NOW - 59 * MIN, MIN, [None] * 60)
    d = decide(p, 2, readings(load=45.0), {"load": gaps})
    assert d.add == 3 and d.rules[0].detail.startswith("no recent samples in the history")


def test_the_decision_record_says_what_was_forecast_and_from_what() -> None:
    p = policy(rules=[predictive(trend_damping=1.0)], limits={"max_nodes": 100, "max_step": 50})
    record = decide(p, 6, readings(load=99.5), {"load": ramp()}).to_dict()
    f = record["rules"][0]["forecast"]
    assert f["horizon_s"] == 1800 and f["points"] == 180
    assert f["level"] == 97.25 and f["trend"] == 15 and f["seasonal"] == 0
    assert f["bound"] == 112.25 and f["cap"] is None
    assert f["basis"][0] == "level: median of 10"
    json.dumps(record)  # the record goes to the store and the report as JSON


def test_the_largest_proposal_still_wins_and_limits_still_clamp() -> None:
    p = policy(
        rules=[
            predictive(trend_damping=1.0),
            {"type": "threshold", "metric": "load", "above": 50, "add": 9},
        ],
        limits={"max_nodes": 100, "max_step": 8},
    )
    d = decide(p, 6, readings(load=99.5), {"load": ramp()})
    assert [r.add for r in d.rules] == [6, 9]
    assert d.proposed == 9 and d.add == 8 and d.clamps[0].limit == "max_step"


def test_policy_histories_and_query_bounds() -> None:
    p = policy(rules=[predictive(history={"window": "2h", "step": "5m"})])
    (h,) = p.histories().values()
    rule = p.rules[0]
    assert isinstance(rule, PredictiveRule)
    start, end = h.bounds(NOW + timedelta(minutes=3, seconds=20))
    assert end == NOW  # the newest multiple of 5 minutes
    assert start == NOW - timedelta(hours=2)

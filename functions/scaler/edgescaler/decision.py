"""The decision engine: readings and current capacity in, nodes to add and the reasons out.

Pure and deterministic. Each rule proposes an add (never negative: scale-in is out of scope); the
largest proposal wins, because adding too little during an edge surge costs more than one node
too many. Then the limits clamp it, in this order, each clamp recorded:

1. ``max_step``  — no more than this many nodes per scale-out call;
2. ``max_nodes`` — never above the cluster ceiling;
3. ``min_nodes`` — the floor: a cluster below it gets topped up even if no rule fired
   (still within ``max_nodes``, which validation guarantees is ≥ ``min_nodes``).

The result is a :class:`Decision`, which is stored with the activity and printed by ``plan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edgescaler.forecast import Forecast, ForecastParams, forecast
from edgescaler.metrics.base import Reading
from edgescaler.metrics.series import Series
from edgescaler.policy import (
    MAX_COUNT_PER_CALL,
    Policy,
    PredictiveRule,
    Rule,
    StepRule,
    TargetTrackingRule,
    ThresholdRule,
    format_duration,
)

# Relative slack under which a quotient counts as the integer it rounds to (see _ceil).
_EPSILON = 1e-9


@dataclass(frozen=True)
class RuleResult:
    """What one rule proposed, and why."""

    index: int
    type: str
    metric: str
    value: float
    add: int
    detail: str
    forecast: Forecast | None = None  # predictive rules: what was forecast, and from what

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.index,
            "type": self.type,
            "metric": self.metric,
            "value": self.value,
            "add": self.add,
            "detail": self.detail,
        }
        if self.forecast is not None:
            out["forecast"] = self.forecast.to_dict()
        return out


@dataclass(frozen=True)
class Clamp:
    """A limit that changed the add: ``before`` → ``after``."""

    limit: str
    before: int
    after: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "before": self.before,
            "after": self.after,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Decision:
    """How many nodes to add and the full reasoning.

    ``reason`` is a stable code: ``rule`` (a rule asked for nodes), ``min_nodes`` (only the floor
    did), ``capped`` (rules asked but a limit cut the add to 0), ``no_change``.
    """

    current: int
    proposed: int
    add: int
    reason: str
    explanation: str
    rules: tuple[RuleResult, ...]
    clamps: tuple[Clamp, ...]
    readings: Mapping[str, Reading] = field(default_factory=dict)

    @property
    def target(self) -> int:
        return self.current + self.add

    def clamped(self, clamps: Sequence[Clamp]) -> Decision:
        """This decision with further clamps applied (e.g. the guard's budgets)."""
        if not clamps:
            return self
        add = clamps[-1].after
        explanation = (
            self.explanation
            + "; clamped: "
            + ", ".join(f"{c.limit} {c.before}->{c.after} ({c.detail})" for c in clamps)
        )
        return replace(self, add=add, clamps=(*self.clamps, *clamps), explanation=explanation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "proposed": self.proposed,
            "add": self.add,
            "target": self.target,
            "reason": self.reason,
            "explanation": self.explanation,
            "rules": [r.to_dict() for r in self.rules],
            "clamps": [c.to_dict() for c in self.clamps],
            "readings": {k: r.to_dict() for k, r in self.readings.items()},
        }


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def evaluate_rule(
    index: int,
    rule: Rule,
    value: float,
    current: int,
    history: Series | None = None,
    *,
    ready: int | None = None,
) -> RuleResult:
    """One rule's proposal for ``value`` at ``current`` nodes (≥ 0, joining ones included);
    ``ready``: how many of them are ready (default: all), the nodes an average utilisation is
    measured over; ``history`` is the metric's history (predictive rules only; without it they
    act on the current value)."""
    if isinstance(rule, TargetTrackingRule | PredictiveRule):
        try:
            if isinstance(rule, TargetTrackingRule):
                return _target_tracking(index, rule, value, current, ready)
            return _predictive(index, rule, value, current, history)
        except OverflowError:
            # A finite value so large that the nodes it asks for are no number (1e308 / 0.5,
            # an alarm's curValue, say): bad data, not a reason to add max_step nodes.
            return RuleResult(
                index,
                rule.type,
                rule.metric,
                value,
                0,
                f"{_fmt(value)} is too large to count nodes from; this rule does not act on it",
            )
    if isinstance(rule, StepRule):
        for step in rule.steps:
            if step.contains(value):
                upper = "inf" if step.upper is None else _fmt(step.upper)
                return RuleResult(
                    index,
                    rule.type,
                    rule.metric,
                    value,
                    step.add,
                    f"{_fmt(value)} in [{_fmt(step.lower)}, {upper}) -> +{step.add}",
                )
        return RuleResult(index, rule.type, rule.metric, value, 0, f"{_fmt(value)} in no step")
    if isinstance(rule, ThresholdRule):
        if value > rule.above:
            return RuleResult(
                index,
                rule.type,
                rule.metric,
                value,
                rule.add,
                f"{_fmt(value)} > {_fmt(rule.above)} -> +{rule.add}",
            )
        return RuleResult(
            index, rule.type, rule.metric, value, 0, f"{_fmt(value)} <= {_fmt(rule.above)}"
        )
    raise TypeError(f"unknown rule type {type(rule).__name__}")  # pragma: no cover


def _ceil(x: float) -> int:
    """``ceil(x)``, but a quotient within a billionth of itself above an integer is that
    integer: float division leaves 8.4 / 1.4 at 6.000000000000001, and a whole node is not paid
    for a rounding error. (Relative: a tiny positive quotient still asks for its one node.)"""
    if not math.isfinite(x):
        return math.ceil(x)  # OverflowError (inf) or ValueError (nan), as ceil() itself
    return math.ceil(x - _EPSILON * abs(x))


def _target_tracking(
    index: int, rule: TargetTrackingRule, value: float, current: int, ready: int | None
) -> RuleResult:
    if rule.target_per_node is not None:
        desired = _ceil(value / rule.target_per_node)
        formula = f"ceil({_fmt(value)} / {_fmt(rule.target_per_node)}) = {desired}"
        ratio = value / (current * rule.target_per_node) if current else math.inf
    else:
        assert rule.target_value is not None
        # The average is measured over the ready nodes: the load it stands for is theirs, and
        # joining nodes (counted in current) are capacity on its way, not load.
        measured = current if ready is None else ready
        if measured == 0:
            # Utilisation of zero nodes is undefined; the min_nodes floor is what adds the first.
            return RuleResult(
                index,
                rule.type,
                rule.metric,
                value,
                0,
                "average utilisation needs at least one ready node; relying on min_nodes",
            )
        desired = _ceil(measured * value / rule.target_value)
        ready_note = " ready" if measured != current else ""
        formula = (
            f"ceil({measured}{ready_note} * {_fmt(value)} / {_fmt(rule.target_value)}) = {desired}"
        )
        ratio = value / rule.target_value
    if rule.tolerance and abs(ratio - 1) <= rule.tolerance + _EPSILON:
        return RuleResult(
            index,
            rule.type,
            rule.metric,
            value,
            0,
            f"load/target {ratio:.3f} within tolerance ±{_fmt(rule.tolerance)}",
        )
    add = max(0, desired - current)
    return RuleResult(
        index,
        rule.type,
        rule.metric,
        value,
        add,
        f"{formula} nodes desired, {current} current -> +{add}",
    )


def forecast_params(rule: PredictiveRule) -> ForecastParams:
    """The forecaster's parameters from a predictive rule's fields."""
    return ForecastParams(
        horizon=rule.horizon,
        seasons=tuple(rule.seasons),
        cycles=rule.cycles,
        level_window=rule.level_window,
        trend_window=rule.trend_window,
        trend_damping=float(rule.trend_damping),
        noise_window=rule.noise_window,
        uncertainty=float(rule.uncertainty),
        surprise_window=rule.surprise_window,
        surprise_quantile=(
            None if rule.surprise_quantile is None else float(rule.surprise_quantile)
        ),
        growth_window=rule.growth_window,
        max_growth=None if rule.max_growth is None else float(rule.max_growth),
    )


def _predictive(
    index: int, rule: PredictiveRule, value: float, current: int, history: Series | None
) -> RuleResult:
    per = rule.target_per_node
    f = forecast(history, forecast_params(rule)) if history is not None and len(history) else None
    if f is None or math.isnan(f.bound):
        why = "no history" if f is None else "no recent samples in the history"
        desired = _ceil(value / per)
        add = max(0, desired - current)
        return RuleResult(
            index,
            rule.type,
            rule.metric,
            value,
            add,
            f"{why}: ceil({_fmt(value)} / {_fmt(per)}) = {desired} nodes desired on the current "
            f"value, {current} current -> +{add}",
        )
    # Never below what the current value needs: a forecast must not make the rule less
    # reactive than target tracking.
    need = max(f.bound, value)
    desired = _ceil(need / per)
    add = max(0, desired - current)
    noise = f" + {_fmt(rule.uncertainty)}x noise {_fmt(f.noise)}" if f.noise else ""
    jump = f"; surprise {_fmt(f.surprise)}" if f.surprise else ""
    capped = f"; growth limit {_fmt(f.cap)}" if f.cap is not None else ""
    floor = f"; current value {_fmt(value)} is higher" if value > f.bound else ""
    detail = (
        f"peak over {format_duration(rule.horizon)} forecast {_fmt(f.bound)} (level "
        f"{_fmt(f.level)} + max(seasonal {_fmt(f.seasonal)}, trend {_fmt(f.trend)}){noise}"
        f"{jump}{capped}) from {f.points} points{floor}; ceil({_fmt(need)} / {_fmt(per)}) = "
        f"{desired} nodes desired, {current} current (incl. joining) -> +{add}"
    )
    return RuleResult(index, rule.type, rule.metric, value, add, detail, forecast=f)


def decide(
    policy: Policy,
    current: int,
    readings: Mapping[str, Reading],
    history: Mapping[str, Series] | None = None,
    *,
    ready: int | None = None,
) -> Decision:
    """Evaluate every rule of ``policy`` and apply its limits.

    ``current`` counts the cluster's ready and joining nodes, ``ready`` the ready ones (default:
    all of them). ``readings`` must hold a reading for every metric the rules use (the pipeline
    never calls this with missing metrics; that is ``metrics_unavailable``). ``history`` holds
    the history of the metrics predictive rules forecast; a predictive rule without one acts on
    the current value and says so.
    """
    if current < 0:
        raise ValueError("current node count cannot be negative")
    if ready is not None and not 0 <= ready <= current:
        raise ValueError("ready nodes must be between 0 and the current count")
    history = history or {}
    results = tuple(
        evaluate_rule(
            i, rule, readings[rule.metric].value, current, history.get(rule.metric), ready=ready
        )
        for i, rule in enumerate(policy.rules)
    )
    winner = max(results, key=lambda r: r.add)  # first of equals: rule order breaks ties
    proposed = winner.add
    limits = policy.limits
    clamps: list[Clamp] = []
    add = proposed

    if add > limits.max_step:
        clamps.append(
            Clamp("max_step", add, limits.max_step, f"at most {limits.max_step} per step")
        )
        add = limits.max_step
    room = max(0, limits.max_nodes - current)
    if add > room:
        clamps.append(
            Clamp("max_nodes", add, room, f"{current} of at most {limits.max_nodes} nodes")
        )
        add = room
    # The floor skips max_step (a cluster below its minimum is topped up at once) but not the
    # API's per-call ceiling: a larger count is refused, and the cluster never topped up. Later
    # runs add the rest.
    floor = min(limits.min_nodes, limits.max_nodes, current + MAX_COUNT_PER_CALL) - current
    if add < floor:
        clamps.append(
            Clamp("min_nodes", add, floor, f"{current} is below min_nodes {limits.min_nodes}")
        )
        add = floor

    if add > 0 and proposed > 0:
        reason = "rule"
        explanation = f"rule {winner.index} ({winner.type} on {winner.metric}): {winner.detail}"
    elif add > 0:
        reason = "min_nodes"
        explanation = f"no rule fired; {current} nodes is below min_nodes {limits.min_nodes}"
    elif proposed > 0:
        reason = "capped"
        explanation = f"rule {winner.index} asked for +{proposed}; " + "; ".join(
            c.detail for c in clamps
        )
    else:
        reason = "no_change"
        explanation = "no rule asked for more nodes"
    if clamps and add > 0:
        explanation += "; clamped: " + ", ".join(f"{c.limit} {c.before}->{c.after}" for c in clamps)
    return Decision(
        current=current,
        proposed=proposed,
        add=add,
        reason=reason,
        explanation=explanation,
        rules=results,
        clamps=tuple(clamps),
        readings=dict(readings),
    )

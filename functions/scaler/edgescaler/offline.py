"""The pipeline's decision steps, without any I/O: what would this policy do, given this state?

:func:`evaluate` applies, in the pipeline's order, everything between reading the state and
calling the actuator (the pipeline itself runs the guard before its reads, :func:`decision`
after them and :func:`gates` once a decision adds, so there is one copy of this order):

1. :func:`edgescaler.guard.check` over the activity log (cooldown, in flight, backoff);
2. metrics: ``None`` readings mean a metric could not be read (``metrics_unavailable``);
3. :func:`edgescaler.decision.decide` (``no_change`` / ``capped``);
4. :func:`edgescaler.guard.running_tasks` (a scale-out task the cloud still runs);
5. :func:`edgescaler.guard.budget_clamps` (``budget``);

and ends in ``scaled`` with the add the actuator would be asked for. ``edgescaler replay`` runs it
at every step of a trace and ``edgescaler test-policies`` runs it for every case of a policy
test, so both exercise the real guard and decision engine. Pure: ``now`` is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from edgescaler import guard
from edgescaler.activity import Activity
from edgescaler.decision import Decision, decide
from edgescaler.metrics.base import Reading
from edgescaler.metrics.series import Series
from edgescaler.policy import Policy
from edgescaler.report import OutcomeCode


@dataclass(frozen=True)
class Result:
    """``outcome`` is a run-report code (``scaled`` meaning: the actuator would be called)."""

    outcome: OutcomeCode
    add: int
    reason: str
    decision: Decision | None = None


def evaluate(
    policy: Policy,
    activities: Sequence[Activity],
    *,
    now: datetime,
    current: int,
    readings: Mapping[str, Reading | None],
    history: Mapping[str, Series] | None = None,
    running_tasks: Iterable[str] = (),
    ready: int | None = None,
) -> Result:
    """What the pipeline would do for ``policy`` at ``now`` with this log, capacity (``current``
    nodes, ``ready`` of them ready: all by default) and metrics. ``readings`` must name every
    metric of the policy (``None``: unavailable)."""
    verdict = guard.check(policy, activities, now=now)
    if not verdict.allowed:
        assert verdict.outcome is not None
        return Result(verdict.outcome, 0, verdict.reason)
    missing = sorted(m for m in policy.metrics if readings.get(m) is None)
    return after_reads(
        policy,
        activities,
        now=now,
        current=current,
        readings={m: r for m, r in readings.items() if r is not None},
        failures=[f"no reading of {', '.join(missing)}"] if missing else [],
        history=history,
        running_tasks=running_tasks,
        ready=ready,
    )


def after_reads(
    policy: Policy,
    activities: Sequence[Activity],
    *,
    now: datetime,
    current: int,
    readings: Mapping[str, Reading],
    failures: Sequence[str],
    history: Mapping[str, Series] | None = None,
    running_tasks: Iterable[str] = (),
    ready: int | None = None,
) -> Result:
    """Steps 2-5 (the guard has let the policy through and everything has been read):
    ``failures`` are the metrics that could not be read, as messages."""
    result = decision(
        policy,
        current=current,
        readings=readings,
        failures=failures,
        history=history,
        ready=ready,
    )
    if result.outcome != OutcomeCode.SCALED:
        return result
    assert result.decision is not None
    return gates(policy, activities, result.decision, now=now, running_tasks=running_tasks)


def decision(
    policy: Policy,
    *,
    current: int,
    readings: Mapping[str, Reading],
    failures: Sequence[str],
    history: Mapping[str, Series] | None = None,
    ready: int | None = None,
) -> Result:
    """Steps 2-3: ``metrics_unavailable``, ``no_change``, ``capped``, or ``scaled`` with the
    decision the gates (:func:`gates`) then check."""
    if failures:
        return Result(OutcomeCode.METRICS_UNAVAILABLE, 0, "not acting: " + "; ".join(failures))
    decided = decide(policy, current, readings, history, ready=ready)
    if decided.add == 0:
        code = OutcomeCode.CAPPED if decided.reason == "capped" else OutcomeCode.NO_CHANGE
        return Result(code, 0, decided.explanation, decided)
    return Result(OutcomeCode.SCALED, decided.add, decided.explanation, decided)


def gates(
    policy: Policy,
    activities: Sequence[Activity],
    decided: Decision,
    *,
    now: datetime,
    running_tasks: Iterable[str] = (),
) -> Result:
    """Steps 4-5 for a decision that adds: a scale-out task the cloud still runs
    (``in_flight``), then the rolling budgets (``budget``); else ``scaled``."""
    verdict = guard.running_tasks(running_tasks, activities)
    if not verdict.allowed:
        assert verdict.outcome is not None
        return Result(verdict.outcome, 0, verdict.reason, decided)
    decided = decided.clamped(guard.budget_clamps(decided.add, activities, policy.budget, now=now))
    if decided.add == 0:
        return Result(OutcomeCode.BUDGET, 0, decided.explanation, decided)
    return Result(OutcomeCode.SCALED, decided.add, decided.explanation, decided)

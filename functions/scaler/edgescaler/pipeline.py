"""The pipeline (design.md §2): one run over the policies a trigger concerns.

Per policy, concurrently, and so that one policy's failure never stops another:

1. read the cluster's recent activity log and bring open tasks up to date (DescribeTaskInfo);
2. guard: cooldown / in-flight → stop here, nothing else is read;
3. read capacity (DescribeClusterNodes) and every metric, concurrently; any metric that is
   empty, NaN, stale or failing → ``metrics_unavailable`` (do not act);
4. decide (pure) → ``no_change`` / ``capped``, or
5. hand the decision to the actuator (claim + ScaleOutCluster, or dry run).

Dependencies come in through :class:`Deps`; the clock arrives as ``now``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from edgescaler import guard, report
from edgescaler.actuator import Actuator, Context
from edgescaler.decision import decide
from edgescaler.errors import CloudError, ConfigError, EventError, MetricError, StoreError
from edgescaler.metrics.base import MetricSource, Reading
from edgescaler.policy import Policy
from edgescaler.report import Outcome, RunReport
from edgescaler.store.base import FAILED, SUBMITTED, SUCCEEDED, TIMED_OUT, Activity, Store
from edgescaler.triggers import RunRequest

log = logging.getLogger("edgescaler.pipeline")

# How far back the guard looks in the activity log. Cooldowns longer than this are clamped by
# the policy validation of later issues; for now it comfortably covers any sane cooldown.
LOOKBACK = timedelta(days=1)
MAX_POLICY_WORKERS = 8


class CloudAPI(Protocol):
    """The part of the CS client the pipeline and actuator use."""

    def list_nodes(self, cluster_id: str) -> Sequence[Any]: ...

    def describe_task(self, task_id: str) -> Any: ...

    def scale_out(self, cluster_id: str, body: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class Deps:
    store: Store
    cloud_for: Callable[[str], CloudAPI]
    metrics_for: Callable[[Policy], MetricSource]
    actuator: Actuator
    count_workers: Callable[[Sequence[Any]], int]


def select(policies: Sequence[Policy], wanted: Sequence[str] | None) -> list[Policy]:
    """The policies a request names (all when None). Unknown names are an EventError."""
    if wanted is None:
        return list(policies)
    by_name = {p.name: p for p in policies}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise EventError(
            f"event: policies: unknown policy {unknown[0]!r} (known: {', '.join(sorted(by_name))})"
        )
    return [by_name[w] for w in wanted]


def run(
    request: RunRequest,
    policies: Sequence[Policy],
    deps: Deps,
    *,
    now: datetime,
    dry_run: bool,
) -> RunReport:
    """Evaluate ``policies`` (already selected) for ``request`` and return the report."""
    rep = RunReport(request.trigger, request.event_key, dry_run, started_at=now)
    if request.event_key and not dry_run:
        try:
            fresh = deps.store.claim_event(request.event_key, now, {"trigger": request.trigger})
        except StoreError as exc:
            rep.outcomes = [
                Outcome(p.name, p.cluster_id, report.ERROR, f"store unavailable, not scaling: {exc}")
                for p in policies
            ]
            return rep
        if not fresh:
            rep.outcomes = [
                Outcome(
                    p.name, p.cluster_id, report.DUPLICATE_EVENT,
                    f"event {request.event_key} was already handled; nothing done",
                )
                for p in policies
            ]
            return rep
    if not policies:
        return rep
    workers = min(MAX_POLICY_WORKERS, len(policies))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="policy") as pool:
        futures = [pool.submit(evaluate, p, request, deps, now) for p in policies]
        rep.outcomes = [f.result() for f in futures]
    return rep


def evaluate(policy: Policy, request: RunRequest, deps: Deps, now: datetime) -> Outcome:
    """One policy, start to end. Never raises: every failure becomes an ``error`` outcome."""
    try:
        return _evaluate(policy, request, deps, now)
    except Exception as exc:  # one policy's bug must not stop the others
        log.exception("policy %s failed", policy.name)
        return Outcome(
            policy.name, policy.cluster_id, report.ERROR, f"internal error: {type(exc).__name__}: {exc}"
        )


def _evaluate(policy: Policy, request: RunRequest, deps: Deps, now: datetime) -> Outcome:
    name, cluster = policy.name, policy.cluster_id
    since = now - LOOKBACK
    try:
        activities = deps.store.recent(cluster, since)
    except StoreError as exc:
        return Outcome(name, cluster, report.ERROR, f"store unavailable, not scaling: {exc}")

    try:
        cloud = deps.cloud_for(policy.region)
    except ConfigError as exc:
        return Outcome(name, cluster, report.ERROR, str(exc))
    activities = refresh_open(activities, cloud, deps.actuator, now)

    verdict = guard.check(activities, cooldown=policy.cooldown, now=now)
    if not verdict.allowed:
        assert verdict.outcome is not None
        return Outcome(name, cluster, verdict.outcome, verdict.reason, activity_seq=verdict.blocking_seq)

    try:
        source = deps.metrics_for(policy)
    except ConfigError as exc:
        return Outcome(name, cluster, report.ERROR, str(exc))
    with ThreadPoolExecutor(max_workers=len(policy.metrics) + 1, thread_name_prefix="read") as pool:
        nodes_f = pool.submit(cloud.list_nodes, cluster)
        metric_fs = {
            m: pool.submit(
                source.read, m, spec.query,
                max_age=spec.max_age, now=now, freshness_query=spec.freshness_query,
            )
            for m, spec in policy.metrics.items()
        }
        readings: dict[str, Reading] = {}
        failures: list[str] = []
        for m, fut in metric_fs.items():
            try:
                readings[m] = fut.result()
            except MetricError as exc:
                failures.append(str(exc))
        try:
            current = deps.count_workers(nodes_f.result())
        except CloudError as exc:
            return Outcome(name, cluster, report.ERROR, f"capacity unavailable: {exc}")
    if failures:
        return Outcome(
            name, cluster, report.METRICS_UNAVAILABLE, "not acting: " + "; ".join(failures)
        )

    decision = decide(policy, current, readings)
    if decision.add == 0:
        code = report.CAPPED if decision.reason == "capped" else report.NO_CHANGE
        return Outcome(name, cluster, code, decision.explanation, decision=decision.to_dict())
    ctx = Context(now=now, trigger=request.trigger, event_key=request.event_key, lookback=since)
    return deps.actuator.execute(policy, decision, activities, ctx)


def refresh_open(
    activities: Sequence[Activity], cloud: CloudAPI, actuator: Actuator, now: datetime
) -> list[Activity]:
    """Bring submitted activities up to date with their task's state.

    A task that failed or succeeded ends the activity (cooldown then runs from its end); one
    still running after the policy's ``timeout_mins`` is recorded ``timed_out``. A task that
    cannot be read stays open: the guard keeps holding the cluster (fail closed).
    """
    out = []
    for act in activities:
        if act.status == SUBMITTED and act.task_id:
            act = _refresh_one(act, cloud, actuator, now)
        out.append(act)
    return out


def _refresh_one(act: Activity, cloud: CloudAPI, actuator: Actuator, now: datetime) -> Activity:
    assert act.task_id is not None
    try:
        task = cloud.describe_task(act.task_id)
    except CloudError as exc:
        log.warning("cannot read task %s of %s: %s", act.task_id, act.cluster_id, exc)
        return act
    # The task's own end time, but never later than now: a time zone misread by the API must
    # not stretch the cooldown into the future.
    ended = min(task.updated, now) if task.updated else now
    if task.phase == "success":
        updated = act.with_status(SUCCEEDED, now, ended_at=ended)
    elif task.phase == "failed":
        detail = ": ".join(x for x in (task.error_code, task.error_message) if x) or task.state
        updated = act.with_status(FAILED, now, ended_at=ended, error=detail)
    elif act.timeout_mins and now - act.created_at > timedelta(minutes=act.timeout_mins):
        updated = act.with_status(
            TIMED_OUT, now, error=f"task still {task.state} after {act.timeout_mins} min"
        )
    else:
        return act
    try:
        actuator.record(updated)
    except StoreError as exc:
        log.warning("cannot record task %s state: %s", act.task_id, exc)
    return updated

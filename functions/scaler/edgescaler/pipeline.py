"""The pipeline (design.md §2): one run over the policies a trigger concerns.

Per policy, concurrently, and so that one policy's failure never stops another:

1. read the cluster's recent activity log and bring open activities up to date with the cloud
   (task states; whether an ambiguous scale-out went through);
2. guard: cooldown / in flight / backoff → stop here, nothing else is read;
3. read capacity (DescribeClusterNodes), the cluster's scale-out tasks (DescribeClusterTasks)
   and every metric, concurrently; any metric that is empty, NaN, stale or failing →
   ``metrics_unavailable`` (do not act);
4. decide (pure) → ``no_change`` / ``capped``; a scale-out task still running in the cloud
   (not started by edgescaler, or ours past its timeout) → ``in_flight``; rolling budgets →
   ``budget``; or
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
from edgescaler.metrics.series import HistorySource, Series
from edgescaler.policy import Policy
from edgescaler.report import Outcome, RunReport
from edgescaler.store.base import (
    CLAIMED,
    FAILED,
    REJECTED,
    SUBMITTED,
    SUCCEEDED,
    TIMED_OUT,
    UNKNOWN,
    Activity,
    Store,
)
from edgescaler.triggers import RunRequest

log = logging.getLogger("edgescaler.pipeline")

# How far back the guard looks in the activity log. Cooldowns longer than this are clamped by
# the policy validation of later issues; for now it comfortably covers any sane cooldown.
LOOKBACK = timedelta(days=1)
MAX_POLICY_WORKERS = 8
SCALE_OUT_TASK_TYPES = frozenset({"cluster_scaleout"})
MAX_PRIOR_TASKS = 200
# A claim's owner answers within its CS timeouts (seconds); an older unanswered claim means the
# owner died between the claim and recording the answer.
CLAIM_GRACE = timedelta(minutes=2)
# A POST that went through shows up as a task at once; none after this long means it did not.
RESOLVE_AFTER = timedelta(minutes=5)


class CloudAPI(Protocol):
    """The part of the CS client the pipeline and actuator use."""

    def list_nodes(self, cluster_id: str) -> Sequence[Any]: ...

    def describe_task(self, task_id: str) -> Any: ...

    def list_tasks(self, cluster_id: str) -> Sequence[Any]: ...

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
                Outcome(
                    p.name, p.cluster_id, report.ERROR, f"store unavailable, not scaling: {exc}"
                )
                for p in policies
            ]
            return rep
        if not fresh:
            rep.outcomes = [
                Outcome(
                    p.name,
                    p.cluster_id,
                    report.DUPLICATE_EVENT,
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
            policy.name,
            policy.cluster_id,
            report.ERROR,
            f"internal error: {type(exc).__name__}: {exc}",
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

    verdict = guard.check(policy, activities, now=now)
    if not verdict.allowed:
        assert verdict.outcome is not None
        return Outcome(
            name, cluster, verdict.outcome, verdict.reason, activity_seq=verdict.blocking_seq
        )

    try:
        source = deps.metrics_for(policy)
    except ConfigError as exc:
        return Outcome(name, cluster, report.ERROR, str(exc))
    past = source if isinstance(source, HistorySource) else None
    histories = policy.histories() if past is not None else {}
    workers = len(policy.metrics) + len(histories) + 2
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read") as pool:
        # Predictive rules: one query_range per forecast metric (window and step of the rule).
        history_fs = {
            m: pool.submit(
                past.history,  # type: ignore[union-attr]  # histories is empty when None
                m,
                policy.metrics[m].query,
                start=h.bounds(now)[0],
                end=h.bounds(now)[1],
                step=h.step,
            )
            for m, h in histories.items()
        }
        nodes_f = pool.submit(cloud.list_nodes, cluster)
        tasks_f = pool.submit(cloud.list_tasks, cluster)
        metric_fs = {
            m: pool.submit(
                source.read,
                m,
                spec.query,
                max_age=spec.max_age,
                now=now,
                freshness_query=spec.freshness_query,
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
        try:
            # Needed before any scale-out: the snapshot lets a later run tell whether an
            # ambiguous POST went through, so without it we do not scale (fail closed).
            scale_out_tasks = [t for t in tasks_f.result() if t.task_type in SCALE_OUT_TASK_TYPES]
        except CloudError as exc:
            return Outcome(name, cluster, report.ERROR, f"cluster tasks unavailable: {exc}")
        history: dict[str, Series] = {}
        for m, hist_f in history_fs.items():
            try:
                history[m] = hist_f.result()
            except MetricError as exc:  # the rule then acts on the current value, and says so
                log.warning("%s: no history for predictive rules: %s", name, exc)
    if failures:
        return Outcome(
            name, cluster, report.METRICS_UNAVAILABLE, "not acting: " + "; ".join(failures)
        )

    decision = decide(policy, current, readings, history)
    if decision.add == 0:
        code = report.CAPPED if decision.reason == "capped" else report.NO_CHANGE
        return Outcome(name, cluster, code, decision.explanation, decision=decision.to_dict())

    running = [t.task_id for t in scale_out_tasks if t.phase == "running"]
    verdict = guard.running_tasks(running, activities)
    if not verdict.allowed:
        assert verdict.outcome is not None
        return Outcome(name, cluster, verdict.outcome, verdict.reason, decision=decision.to_dict())

    decision = decision.clamped(
        guard.budget_clamps(decision.add, activities, policy.budget, now=now)
    )
    if decision.add == 0:
        return Outcome(
            name, cluster, report.BUDGET, decision.explanation, decision=decision.to_dict()
        )

    ctx = Context(
        now=now,
        trigger=request.trigger,
        event_key=request.event_key,
        lookback=since,
        prior_tasks=tuple(t.task_id for t in scale_out_tasks[:MAX_PRIOR_TASKS]),
    )
    return deps.actuator.execute(policy, decision, activities, ctx)


def refresh_open(
    activities: Sequence[Activity], cloud: CloudAPI, actuator: Actuator, now: datetime
) -> list[Activity]:
    """Bring open activities up to date with the cloud, recording what changed.

    * ``submitted``: its task's state (DescribeTaskInfo). Success or failure ends the activity
      (cooldown then runs from its end); still running after ``timeout_mins`` → ``timed_out``.
    * ``unknown``, and ``claimed`` older than :data:`CLAIM_GRACE` (its owner died between the
      claim and recording the answer): did the POST go through? A ``cluster_scaleout`` task of
      the cluster that is neither in the activity's ``prior_tasks`` nor any other activity's is
      its task → ``submitted`` (then refreshed as above). No such task
      :data:`RESOLVE_AFTER` after the claim → ``rejected`` (it did not go through).

    Anything that cannot be read leaves the activity open: the guard keeps holding the cluster.
    """
    out = list(activities)
    ambiguous = [
        i
        for i, a in enumerate(out)
        if a.status == UNKNOWN or (a.status == CLAIMED and now - a.created_at > CLAIM_GRACE)
    ]
    if ambiguous:
        cluster = out[ambiguous[0]].cluster_id
        try:
            tasks = [t for t in cloud.list_tasks(cluster) if t.task_type in SCALE_OUT_TASK_TYPES]
        except CloudError as exc:
            log.warning("cannot list tasks of %s to resolve open scale-outs: %s", cluster, exc)
            tasks = None
        if tasks is not None:
            for i in ambiguous:
                out[i] = _resolve(out[i], tasks, out, actuator, now)
    for i, act in enumerate(out):
        if act.status == SUBMITTED and act.task_id:
            out[i] = _refresh_one(act, cloud, actuator, now)
    return out


def _resolve(
    act: Activity, tasks: Sequence[Any], log_: Sequence[Activity], actuator: Actuator, now: datetime
) -> Activity:
    taken = {a.task_id for a in log_ if a.task_id} | set(act.prior_tasks)
    mine = [t for t in tasks if t.task_id not in taken]
    if mine:
        task = min(mine, key=lambda t: (t.created or now, t.task_id))
        updated = act.with_status(
            SUBMITTED,
            now,
            task_id=task.task_id,
            error=f"resolved: task {task.task_id} appeared after the claim ({act.status} before)",
        )
    elif now - act.created_at > RESOLVE_AFTER:
        updated = act.with_status(
            REJECTED,
            now,
            error=f"resolved: no new scale-out task appeared within "
            f"{int(RESOLVE_AFTER.total_seconds() // 60)} min; the call did not go through"
            + (f" ({act.error})" if act.error else ""),
        )
    else:
        return act
    _record(actuator, updated)
    return updated


def _record(actuator: Actuator, act: Activity) -> None:
    try:
        actuator.record(act)
    except StoreError as exc:
        log.warning("cannot record scale-out #%d of %s: %s", act.seq, act.cluster_id, exc)


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
        updated = act.with_status(FAILED, now, ended_at=ended, error=f"task {task.state}: {detail}")
    elif act.timeout_mins and now - act.created_at > timedelta(minutes=act.timeout_mins):
        updated = act.with_status(
            TIMED_OUT, now, error=f"task still {task.state} after {act.timeout_mins} min"
        )
    else:
        return act
    _record(actuator, updated)
    return updated

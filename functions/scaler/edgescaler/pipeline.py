"""The pipeline (design.md §2): one run over the policies a trigger concerns.

Per policy, concurrently, and so that one policy's failure never stops another:

1. read the cluster's recent activity log and bring open activities up to date with the cloud
   (:func:`refresh_open`: the transitions themselves are :mod:`edgescaler.activity`'s);
2. guard: cooldown / in flight / backoff → stop here, nothing else is read;
3. read capacity (:class:`~edgescaler.cloud.model.Capacity`) and every metric, concurrently;
   any metric that is empty, NaN, stale or failing → ``metrics_unavailable`` (do not act);
4. decide (pure: :func:`edgescaler.offline.decision` and ``gates``, which ``replay`` and
   ``test-policies``
   run too) → ``no_change`` / ``capped``; only a decision that adds reads the cluster's
   scale-out tasks (failing → ``error``: no scale-out without them); a scale-out task still
   running in the cloud (not started by edgescaler, or ours past its timeout) → ``in_flight``;
   rolling budgets → ``budget``; or
5. hand the decision to the actuator (claim + ScaleOutCluster, or dry run).

Fan-out: up to :data:`MAX_POLICY_WORKERS` policies at once, all their threads started before
any policy runs; their metric (and history) reads go to one pool shared by the run (at most
:data:`MAX_READ_WORKERS` threads) while each policy's own thread reads its capacity. A run of
50 policies is one wave, not seven, and read threads are started once per run, not once per
policy. Each run starts at a policy picked at random (``Deps.first``; the report keeps the given
order): a run that cannot finish every policy before its deadline leaves out different ones each
time, never the same clusters run after run.

This module keeps the order and the I/O; the rules live in the pure modules. Dependencies come in
through :class:`Deps`; the clock arrives as ``now``. The run's
:class:`~edgescaler.deadline.Deadline` bounds it: a policy whose work has not begun when the
deadline passes, or that is still before its reads then, is reported ``deadline``; the readers
themselves cut every read at the deadline.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edgescaler import activity as lifecycle
from edgescaler import guard, offline
from edgescaler.activity import Activity
from edgescaler.actuator import Actuator, Context
from edgescaler.cloud.model import Capacity, CloudAPI, TaskInfo, TaskPhase, scale_out_tasks
from edgescaler.deadline import Deadline
from edgescaler.decision import Decision
from edgescaler.errors import CloudError, ConfigError, EventError, MetricError, StoreError
from edgescaler.metrics.alarm import stand_in
from edgescaler.metrics.base import MetricSource, Reading
from edgescaler.metrics.series import HistorySource, Series
from edgescaler.policy import Policy
from edgescaler.report import Outcome, OutcomeCode, RunReport
from edgescaler.store.base import Store
from edgescaler.triggers import RunRequest

log = logging.getLogger("edgescaler.pipeline")

# How far back the guard looks in the activity log: far beyond any cooldown (at most 12 h) and
# any budget window (a day) needs exactly a day.
LOOKBACK = timedelta(days=1)
# Policies evaluated at once. Each spends a few ms of CPU and otherwise waits on 4 to 6 calls
# of 50-200 ms, so this bounds the calls in flight rather than the CPU in use.
MAX_POLICY_WORKERS = 64
# Threads for the run's metric and history reads, shared by its policies.
MAX_READ_WORKERS = 128


@dataclass(frozen=True)
class Deps:
    store: Store
    cloud_for: Callable[[str], CloudAPI]
    metrics_for: Callable[[Policy], MetricSource]
    actuator: Actuator
    deadline: Deadline = field(default_factory=Deadline.never)
    # The policy a run starts with, given their number (see run()); a seam for tests.
    first: Callable[[int], int] = random.randrange
    # The time now (UTC-aware): a metric's age is taken when it is read, not when the run began
    # (a read may come many seconds into a run). None: the run's start.
    clock: Callable[[], datetime] | None = None
    # Makes a policy's login password known to redaction (resolving it); False when it cannot be
    # resolved now. None: nothing to make known (tests without secrets).
    known: Callable[[Policy], bool] | None = None


def select(policies: Sequence[Policy], request: RunRequest) -> list[Policy]:
    """The policies a request concerns. Unknown names are an EventError.

    By name when the request names them (all when it does not); for an alarm, the policies
    that name it in ``alarms`` (by rule id or name), or, when none does, every policy that names
    no alarms; none for an alarm that is not firing (OK, INSUFFICIENT_DATA).
    """
    wanted = request.policies
    if wanted is not None:
        by_name = {p.name: p for p in policies}
        unknown = [w for w in wanted if w not in by_name]
        if unknown:
            raise EventError(
                f"event: policies: unknown policy {unknown[0]!r} "
                f"(known: {', '.join(sorted(by_name))})"
            )
        return [by_name[w] for w in wanted]
    alarm = request.alarm
    if alarm is None:
        return list(policies)
    if not alarm.firing:
        return []
    names = alarm.names()
    named = [p for p in policies if p.alarms and names & set(p.alarms)]
    return named or [p for p in policies if not p.alarms]


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
    alarm = request.alarm
    if alarm is not None and not alarm.firing:
        rep.note = f"alarm {alarm.rule_name or alarm.rule_id} is {alarm.state}: nothing evaluated"
        return rep
    if not policies:
        return rep

    def everyone(code: OutcomeCode, reason: str) -> list[Outcome]:
        return [Outcome(p.name, p.cluster_id, code, reason) for p in policies]

    if request.event_key and not dry_run:
        try:
            detail = {**request.detail, "trigger": request.trigger}  # who asked, and why
            fresh = deps.store.claim_event(request.event_key, now, detail)
        except StoreError as exc:
            rep.outcomes = everyone(OutcomeCode.ERROR, f"store unavailable, not scaling: {exc}")
            return rep
        if not fresh:
            rep.outcomes = everyone(
                OutcomeCode.DUPLICATE_EVENT,
                f"event {request.event_key} was already handled; nothing done",
            )
            return rep
    workers = min(MAX_POLICY_WORKERS, len(policies))
    readers = min(MAX_READ_WORKERS, workers * max(_reads(p) for p in policies))
    with (
        ThreadPoolExecutor(max_workers=readers, thread_name_prefix="read") as reads,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="policy") as pool,
    ):
        # Every policy thread is started before any policy runs: a thread started while others
        # compute waits for the GIL before it counts as started (a 50-policy run of
        # tests/bench/perf.py took 881 ms with this gate, 936 without).
        gate = threading.Event()

        def gated(policy: Policy) -> Outcome:
            gate.wait()
            return evaluate(policy, request, deps, now, reads=reads)

        # When a run cannot finish all its policies (more than its deadline holds, or a slow
        # API), the ones submitted last are reported `deadline`: each run starts at another
        # policy, so no cluster is left out run after run. The report keeps the given order.
        start = deps.first(len(policies)) % len(policies)
        order = [*range(start, len(policies)), *range(start)]
        futures: dict[int, Future[Outcome]] = {}
        try:
            for i in order:
                futures[i] = pool.submit(gated, policies[i])
        finally:
            gate.set()
        rep.outcomes = [futures[i].result() for i in range(len(policies))]
    return rep


def _reads(policy: Policy) -> int:
    """Reads of ``policy`` that may be in flight at once on the read pool."""
    return len(policy.metrics) + len(policy.histories())


def evaluate(
    policy: Policy,
    request: RunRequest,
    deps: Deps,
    now: datetime,
    *,
    reads: Executor | None = None,
) -> Outcome:
    """One policy, start to end. Never raises: every failure becomes an ``error`` outcome.

    ``reads`` runs the metric and history reads (the run's shared pool; without one, a pool of
    this call's).
    """
    try:
        if reads is None:
            with ThreadPoolExecutor(_reads(policy), thread_name_prefix="read") as own:
                return _evaluate(policy, request, deps, now, own)
        return _evaluate(policy, request, deps, now, reads)
    except Exception as exc:  # one policy's bug must not stop the others
        log.exception("policy %s failed", policy.name)
        return Outcome(
            policy.name,
            policy.cluster_id,
            OutcomeCode.ERROR,
            f"internal error: {type(exc).__name__}: {exc}",
        )


def _late(policy: Policy, deps: Deps, what: str) -> Outcome:
    return Outcome(
        policy.name,
        policy.cluster_id,
        OutcomeCode.DEADLINE,
        f"the run's deadline ({deps.deadline.seconds:g}s) passed before {what}; nothing done",
    )


def _evaluate(
    policy: Policy, request: RunRequest, deps: Deps, now: datetime, reads: Executor
) -> Outcome:
    name, cluster = policy.name, policy.cluster_id

    def outcome(
        code: OutcomeCode,
        reason: str,
        *,
        decision: Decision | None = None,
        activity_seq: int | None = None,
    ) -> Outcome:
        return Outcome(name, cluster, code, reason, decision=decision, activity_seq=activity_seq)

    if deps.deadline.expired:
        return _late(policy, deps, "this policy was evaluated")
    since = now - LOOKBACK
    try:
        activities = deps.store.recent(cluster, since)
    except StoreError as exc:
        return outcome(OutcomeCode.ERROR, f"store unavailable, not scaling: {exc}")

    try:
        cloud = deps.cloud_for(policy.region)
    except ConfigError as exc:
        return outcome(OutcomeCode.ERROR, str(exc))
    make_known = deps.known
    known = (lambda: make_known(policy)) if make_known is not None else None
    activities = refresh_open(activities, cloud, deps.actuator, now, known=known)

    verdict = guard.check(policy, activities, now=now)
    if not verdict.allowed:
        assert verdict.outcome is not None
        return outcome(verdict.outcome, verdict.reason, activity_seq=verdict.blocking_seq)

    if deps.deadline.expired:
        return _late(policy, deps, "capacity and metrics were read")
    try:
        source = deps.metrics_for(policy)
    except ConfigError as exc:
        return outcome(OutcomeCode.ERROR, str(exc))
    past = source if isinstance(source, HistorySource) else None
    histories = policy.histories() if past is not None else {}
    # Predictive rules: one query_range per forecast metric (window and step of the rule).
    history_fs: dict[str, Future[Series]] = {
        m: reads.submit(
            past.history,  # type: ignore[union-attr]  # histories is empty when None
            m,
            policy.metrics[m].query,
            start=h.bounds(now)[0],
            end=h.bounds(now)[1],
            step=h.step,
        )
        for m, h in histories.items()
    }
    clock = deps.clock or (lambda: now)

    def read(metric: str) -> Reading:
        spec = policy.metrics[metric]
        return source.read(
            metric,
            spec.query,
            max_age=spec.max_age,
            now=clock(),  # when the read starts, not when the run did
            freshness_query=spec.freshness_query,
        )

    metric_fs: dict[str, Future[Reading]] = {m: reads.submit(read, m) for m in policy.metrics}
    nodes_error: CloudError | None = None
    try:  # this thread reads the capacity while the pool reads the metrics
        nodes = cloud.list_nodes(cluster)
    except CloudError as exc:
        nodes_error = exc
    readings: dict[str, Reading] = {}
    failures: list[str] = []
    for m, fut in metric_fs.items():
        try:
            readings[m] = fut.result()
        except MetricError as exc:
            alarm_value = stand_in(m, policy.metrics[m], request.alarm, clock())
            if alarm_value is not None:
                log.info("%s: %s; using the alarm's value instead", name, exc)
                readings[m] = alarm_value
            else:
                failures.append(str(exc))
    history: dict[str, Series] = {}
    for m, hist_f in history_fs.items():
        try:
            history[m] = hist_f.result()
        except MetricError as exc:  # the rule then acts on the current value, and says so
            log.warning("%s: no history for predictive rules: %s", name, exc)
    if nodes_error is not None:
        return outcome(OutcomeCode.ERROR, f"capacity unavailable: {nodes_error}")
    current = Capacity.of(nodes)

    # The cluster's scale-out tasks matter only to a decision that adds (the running-task check
    # and the claim's snapshot come after the decision): read them only for one. Without them
    # there is no scale-out: the snapshot lets a later run tell whether an ambiguous POST went
    # through (fail closed).
    result = offline.decision(
        policy,
        current=current.count,
        readings=readings,
        failures=failures,
        history=history,
        ready=current.ready,
    )
    if result.outcome != OutcomeCode.SCALED:
        return outcome(result.outcome, result.reason, decision=result.decision)
    assert result.decision is not None
    try:
        tasks = scale_out_tasks(cloud.list_tasks(cluster))
    except CloudError as exc:
        return outcome(
            OutcomeCode.ERROR, f"cluster tasks unavailable: {exc}", decision=result.decision
        )
    running = [t.task_id for t in tasks if t.phase == TaskPhase.RUNNING]
    result = offline.gates(policy, activities, result.decision, now=now, running_tasks=running)
    if result.outcome != OutcomeCode.SCALED:
        return outcome(result.outcome, result.reason, decision=result.decision)
    assert result.decision is not None
    ctx = Context(
        now=now,
        trigger=request.trigger,
        event_key=request.event_key,
        lookback=since,
        # Every listed task that resolve() could otherwise take for this claim's own.
        prior_tasks=tuple(t.task_id for t in tasks if lifecycle.adoptable(t, now)),
    )
    return deps.actuator.execute(policy, result.decision, activities, ctx)


def refresh_open(
    activities: Sequence[Activity],
    cloud: CloudAPI,
    actuator: Actuator,
    now: datetime,
    *,
    known: Callable[[], bool] | None = None,
) -> list[Activity]:
    """Bring open (and timed-out) activities up to date with the cloud, recording what changed.

    Ambiguous ones (:func:`~edgescaler.activity.needs_resolution`) are resolved against the
    cluster's scale-out tasks (one DescribeClusterTasks for all of them); submitted and timed-out
    ones are tracked against their task (DescribeTaskInfo; :func:`~edgescaler.activity.tracked`).
    Anything that cannot be read leaves the activity as it is: the guard keeps holding the
    cluster.

    ``known()`` is called before the first read when there is one to make (Deps.known): the
    cloud's task errors may quote the request back, password included, and what is read here
    is written to the store, the report and the logs, redacted by what the process knows. When
    it says False, nothing is read this run: open scale-outs keep holding the cluster.
    """
    out = list(activities)
    ambiguous = [i for i, a in enumerate(out) if lifecycle.needs_resolution(a, now)]
    reads = ambiguous or any(lifecycle.tracked(a) for a in out)
    if reads and known is not None and not known():
        log.warning("%s: login password unavailable; open scale-outs not refreshed", out[0].policy)
        return out
    if ambiguous:
        cluster = out[ambiguous[0]].cluster_id
        tasks: list[TaskInfo] | None
        try:
            tasks = scale_out_tasks(cloud.list_tasks(cluster))
        except CloudError as exc:
            log.warning("cannot list tasks of %s to resolve open scale-outs: %s", cluster, exc)
            tasks = None
        if tasks is not None:
            for i in ambiguous:
                out[i] = _record(actuator, out[i], lifecycle.resolve(out[i], tasks, out, now))
    for i, act in enumerate(out):  # resolution above may have made some trackable
        if lifecycle.tracked(act) and act.task_id:
            try:
                task = cloud.describe_task(act.task_id)
            except CloudError as exc:
                log.warning("cannot read task %s of %s: %s", act.task_id, act.cluster_id, exc)
                continue
            out[i] = _record(actuator, act, lifecycle.track(act, task, now))
    return out


def _record(actuator: Actuator, old: Activity, new: Activity | None) -> Activity:
    """``new`` written through the actuator (the old one when nothing changed)."""
    if new is None:
        return old
    try:
        actuator.record(new)
    except StoreError as exc:
        log.warning("cannot record scale-out #%d of %s: %s", new.seq, new.cluster_id, exc)
    return new

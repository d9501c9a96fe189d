"""The replay loop: a trace, minute by minute, through the real guard and decision engine.

Each grid point ``i`` (the load of ``[t_i, t_i + interval)``) is first scored against the nodes
ready during it. Then, at ``now = t_i + interval``, the scaler runs over the simulated cluster
and an in-memory activity log of real :class:`~edgescaler.store.base.Activity` records:

1. refresh, as the pipeline does: tasks that ended by ``now`` end their activity
   (``succeeded`` / ``failed``, ended at the task's end), still running past ``timeout_mins``
   → ``timed_out``; the log is cut to what ``Store.recent`` would return;
2. :func:`edgescaler.offline.evaluate` — the pipeline's own steps without I/O: guard, readings
   (a gap in the trace is ``metrics_unavailable``, never a zero), ``decide`` with ``current`` =
   ready + joining nodes and, for predictive rules, the metric's history from the trace (the
   rule's window and step, up to ``now``), running tasks, budgets;
3. ``scaled``: the activity is ``submitted`` with its task; the nodes join after the join delay.

Nothing here decides anything: the policy does. The only state is the cluster and the log.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from edgescaler import activity as lifecycle
from edgescaler import offline
from edgescaler.activity import Activity, Status
from edgescaler.cloud.model import ScaleOutResult, TaskInfo
from edgescaler.decision import forecast_params
from edgescaler.forecast import forecast
from edgescaler.metrics.base import Reading
from edgescaler.metrics.series import Series
from edgescaler.pipeline import LOOKBACK
from edgescaler.policy import Policy, PredictiveRule, format_duration
from edgescaler.replay.cluster import IdleReclaim, JoinDelay, SimCluster
from edgescaler.replay.errors import ReplayError
from edgescaler.replay.scoring import Score, Scorer, demand
from edgescaler.replay.traces import Grid
from edgescaler.report import OutcomeCode

# What the simulator feeds a metric with.
LOAD = "load"  # the trace's value (a total, like requests/min or busy cores)
UTILISATION = "utilisation"  # load / (ready nodes * per_node) * 100: average % of ready capacity
MAX_UTILISATION = 1e6  # % with no ready node at all (a finite stand-in for "infinitely busy")

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    """A replay clock reading as the aware UTC datetime the core expects."""
    return EPOCH + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Setup:
    """Everything about a replay except the policy and the trace."""

    per_node: float
    join_delay: JoinDelay = field(default_factory=JoinDelay)
    failure_rate: float = 0.0
    initial: int | None = None  # default: the demand at the first observed point
    scale_in_idle: timedelta | None = None  # external reclaim of nodes idle this long
    seed: int = 1

    def initial_nodes(self, grid: Grid) -> int:
        if self.initial is not None:
            return self.initial
        first = next(v for v in grid.values if v is not None)
        d = demand(first, self.per_node)
        assert d is not None
        return d

    def idle_reclaim(self, interval: float, floor: int) -> IdleReclaim | None:
        """The external reclaim of ``--scale-in idle``, if any, on a grid of ``interval`` s."""
        if self.scale_in_idle is None:
            return None
        return IdleReclaim(max(1, round(self.scale_in_idle.total_seconds() / interval)), floor)


@dataclass(frozen=True)
class ScaleOutEvent:
    """One ScaleOutCluster call of the replay (seconds on the replay clock)."""

    at: float
    add: int
    task_id: str
    ends_at: float
    fails: bool
    explanation: str = ""


@dataclass
class Timeline:
    """Per grid point, for plots: demand (None in gaps), ready nodes, nodes asked for (ready +
    joining), and the predictive forecast in nodes (None where there is none)."""

    times: list[float] = field(default_factory=list)
    demand: list[int | None] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    requested: list[int] = field(default_factory=list)
    forecast: list[float | None] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    name: str
    score: Score
    outcomes: Mapping[str, int]
    events: list[ScaleOutEvent]
    timeline: Timeline | None = None


@dataclass(frozen=True)
class _HistoryFeed:
    metric: str
    stride: int
    points: int


def _history_feeds(policy: Policy, feeds: Mapping[str, str], interval: float) -> list[_HistoryFeed]:
    out: dict[str, _HistoryFeed] = {}
    for rule in policy.rules:
        if not isinstance(rule, PredictiveRule) or rule.metric in out:
            continue
        if feeds.get(rule.metric) != LOAD:
            raise ReplayError(
                f"predictive rule on {rule.metric!r}: the replay can only forecast the trace's "
                f"own metric"
            )
        step = rule.history.step.total_seconds()
        stride = round(step / interval)
        if stride < 1 or abs(stride * interval - step) > 1e-6:
            raise ReplayError(
                f"predictive rule on {rule.metric!r}: history step "
                f"{format_duration(rule.history.step)} is not a multiple of the replay interval "
                f"({format_duration(timedelta(seconds=interval))})"
            )
        out[rule.metric] = _HistoryFeed(
            rule.metric, stride, rule.history.window // rule.history.step + 1
        )
    return list(out.values())


def simulate(
    policy: Policy,
    grid: Grid,
    setup: Setup,
    feeds: Mapping[str, str],
    *,
    name: str | None = None,
    record: bool = False,
) -> Run:
    """Replay ``grid`` through ``policy``. ``feeds`` maps each metric the rules use to
    :data:`LOAD` or :data:`UTILISATION`. With ``record``, keep the :class:`Timeline`."""
    missing = sorted({r.metric for r in policy.rules} - set(feeds))
    if missing:
        raise ReplayError(
            f"policy {policy.name}: no replay feed for metric(s) {', '.join(missing)}"
        )
    interval = grid.interval
    values = grid.values
    per_node = setup.per_node
    hist_feeds = _history_feeds(policy, feeds, interval)
    predictive = [(i, r) for i, r in enumerate(policy.rules) if isinstance(r, PredictiveRule)]
    cluster = SimCluster(
        setup.initial_nodes(grid),
        join_delay=setup.join_delay,
        failure_rate=setup.failure_rate,
        seed=setup.seed,
    )
    scorer = Scorer(interval / 60.0)
    outcomes: Counter[str] = Counter()
    events: list[ScaleOutEvent] = []
    timeline = Timeline() if record else None
    acts: list[Activity] = []
    lo = 0  # acts[lo:] is what the store's recent() would return
    open_: dict[str, int] = {}  # task id -> index in acts, for activities still submitted
    so = policy.scale_out
    reclaim = setup.idle_reclaim(interval, policy.limits.min_nodes)

    for i in range(len(values)):
        t = grid.start + i * interval
        load = values[i]
        d = demand(load, per_node)
        scorer.tick(d, cluster.ready, cluster.billed())
        if timeline is not None:
            timeline.times.append(t)
            timeline.demand.append(d)
            timeline.ready.append(cluster.ready)
            timeline.requested.append(cluster.current())
        if reclaim is not None:
            reclaim.observe(i, d, cluster)

        # -- the scaler runs at the end of the minute -------------------------------------
        now_s = t + interval
        now = at(now_s)
        # The activities follow their tasks through the product's own lifecycle transitions.
        for task in cluster.advance(now_s):
            k = open_.pop(task.task_id, None)
            if k is not None:
                state = "failed" if task.fails else "success"
                info = _task_info(policy, task.task_id, state, at(task.ends_at))
                acts[k] = lifecycle.track(acts[k], info, now) or acts[k]
        for task_id, k in list(open_.items()):
            moved = lifecycle.track(acts[k], _task_info(policy, task_id, "running", now), now)
            if moved is not None:
                acts[k] = moved
                if not lifecycle.tracked(moved):  # a timed-out one is followed to its end
                    del open_[task_id]
        since = now - LOOKBACK
        while lo + 1 < len(acts) and acts[lo + 1].created_at < since and not acts[lo].is_open:
            lo += 1
        recent = acts[lo:]

        forecast_nodes: float | None = None
        readings: dict[str, Reading | None] = {}
        for metric, feed in feeds.items():
            if load is None:
                readings[metric] = None
                continue
            if feed == LOAD:
                value = load
            elif cluster.ready > 0:
                value = min(MAX_UTILISATION, 100.0 * load / (cluster.ready * per_node))
            else:
                value = MAX_UTILISATION if load > 0 else 0.0
            readings[metric] = Reading(metric, value, now, "replay")
        result = offline.evaluate(
            policy,
            recent,
            now=now,
            current=cluster.current(),
            readings=readings,
            history=_LazyHistory(grid, i, hist_feeds),
            running_tasks=cluster.running_ids(),
            ready=cluster.ready,
        )
        outcomes[result.outcome] += 1
        if result.decision is not None:
            for idx, rule in predictive:
                f = result.decision.rules[idx].forecast
                if f is not None and not math.isnan(f.bound):
                    forecast_nodes = max(forecast_nodes or 0.0, f.bound / rule.target_per_node)
        if result.outcome == OutcomeCode.SCALED:
            task = cluster.scale_out(now_s, result.add)
            scorer.call(task.add, task.fails)
            seq = acts[-1].seq + 1 if acts else 1
            claim = Activity(
                cluster_id=policy.cluster_id,
                seq=seq,
                policy=policy.name,
                add=task.add,
                status=Status.CLAIMED,
                created_at=now,
                updated_at=now,
                trigger="replay",
                ens_region_id=so.ens_region_id,
                instance_type=so.worker_instance_type,
                timeout_mins=so.timeout_mins,
            )
            accepted = ScaleOutResult(policy.cluster_id, task.task_id, None, 202)
            acts.append(lifecycle.after_post(claim, accepted, now))
            open_[task.task_id] = len(acts) - 1
            events.append(
                ScaleOutEvent(
                    now_s, task.add, task.task_id, task.ends_at, task.fails, result.reason
                )
            )
        if timeline is not None:
            if forecast_nodes is None and predictive and load is not None:
                forecast_nodes = _forecast_nodes(policy, predictive, grid, i, hist_feeds)
            timeline.forecast.append(forecast_nodes)

    return Run(name or policy.name, scorer.score(), dict(outcomes), events, timeline)


class _LazyHistory(Mapping[str, Series]):
    """The predictive rules' histories, sliced from the trace only when a rule asks (the guard
    usually decides before any rule runs)."""

    def __init__(self, grid: Grid, i: int, feeds: list[_HistoryFeed]) -> None:
        self._grid = grid
        self._i = i
        self._feeds = {h.metric: h for h in feeds}

    def __getitem__(self, metric: str) -> Series:
        return _history(self._grid, self._i, self._feeds[metric])

    def __iter__(self) -> Iterator[str]:
        return iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)


def _history(grid: Grid, i: int, h: _HistoryFeed) -> Series:
    """The trace as the pipeline's ``query_range`` at ``now = t_i + interval`` returns it: every
    ``step`` up to the newest multiple of ``step`` (Unix time) at or before ``now``, over the
    rule's window. Grid point ``j`` is the sample read at ``t_j + interval``."""
    step = grid.interval * h.stride
    now = grid.start + (i + 1) * grid.interval
    newest = math.floor(now / step + 1e-9) * step
    j = round((newest - grid.start) / grid.interval) - 1
    k = min(h.points - 1, j // h.stride) if j >= 0 else -1
    j0 = j - k * h.stride
    return Series(
        h.metric,
        at(grid.start + (j0 + 1) * grid.interval),
        timedelta(seconds=step),
        grid.values[j0 : j + 1 : h.stride] if j >= 0 else [],
    )


def _forecast_nodes(
    policy: Policy,
    predictive: list[tuple[int, PredictiveRule]],
    grid: Grid,
    i: int,
    hist_feeds: list[_HistoryFeed],
) -> float | None:
    """The forecast at grid point ``i`` for the plot, when the guard kept the rule from running."""
    by_metric = {h.metric: h for h in hist_feeds}
    best: float | None = None
    for _, rule in predictive:
        f = forecast(_history(grid, i, by_metric[rule.metric]), forecast_params(rule))
        if not math.isnan(f.bound):
            best = max(best or 0.0, f.bound / rule.target_per_node)
    return best


def _task_info(policy: Policy, task_id: str, state: str, updated: datetime) -> TaskInfo:
    """What DescribeTaskInfo would say about a simulated task."""
    failed = state == "failed"
    return TaskInfo(
        task_id=task_id,
        cluster_id=policy.cluster_id,
        task_type="cluster_scaleout",
        state=state,
        created=None,
        updated=updated,
        error_code="SimulatedFailure" if failed else None,
        error_message="the simulated provisioning failed" if failed else None,
        task_result=(),
    )

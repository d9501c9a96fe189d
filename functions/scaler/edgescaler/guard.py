"""The guard: may this cluster be scaled out now, and by how much? Pure, over a log snapshot.

:func:`check` applies these rules in order; the first that holds decides:

1. ``cooling_down`` — the last scale-out that may have added capacity (any but a failed,
   timed-out or refused one) was requested less than ``cooldown`` ago;
2. ``in_flight`` — a scale-out is still open: claimed but unanswered, its task still running,
   or its outcome unknown (we never add nodes on top of capacity that may be on its way);
   :func:`running_tasks` extends this to every scale-out task the cloud still runs;
3. ``cooling_down`` — that scale-out *ended* less than ``cooldown`` ago: new nodes need time
   to join and take load before the metrics mean anything again;
4. ``backoff`` — scale-outs of this (cluster, ENS region, instance type) failed, timed out or were
   refused recently: wait 5 min after the first failure, doubling up to 30 min; a streak is
   forgotten 3 h after its last failure (cluster-autoscaler's defaults). Failures are governed
   by this rule, not by the cooldown: they added no capacity that needs time to settle;
5. ``backoff`` — the CS API throttled the last scale-out call: nothing about the cluster failed,
   so this is a short hold of seconds to a minute (:func:`throttle_delay`, jittered, set by the
   actuator in the activity's ``retry_at``), not a provisioning backoff.

:func:`budget_clamps` then limits the add to the policy's rolling budgets (nodes per hour / per
day, counted from every activity that may have created nodes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from edgescaler.activity import ADDED_NOTHING, FAILURES, Activity, Status
from edgescaler.decision import Clamp
from edgescaler.policy import Budget, Policy
from edgescaler.report import OutcomeCode

COOLING_DOWN = OutcomeCode.COOLING_DOWN
IN_FLIGHT = OutcomeCode.IN_FLIGHT
BACKOFF = OutcomeCode.BACKOFF

BACKOFF_FIRST = timedelta(minutes=5)
BACKOFF_MAX = timedelta(minutes=30)
BACKOFF_RESET = timedelta(hours=3)
THROTTLE_FIRST = timedelta(seconds=10)
THROTTLE_MAX = timedelta(seconds=60)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    outcome: OutcomeCode | None = None
    reason: str = ""
    blocking_seq: int | None = None


ALLOW = Verdict(True)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(a: Activity) -> str:
    task = f", task {a.task_id}" if a.task_id else ""
    return f"scale-out #{a.seq} (+{a.add}{task}, {a.status})"


def _end(a: Activity) -> datetime:
    return a.ended_at or a.updated_at


def check(policy: Policy, activities: Sequence[Activity], *, now: datetime) -> Verdict:
    """Apply rules 1, 2, 3 and 4 to ``activities`` (one cluster, seq order) at ``now``."""
    cooldown = policy.cooldown
    added = [a for a in activities if a.status not in FAILURES | ADDED_NOTHING]
    last = added[-1] if added else None
    if last is not None and now < last.created_at + cooldown:
        return Verdict(
            False,
            COOLING_DOWN,
            f"{_describe(last)} requested at {_stamp(last.created_at)}; "
            f"cooldown until {_stamp(last.created_at + cooldown)}",
            last.seq,
        )
    open_ = [a for a in activities if a.is_open]
    if open_:
        a = open_[-1]
        if a.status == Status.SUBMITTED:
            why = "its task is still running"
        elif a.status == Status.CLAIMED:
            why = "claimed by another invocation, not answered yet"
        else:
            why = "its outcome is unknown until the cluster's tasks show whether it went through"
        return Verdict(False, IN_FLIGHT, f"{_describe(a)}: {why}", a.seq)
    # The latest end, not the last activity's: a timed-out task that ends late (tracked on,
    # activity.track) may end after a newer scale-out did.
    ended = [a for a in added if a.ended_at is not None]
    latest = max(ended, key=lambda a: (_end(a), a.seq)) if ended else None
    if latest is not None and now < _end(latest) + cooldown:
        return Verdict(
            False,
            COOLING_DOWN,
            f"{_describe(latest)} ended at {_stamp(_end(latest))}; "
            f"cooldown until {_stamp(_end(latest) + cooldown)}",
            latest.seq,
        )
    verdict = backoff(
        activities,
        ens_region_id=policy.scale_out.ens_region_id,
        instance_type=policy.scale_out.worker_instance_type,
        now=now,
    )
    if not verdict.allowed:
        return verdict
    return throttled(activities, now=now)


def throttled(activities: Sequence[Activity], *, now: datetime) -> Verdict:
    """Rule 5: the newest activity was throttled and its ``retry_at`` has not come yet."""
    last = activities[-1] if activities else None
    if (
        last is None
        or last.status != Status.THROTTLED
        or last.retry_at is None
        or now >= last.retry_at
    ):
        return ALLOW
    return Verdict(
        False,
        BACKOFF,
        f"the CS API throttled {_describe(last)}: {last.error or 'no detail'}; "
        f"retrying after {_stamp(last.retry_at)}",
        last.seq,
    )


def throttle_delay(
    activities: Sequence[Activity], retry_after: float | None, jitter: float
) -> timedelta:
    """How long to hold the cluster after a throttled call: 10 s doubling per throttled call in
    a row before it (newest first), at most 60 s, at least the server's ``retry_after`` (capped
    at 60 s); scaled by ``jitter`` in [0.5, 1] so that many clusters do not retry in step."""
    streak = 0
    for a in reversed(activities):
        if a.status != Status.THROTTLED:
            break
        streak += 1
    base = min(THROTTLE_MAX, THROTTLE_FIRST * (1 << min(streak, 6)))
    delay = base * min(1.0, max(0.5, jitter))
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(THROTTLE_MAX, timedelta(seconds=retry_after)))
    return delay


def running_tasks(running_scale_outs: Iterable[str], activities: Sequence[Activity]) -> Verdict:
    """Rule 2 for the cloud's view: any ``cluster_scaleout`` task still running holds the cluster
    — one edgescaler did not start (console, another tool), or one of ours that the log already
    ended as ``timed_out`` (the nodes may still come)."""
    running = sorted(running_scale_outs)
    if not running:
        return ALLOW
    owner = next((a for a in activities if a.task_id == running[0]), None)
    if owner is None:
        why = f"scale-out task {running[0]} not started by edgescaler is running"
    else:
        why = f"{_describe(owner)}: its task is still running in the cloud"
    return Verdict(False, IN_FLIGHT, why, owner.seq if owner else None)


def backoff(
    activities: Sequence[Activity], *, ens_region_id: str, instance_type: str, now: datetime
) -> Verdict:
    """Rule 4 for one (ENS region, instance type) of the cluster whose log this is."""
    streak: list[Activity] = []
    for a in activities:
        if a.ens_region_id != ens_region_id or a.instance_type != instance_type:
            continue
        if a.status in FAILURES:
            if streak and _end(a) - _end(streak[-1]) > BACKOFF_RESET:
                streak = []  # the earlier streak had been forgotten before this failure
            streak.append(a)
        elif a.status == Status.SUCCEEDED:
            streak = []
    if not streak:
        return ALLOW
    last = streak[-1]
    if now - _end(last) > BACKOFF_RESET:
        return ALLOW
    wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(streak) - 1))
    until = _end(last) + wait
    if now >= until:
        return ALLOW
    n = len(streak)
    return Verdict(
        False,
        BACKOFF,
        f"backing off {int(wait.total_seconds() // 60)} min until {_stamp(until)} after "
        f"{n} failed scale-out{'s' if n > 1 else ''} of {instance_type} in {ens_region_id} "
        f"(last: #{last.seq} {last.status}: {last.error or 'no detail'})",
        last.seq,
    )


def nodes_added(activities: Iterable[Activity], since: datetime) -> int:
    """Nodes that activities since ``since`` may have added (all but refused/throttled ones)."""
    return sum(a.add for a in activities if a.created_at >= since and a.status not in ADDED_NOTHING)


def budget_clamps(
    add: int, activities: Sequence[Activity], budget: Budget | None, *, now: datetime
) -> list[Clamp]:
    """The clamps the rolling budgets impose on ``add`` (empty when within budget)."""
    if budget is None:
        return []
    clamps: list[Clamp] = []
    for limit, window, name in (
        (budget.nodes_per_hour, timedelta(hours=1), "budget_hour"),
        (budget.nodes_per_day, timedelta(days=1), "budget_day"),
    ):
        if limit is None:
            continue
        used = nodes_added(activities, now - window)
        room = max(0, limit - used)
        if add > room:
            per = "hour" if name == "budget_hour" else "day"
            clamps.append(Clamp(name, add, room, f"{used} of {limit} nodes per {per} used"))
            add = room
    return clamps

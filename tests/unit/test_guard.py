"""The guard over explicit timestamps: cooldowns, in flight, backoff, budgets."""

from __future__ import annotations

from datetime import timedelta

import pytest

from edgescaler import guard
from edgescaler.activity import Activity, Status
from tests.support.builders import BASE, NOW, policy

POLICY = policy(cooldown="10m")
REGION, TYPE = BASE["scale_out"]["ens_region_id"], BASE["scale_out"]["worker_instance_type"]


def act(
    seq: int,
    status: str,
    ago: timedelta,
    ended_ago: timedelta | None = None,
    *,
    add: int = 2,
    region: str = REGION,
    itype: str = TYPE,
) -> Activity:
    created = NOW - ago
    return Activity(
        cluster_id="c0123456789",
        seq=seq,
        policy="p",
        add=add,
        status=status,
        created_at=created,
        updated_at=created,
        ended_at=NOW - ended_ago if ended_ago is not None else None,
        task_id=f"T-{seq}",
        ens_region_id=region,
        instance_type=itype,
        error="boom" if status == Status.FAILED else None,
    )


def check(*acts: Activity, p=POLICY):  # type: ignore[no-untyped-def]
    return guard.check(p, list(acts), now=NOW)


def test_empty_log_allows() -> None:
    assert check().allowed


def test_cooldown_from_request_even_if_task_done() -> None:
    v = check(act(1, Status.SUCCEEDED, timedelta(minutes=3), timedelta(minutes=2)))
    assert (v.allowed, v.outcome, v.blocking_seq) == (False, "cooling_down", 1)
    assert "requested at" in v.reason and "cooldown until 2026-11-27T08:07:00Z" in v.reason


@pytest.mark.parametrize("status", [Status.SUBMITTED, Status.CLAIMED, Status.UNKNOWN])
def test_open_activity_past_cooldown_is_in_flight(status: str) -> None:
    v = check(act(1, status, timedelta(minutes=30)))
    assert (v.allowed, v.outcome, v.blocking_seq) == (False, "in_flight", 1)


def test_cooldown_restarts_at_completion() -> None:
    v = check(act(1, Status.SUCCEEDED, timedelta(minutes=40), ended_ago=timedelta(minutes=4)))
    assert (v.outcome, v.blocking_seq) == ("cooling_down", 1) and "ended at" in v.reason
    assert check(
        act(1, Status.SUCCEEDED, timedelta(minutes=40), ended_ago=timedelta(minutes=11))
    ).allowed


def test_the_cooldown_runs_from_the_latest_end_not_the_newest_activitys() -> None:
    """#1 timed out, then its task ended late, after #2 had ended: the cooldown is #1's."""
    late = act(1, Status.SUCCEEDED, timedelta(minutes=90), ended_ago=timedelta(minutes=4))
    newer = act(2, Status.SUCCEEDED, timedelta(minutes=30), ended_ago=timedelta(minutes=20))
    v = check(late, newer)
    assert (v.outcome, v.blocking_seq) == ("cooling_down", 1) and "ended at" in v.reason


def test_exact_boundary_allows() -> None:
    assert check(
        act(1, Status.SUCCEEDED, timedelta(minutes=10), ended_ago=timedelta(minutes=10))
    ).allowed


def test_an_older_open_activity_still_holds() -> None:
    v = check(
        act(1, Status.UNKNOWN, timedelta(hours=2)),
        act(2, Status.SUCCEEDED, timedelta(minutes=50), timedelta(minutes=50)),
    )
    assert (v.outcome, v.blocking_seq) == ("in_flight", 1)
    assert "outcome is unknown" in v.reason


def test_zero_cooldown_only_in_flight_blocks() -> None:
    p = policy(cooldown="0s")
    assert check(act(1, Status.SUCCEEDED, timedelta(seconds=1), timedelta(0)), p=p).allowed
    assert not check(act(1, Status.SUBMITTED, timedelta(seconds=1)), p=p).allowed


# -- backoff: 5 min after one failure, doubling to 30 min, forgotten 3 h after the last ----------


@pytest.mark.parametrize(("failures", "wait_minutes"), [(1, 5), (2, 10), (3, 20), (4, 30), (7, 30)])
def test_backoff_doubles_to_a_cap(failures: int, wait_minutes: int) -> None:
    p = policy(cooldown="0s")
    acts = [
        act(i + 1, Status.FAILED, timedelta(minutes=60 - i), timedelta(minutes=60 - i))
        for i in range(failures)
    ]
    acts[-1] = act(failures, Status.FAILED, timedelta(minutes=2), timedelta(minutes=2))
    v = check(*acts, p=p)
    assert (v.outcome, v.blocking_seq) == ("backoff", failures)
    assert f"backing off {wait_minutes} min" in v.reason and "boom" in v.reason
    # just after the wait it is allowed again
    later = guard.check(p, acts, now=NOW - timedelta(minutes=2) + timedelta(minutes=wait_minutes))
    assert later.allowed


@pytest.mark.parametrize("status", [Status.FAILED, Status.TIMED_OUT, Status.REJECTED])
def test_every_failure_kind_backs_off(status: str) -> None:
    v = check(act(1, status, timedelta(minutes=3), timedelta(minutes=3)), p=policy(cooldown="0s"))
    assert v.outcome == "backoff"


def test_success_resets_the_streak() -> None:
    p = policy(cooldown="0s")
    acts = [
        act(1, Status.FAILED, timedelta(minutes=50), timedelta(minutes=50)),
        act(2, Status.FAILED, timedelta(minutes=40), timedelta(minutes=40)),
        act(3, Status.SUCCEEDED, timedelta(minutes=30), timedelta(minutes=30)),
        act(4, Status.FAILED, timedelta(minutes=4), timedelta(minutes=4)),
    ]
    v = check(*acts, p=p)
    assert v.outcome == "backoff" and "backing off 5 min" in v.reason  # a streak of one


def test_backoff_is_forgotten_after_three_hours() -> None:
    p = policy(cooldown="0s")
    old = [
        act(i, Status.FAILED, timedelta(hours=5, minutes=i), timedelta(hours=5, minutes=i))
        for i in (1, 2, 3)
    ]
    assert check(*old, p=p).allowed
    # a new failure after a forgotten streak starts again at 5 min
    v = check(*old, act(4, Status.FAILED, timedelta(minutes=1), timedelta(minutes=1)), p=p)
    assert "backing off 5 min" in v.reason


def test_backoff_is_per_region_and_instance_type() -> None:
    p = policy(cooldown="0s")
    other = act(
        1, Status.FAILED, timedelta(minutes=1), timedelta(minutes=1), region="cn-beijing-cmcc-2"
    )
    assert check(other, p=p).allowed
    other_type = act(
        1, Status.FAILED, timedelta(minutes=1), timedelta(minutes=1), itype="ens.sn1.large"
    )
    assert check(other_type, p=p).allowed


# -- untracked scale-out tasks ------------------------------------------------------------------


def test_any_running_scale_out_task_holds_the_cluster() -> None:
    mine = act(1, Status.TIMED_OUT, timedelta(hours=1), timedelta(minutes=1))
    assert guard.running_tasks([], [mine]).allowed
    v = guard.running_tasks(["T-console"], [mine])
    assert (v.allowed, v.outcome, v.blocking_seq) == (False, "in_flight", None)
    assert "T-console not started by edgescaler" in v.reason
    v = guard.running_tasks(["T-1"], [mine])  # ours, ended in the log as timed_out
    assert (v.outcome, v.blocking_seq) == ("in_flight", 1)
    assert "still running in the cloud" in v.reason


# -- budgets ------------------------------------------------------------------------------------


def test_budgets_clamp_from_the_log() -> None:
    p = policy(budget={"nodes_per_hour": 10, "nodes_per_day": 12})
    acts = [
        act(1, Status.SUCCEEDED, timedelta(hours=5), add=4),
        act(2, Status.REJECTED, timedelta(minutes=30), add=5),  # refused: added nothing
        act(3, Status.FAILED, timedelta(minutes=20), add=3),  # may have added some: counted
        act(4, Status.SUCCEEDED, timedelta(minutes=10), add=4),
    ]
    clamps = guard.budget_clamps(5, acts, p.budget, now=NOW)
    assert [(c.limit, c.before, c.after) for c in clamps] == [
        ("budget_hour", 5, 3),
        ("budget_day", 3, 1),
    ]
    assert "7 of 10 nodes per hour used" in clamps[0].detail
    assert guard.budget_clamps(1, acts, p.budget, now=NOW) == []
    assert guard.budget_clamps(5, acts, None, now=NOW) == []


def test_exhausted_budget_clamps_to_zero() -> None:
    p = policy(budget={"nodes_per_hour": 4})
    clamps = guard.budget_clamps(
        2, [act(1, Status.SUCCEEDED, timedelta(minutes=59), add=4)], p.budget, now=NOW
    )
    assert clamps[-1].after == 0


def test_a_failure_is_governed_by_backoff_not_cooldown() -> None:
    # cooldown 10m would still run from this request; a failed scale-out added nothing, so the
    # backoff (5 min after the first failure) decides, and says so.
    failed = act(1, Status.FAILED, timedelta(minutes=3), timedelta(minutes=2))
    v = check(failed)
    assert (v.outcome, v.blocking_seq) == ("backoff", 1)
    assert check(act(1, Status.FAILED, timedelta(minutes=7), timedelta(minutes=6))).allowed


def test_cooldown_of_an_earlier_success_still_applies_after_a_failure() -> None:
    v = check(
        act(1, Status.SUCCEEDED, timedelta(minutes=8), timedelta(minutes=7)),
        act(2, Status.REJECTED, timedelta(minutes=7), timedelta(minutes=7)),
    )
    assert (v.outcome, v.blocking_seq) == ("cooling_down", 1)

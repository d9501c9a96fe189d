"""The guard over explicit timestamps: cooldown from request and from completion, in flight."""

from __future__ import annotations

from datetime import timedelta

from edgescaler import guard
from edgescaler.store.base import (
    CLAIMED,
    FAILED,
    REJECTED,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    Activity,
)
from tests.support.builders import NOW

COOL = timedelta(minutes=10)


def act(seq: int, status: str, ago: timedelta, ended_ago: timedelta | None = None) -> Activity:
    created = NOW - ago
    return Activity(
        cluster_id="c0123456789",
        seq=seq,
        policy="p",
        add=2,
        status=status,
        created_at=created,
        updated_at=created,
        ended_at=NOW - ended_ago if ended_ago is not None else None,
        task_id=f"T-{seq}",
    )


def test_empty_log_allows() -> None:
    assert guard.check([], cooldown=COOL, now=NOW).allowed


def test_cooldown_from_request_even_if_task_done() -> None:
    v = guard.check(
        [act(1, SUCCEEDED, timedelta(minutes=3), timedelta(minutes=2))], cooldown=COOL, now=NOW
    )
    assert (v.allowed, v.outcome, v.blocking_seq) == (False, "cooling_down", 1)
    assert "requested at" in v.reason and "cooldown until 2026-11-27T08:07:00Z" in v.reason


def test_open_task_past_cooldown_is_in_flight() -> None:
    for status in (SUBMITTED, CLAIMED, UNKNOWN):
        v = guard.check([act(1, status, timedelta(minutes=30))], cooldown=COOL, now=NOW)
        assert (v.allowed, v.outcome) == (False, "in_flight"), status


def test_cooldown_restarts_at_completion() -> None:
    acts = [act(1, SUCCEEDED, timedelta(minutes=40), ended_ago=timedelta(minutes=4))]
    v = guard.check(acts, cooldown=COOL, now=NOW)
    assert (v.outcome, v.blocking_seq) == ("cooling_down", 1) and "ended at" in v.reason
    later = [act(1, SUCCEEDED, timedelta(minutes=40), ended_ago=timedelta(minutes=11))]
    assert guard.check(later, cooldown=COOL, now=NOW).allowed


def test_exact_boundary_allows() -> None:
    acts = [act(1, FAILED, COOL, ended_ago=COOL)]
    assert guard.check(acts, cooldown=COOL, now=NOW).allowed


def test_an_older_open_activity_still_holds() -> None:
    acts = [
        act(1, UNKNOWN, timedelta(hours=2)),
        act(2, REJECTED, timedelta(minutes=50), timedelta(minutes=50)),
    ]
    v = guard.check(acts, cooldown=COOL, now=NOW)
    assert (v.outcome, v.blocking_seq) == ("in_flight", 1)
    assert "outcome is unknown" in v.reason


def test_zero_cooldown_only_in_flight_blocks() -> None:
    assert guard.check(
        [act(1, SUCCEEDED, timedelta(seconds=1), timedelta(0))], cooldown=timedelta(0), now=NOW
    ).allowed

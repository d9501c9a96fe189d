"""The contract every store backend must honour (design.md §5)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from edgescaler.activity import Activity, Status
from edgescaler.errors import ConflictError
from edgescaler.store.base import Store
from tests.support import builders
from tests.support.builders import NOW

CLUSTER = "c0123456789abcdef"


def claim(
    seq: int, *, cluster: str = CLUSTER, ago: timedelta = timedelta(0), policy: str = "p"
) -> Activity:
    made = builders.claim(seq, cluster=cluster, at=NOW - ago, policy=policy, add=seq)
    return replace(made, decision={"reason": "rule", "explanation": f"#{seq}"})


def test_read_your_write(any_store: Store) -> None:
    a = any_store.append(claim(1))
    assert any_store.get(CLUSTER, 1) == a
    assert any_store.last_seq(CLUSTER) == 1
    done = a.with_status(Status.SUBMITTED, NOW, task_id="T-1", request_id="R-1")
    any_store.update(done)
    got = any_store.get(CLUSTER, 1)
    assert got is not None and (got.status, got.task_id, got.request_id) == (
        Status.SUBMITTED,
        "T-1",
        "R-1",
    )


def test_create_only_conflict_keeps_the_winner(any_store: Store) -> None:
    any_store.append(claim(1, policy="winner"))
    with pytest.raises(ConflictError):
        any_store.append(claim(1, policy="loser"))
    got = any_store.get(CLUSTER, 1)
    assert got is not None and got.policy == "winner"


def test_ordering_is_numeric_across_digit_boundaries(any_store: Store) -> None:
    for seq in (1, 2, 9, 10, 11, 100):
        any_store.append(claim(seq))
    assert [a.seq for a in any_store.log(CLUSTER)] == [1, 2, 9, 10, 11, 100]
    assert [a.seq for a in any_store.log(CLUSTER, limit=2)] == [11, 100]
    assert any_store.last_seq(CLUSTER) == 100
    assert any_store.last_seq("c-other") == 0


def test_clusters_are_separate(any_store: Store) -> None:
    any_store.append(claim(1, cluster="caaaaaaaaaa"))
    any_store.append(claim(1, cluster="cbbbbbbbbbb"))
    any_store.append(claim(2, cluster="caaaaaaaaaa"))
    assert any_store.clusters() == ["caaaaaaaaaa", "cbbbbbbbbbb"]
    assert [a.seq for a in any_store.log("cbbbbbbbbbb")] == [1]


def test_history_newest_first_and_filters(any_store: Store) -> None:
    any_store.append(claim(1, ago=timedelta(hours=3), policy="a"))
    any_store.append(claim(2, ago=timedelta(hours=2), policy="b"))
    any_store.append(claim(1, cluster="czzzzzzzzzz", ago=timedelta(hours=1), policy="a"))
    assert [(a.cluster_id, a.seq) for a in any_store.history()] == [
        ("czzzzzzzzzz", 1),
        (CLUSTER, 2),
        (CLUSTER, 1),
    ]
    assert [a.seq for a in any_store.history(cluster_id=CLUSTER, policy="a")] == [1]
    assert len(any_store.history(limit=1)) == 1


def test_recent_reads_the_window_plus_one_older(any_store: Store) -> None:
    for seq, hours in ((1, 30), (2, 26), (3, 5), (4, 1)):
        any_store.append(
            claim(seq, ago=timedelta(hours=hours)).with_status(
                Status.SUCCEEDED, NOW - timedelta(hours=hours)
            )
        )
    got = any_store.recent(CLUSTER, NOW - timedelta(hours=24))
    assert [a.seq for a in got] == [2, 3, 4]


def test_event_keys_are_claimed_once(any_store: Store) -> None:
    assert any_store.claim_event("timer:t:2026-11-27T07:05:00Z", NOW, {"trigger": "timer"})
    assert not any_store.claim_event("timer:t:2026-11-27T07:05:00Z", NOW)
    assert any_store.claim_event("timer:t:2026-11-27T07:06:00Z", NOW)
    rec = any_store.event("timer:t:2026-11-27T07:05:00Z")
    assert rec is not None and rec["trigger"] == "timer"
    assert any_store.event("never") is None


def test_concurrent_claims_have_exactly_one_winner(any_store: Store) -> None:
    winners: list[int] = []
    losers: list[int] = []
    barrier = threading.Barrier(8)
    lock = threading.Lock()

    def contender(i: int) -> None:
        barrier.wait()
        try:
            any_store.append(claim(1, policy=f"p{i}"))
        except ConflictError:
            with lock:
                losers.append(i)
        else:
            with lock:
                winners.append(i)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 7
    got = any_store.get(CLUSTER, 1)
    assert got is not None and got.policy == f"p{winners[0]}"

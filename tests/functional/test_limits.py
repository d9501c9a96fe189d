"""Limits that hold a scale-out back, through the whole handler: budgets and max_nodes.

The FC handler runs in-process against the emulator and one SQLite store on a fake clock.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.world import FakeClock, build_world

RUN = {"policies": ["edge-a"]}
MIN = 60.0


def test_rolling_budget_clamps_then_stops_then_refills(tmp_path: Path) -> None:
    clock = FakeClock()
    # the load always wants more (ceil(100 / 2) = 50 nodes); 3 per step; 5 per hour
    with build_world(
        tmp_path,
        clock=clock,
        load=100,
        max_step=3,
        cooldown="0s",
        budget={"nodes_per_hour": 5},
    ) as w:
        first = w.outcome(RUN)
        assert (first["outcome"], first["add"]) == ("scaled", 3)

        clock.advance(MIN)
        second = w.outcome(RUN)
        assert (second["outcome"], second["add"]) == ("scaled", 2)
        clamp = second["decision"]["clamps"][-1]
        assert (clamp["limit"], clamp["before"], clamp["after"]) == ("budget_hour", 3, 2)
        assert "3 of 5 nodes per hour used" in clamp["detail"]

        clock.advance(MIN)
        third = w.outcome(RUN)
        assert (third["outcome"], third["add"]) == ("budget", 0)
        assert "5 of 5 nodes per hour used" in third["reason"]

        clock.advance(59 * MIN)  # the first scale-out leaves the hour
        fourth = w.outcome(RUN)
        assert (fourth["outcome"], fourth["add"]) == ("scaled", 3)
        assert [p["body"]["count"] for p in w.posts()] == [3, 2, 3]
        w.check_invariant()


def test_a_cluster_at_max_nodes_is_capped_and_nothing_is_sent(tmp_path: Path) -> None:
    clock = FakeClock()
    with build_world(tmp_path, clock=clock, load=100, max_nodes=2) as w:  # 2 ENS workers now
        o = w.outcome(RUN)
        assert (o["outcome"], o["add"]) == ("capped", 0)
        assert (
            o["decision"]["proposed"] == 48 and o["decision"]["clamps"][-1]["limit"] == "max_nodes"
        )
        assert w.posts() == [] and w.activities(w.clusters["edge-a"]) == []

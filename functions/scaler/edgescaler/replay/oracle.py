"""The oracle: the floor every score is read against.

It knows the whole trace. At each run (the end of every grid point) it asks for exactly the nodes
the coming demand will need: the largest demand over the next maximum join delay (what nodes
asked for now can still cover, however long they take to join), minus the nodes ready or joining,
within ``max_nodes``. It has no cooldown and no step limit, and it replays in the same simulated
cluster (same seeded join delays and failures: a failed scale-out is made good at the next run).
Only demand that rises within one join delay of the start can be unmet for it.
"""

from __future__ import annotations

import math
from collections import deque

from edgescaler.replay.cluster import SimCluster
from edgescaler.replay.scoring import Scorer, demand
from edgescaler.replay.simulator import Run, ScaleOutEvent, Setup, Timeline
from edgescaler.replay.traces import Grid

NAME = "oracle"


def needs_ahead(demands: list[int | None], ahead: int) -> list[int]:
    """``out[i]`` = the largest demand at grid points ``i+1 .. i+ahead`` (0 when all are gaps)."""
    n = len(demands)
    out = [0] * n
    window: deque[tuple[int, int]] = deque()  # (index, demand), decreasing demand
    j = 0  # next index to push
    for i in range(n):
        while j <= min(n - 1, i + ahead):
            d = demands[j]
            if d is not None:
                while window and window[-1][1] <= d:
                    window.pop()
                window.append((j, d))
            j += 1
        while window and window[0][0] <= i:
            window.popleft()
        out[i] = window[0][1] if window else 0
    return out


def simulate_oracle(grid: Grid, setup: Setup, *, max_nodes: int, record: bool = False) -> Run:
    per_node = setup.per_node
    demands = [demand(v, per_node) for v in grid.values]
    ahead = math.ceil(setup.join_delay.high * 60 / grid.interval)
    need = needs_ahead(demands, ahead)
    cluster = SimCluster(
        setup.initial_nodes(grid),
        join_delay=setup.join_delay,
        failure_rate=setup.failure_rate,
        seed=setup.seed,
    )
    scorer = Scorer(grid.interval / 60.0)
    reclaim = setup.idle_reclaim(grid.interval, 0)
    events: list[ScaleOutEvent] = []
    timeline = Timeline() if record else None
    for i, d in enumerate(demands):
        t = grid.start + i * grid.interval
        scorer.tick(d, cluster.ready, cluster.billed())
        if timeline is not None:
            timeline.times.append(t)
            timeline.demand.append(d)
            timeline.ready.append(cluster.ready)
            timeline.requested.append(cluster.current())
            timeline.forecast.append(None)
        if reclaim is not None:
            reclaim.observe(i, d, cluster)
        now = t + grid.interval
        cluster.advance(now)
        add = min(need[i], max_nodes) - cluster.current()
        if add > 0:
            task = cluster.scale_out(now, add)
            scorer.call(task.add, task.fails)
            events.append(ScaleOutEvent(now, task.add, task.task_id, task.ends_at, task.fails))
    return Run(NAME, scorer.score(), {"scaled": len(events)}, events, timeline)

"""The simulated cluster and its task model.

::

    scale_out(now, n) ──▶ task running: n nodes joining (listed by DescribeClusterNodes,
         │                carrying no load, billed from the call)
         ├─ after the join delay ──▶ task success: n nodes ready
         └─ after the join delay, with probability failure_rate ──▶ task failed: no nodes

All nodes of one call join together (the task ends when its nodes are ready), after a delay drawn
uniformly in whole minutes from the join-delay range. Delays and failures come from two random
streams seeded by ``seed``, so every policy replayed with the same seed sees the same k-th delay
and the same k-th failure. A failed task's nodes are never billed.
"""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from edgescaler.policy import format_duration, parse_duration
from edgescaler.replay.errors import ReplayError


@dataclass(frozen=True)
class JoinDelay:
    """Uniform in whole minutes from ``low`` to ``high`` (inclusive)."""

    low: int = 5
    high: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high:
            raise ValueError("join delay range must be 0 <= low <= high")

    @classmethod
    def parse(cls, text: str) -> JoinDelay:
        """``10m`` (fixed) or ``5m-20m`` (uniform); whole minutes."""
        parts = [p for p in re.split(r"\s*-\s*|\s*\.\.\s*", text.strip()) if p]
        try:
            mins = [parse_duration(p) for p in parts]
        except ValueError:
            mins = []
        if not 1 <= len(mins) <= 2 or any(m.total_seconds() % 60 for m in mins):
            raise ReplayError(f"--join-delay: {text!r} is not whole minutes like 10m or 5m-20m")
        low, high = (int(m.total_seconds() // 60) for m in (mins[0], mins[-1]))
        if low > high:
            raise ReplayError(f"--join-delay: {text!r}: the lower bound is above the upper one")
        return cls(low, high)

    @property
    def maximum(self) -> timedelta:
        return timedelta(minutes=self.high)

    def draw(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)

    def __str__(self) -> str:
        if self.low == self.high:
            return format_duration(timedelta(minutes=self.low))
        return (
            f"{format_duration(timedelta(minutes=self.low))}-"
            f"{format_duration(timedelta(minutes=self.high))}"
        )


@dataclass(frozen=True)
class Task:
    """One scale-out call; times are seconds on the replay's clock."""

    task_id: str
    add: int
    called_at: float
    ends_at: float
    fails: bool


class SimCluster:
    """Ready nodes plus running scale-out tasks. ``now`` always comes from the caller."""

    def __init__(
        self, initial: int, *, join_delay: JoinDelay, failure_rate: float, seed: int
    ) -> None:
        if initial < 0:
            raise ValueError("initial node count cannot be negative")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure rate must be within [0, 1]")
        self.ready = initial
        self.running: list[Task] = []
        self._join_delay = join_delay
        self._failure_rate = failure_rate
        self._delays = random.Random(f"join-delay:{seed}")
        self._failures = random.Random(f"failure:{seed}")
        self._calls = 0

    def current(self) -> int:
        """Nodes the cloud lists: ready and joining (what ``count_workers`` counts)."""
        return self.ready + sum(t.add for t in self.running)

    def billed(self) -> int:
        """Nodes paid for now: ready, and joining ones that will join."""
        return self.ready + sum(t.add for t in self.running if not t.fails)

    def running_ids(self) -> list[str]:
        return [t.task_id for t in self.running]

    def scale_out(self, now: float, add: int) -> Task:
        """Start a task adding ``add`` nodes; it ends after the drawn join delay."""
        self._calls += 1
        delay = self._join_delay.draw(self._delays)
        fails = self._failures.random() < self._failure_rate
        task = Task(f"T-{self._calls:06d}", add, now, now + 60.0 * delay, fails)
        self.running.append(task)
        return task

    def advance(self, now: float) -> list[Task]:
        """End every task due by ``now`` (its nodes become ready unless it failed)."""
        if not self.running or min(t.ends_at for t in self.running) > now:
            return []
        done = sorted((t for t in self.running if t.ends_at <= now), key=lambda t: t.ends_at)
        self.running = [t for t in self.running if t.ends_at > now]
        for t in done:
            if not t.fails:
                self.ready += t.add
        return done

    def reclaim(self, n: int) -> None:
        """Remove ``n`` ready nodes (the external reclaim of ``--scale-in idle``)."""
        self.ready -= min(n, self.ready)


class IdleReclaim:
    """``--scale-in idle:DURATION``: an external reclaim (not edgescaler, which never removes
    nodes) of ready nodes that were spare — ready beyond the demand — at every observed point of
    the last ``window`` points. A gap restarts the count; never below ``floor`` nodes."""

    def __init__(self, window: int, floor: int) -> None:
        if window < 1:
            raise ValueError("the idle window must be at least one point")
        self._window = window
        self._floor = floor
        # sliding minimum of (point index, spare nodes + nodes reclaimed so far)
        self._spare: deque[tuple[int, int]] = deque()
        self._reclaimed = 0
        self._run_start = 0

    def observe(self, i: int, demand: int | None, cluster: SimCluster) -> int:
        """Account for point ``i``; reclaim from ``cluster`` and return how many nodes."""
        if demand is None:
            self._spare.clear()
            self._run_start = i + 1
            return 0
        spare = self._spare
        e = cluster.ready - demand + self._reclaimed
        while spare and spare[-1][1] >= e:
            spare.pop()
        spare.append((i, e))
        while spare[0][0] <= i - self._window:
            spare.popleft()
        if i - self._run_start + 1 < self._window:
            return 0
        n = min(spare[0][1] - self._reclaimed, cluster.ready - self._floor)
        if n <= 0:
            return 0
        cluster.reclaim(n)
        self._reclaimed += n
        return n

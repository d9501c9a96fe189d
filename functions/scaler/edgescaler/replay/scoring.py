"""How a replay is scored.

At every grid point of the replay (an ``interval``, normally one minute) that the trace observed:

* **demand** = ``ceil(load / per_node)`` nodes;
* **unmet** = demand above the *ready* nodes (joining ones carry no load).

Over the whole replay:

* ``unmet_node_minutes``: the sum of unmet x interval (in minutes);
* ``unmet_minutes``: the minutes with any unmet demand;
* ``nodes_added``: nodes of scale-outs that did not fail (still joining at the end included);
* ``node_hours``: every node the cluster pays for — the initial ones from the start, added ones
  from their scale-out call — until the end of the replay (or their reclaim under
  ``--scale-in idle``); gaps in the trace are paid for too;
* ``scale_out_calls``: ScaleOutCluster calls (failed ones included);
* ``largest_step``: the most nodes asked for in one call.

Gaps (unobserved minutes) are never scored: the demand there is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields


def demand(load: float | None, per_node: float) -> int | None:
    """Nodes needed for ``load``; None for a gap."""
    if load is None:
        return None
    return max(0, math.ceil(load / per_node - 1e-9))


@dataclass(frozen=True)
class Score:
    unmet_node_minutes: float
    unmet_minutes: float
    nodes_added: float
    node_hours: float
    scale_out_calls: float
    largest_step: float

    def to_dict(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for f in fields(self):
            v = float(getattr(self, f.name))
            out[f.name] = int(v) if v.is_integer() else round(v, 3)
        return out

    @classmethod
    def mean(cls, scores: Sequence[Score]) -> Score:
        if not scores:
            raise ValueError("no scores to average")
        return cls(
            **{f.name: sum(getattr(s, f.name) for s in scores) / len(scores) for f in fields(cls)}
        )


class Scorer:
    """Accumulates one replay's score, one grid point at a time."""

    def __init__(self, interval_minutes: float) -> None:
        self._minutes = interval_minutes
        self.unmet_node_minutes = 0.0
        self.unmet_minutes = 0.0
        self.node_minutes = 0.0
        self.nodes_added = 0
        self.calls = 0
        self.largest_step = 0

    def tick(self, demand: int | None, ready: int, billed: int) -> None:
        self.node_minutes += billed * self._minutes
        if demand is not None and demand > ready:
            self.unmet_node_minutes += (demand - ready) * self._minutes
            self.unmet_minutes += self._minutes

    def call(self, add: int, fails: bool) -> None:
        self.calls += 1
        self.largest_step = max(self.largest_step, add)
        if not fails:
            self.nodes_added += add

    def score(self) -> Score:
        return Score(
            unmet_node_minutes=self.unmet_node_minutes,
            unmet_minutes=self.unmet_minutes,
            nodes_added=self.nodes_added,
            node_hours=self.node_minutes / 60.0,
            scale_out_calls=self.calls,
            largest_step=self.largest_step,
        )

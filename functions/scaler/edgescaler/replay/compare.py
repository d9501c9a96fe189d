"""Replay a policy, its baselines and the oracle on one trace, over one or more seeds.

The result is what ``edgescaler replay`` prints and what ``--json`` serialises::

    {"policy": S, "oracle": S, "baselines": {"target_tracking": S, "step": S, "threshold": S}}

with every ``S`` the mean :class:`~edgescaler.replay.scoring.Score` over the seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from edgescaler.policy import Policy
from edgescaler.replay import baselines as baselines_
from edgescaler.replay.errors import ReplayError
from edgescaler.replay.oracle import simulate_oracle
from edgescaler.replay.scoring import Score
from edgescaler.replay.simulator import LOAD, UTILISATION, Run, Setup, simulate
from edgescaler.replay.traces import Grid


@dataclass(frozen=True)
class Prepared:
    """The policy as the replay runs it: only the rules the trace can feed."""

    policy: Policy
    feeds: dict[str, str]
    dropped: tuple[str, ...]  # one line per rule left out, for the user


def prepare(policy: Policy, metric: str | None = None, utilisation: str | None = None) -> Prepared:
    """Keep the rules on ``metric`` (the trace; default: the first rule's metric) and on
    ``utilisation`` (fed load / ready capacity in %); say which rules were left out."""
    metric = metric or policy.rules[0].metric
    feeds = {metric: LOAD}
    if utilisation is not None:
        feeds[utilisation] = UTILISATION
    for name in feeds:
        if name not in policy.metrics:
            known = ", ".join(sorted(policy.metrics))
            raise ReplayError(f"policy {policy.name} has no metric {name!r} (defined: {known})")
    kept = [r for r in policy.rules if r.metric in feeds]
    dropped = tuple(
        f"rule {i} ({r.type} on {r.metric}): left out, the trace does not feed {r.metric!r}"
        for i, r in enumerate(policy.rules)
        if r.metric not in feeds
    )
    if not kept:
        raise ReplayError(f"policy {policy.name} has no rule on metric {metric!r}")
    pruned = policy.model_copy(
        update={"rules": kept, "metrics": {m: policy.metrics[m] for m in feeds}}
    )
    return Prepared(pruned, feeds, dropped)


@dataclass(frozen=True)
class Comparison:
    policy: Score
    oracle: Score
    baselines: dict[str, Score]
    runs: dict[str, Run]  # the first seed's runs, for plots and the scale-out list

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.to_dict(),
            "oracle": self.oracle.to_dict(),
            "baselines": {k: v.to_dict() for k, v in self.baselines.items()},
        }


def compare(
    prepared: Prepared,
    grid: Grid,
    setup: Setup,
    seeds: Sequence[int],
    *,
    record: bool = False,
    with_baselines: bool = True,
) -> Comparison:
    """Mean scores over ``seeds`` (``setup.seed`` is replaced by each); the first seed's runs
    are kept (with timelines when ``record``)."""
    if not seeds:
        raise ReplayError("no seeds to replay")
    policy = prepared.policy
    per_node = setup.per_node
    others = baselines_.baselines(policy, per_node) if with_baselines else {}
    scores: dict[str, list[Score]] = {}
    runs: dict[str, Run] = {}
    for n, seed in enumerate(seeds):
        s = replace(setup, seed=seed)
        keep = record and n == 0
        seed_runs = {"policy": simulate(policy, grid, s, prepared.feeds, record=keep)}
        for name, p in others.items():
            seed_runs[name] = simulate(p, grid, s, baselines_.FEEDS, name=name, record=keep)
        seed_runs["oracle"] = simulate_oracle(
            grid, s, max_nodes=policy.limits.max_nodes, record=keep
        )
        for name, run in seed_runs.items():
            scores.setdefault(name, []).append(run.score)
        if n == 0:
            runs = seed_runs
    mean = {name: Score.mean(v) for name, v in scores.items()}
    return Comparison(
        policy=mean["policy"],
        oracle=mean["oracle"],
        baselines={name: mean[name] for name in others},
        runs=runs,
    )

"""The reactive baselines a policy is compared with: real policies, replayed like any other.

Each is the user's policy (same cluster, scale-out body, limits — so the same ``max_step``,
``max_nodes``, ``min_nodes`` — and the same ``cooldown``; no budget) with its rules replaced:

* ``target_tracking`` (HPA / AWS target tracking): ``ceil(load / per_node)`` nodes, counting
  nodes still joining (``current`` is what the cloud lists);
* ``step`` (AWS step scaling on the average utilisation of the *ready* nodes, as CloudWatch sees
  it): above 100 % add 1, from 110 % 2, from 125 % 3, from 150 % 5, from 200 % 10;
* ``threshold``: add 1 while the utilisation of the ready nodes is above 100 %.

They go through the same guard as the policy: cooldown, in flight while a scale-out joins,
backoff after failures.
"""

from __future__ import annotations

from typing import Any

from edgescaler.policy import Policy
from edgescaler.replay.simulator import LOAD, UTILISATION

LOAD_METRIC = "load"
UTILISATION_METRIC = "utilisation"
NAMES = ("target_tracking", "step", "threshold")
FEEDS = {LOAD_METRIC: LOAD, UTILISATION_METRIC: UTILISATION}

STEPS = [
    {"lower": 100, "upper": 110, "add": 1},
    {"lower": 110, "upper": 125, "add": 2},
    {"lower": 125, "upper": 150, "add": 3},
    {"lower": 150, "upper": 200, "add": 5},
    {"lower": 200, "add": 10},
]


def _rules(name: str, per_node: float) -> list[dict[str, Any]]:
    if name == "target_tracking":
        return [{"type": "target_tracking", "metric": LOAD_METRIC, "target_per_node": per_node}]
    if name == "step":
        return [{"type": "step", "metric": UTILISATION_METRIC, "steps": STEPS}]
    if name == "threshold":
        return [{"type": "threshold", "metric": UTILISATION_METRIC, "above": 100, "add": 1}]
    raise ValueError(f"unknown baseline {name!r}")


def baseline(policy: Policy, name: str, per_node: float) -> Policy:
    """The baseline ``name`` with ``policy``'s cluster, limits and cooldown."""
    doc = policy.model_dump()
    doc.update(
        name=f"{policy.name[:40]}-{name.replace('_', '-')}",
        budget=None,
        metrics={
            LOAD_METRIC: {"query": "replay: the trace's load"},
            UTILISATION_METRIC: {"query": "replay: load / (ready nodes * per_node) * 100"},
        },
        rules=_rules(name, per_node),
    )
    return Policy.model_validate(doc)


def baselines(policy: Policy, per_node: float) -> dict[str, Policy]:
    return {name: baseline(policy, name, per_node) for name in NAMES}

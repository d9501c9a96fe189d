"""The replay benchmark: every shared trace through the baselines, edgescaler policies and the
oracle (scale-in none, seeds 1-5), side by side. A script, not a test::

    .venv/bin/python tests/bench/replay_bench.py [--traces DIR] [--seeds 5] [POLICY.yaml ...]

Each policy (default: every policy in ``policies/`` with a predictive rule) is replayed in each
trace's units: its target_tracking and predictive rules get ``target_per_node`` = the trace's
``per_node``; everything else (horizon, seasons, uncertainty, limits, cooldown) is as written.
The baselines get the policy's cooldown and limits. GOAL per trace: the best edgescaler policy has
<= 0.35x the unmet node-minutes of target tracking and adds <= 1.25x the oracle's nodes.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgescaler import policyfile
from edgescaler.policy import Policy, PredictiveRule, TargetTrackingRule
from edgescaler.replay.compare import Comparison, compare, prepare
from edgescaler.replay.scoring import Score
from edgescaler.replay.simulator import Setup
from edgescaler.replay.traces import load, to_grid

REPO = Path(__file__).resolve().parents[2]
UNMET_GOAL = 0.35
NODES_GOAL = 1.25


@dataclass(frozen=True)
class Bench:
    name: str
    file: str
    column: str
    per_node: float


TRACES = (
    Bench("NASA 1995", "nasa_http_1995_requests_per_minute.csv", "requests", 10),
    Bench("Azure 2019", "azure2019_vm_cpu_total_5min.csv", "cpu_usage", 200_000),
    Bench("Alibaba 2018", "alibaba2018_cluster_usage_30s.csv", "cpu_util_percent", 2),
)


def in_units(policy: Policy, per_node: float) -> Policy:
    """``policy`` with every target_per_node set to ``per_node`` (the trace's unit)."""
    rules: list[Any] = []
    for r in policy.rules:
        if isinstance(r, PredictiveRule | TargetTrackingRule) and r.target_per_node is not None:
            r = r.model_copy(update={"target_per_node": per_node})
        rules.append(r)
    return policy.model_copy(update={"rules": rules})


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else ("-" if a == 0 else "inf")


def row(name: str, s: Score, tt: Score, oracle: Score) -> str:
    return (
        f"  {name:<26} {s.unmet_node_minutes:>9.1f} {ratio(s.unmet_node_minutes, tt.unmet_node_minutes):>7}"
        f" {s.unmet_minutes:>7.1f} {s.nodes_added:>6.1f} {ratio(s.nodes_added, oracle.nodes_added):>6}"
        f" {s.node_hours:>10.0f} {s.scale_out_calls:>6.1f} {s.largest_step:>5.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("policies", nargs="*", type=Path)
    ap.add_argument("--traces", type=Path, default=REPO.parent / "shared" / "traces")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--only", help="only traces whose name contains this")
    args = ap.parse_args(argv)
    paths = args.policies or [REPO / "policies"]
    policies = [
        p for p in policyfile.load(paths) if any(isinstance(r, PredictiveRule) for r in p.rules)
    ]
    if not policies:
        print("no policy with a predictive rule", file=sys.stderr)
        return 2
    seeds = list(range(1, args.seeds + 1))
    met_all = True
    head = (
        f"  {'':<26} {'unmet':>9} {'vs TT':>7} {'min':>7} {'nodes':>6} {'vs or':>6}"
        f" {'node-h':>10} {'calls':>6} {'step':>5}"
    )
    for b in TRACES:
        if args.only and args.only.lower() not in b.name.lower():
            continue
        grid = to_grid(load(args.traces / b.file, b.column), 60.0)
        setup = Setup(per_node=b.per_node)
        print(
            f"{b.name}: {b.file} column {b.column}, per_node {b.per_node:g}, seeds 1-{args.seeds}"
        )
        print(head)
        results: list[tuple[str, Comparison, float]] = []
        base: Comparison | None = None
        for policy in policies:
            t0 = time.perf_counter()
            cmp_ = compare(prepare(in_units(policy, b.per_node)), grid, setup, seeds)
            results.append((policy.name, cmp_, time.perf_counter() - t0))
            base = base or cmp_
        assert base is not None
        tt, oracle = base.baselines["target_tracking"], base.oracle
        for name in ("target_tracking", "step", "threshold"):
            print(row(name, base.baselines[name], tt, oracle))

        def goal(c: Comparison) -> tuple[bool, float]:
            u = c.policy.unmet_node_minutes / tt.unmet_node_minutes if tt.unmet_node_minutes else 0
            n = c.policy.nodes_added / oracle.nodes_added if oracle.nodes_added else 0
            return (u <= UNMET_GOAL and n <= NODES_GOAL), u + (0 if n <= NODES_GOAL else 10)

        best = min(results, key=lambda r: (not goal(r[1])[0], goal(r[1])[1]))
        for name, c, secs in results:
            mark = "*" if name == best[0] else " "
            print(row(f"{mark}{name}"[:26], c.policy, tt, oracle) + f"   ({secs:.1f}s)")
        print(row("oracle", oracle, tt, oracle))
        ok, _ = goal(best[1])
        met_all &= ok
        print(
            f"  best: {best[0]}: unmet {ratio(best[1].policy.unmet_node_minutes, tt.unmet_node_minutes)}"
            f" of target tracking (goal <= {UNMET_GOAL}x), nodes "
            f"{ratio(best[1].policy.nodes_added, oracle.nodes_added)} of the oracle "
            f"(goal <= {NODES_GOAL}x): {'MET' if ok else 'NOT MET'}\n"
        )
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(main())

"""The replay benchmark: each shared trace through the baselines, the edgescaler policies and the
oracle (scale-in none, seeds 1-5), side by side. A script, not a test::

    .venv/bin/python tests/bench/replay_bench.py [--traces DIR] [--seeds 5] [POLICY.yaml ...]

Each policy (default: every policy in ``policies/`` with a predictive rule) is replayed in each
trace's units: its target_tracking and predictive rules get ``target_per_node`` = the trace's
``per_node``; everything else (horizon, seasons, uncertainty, limits, cooldown, budget) is as
written. The baselines get the policy's cooldown and limits. GOAL, per trace: the best edgescaler
policy has <= 0.35x the unmet node-minutes of target tracking and adds <= 1.25x the oracle's
nodes. Prints a Markdown table; exits 1 if a goal is not met.
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
    cells = [
        name,
        f"{s.unmet_node_minutes:,.1f}",
        ratio(s.unmet_node_minutes, tt.unmet_node_minutes),
        f"{s.unmet_minutes:,.1f}",
        f"{s.nodes_added:.1f}",
        ratio(s.nodes_added, oracle.nodes_added),
        f"{s.node_hours:,.0f}",
        f"{s.scale_out_calls:.1f}",
        f"{s.largest_step:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


HEAD = (
    "| | unmet node-min | vs TT | unmet min | nodes added | vs oracle | node-hours | calls "
    "| largest step |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def goal(c: Comparison, tt: Score, oracle: Score) -> tuple[bool, float, float]:
    u = c.policy.unmet_node_minutes / tt.unmet_node_minutes if tt.unmet_node_minutes else 0.0
    n = c.policy.nodes_added / oracle.nodes_added if oracle.nodes_added else 0.0
    return u <= UNMET_GOAL and n <= NODES_GOAL, u, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the replay benchmark (see the module docstring)")
    ap.add_argument("policies", nargs="*", type=Path, help="default: policies/ (predictive)")
    ap.add_argument("--traces", type=Path, default=REPO.parent / "shared" / "traces")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--only", help="only the traces whose name contains this")
    args = ap.parse_args(argv)
    loaded = policyfile.load(args.policies or [REPO / "policies"])
    policies = [p for p in loaded if any(isinstance(r, PredictiveRule) for r in p.rules)]
    if not policies:
        print("no policy with a predictive rule", file=sys.stderr)
        return 2
    seeds = list(range(1, args.seeds + 1))
    met_all = True
    for b in TRACES:
        if args.only and args.only.lower() not in b.name.lower():
            continue
        grid = to_grid(load(args.traces / b.file, b.column), 60.0)
        setup = Setup(per_node=b.per_node)
        results: list[tuple[str, Comparison, float]] = []
        for policy in policies:
            t0 = time.perf_counter()
            c = compare(prepare(in_units(policy, b.per_node)), grid, setup, seeds)
            results.append((policy.name, c, time.perf_counter() - t0))
        first = results[0][1]
        tt, oracle = first.baselines["target_tracking"], first.oracle
        name, best, secs = min(
            results, key=lambda r: (not goal(r[1], tt, oracle)[0], goal(r[1], tt, oracle)[1])
        )
        ok, u, n = goal(best, tt, oracle)
        met_all &= ok
        print(
            f"**{b.name}** (`{b.file}`, column `{b.column}`, per_node {b.per_node:g}; "
            f"mean over seeds 1-{args.seeds})\n"
        )
        print(HEAD)
        for base in ("target_tracking", "step", "threshold"):
            print(row(base, first.baselines[base], tt, oracle))
        for other, c, _ in results:
            if other != name:
                print(row(other, c.policy, tt, oracle))
        print(row(f"**{name}** (best)", best.policy, tt, oracle))
        print(row("oracle", oracle, tt, oracle))
        print(
            f"\nGoal {'MET' if ok else 'NOT MET'}: unmet {u:.2f}x target tracking "
            f"(<= {UNMET_GOAL}), nodes {n:.2f}x the oracle (<= {NODES_GOAL}). "
            f"{len(seeds)} seeds of every policy in {secs:.0f} s.\n"
        )
        sys.stdout.flush()
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(main())

"""``edgescaler replay``: the options, the run over seeds, the table, ``--json`` and ``--plot``."""

from __future__ import annotations

import argparse
import json
import math
from datetime import timedelta
from pathlib import Path

from edgescaler import policyfile
from edgescaler.policy import format_duration, parse_duration
from edgescaler.replay.cluster import JoinDelay
from edgescaler.replay.compare import Comparison, Prepared, compare, prepare
from edgescaler.replay.errors import ReplayError
from edgescaler.replay.scoring import Score
from edgescaler.replay.simulator import Setup
from edgescaler.replay.traces import Grid, load, to_grid

MAX_SEEDS = 100


def _setup(args: argparse.Namespace) -> tuple[Setup, float, list[int]]:
    if not (args.per_node > 0 and math.isfinite(args.per_node)):
        raise ReplayError(f"--per-node: must be a positive number, got {args.per_node:g}")
    try:
        interval = parse_duration(args.interval)
    except ValueError:
        raise ReplayError(f"--interval: {args.interval!r} is not a duration like 1m") from None
    if interval < timedelta(seconds=1):
        raise ReplayError("--interval: must be at least 1s")
    if not 0.0 <= args.failure_rate <= 1.0:
        raise ReplayError(f"--failure-rate: must be within 0..1, got {args.failure_rate:g}")
    if args.initial is not None and args.initial < 0:
        raise ReplayError("--initial: must not be negative")
    idle: timedelta | None = None
    if args.scale_in != "none":
        kind, _, value = args.scale_in.partition(":")
        try:
            idle = parse_duration(value) if kind == "idle" else None
        except ValueError:
            idle = None
        if idle is None or idle < interval:
            raise ReplayError(
                f"--scale-in: {args.scale_in!r}: expected none or idle:DURATION "
                f"(at least the interval), e.g. idle:2h"
            )
    if args.seeds is not None:
        if not 1 <= args.seeds <= MAX_SEEDS:
            raise ReplayError(f"--seeds: must be within 1..{MAX_SEEDS}")
        seeds = list(range(1, args.seeds + 1))
    else:
        seeds = [args.seed]
    setup = Setup(
        per_node=args.per_node,
        join_delay=JoinDelay.parse(args.join_delay),
        failure_rate=args.failure_rate,
        initial=args.initial,
        scale_in_idle=idle,
        seed=seeds[0],
    )
    return setup, interval.total_seconds(), seeds


def _n(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def format_table(c: Comparison, policy_name: str) -> str:
    """The scores side by side, with the policy's ratios to target tracking and the oracle."""
    rows: list[tuple[str, Score]] = [(f"policy {policy_name}", c.policy)]
    rows += [(name, s) for name, s in c.baselines.items()]
    rows.append(("oracle", c.oracle))
    head = ("", "unmet node-min", "unmet min", "nodes added", "node-hours", "calls", "max step")
    widths = [max(len(r[0]) for r in rows) + 2, 15, 10, 12, 12, 7, 9]
    out = [
        "".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    ]
    for name, s in rows:
        cells = [
            name,
            _n(s.unmet_node_minutes),
            _n(s.unmet_minutes),
            _n(s.nodes_added),
            _n(s.node_hours),
            _n(s.scale_out_calls),
            _n(s.largest_step),
        ]
        out.append(
            "".join(
                c_.rjust(w) if i else c_.ljust(w)
                for i, (c_, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    tt = c.baselines.get("target_tracking")
    ratios = []
    if tt is not None and tt.unmet_node_minutes:
        ratios.append(
            f"unmet {c.policy.unmet_node_minutes / tt.unmet_node_minutes:.2f}x target tracking"
        )
    if c.oracle.nodes_added:
        ratios.append(f"nodes {c.policy.nodes_added / c.oracle.nodes_added:.2f}x the oracle")
    if ratios:
        out.append("policy: " + ", ".join(ratios))
    return "\n".join(out)


def describe(grid: Grid, setup: Setup, seeds: list[int], prepared: Prepared) -> str:
    t = grid.trace
    span = timedelta(seconds=grid.interval * len(grid))
    seed = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {seeds[0]}-{seeds[-1]}"
    scale_in = (
        "none" if setup.scale_in_idle is None else f"idle:{format_duration(setup.scale_in_idle)}"
    )
    lines = [
        f"replay of {prepared.policy.name} on {t.source} ({t.column}), per node {setup.per_node:g}",
        f"{len(grid):,} points of {format_duration(timedelta(seconds=grid.interval))} "
        f"({format_duration(span)}; {grid.gaps:,} gaps, never read as zero), join delay "
        f"{setup.join_delay}, failure rate {setup.failure_rate:g}, scale-in {scale_in}, {seed}",
    ]
    lines += [f"note: {d}" for d in prepared.dropped]
    for i, rule in enumerate(prepared.policy.rules):
        per = getattr(rule, "target_per_node", None)
        if per is not None and not math.isclose(per, setup.per_node):
            lines.append(
                f"note: rule {i} counts {per:g} per node but --per-node is {setup.per_node:g}: "
                f"the policy and the scores count nodes differently"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """The ``replay`` verb; errors are EdgescalerError (the CLI prints one line, exit 2)."""
    setup, interval, seeds = _setup(args)
    path = Path(args.policy)
    if not path.is_file():
        raise ReplayError(f"--policy: {path}: no such file (give one policy file)")
    policy = policyfile.load([path])[0]
    prepared = prepare(policy, args.metric, args.utilisation_metric)
    grid = to_grid(load(args.trace, args.column), interval)
    if args.plot:  # before the simulation, not after it
        from edgescaler.replay import plot

        plot.check_output(Path(args.plot))
    result = compare(prepared, grid, setup, seeds, record=bool(args.plot))
    if args.plot:
        plot.draw(result, grid, setup, prepared.policy, Path(args.plot))
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(describe(grid, setup, seeds, prepared))
        print()
        print(format_table(result, prepared.policy.name))
        if args.plot:
            print(f"plot: {args.plot}")
    return 0

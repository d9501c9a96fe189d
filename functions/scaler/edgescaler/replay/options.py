"""``edgescaler replay``'s options: argparse only, so that building the CLI's parser imports
nothing of the replay (its simulator, the pipeline and pydantic cost ~0.2 s to every command)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", required=True, metavar="FILE", help="load trace (CSV or JSON)")
    p.add_argument("--policy", required=True, metavar="FILE", help="the policy file to replay")
    p.add_argument(
        "--per-node", required=True, type=float, metavar="N", help="load one node serves"
    )
    p.add_argument("--column", metavar="NAME", help="the trace's value column")
    p.add_argument(
        "--metric", metavar="NAME", help="the policy metric the trace is (default: rule 0's)"
    )
    p.add_argument(
        "--utilisation-metric",
        metavar="NAME",
        help="a policy metric fed with load / (ready nodes x per-node), in %%",
    )
    p.add_argument("--interval", default="1m", help="replay step (default 1m)")
    p.add_argument(
        "--join-delay", default="5m-20m", help="node join delay: 10m or 5m-20m (default)"
    )
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--seeds", type=int, metavar="N", help="mean over seeds 1..N")
    p.add_argument("--initial", type=int, metavar="N", help="initial nodes (default: demand)")
    p.add_argument("--failure-rate", type=float, default=0.0, help="share of failing scale-outs")
    p.add_argument(
        "--scale-in",
        default="none",
        metavar="none|idle:DURATION",
        help="none (default): nodes stay; idle:2h: an external reclaim of nodes idle 2h",
    )
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="draw the replay (needs matplotlib)")

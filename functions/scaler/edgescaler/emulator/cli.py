"""``edgescaler emulator`` and ``python -m edgescaler.emulator``: serve until interrupted.

Declaring the options is cheap: this module imports only :mod:`.config` at the top; the server,
the world and the signature verifier (and with them httpx and ``http.server``) are imported by
:func:`run_cli` when an emulator is actually started, so ``edgescaler validate`` does not pay
for them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from edgescaler.emulator.config import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_CLUSTER_ID,
    ENV_PREFIX,
    ClusterSpec,
    EmulatorConfig,
    load_scenario,
)


def _port(text: str) -> int:
    """argparse type: a TCP port, 0..65535 (70000 raised OverflowError at bind)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text[:20]!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be within 0..65535, got {value}")
    return value


def _cluster_arg(text: str) -> tuple[str, int]:
    cluster_id, sep, count = text.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", cluster_id):
        raise argparse.ArgumentTypeError(f"invalid cluster id {cluster_id!r}")
    if not sep:
        return cluster_id, ClusterSpec().edge_workers
    if not count.isdigit():
        raise argparse.ArgumentTypeError(f"EDGE_WORKERS must be a number >= 0, got {count!r}")
    return cluster_id, int(count)


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edgescaler emulator`` (and ``python -m edgescaler.emulator``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="port; 0 picks a free one (default)")
    parser.add_argument(
        "--task-delay",
        type=_seconds_arg,
        default=0.0,
        help="seconds until a scale-out task succeeds",
    )
    parser.add_argument(
        "--join-delay", type=_seconds_arg, default=0.0, help="seconds until new nodes are running"
    )
    parser.add_argument(
        "--cluster",
        dest="clusters",
        action="append",
        type=_cluster_arg,
        metavar="ID[:EDGE_WORKERS]",
        help=f"a cluster to serve (repeatable; default {DEFAULT_CLUSTER_ID} with 2 edge workers)",
    )
    parser.add_argument(
        "--access-key-id",
        default=None,
        help=f"accepted access key id "
        f"(default ${ENV_PREFIX}ACCESS_KEY_ID or {DEFAULT_ACCESS_KEY_ID})",
    )
    parser.add_argument(
        "--access-key-secret",
        default=None,
        help=f"accepted secret (default ${ENV_PREFIX}ACCESS_KEY_SECRET or the built-in fake; "
        "prefer the variable: command lines are visible to other users)",
    )
    parser.add_argument(
        "--security-token",
        default=None,
        help=f"require this STS token (default ${ENV_PREFIX}SECURITY_TOKEN; none)",
    )
    parser.add_argument(
        "--scenario", metavar="FILE", help="Prometheus load scenario, YAML or JSON list of steps"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of probabilistic faults")
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> EmulatorConfig:
    """Build the configuration from parsed options, falling back to ``EDGESCALER_EMULATOR_*``."""
    clusters = {
        cluster_id: ClusterSpec(edge_workers=edge)
        for cluster_id, edge in (
            args.clusters or [(DEFAULT_CLUSTER_ID, ClusterSpec().edge_workers)]
        )
    }
    return EmulatorConfig(
        access_key_id=args.access_key_id
        or env.get(f"{ENV_PREFIX}ACCESS_KEY_ID")
        or DEFAULT_ACCESS_KEY_ID,
        access_key_secret=args.access_key_secret
        or env.get(f"{ENV_PREFIX}ACCESS_KEY_SECRET")
        or DEFAULT_ACCESS_KEY_SECRET,
        security_token=args.security_token or env.get(f"{ENV_PREFIX}SECURITY_TOKEN") or None,
        clusters=clusters,
        task_delay=args.task_delay,
        join_delay=args.join_delay,
        scenario=load_scenario(args.scenario) if args.scenario else [],
        seed=args.seed,
    )


def run_cli(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM. The first stdout line is ``emulator listening on URL``."""
    try:
        config = config_from_args(args, os.environ)
    except (OSError, ValueError) as err:
        print(f"emulator: {err}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=getattr(logging, args.log_level, logging.INFO),
            stream=sys.stderr,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    from edgescaler.emulator.routes import Emulator  # the server: only when one is started

    emulator = Emulator(config, host=args.host, port=args.port)
    try:
        emulator.start()
    except OSError as err:
        print(f"emulator: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not possible outside the main thread; the caller handles signals there.
        with contextlib.suppress(ValueError):
            previous[signum] = signal.signal(signum, _on_signal)
    print(f"emulator listening on {emulator.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgescaler.emulator",
        description="Serve a local CS API emulator and scripted Prometheus.",
    )
    add_cli_arguments(parser)
    return run_cli(parser.parse_args(argv))

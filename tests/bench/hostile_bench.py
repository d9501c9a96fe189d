"""Issue 6's measurements, after the fix: how long a run lasts and how much memory it takes when
the network misbehaves. Prints a table; asserts nothing (speed is measured, not tested).

    .venv/bin/python -m tests.bench.hostile_bench
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgescaler.handler import handle
from tests.support.prometheus import FaultServer
from tests.support.world import build_world


def timed(fn) -> tuple[float, dict]:  # type: ignore[no-untyped-def,type-arg]
    start = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):  # the function's JSON log lines
        report = fn()
    return time.monotonic() - start, report


def trickle() -> str:
    with FaultServer() as prom, tempfile.TemporaryDirectory() as tmp:
        prom.trickle(1.0)  # one byte a second, for ever
        with build_world(Path(tmp), prometheus_url=prom.url) as w:
            took, rep = timed(lambda: handle(b"", None, env=w.env))
            (o,) = rep["outcomes"]
            return f"{took:6.1f} s  {o['outcome']} ({o['reason'][:70]}...) posts={len(w.posts())}"


def late_answers() -> str:
    with tempfile.TemporaryDirectory() as tmp, build_world(Path(tmp)) as w:
        for action in ("DescribeClusterNodes", "DescribeClusterTasks", "DescribeTaskInfo"):
            w.emulator.inject(action, "slow", count=50, seconds=30)
        took, rep = timed(lambda: handle(b"", None, env=w.env))
        (o,) = rep["outcomes"]
        return f"{took:6.1f} s  {o['outcome']} posts={len(w.posts())}"


def many_policies_prometheus_down(n: int) -> str:
    with FaultServer() as prom, tempfile.TemporaryDirectory() as tmp:
        prom.hang()
        names = [f"edge-{i:03d}" for i in range(n)]
        with build_world(Path(tmp), names, prometheus_url=prom.url) as w:
            took, rep = timed(lambda: handle(b"", None, env=w.env))
            counts: dict[str, int] = {}
            for o in rep["outcomes"]:
                counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
            return f"{took:6.1f} s  {counts} queries={len(prom.requests)}"


# VmHWM, not ru_maxrss: on Linux ru_maxrss of an exec'd child still counts the parent's pages it
# was forked with; VmHWM starts afresh with the new program.
CHILD = """
import contextlib, io, json, os
from edgescaler.handler import handle
env = json.loads(os.environ["BENCH_ENV"])
with contextlib.redirect_stdout(io.StringIO()):
    rep = handle(b"", None, env=env)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"outcome": rep["outcomes"][0]["outcome"], "peak_mb": int(hwm.split()[1]) / 1024}))
"""


def huge_answer() -> str:
    series = [
        {"metric": {"instance": f"edge-{i}", "job": "node"}, "value": [1795000000, "1"]}
        for i in range(200_000)
    ]
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}})
    with FaultServer() as prom, tempfile.TemporaryDirectory() as tmp:
        prom.reply(200, body)
        with build_world(Path(tmp), prometheus_url=prom.url) as w:
            # The run in a process of its own, so that its peak RSS is the scaler's alone.
            proc = subprocess.run(
                [sys.executable, "-c", CHILD],
                env={**os.environ, "BENCH_ENV": json.dumps(w.env)},
                capture_output=True,
                text=True,
                timeout=300,
            )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return (
        f"{data['outcome']}; a {len(body) / 1e6:.0f} MB answer; peak RSS {data['peak_mb']:.0f} MiB"
    )


def main() -> None:
    print("issue 6 figures, after the fix (defaults: deadline 96 s, Prometheus timeout 5 s)")
    print(f"Prometheus answer trickled 1 byte/s      {trickle()}")
    print(f"every CS answer 30 s late                {late_answers()}")
    print(f"100 policies, Prometheus unresponsive    {many_policies_prometheus_down(100)}")
    print(f"200 policies, Prometheus unresponsive    {many_policies_prometheus_down(200)}")
    print(f"200,000-series Prometheus answer         {huge_answer()}")


if __name__ == "__main__":
    main()

"""What does ``edgescaler validate`` pay at import? Prints the numbers behind issue 7 item 1.

    .venv/bin/python -m tests.bench.cli_import [--runs 9] [ARGS...]   (default: validate policies/)

Runs ``python -X importtime -m edgescaler.cli ARGS`` ``--runs`` times and prints the median of
the summed top-level cumulative import times, the median wall time of the whole command, and
whether the emulator, ``http.server`` and ``httpx`` were imported at all. Numbers, not asserts:
the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

# The emulator server (before the split: the whole cloud/emulator.py), its HTTP server, httpx.
WATCH = ("edgescaler.emulator.routes", "edgescaler.cloud.emulator", "http.server", "httpx")


def one_run(args: Sequence[str]) -> tuple[float, float, set[str]]:
    """(import µs summed over top-level modules, wall seconds, watched modules seen)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edgescaler.cli", *args],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    total = 0
    seen: set[str] = set()
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative, name = line[len("import time:") :].split("|")
        if not name.startswith("  "):  # nesting is shown by two more spaces per level
            total += int(cumulative)
        bare = name.strip()
        seen.update(w for w in WATCH if bare == w or bare.startswith(w + "."))
    return total, wall, seen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("args", nargs="*", default=["validate", "policies/"])
    opts = parser.parse_args(argv)
    imports, walls = [], []
    seen: set[str] = set()
    for _ in range(opts.runs):
        us, wall, got = one_run(opts.args)
        imports.append(us)
        walls.append(wall)
        seen |= got
    imports_ms = statistics.median(imports) / 1000
    wall_ms = statistics.median(walls) * 1000
    print(f"edgescaler {' '.join(opts.args)}  ({opts.runs} runs, medians)")
    print(f"  imports (-X importtime, top-level cumulative): {imports_ms:.0f} ms")
    print(f"  wall time of the command:                       {wall_ms:.0f} ms")
    print(f"  imported: {', '.join(sorted(seen)) or 'none of ' + ', '.join(WATCH)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

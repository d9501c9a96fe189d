"""How long a run of N policies takes as deployed: README's sizing figures.

    .venv/bin/python -m tests.bench.sizing [--vcpu 0.35] [--policies 50 200 500] [--runs 2]

For each N, ``--runs`` handler runs of N policies shaped like ``tests.bench.perf``'s (3
Prometheus queries each, 100 ms added to every Prometheus and CS answer, every tenth cluster
scaling out: a timer's typical run), each in a fresh CPython 3.10 process running the unpacked
function package under a CPU quota of ``--vcpu`` (``template.yml`` gives the function 0.35; needs
root and a writable ``/sys/fs/cgroup``), as a warm instance (one other policy run first).
Prints wall time, CPU, CPU per policy and peak RSS. Numbers, not asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.bench import perf


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--vcpu", type=float, default=0.35)
    parser.add_argument("--policies", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", default=str(perf.REPO / "build" / "bench"))
    opts = parser.parse_args(argv)
    if any(n < 1 for n in opts.policies) or opts.runs < 1:
        parser.error("--policies and --runs must be at least 1")
    out = Path(opts.out).resolve()
    code = out / "code"
    if not (code / "index.py").is_file():
        perf.build(out)
    scratch = out / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    prefix = perf.cpu_quota(opts.vcpu)
    warm = perf.write_policies(scratch / "sizing-warm", 1, first=perf.WARM)
    print(f"typical runs (every tenth cluster scales out), 100 ms per answer, {opts.vcpu:g} vCPU")
    for count in opts.policies:
        policies = perf.write_policies(scratch / f"sizing-{count}", count)
        walls: list[float] = []
        cpus: list[float] = []
        rss = 0
        for _ in range(opts.runs):
            with perf.world(count, perf.LATENCY, scale_every=10) as emu:
                result = perf.run_handler(code, policies, emu, scratch, warm_up=warm, prefix=prefix)
            perf.expect_scaled(result, count, scale_every=10)
            walls.append(float(result["handler"]))
            cpus.append(float(result["cpu"]))
            rss = max(rss, int(result["rss_kib"]))
        cpu = statistics.median(cpus)
        print(
            f"{count:>5} policies: wall {', '.join(f'{w:.2f}' for w in walls)} s; "
            f"CPU {cpu:.2f} s ({cpu / count * 1e3:.1f} ms a policy); peak RSS {rss / 1024:.0f} MiB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

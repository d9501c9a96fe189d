"""CPU per GET when many threads share httpx clients: the numbers behind ``acs.SHARDS``.

    .venv/bin/python -m tests.bench.pool_shards [--threads 150] [--latency 0.1] [--rounds 3]

``--threads`` threads each send one GET to the emulator's Prometheus (every answer held back
``--latency`` seconds, as a far server would), through :class:`edgescaler.cloud.acs.ClientShards`
of 1, 4, 16 and ``--threads`` clients, in a CPython 3.10 running the unpacked function package
(``tests.bench.perf``'s build, ``build/bench/code``; built first when missing). Prints the wall
time of each round and the process CPU per GET. Numbers, not asserts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tests.bench import perf

CHILD = """
import resource, sys, time
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, sys.argv[1])
import httpx
from edgescaler.cloud.acs import ClientShards
url, threads, rounds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
queries = sys.argv[5:]
for count in sorted({1, 4, 16, threads}):
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    shards = ClientShards(lambda: httpx.Client(limits=limits), count)

    def one(i):
        query = queries[i % len(queries)]
        answer = shards.get().get(url + "/api/v1/query", params={"query": query})
        assert answer.json()["status"] == "success"

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(threads)))  # connections opened, threads started
        rows = []
        for _ in range(rounds):
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            list(pool.map(one, range(threads)))
            r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
            cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
            rows.append(f"{wall * 1e3:.0f} ms wall, {cpu / threads * 1e3:.2f} ms CPU/GET")
    shards.close()
    print(f"{count:>4} client(s): " + "; ".join(rows))
"""


def main(argv: Sequence[str] | None = None) -> int:
    return perf.get_bench(
        CHILD,
        __doc__,
        "{threads} threads, one GET each, {latency_ms:g} ms per answer, "
        "Python 3.10 from the package",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())

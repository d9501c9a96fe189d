"""acs.ClientShards: a thread keeps one client; at most ``count`` are built; close() closes all."""

from __future__ import annotations

import threading

import httpx
import pytest

from edgescaler.cloud.acs import ClientShards


def counting(built: list[httpx.Client]) -> ClientShards:
    def build() -> httpx.Client:
        client = httpx.Client()
        built.append(client)
        return client

    return ClientShards(build, 4)


def test_a_thread_keeps_its_client_and_threads_are_spread_round_robin() -> None:
    built: list[httpx.Client] = []
    shards = counting(built)
    barrier = threading.Barrier(10)
    seen: dict[int, list[httpx.Client]] = {}

    def worker(n: int) -> None:
        barrier.wait()  # all at once: the lock must hand out slots and clients exactly once
        seen[n] = [shards.get() for _ in range(3)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len({id(c) for c in clients}) == 1 for clients in seen.values())
    assert len(built) == 4  # never more than count
    users = [sum(1 for clients in seen.values() if clients[0] is c) for c in built]
    assert sorted(users) == [2, 2, 3, 3]  # 10 threads over 4 clients
    shards.close()


def test_close_closes_every_client_built_and_a_later_get_builds_anew() -> None:
    built: list[httpx.Client] = []
    shards = counting(built)
    first = shards.get()
    shards.close()
    assert first.is_closed
    again = shards.get()
    assert again is not first and not again.is_closed and len(built) == 2
    shards.close()


def test_count_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ClientShards(httpx.Client, 0)

"""Exactly-once under a race: 16 processes, each running the FC handler in-process, against one
emulator and ONE store, released together by a barrier, round after round.

Round r (0..19) is a manual event ``{"policies": ["race-r"]}`` for its own cluster: no
``request_id``, so no event key, so event dedup cannot save us; only the create-only claim can.
The last round delivers ONE timer event 16 times at once: there the event key must.

Per round: exactly one ScaleOutCluster at the emulator, exactly one ``scaled`` report carrying
that task id, 15 reports ``cooling_down``/``in_flight`` naming the winner's activity, one
activity in the store with the task id.

Before the race, the same 16 processes open brand-new SQLite stores all at once (what 16
concurrent first invocations do): none of them may fail. After it, the same race runs against
the S3 store (``EDGESCALER_STORE=s3://...`` on moto, ``tests/support/s3.py``) and against the OSS
store (``EDGESCALER_STORE=oss://...``: OSS's dialect, ``x-oss-forbid-overwrite`` and signature V4,
rendered over the same moto by ``tests/support/oss.py``).
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgescaler.activity import Activity, Status
from edgescaler.actuator import Context, ScaleOutActuator
from edgescaler.decision import decide
from edgescaler.passwords import Passwords
from edgescaler.store.memory import MemoryStore
from tests.support import builders
from tests.support.world import KEY_SECRET, PASSWORD, World, build_world, race_worker

WORKERS = 16
ROUNDS = 20
FRESH_STORES = 24  # rounds in which all workers open a store file that does not exist yet
TIMER_POLICY = "race-timer"
TIMER_EVENT = {
    "triggerName": "race-every-minute",
    "triggerTime": "2026-11-27T07:05:00Z",
    "payload": json.dumps({"policies": [TIMER_POLICY]}),
}
LOSERS = {"cooling_down", "in_flight"}
# Load 30 at 2 per node wants 13 more than the 2 nodes there, clamped to +3 by max_step: the
# winner's 3 new nodes do not satisfy it, so every loser still wants +3 and must be stopped by
# the guard or the claim (with load 10 a loser that reads capacity after the winner's POST would
# stop at no_change instead, before ever reaching the claim).
RACE_WORLD: dict[str, Any] = {
    "load": 30.0,
    "max_step": 3,
    "cooldown": "10m",
    "separate_dirs": True,
}

Rounds = list[tuple[dict[str, str], str | None]]


def policy_names() -> list[str]:
    return [f"race-{r}" for r in range(ROUNDS)] + [TIMER_POLICY]


def race_rounds(world: World) -> Rounds:
    """(env, event) per round; each policy file sits in its own directory so that a run parses
    only the file its event names (20 files, one store, one emulator all the same)."""
    manual: Rounds = [
        (world.env_for(f"race-{r}"), json.dumps({"policies": [f"race-{r}"]})) for r in range(ROUNDS)
    ]
    return [*manual, (world.env_for(TIMER_POLICY), json.dumps(TIMER_EVENT))]


def fresh_store_rounds(world: World) -> Rounds:
    return [
        ({**world.env, "EDGESCALER_STORE": f"sqlite:///{world.root}/fresh/{n}/new.db"}, None)
        for n in range(FRESH_STORES)
    ]


@dataclass
class Race:
    world: World
    backend: str
    first: int  # index of race round 0 among all rounds the workers ran
    # round index -> one compact report per worker (shared by every race of a pool)
    reports: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    layer_codes: dict[str, int] = field(default_factory=dict)  # OSS error codes answered

    def round(self, rnd: int) -> list[dict[str, Any]]:
        """The workers' reports of race round ``rnd`` (ROUNDS: the timer round)."""
        return self.reports[self.first + rnd]

    def outcomes(self, rnd: int) -> list[dict[str, Any]]:
        out = []
        for rep in self.round(rnd):
            assert rep["error"] is None, rep
            (o,) = rep["outcomes"]
            out.append(o)
        return out

    def errors(self) -> list[tuple[int, str]]:
        """(round index, message) of every run-level error and ``error`` outcome."""
        out = []
        for idx in range(self.first, self.first + ROUNDS + 1):
            reps = self.reports[idx]
            for rep in reps:
                if rep["error"]:
                    out.append((idx, rep["error"]))
                out += [(idx, o["reason"]) for o in rep["outcomes"] if o["outcome"] == "error"]
        return out

    def summary(self) -> str:
        winners: Counter[int] = Counter()
        duplicates = 0
        for rnd in range(ROUNDS):
            cluster = self.world.clusters[f"race-{rnd}"]
            outs = [o for rep in self.round(rnd) for o in rep["outcomes"]]
            winners[sum(1 for o in outs if o["outcome"] == "scaled")] += 1
            duplicates += max(0, len(self.world.posts(cluster)) - 1)
        timer = Counter(o["outcome"] for rep in self.round(ROUNDS) for o in rep["outcomes"])
        timer_posts = len(self.world.posts(self.world.clusters[TIMER_POLICY]))
        return (
            f"race[{self.backend}]: {WORKERS} processes x {ROUNDS} rounds; "
            f"rounds by number of winners {dict(sorted(winners.items()))}; "
            f"duplicate POSTs {duplicates}; timer x{WORKERS}: {dict(sorted(timer.items()))}, "
            f"POSTs {timer_posts}; errors {len(self.errors())}"
        )


@dataclass
class Pool:
    """What one run of the worker processes produced: reports by round index, timings."""

    reports: dict[int, list[dict[str, Any]]]
    wall: float
    spawn: float
    done_at: dict[int, float]  # round index -> seconds from start to its last report

    def span(self, first: int, count: int) -> float:
        """Seconds the rounds ``first .. first+count-1`` took, end to end."""
        before = self.done_at[first - 1] if first > 0 else self.spawn
        return self.done_at[first + count - 1] - before


def run_workers(rounds: Rounds) -> Pool:
    """Spawn the workers, run every round, collect every report (fails fast on a crash or a
    silent worker)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    reports: dict[int, list[dict[str, Any]]] = {}
    done_at: dict[int, float] = {}
    started = time.monotonic()
    procs = [
        ctx.Process(target=race_worker, args=(w, rounds, barrier, results), daemon=True)
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        first: float | None = None
        for _ in range(WORKERS * len(rounds)):
            try:
                worker, idx, data = results.get(timeout=120)
            except queue.Empty:
                pytest.fail("a race worker went silent for 120 s")
            if "crash" in data:
                pytest.fail(f"worker {worker} crashed in round {idx}:\n{data['crash']}")
            if first is None:
                first = time.monotonic()
            reports.setdefault(idx, []).append(data)
            done_at[idx] = time.monotonic() - started
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    text = json.dumps(reports)
    assert PASSWORD not in text and KEY_SECRET not in text
    # The first result arrives right after the first round: mostly spawn + imports.
    return Pool(reports, time.monotonic() - started, (first or started) - started, done_at)


def report_race(race: Race) -> None:
    print("\n" + race.summary())
    for idx, message in race.errors()[:5]:
        print(f"  round {idx - race.first}: {message}")


@pytest.fixture(scope="module")
def races(
    tmp_path_factory: pytest.TempPathFactory, moto_s3: Any, oss: Any
) -> Iterator[dict[str, Race]]:
    """One pool of 16 processes runs, in order: FRESH_STORES rounds opening new SQLite stores,
    the race on SQLite, the same race on the S3 store (moto), the same race on the OSS store
    (the OSS layer over moto). One pool, because spawning 16 interpreters is a good part of the
    time. The workers inherit the fake AWS credentials that ``moto_s3`` puts in ``os.environ``;
    the OSS store is signed with the world's ``ALIBABA_CLOUD_*`` key, which the layer learns."""
    from edgescaler.store.oss import OSSStore
    from edgescaler.store.s3 import S3Store
    from tests.support.world import KEY_ID

    prefix = moto_s3.new_prefix()
    s3_env = {
        "EDGESCALER_STORE": f"s3://{moto_s3.bucket}/{prefix}",
        "EDGESCALER_S3_ENDPOINT": moto_s3.endpoint,
    }

    def open_s3() -> S3Store:
        return S3Store(moto_s3.bucket, prefix, endpoint_url=moto_s3.endpoint)

    oss.layer.accounts[KEY_ID] = (KEY_SECRET, None)
    oss_prefix = oss.new_prefix()
    oss_env = {
        "EDGESCALER_STORE": f"oss://{oss.bucket}/{oss_prefix}",
        "EDGESCALER_OSS_ENDPOINT": oss.url,
        "EDGESCALER_OSS_REGION": oss.region,
    }

    def open_oss() -> OSSStore:
        return OSSStore(
            oss.bucket,
            oss_prefix,
            credentials=oss.credentials(),
            endpoint=oss.url,
            region=oss.region,
            probe=False,
        )

    with ExitStack() as stack:
        sqlite_world = stack.enter_context(
            build_world(tmp_path_factory.mktemp("race-sqlite"), policy_names(), **RACE_WORLD)
        )
        s3_world = stack.enter_context(
            build_world(
                tmp_path_factory.mktemp("race-s3"),
                policy_names(),
                extra_env=s3_env,
                open_store=open_s3,
                **RACE_WORLD,
            )
        )
        oss_world = stack.enter_context(
            build_world(
                tmp_path_factory.mktemp("race-oss"),
                policy_names(),
                extra_env=oss_env,
                open_store=open_oss,
                **RACE_WORLD,
            )
        )
        fresh = fresh_store_rounds(sqlite_world)
        on_sqlite = race_rounds(sqlite_world)
        on_s3 = race_rounds(s3_world)
        on_oss = race_rounds(oss_world)
        pool = run_workers([*fresh, *on_sqlite, *on_s3, *on_oss])
        first_oss = len(fresh) + len(on_sqlite) + len(on_s3)
        out = {
            "sqlite": Race(sqlite_world, "sqlite", len(fresh), pool.reports),
            "s3": Race(s3_world, "s3", len(fresh) + len(on_sqlite), pool.reports),
            "oss": Race(oss_world, "oss", first_oss, pool.reports),
        }
        # Every OSS request of the race passed the layer's signature check, and no create-only
        # answer other than FileAlreadyExists was seen.
        codes = Counter(seen.code for seen in oss.layer.seen if seen.code)
        out["oss"].layer_codes = dict(codes)
        for race in out.values():
            report_race(race)
            print(f"  {ROUNDS + 1} rounds in {pool.span(race.first, ROUNDS + 1):.1f}s")
        print(f"  oss layer error codes answered: {out['oss'].layer_codes}")
        print(
            f"pool: {WORKERS} spawned processes, {len(pool.reports)} rounds in all, "
            f"wall {pool.wall:.1f}s (spawn+warm-up+first round {pool.spawn:.1f}s)"
        )
        yield out


def check_manual_rounds(race: Race) -> None:
    world = race.world
    for rnd in range(ROUNDS):
        cluster = world.clusters[f"race-{rnd}"]
        outs = race.outcomes(rnd)
        assert len(outs) == WORKERS
        posts = world.posts(cluster)
        assert len(posts) == 1, f"round {rnd}: {len(posts)} ScaleOutCluster calls"
        assert posts[0]["count"] == 3

        winners = [o for o in outs if o["outcome"] == "scaled"]
        assert len(winners) == 1, f"round {rnd}: {Counter(o['outcome'] for o in outs)}"
        (win,) = winners
        assert win["task_id"] == posts[0]["task_id"] and win["add"] == 3
        seq = win["activity_seq"]
        assert seq == 1
        for o in outs:
            if o is win:
                continue
            assert o["outcome"] in LOSERS, (rnd, o)
            assert f"#{seq} " in o["reason"], (rnd, o["reason"])
            assert o["activity_seq"] == seq and o["task_id"] is None

        (act,) = world.activities(cluster)
        assert (act.seq, act.task_id, act.add) == (seq, win["task_id"], 3)
        # a loser that read the log after the winner recorded the task may have seen it done
        assert act.status in (Status.SUBMITTED, Status.SUCCEEDED)
    world.check_invariant()


def check_timer_round(race: Race) -> None:
    world = race.world
    outs = race.outcomes(ROUNDS)
    counts = Counter(o["outcome"] for o in outs)
    assert counts == {"scaled": 1, "duplicate_event": WORKERS - 1}, counts
    (win,) = [o for o in outs if o["outcome"] == "scaled"]
    (post,) = world.posts(world.clusters[TIMER_POLICY])
    assert post["task_id"] == win["task_id"]
    (act,) = world.activities(world.clusters[TIMER_POLICY])
    assert act.task_id == win["task_id"]
    assert act.event_key == "timer:race-every-minute:2026-11-27T07:05:00Z"
    store = world.store()
    try:
        assert store.event(act.event_key) is not None
    finally:
        store.close()


def test_sixteen_processes_creating_one_new_sqlite_store_at_once(races: dict[str, Race]) -> None:
    """Switching a new file to WAL could fail at once with "database is locked" (no busy wait)
    in ~1 of 3-6 such rounds before SQLiteStore retried it; 24 rounds miss that ~1% of runs."""
    reports = races["sqlite"].reports
    errors = [(idx, rep["error"]) for idx in range(FRESH_STORES) for rep in reports[idx]]
    errors = [e for e in errors if e[1]]
    assert all(len(reports[idx]) == WORKERS for idx in range(FRESH_STORES))
    assert errors == [], f"{len(errors)} failed opens in {len({i for i, _ in errors})} rounds"


@pytest.mark.parametrize("backend", ["sqlite", "s3", "oss"])
def test_sixteen_processes_twenty_rounds_one_scale_out_per_round(
    races: dict[str, Race], backend: str
) -> None:
    race = races[backend]
    assert race.errors() == []
    check_manual_rounds(race)


@pytest.mark.parametrize("backend", ["sqlite", "s3", "oss"])
def test_one_timer_event_delivered_sixteen_times_at_once(
    races: dict[str, Race], backend: str
) -> None:
    check_timer_round(races[backend])


def test_every_oss_request_of_the_race_was_signed_right_and_lost_only_as_file_already_exists(
    races: dict[str, Race],
) -> None:
    codes = races["oss"].layer_codes
    assert codes.get("FileAlreadyExists", 0) > 0  # the race really raced on the claim
    assert set(codes) <= {"FileAlreadyExists", "NoSuchKey"}, codes


def test_two_policies_of_one_cluster_in_one_event_scale_it_once(tmp_path: Path) -> None:
    """The pipeline evaluates the policies of one run concurrently (threads): two policies of
    the same cluster race for its claim inside one invocation. Five clusters, five such runs."""
    pairs = {f"pair-{n}": f"cpair{n:04d}000000000000" for n in range(5)}
    policies = {
        **{f"{p}-a": c for p, c in pairs.items()},
        **{f"{p}-b": c for p, c in pairs.items()},
    }
    with build_world(tmp_path, policies, load=30.0, max_step=3) as world:
        for pair, cluster in pairs.items():
            report = world.run({"policies": [f"{pair}-a", f"{pair}-b"]})
            outs = sorted(report["outcomes"], key=lambda o: o["outcome"] != "scaled")
            assert outs[0]["outcome"] == "scaled", outs
            assert outs[1]["outcome"] in LOSERS and "#1 " in outs[1]["reason"], outs
            (post,) = world.posts(cluster)
            assert post["task_id"] == outs[0]["task_id"]
            assert len(world.activities(cluster)) == 1
        world.check_invariant()


class _RecordingCloud:
    """A ScaleOutAPI that only counts the POSTs it would have sent."""

    def __init__(self) -> None:
        self.bodies: list[Mapping[str, Any]] = []

    def scale_out(self, cluster_id: str, body: Mapping[str, Any]) -> Any:
        self.bodies.append(body)
        raise AssertionError("a claim made on a stale snapshot must not reach ScaleOutCluster")


def test_a_claim_on_a_stale_empty_snapshot_loses_to_the_run_that_appended() -> None:
    """The race above, frozen: this run read an empty log, another run then claimed #1. The
    claim must be #1 (the snapshot's last + 1) and lose, not #2 after a fresh read."""
    policy = builders.policy()
    store = MemoryStore()
    winner = Activity(
        cluster_id=policy.cluster_id,
        seq=1,
        policy=policy.name,
        add=3,
        status=Status.CLAIMED,
        created_at=builders.NOW,
        updated_at=builders.NOW,
    )
    store.append(winner)
    cloud = _RecordingCloud()
    actuator = ScaleOutActuator(
        store, lambda region: cloud, Passwords({"ENS_LOGIN_PASSWORD": "Stale-Snapsh0t"})
    )
    decision = decide(policy, 2, builders.readings(load=10))
    assert decision.add == 3
    ctx = Context(now=builders.NOW, trigger="manual", event_key=None, lookback=builders.NOW)
    out = actuator.execute(policy, decision, [], ctx)  # [] is what this run read
    assert out.outcome in LOSERS and "lost the claim for #1" in out.reason, out
    assert cloud.bodies == [] and [a.seq for a in store.log(policy.cluster_id)] == [1]

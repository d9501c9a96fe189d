"""A "world" for exactly-once tests: the CS emulator, policy files, one SQLite store, an env.

The handler runs in-process (the FC code path: ``edgescaler.handler.handle``) against the
emulator's signed CS routes and its scripted Prometheus. Time is one clock shared by both sides:
a :class:`FakeClock` (float seconds for the emulator, an aware datetime for ``handle(now=...)``,
which also signs the CS requests) or the real wall clock for the multi-process race.

Every policy needs +3 nodes: the emulator's clusters start with 2 ENS workers, the scripted
``edge_load`` is 10 and the policy targets 2 per node: ceil(10 / 2) - 2 = 3.

:meth:`World.check_invariant` is the property every scenario ends with: each ScaleOutCluster the
emulator performed is accounted for by exactly one activity that is not ``rejected``, and every
task id in the log is a real emulator task.

:func:`race_worker` is the body of one spawned process of the concurrency tests; it lives here,
in an importable module, because ``spawn`` pickles the target by reference.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgescaler.activity import Activity
from edgescaler.cloud.credentials import Credentials
from edgescaler.emulator import ClusterSpec, Emulator, EmulatorConfig, ScenarioStep
from edgescaler.guard import ADDED_NOTHING
from edgescaler.sensitive import Secret
from edgescaler.store.base import Store
from edgescaler.store.sqlite import SQLiteStore
from tests.support import builders
from tests.support.clock import FakeClock as _FakeClock

T0 = 1_795_000_000.0  # 2026-11-18T09:46:40Z; whole seconds, as the emulator's dates are
KEY_ID = "LTAIworldKeyId000001"
KEY_SECRET = "world-access-key-secret-0001"  # grepped for in outputs: must never appear
PASSWORD = "W0rld-Test-Passw0rd"  # the ENS password; must never appear either
PASSWORD_ENV = "WORLD_ENS_PASSWORD"
LOAD = "edge_load"
REGION = "cn-hangzhou"


class FakeClock(_FakeClock):
    def __init__(self, start: float = T0) -> None:
        super().__init__(start)


def wall_dt() -> datetime:
    return datetime.now(timezone.utc)


def cluster_id(n: int) -> str:
    return f"cworld{n:08d}0000000000000000000"


def policy_yaml(
    name: str,
    cluster: str,
    *,
    cooldown: str = "10m",
    timeout_mins: int = 60,
    max_step: int = 5,
    max_nodes: int = 40,
    budget: Mapping[str, int] | None = None,
    password_env: str = PASSWORD_ENV,
    query: str = LOAD,
    prometheus_url: str | None = None,
    prometheus_timeout: str | float | None = None,
    kms_secret: str | None = None,
) -> str:
    """A world policy: +3 nodes at the scripted load (target 2 per node). The password comes
    from ``password_env``, or from KMS when ``kms_secret`` is given."""
    prometheus: dict[str, Any] | None = None
    if prometheus_url is not None:
        prometheus = {"url": prometheus_url}
        if prometheus_timeout is not None:
            prometheus["timeout"] = prometheus_timeout
    return builders.policy_yaml(
        name=name,
        cluster_id=cluster,
        region=REGION,
        password_env=None if kms_secret else password_env,
        scale_out={
            "worker_instance_type": "ens.sn1.small",
            "worker_image_id": "m-WORLDIMAGE",
            "worker_system_disk_size": 40,
            "timeout_mins": timeout_mins,
            **({"login_password": {"kms_secret": kms_secret}} if kms_secret else {}),
        },
        limits={"min_nodes": 1, "max_nodes": max_nodes, "max_step": max_step},
        cooldown=cooldown,
        budget=dict(budget) if budget else None,
        prometheus=prometheus,
        metrics={"load": {"query": query}},
        rules=[{"type": "target_tracking", "metric": "load", "target_per_node": 2}],
    )


def credentials() -> Credentials:
    return Credentials(KEY_ID, Secret(KEY_SECRET))


@dataclass
class World:
    emulator: Emulator
    clock: Callable[[], float]
    env: dict[str, str]
    root: Path
    policies: Path
    store_path: Path
    clusters: dict[str, str]  # policy name -> cluster id
    foreign_tasks: set[str] = field(default_factory=set)
    # How the test reads the store (the handler opens its own from EDGESCALER_STORE).
    open_store: Callable[[], Store] | None = None
    # One directory per policy (the handler then parses only the file the event names).
    separate_dirs: bool = False

    # -- running the handler

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=timezone.utc)

    def run(self, event: Mapping[str, Any] | str | bytes | None) -> dict[str, Any]:
        """One invocation through the FC code path; the report as a dict."""
        from edgescaler.handler import handle

        raw = json.dumps(event) if isinstance(event, Mapping) else event
        report = handle(raw, None, env=self.env, now=self.now)
        text = json.dumps(report)
        assert PASSWORD not in text and KEY_SECRET not in text
        return report

    def outcome(self, event: Mapping[str, Any] | str | bytes | None) -> dict[str, Any]:
        """The single outcome of a run that concerns one policy."""
        report = self.run(event)
        assert report["error"] is None, report
        (out,) = report["outcomes"]
        assert isinstance(out, dict)
        return out

    def write_policy(self, name: str, cluster: str, **kw: Any) -> Path:
        folder = self.policy_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.yaml"
        path.write_text(policy_yaml(name, cluster, **kw))
        self.clusters[name] = cluster
        return path

    def policy_dir(self, name: str) -> Path:
        return self.policies / name if self.separate_dirs else self.policies

    def env_for(self, name: str) -> dict[str, str]:
        """The environment of a run concerning policy ``name`` only."""
        return {**self.env, "EDGESCALER_POLICY_DIR": str(self.policy_dir(name))}

    # -- what happened

    def store(self) -> Store:
        if self.open_store is not None:
            return self.open_store()
        return SQLiteStore(self.store_path)

    def activities(self, cluster: str) -> list[Activity]:
        if self.open_store is None and not self.store_path.exists():
            return []
        store = self.store()
        try:
            return store.log(cluster)
        finally:
            store.close()

    def stored_text(self) -> str:
        """Every key and value in the store, as text (what an audit of the store would see)."""
        if self.open_store is None and not self.store_path.exists():
            return ""
        store = self.store()
        try:
            return "\n".join(f"{k} {v.decode('utf-8', 'replace')}" for k, v in store.export())
        finally:
            store.close()

    def posts(self, cluster: str | None = None) -> list[dict[str, Any]]:
        """ScaleOutCluster calls the emulator performed (whatever it answered)."""
        calls = self.emulator.scale_out_calls()
        return [c for c in calls if cluster is None or c["cluster_id"] == cluster]

    def check_invariant(self) -> None:
        """Per cluster: performed POSTs (minus the test's own "foreign" ones) == activities that
        may have created nodes (not rejected or throttled); every activity's task id is an
        emulator task of that cluster, and no task id is claimed by two activities."""
        tasks = {t["task_id"]: t["cluster_id"] for t in self.emulator.state()["tasks"]}
        for cluster in sorted(set(self.clusters.values())):
            acts = self.activities(cluster)
            ours = [p for p in self.posts(cluster) if p["task_id"] not in self.foreign_tasks]
            live = [a for a in acts if a.status not in ADDED_NOTHING]
            assert len(ours) == len(live), (
                f"{cluster}: {len(ours)} POSTs performed but {len(live)} non-rejected activities: "
                f"{[(a.seq, a.status, a.task_id) for a in acts]}"
            )
            with_task = [a.task_id for a in acts if a.task_id]
            assert len(with_task) == len(set(with_task)), f"{cluster}: a task id used twice"
            for tid in with_task:
                assert tasks.get(tid) == cluster, f"{cluster}: task {tid} unknown to the emulator"
            assert not set(with_task) & self.foreign_tasks, f"{cluster}: foreign task adopted"

    def foreign_scale_out(self, cluster: str, count: int = 1, *, foreign: bool = True) -> str:
        """A signed ScaleOutCluster sent by the test itself: as the console would (``foreign``,
        not to be accounted for by the log), or as an invocation that died right after its POST
        went through (``foreign=False``: its claim must account for it)."""
        from edgescaler.cloud.cs import CSClient

        body = {
            "count": count,
            "worker_instance_type": "ens.sn1.small",
            "ens_region_id": "cn-hangzhou-telecom",
            "worker_image_id": "m-CONSOLEIMAGE",
            "ens_internet_charge_type": "BandwidthByDay",
            "worker_period": 1,
            "login_password": Secret(PASSWORD),
            "worker_system_disk_size": 40,
            "is_edge_worker": True,
        }
        with CSClient(REGION, credentials, endpoint=self.emulator.url, clock=self.now) as cs:
            result = cs.scale_out(cluster, body)
        if foreign:
            self.foreign_tasks.add(result.task_id)
        return result.task_id


@contextmanager
def build_world(
    root: Path,
    policies: Mapping[str, str] | Sequence[str] = ("edge-a",),
    *,
    clock: Callable[[], float] = time.time,
    task_delay: float = 0.0,
    join_delay: float = 0.0,
    load: float = 10.0,
    extra_env: Mapping[str, str] | None = None,
    open_store: Callable[[], Store] | None = None,
    separate_dirs: bool = False,
    **policy_kw: Any,
) -> Iterator[World]:
    """Start an emulator with one cluster per policy and write the policy files.

    ``policies``: names (cluster ids are generated) or a name -> cluster id mapping.
    ``policy_kw`` go to :func:`policy_yaml` for every policy. ``separate_dirs``: each policy
    file in its own directory (see :meth:`World.env_for`), so that a run parses one file.
    """
    named = (
        dict(policies)
        if isinstance(policies, Mapping)
        else {name: cluster_id(i) for i, name in enumerate(policies)}
    )
    config = EmulatorConfig(
        access_key_id=KEY_ID,
        access_key_secret=KEY_SECRET,
        clusters={
            c: ClusterSpec(edge_workers=2, masters=3, cloud_workers=1) for c in named.values()
        },
        task_delay=task_delay,
        join_delay=join_delay,
        scenario=[ScenarioStep(0, {LOAD: load})],
    )
    policy_dir = root / "policies"
    policy_dir.mkdir(parents=True)
    store_path = root / "state" / "edgescaler.db"
    with Emulator(config, clock=clock) as emu:
        env = {
            "EDGESCALER_POLICY_DIR": str(policy_dir),
            "EDGESCALER_STORE": f"sqlite:///{store_path}",
            "EDGESCALER_PROMETHEUS_URL": emu.url,
            "EDGESCALER_CS_ENDPOINT": emu.url,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
            PASSWORD_ENV: PASSWORD,
            **(extra_env or {}),
        }
        world = World(
            emu,
            clock,
            env,
            root,
            policy_dir,
            store_path,
            {},
            open_store=open_store,
            separate_dirs=separate_dirs,
        )
        for name, cluster in named.items():
            world.write_policy(name, cluster, **policy_kw)
        yield world


# -- the concurrency tests' worker process ----------------------------------------------------


def compact(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the parent needs of a report (small enough to pass through a queue)."""
    keys = ("policy", "cluster_id", "outcome", "reason", "task_id", "activity_seq", "add")
    return {
        "error": report.get("error"),
        "outcomes": [
            {
                **{k: o.get(k) for k in keys},
                "current": (o.get("decision") or {}).get("current"),
            }
            for o in report.get("outcomes", [])
        ],
    }


def race_worker(
    worker: int, rounds: list[tuple[dict[str, str], str | None]], barrier: Any, results: Any
) -> None:
    """Run ``handle(event, env=env)`` once per ``(env, event)`` of ``rounds``, every round
    released by ``barrier`` in all workers at once. An event of None only opens the store named
    by ``env`` (a store that does not exist yet is created by all workers at once).

    Imports (and the one-off cost of the lazily imported HTTP clients) happen before the first
    barrier so that the rounds race on the claim, not on module loading. Each result, or the
    traceback of a crash, goes to ``results`` as ``(worker, round, data)``.
    """
    try:  # warm-up: what the first invocation of a fresh instance would import
        import prometheus_api_client  # noqa: F401
        import requests  # noqa: F401

        import edgescaler.cloud.cs
        import edgescaler.metrics.prometheus  # noqa: F401
        from edgescaler.handler import handle

        if any(env.get("EDGESCALER_STORE", "").startswith("s3://") for env, _ in rounds):
            import boto3  # noqa: F401
        if any(env.get("EDGESCALER_STORE", "").startswith("oss://") for env, _ in rounds):
            from edgescaler.store import oss  # noqa: F401
    except BaseException:
        results.put((worker, -1, {"crash": traceback.format_exc()}))
        raise
    from edgescaler.errors import StoreError
    from edgescaler.store import open_store

    for rnd, (env, event) in enumerate(rounds):
        try:
            barrier.wait(timeout=120)
            if event is None:  # only open (and so create) the store, as the handler does first
                try:
                    open_store(env["EDGESCALER_STORE"]).close()
                    results.put((worker, rnd, {"error": None, "outcomes": []}))
                except StoreError as exc:
                    results.put((worker, rnd, {"error": str(exc), "outcomes": []}))
                continue
            report = handle(event, None, env=env)
            results.put((worker, rnd, compact(report)))
        except BaseException:
            results.put((worker, rnd, {"crash": traceback.format_exc()}))
            barrier.abort()
            sys.exit(1)

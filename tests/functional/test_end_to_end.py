"""End to end: the `edgescaler` command, a real Prometheus, the signature-checking emulator,
a real SQLite store. Nothing is mocked.

The cluster starts with 2 ENS workers (plus masters and a cloud ECS worker, which must not be
counted); Prometheus reports 7.5 busy edge cores; the policy targets 1.5 cores per node, so
ceil(7.5 / 1.5) - 2 = 3 more nodes are needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgescaler.emulator import ClusterSpec, Emulator, EmulatorConfig
from edgescaler.store.sqlite import SQLiteStore
from tests.support import builders
from tests.support.events import EVENTS
from tests.support.prometheus import PrometheusLauncher, PromServer, Series

pytestmark = pytest.mark.prometheus

CLUSTER = "c0e2e0000000000000000000000000001"
PASSWORD = "E2e-Test-Passw0rd"  # the secret every test greps the output for
KEY_SECRET = "e2e-access-key-secret-0001"


def series(name: str, value: float, *, last_age: float = 5.0) -> Series:
    now = time.time()
    return Series(
        name, {"edge": "true"}, [(now - last_age - 600 + 15 * i, value) for i in range(41)]
    )


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromServer]:
    with PrometheusLauncher(tmp_path_factory.mktemp("prom")) as launcher:
        yield launcher.start(
            [
                series("edge_busy_cores", 7.5),
                series("edge_nan_cores", float("nan")),
                series("edge_old_cores", 7.5, last_age=150.0),  # visible, but older than max_age
            ]
        )


@dataclass
class World:
    emulator: Emulator
    env: dict[str, str]
    store: Path
    policies: Path

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "edgescaler.cli", *args],
            env=self.env,
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Secrets never reach any output, whatever the command did.
        for secret in (PASSWORD, KEY_SECRET):
            assert secret not in proc.stdout and secret not in proc.stderr
        return proc

    def report(self, *args: str) -> dict:  # type: ignore[type-arg]
        proc = self.run(*args, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def store_rows(self) -> list[dict]:  # type: ignore[type-arg]
        if not self.store.exists():
            return []
        store = SQLiteStore(self.store)
        try:
            return [json.loads(v) for k, v in store.export() if k.startswith("activities/")]
        finally:
            store.close()


def make_world(
    tmp_path: Path, prom: PromServer, query: str = "sum(edge_busy_cores)"
) -> Iterator[World]:
    config = EmulatorConfig(
        access_key_id="LTAIe2eKeyId0001",
        access_key_secret=KEY_SECRET,
        clusters={CLUSTER: ClusterSpec(edge_workers=2, masters=3, cloud_workers=2)},
        task_delay=0.0,
    )
    policies = tmp_path / "policies"
    policies.mkdir()
    builders.write_policy(
        policies,
        name="e2e-edge",
        cluster_id=CLUSTER,
        password_env="E2E_ENS_PASSWORD",
        scale_out={
            "worker_instance_type": "ens.sn1.small",
            "worker_image_id": "m-E2EIMAGE",
            "worker_system_disk_size": 40,
            "worker_data_disk_size": 20,
            "worker_auto_renew": True,
            "worker_auto_renew_period": 2,
            "timeout_mins": 45,
        },
        limits={"min_nodes": 1, "max_nodes": 20, "max_step": 5},
        metrics={
            "busy_cores": {
                "query": query,
                "max_age": "1m",
                "freshness_query": "max(timestamp(edge_busy_cores))",
            }
        },
        rules=[{"type": "target_tracking", "metric": "busy_cores", "target_per_node": 1.5}],
    )
    store = tmp_path / "state" / "edgescaler.db"
    with Emulator(config).start() as emu:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "EDGESCALER_POLICY_DIR": str(policies),
            "EDGESCALER_STORE": f"sqlite:///{store}",
            "EDGESCALER_PROMETHEUS_URL": prom.url,
            "EDGESCALER_CS_ENDPOINT": emu.url,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": config.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
            "E2E_ENS_PASSWORD": PASSWORD,
        }
        yield World(emu, env, store, policies)


@pytest.fixture
def world(tmp_path: Path, prom: PromServer) -> Iterator[World]:
    yield from make_world(tmp_path, prom)


def test_timer_run_scales_out_exactly_once_then_cools_down(world: World) -> None:
    first = world.report("run", "--event", str(EVENTS / "timer.json"))
    (o,) = first["outcomes"]
    assert (first["trigger"], first["event_key"]) == (
        "timer",
        "timer:every-minute:2026-11-27T07:05:00Z",
    )
    assert (o["outcome"], o["add"]) == ("scaled", 3), o["reason"]
    assert o["decision"]["current"] == 2  # masters and cloud ECS workers are not counted
    assert o["decision"]["readings"]["busy_cores"]["value"] == 7.5

    calls = world.emulator.scale_out_calls()
    assert len(calls) == 1
    body = calls[0]["body"]
    assert body == {
        "count": 3,
        "worker_instance_type": "ens.sn1.small",
        "ens_region_id": "cn-hangzhou-telecom",
        "worker_image_id": "m-E2EIMAGE",
        "ens_internet_charge_type": "BandwidthByDay",
        "worker_period": 1,
        "login_password": "***",  # the emulator keeps only a redacted copy
        "worker_system_disk_size": 40,
        "is_edge_worker": True,
        "worker_data_disk_size": 20,
        "worker_auto_renew": True,
        "worker_auto_renew_period": 2,
        "timeout_mins": 45,
    }
    assert calls[0]["task_id"] == o["task_id"]

    (row,) = world.store_rows()
    assert (row["task_id"], row["request_id"], row["status"], row["add"]) == (
        o["task_id"],
        o["request_id"],
        "submitted",
        3,
    )
    assert PASSWORD not in world.store.read_bytes().decode("latin-1")

    second = world.report("run", "--event", str(EVENTS / "timer-next-minute.json"))
    (o2,) = second["outcomes"]
    assert o2["outcome"] == "cooling_down", o2
    assert o["task_id"] in o2["reason"]
    assert len(world.emulator.scale_out_calls()) == 1  # nothing was sent

    history = world.run("history")
    assert history.returncode == 0 and o["task_id"] in history.stdout
    for bad in ("0", "-1", "x"):  # 0 and -1 read as "nothing" and "all but the oldest"
        refused = world.run("history", "--limit", bad)
        assert refused.returncode == 2 and "--limit" in refused.stderr


def test_the_same_timer_event_twice_is_a_duplicate(world: World) -> None:
    assert (
        world.report("run", "--event", str(EVENTS / "timer.json"))["outcomes"][0]["outcome"]
        == "scaled"
    )
    again = world.report("run", "--event", str(EVENTS / "timer.json"))
    assert again["outcomes"][0]["outcome"] == "duplicate_event"
    assert len(world.emulator.scale_out_calls()) == 1


def test_plan_explains_and_writes_nothing(world: World) -> None:
    proc = world.run("plan")
    assert proc.returncode == 0, proc.stderr
    assert "dry_run" in proc.stdout and "+3" in proc.stdout
    assert "ceil(7.5 / 1.5) = 5 nodes desired, 2 current -> +3" in proc.stdout
    assert world.emulator.scale_out_calls() == []
    assert world.store_rows() == []


def test_run_reads_the_event_from_stdin(world: World) -> None:
    proc = world.run("run", "--event", "-", "--json", stdin=b'{"dry_run": true}')
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["outcomes"][0]["outcome"] == "dry_run"
    assert world.emulator.scale_out_calls() == []


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("sum(edge_nan_cores)", "nan"),
        ("sum(edge_missing_cores)", "empty"),
        ('{__name__=~"edge_(busy|old)_cores"}', "multiple_series"),
    ],
)
def test_bad_metrics_never_scale(tmp_path: Path, prom: PromServer, query: str, reason: str) -> None:
    for world in make_world(tmp_path, prom, query):
        rep = world.report("run", "--event", str(EVENTS / "timer.json"))
        (o,) = rep["outcomes"]
        assert o["outcome"] == "metrics_unavailable"
        assert f": {reason}:" in o["reason"]
        assert world.emulator.scale_out_calls() == []
        assert world.store_rows() == []


def test_stale_metric_never_scales(tmp_path: Path, prom: PromServer) -> None:
    for world in make_world(tmp_path, prom, "sum(edge_old_cores)"):
        policy = world.policies / "e2e-edge.yaml"
        policy.write_text(
            policy.read_text().replace(
                "max(timestamp(edge_busy_cores))", "max(timestamp(edge_old_cores))"
            )
        )
        (o,) = world.report("run", "--event", str(EVENTS / "timer.json"))["outcomes"]
        assert o["outcome"] == "metrics_unavailable" and ": stale:" in o["reason"]
        assert world.emulator.scale_out_calls() == []


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("invalid/unknown-key.json", "unknown key 'action'"),
        ("invalid/not-utf8.json", "not UTF-8"),
    ],
)
def test_bad_event_is_a_one_line_error_and_no_scale_out(
    world: World, event: str, message: str
) -> None:
    proc = world.run("run", "--event", str(EVENTS / event))
    assert proc.returncode == 2
    assert message in proc.stdout + proc.stderr
    assert world.emulator.scale_out_calls() == [] and world.store_rows() == []


def test_invalid_policy_is_a_one_line_error_and_no_scale_out(world: World) -> None:
    policy = world.policies / "e2e-edge.yaml"
    text = policy.read_text().replace("worker_system_disk_size: 40", "worker_system_disk_size: 45")
    policy.write_text(text)
    line = 1 + next(i for i, ln in enumerate(text.splitlines()) if "worker_system_disk" in ln)
    proc = world.run("run", "--event", str(EVENTS / "timer.json"))
    assert proc.returncode == 2
    assert (
        f"{policy}:{line}: scale_out.worker_system_disk_size: must be a multiple of 10"
        in proc.stdout
    )
    assert world.emulator.scale_out_calls() == []


def test_missing_password_variable_is_an_error_without_a_claim(world: World) -> None:
    del world.env["E2E_ENS_PASSWORD"]
    (o,) = world.report("run", "--event", str(EVENTS / "timer.json"))["outcomes"]
    assert o["outcome"] == "error" and "E2E_ENS_PASSWORD is not set" in o["reason"]
    assert world.emulator.scale_out_calls() == [] and world.store_rows() == []


def test_wrong_credentials_are_rejected_by_the_emulator_and_recorded(world: World) -> None:
    world.env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = "not-the-secret"
    (o,) = world.report("run", "--event", str(EVENTS / "timer.json"))["outcomes"]
    # DescribeClusterNodes is signed too: the bad signature is caught before any scale-out
    assert o["outcome"] == "error" and "SignatureDoesNotMatch" in o["reason"]
    assert world.emulator.scale_out_calls() == []


def test_validate_the_example_policies() -> None:
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "edgescaler.cli", "validate", str(repo / "policies")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok  beijing-edge" in proc.stdout

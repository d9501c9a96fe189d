"""`edgescaler reconcile` against the emulator: each kind of drift, and "in sync" after a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edgescaler import drift, policyfile
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.cs import CSClient
from edgescaler.emulator import ClusterSpec, Emulator, EmulatorConfig, ScenarioStep
from edgescaler.handler import handle
from edgescaler.runtime import Runtime
from edgescaler.sensitive import Secret
from edgescaler.settings import Settings
from tests.support import builders
from tests.support.clock import FakeClock

CLUSTER = "c0reconcile000000000000000000001"
START = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc).timestamp()


class Env:
    def __init__(self, tmp: Path, emu: Emulator, clock: FakeClock) -> None:
        self.emu, self.clock = emu, clock
        (tmp / "policies").mkdir()
        builders.write_policy(
            tmp / "policies",
            name="recon",
            cluster_id=CLUSTER,
            password_env="RECON_PW",
            scale_out={"worker_image_id": "m-RECON", "timeout_mins": 30},
            limits={"min_nodes": 1, "max_nodes": 10, "max_step": 5},
            cooldown="1m",
            metrics={"load": {"query": "edge_load", "max_age": "10m"}},
            rules=[{"type": "target_tracking", "metric": "load", "target_per_node": 1}],
        )
        self.env = {
            "EDGESCALER_POLICY_DIR": str(tmp / "policies"),
            "EDGESCALER_STORE": f"sqlite:///{tmp / 'store.db'}",
            "EDGESCALER_PROMETHEUS_URL": emu.url,
            "EDGESCALER_CS_ENDPOINT": emu.url,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": emu_config().access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu_config().access_key_secret,
            "RECON_PW": "Recon-Passw0rd",
        }

    def run(self) -> dict:  # type: ignore[type-arg]
        return handle(b"{}", None, env=self.env, now=self.clock.dt)

    def views(self) -> list[drift.ClusterView]:
        settings = Settings.from_env(self.env)
        runtime = Runtime(settings, self.env, None, self.clock.dt)
        try:
            return drift.report(
                policyfile.load([settings.policy_dir]),
                runtime.open_store(),
                runtime.cloud_for,
                now=self.clock.dt(),
            )
        finally:
            runtime.close()

    def kinds(self) -> list[str]:
        (view,) = self.views()
        assert view.error is None, view.error
        return sorted(d.kind for d in view.drift)


def emu_config() -> EmulatorConfig:
    return EmulatorConfig(
        clusters={CLUSTER: ClusterSpec(edge_workers=2)},
        task_delay=60.0,
        join_delay=120.0,
        scenario=[ScenarioStep(0.0, {"edge_load": 5.0})],
    )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    clock = FakeClock(START)
    config = emu_config()
    config.scenario_start = clock()
    with Emulator(config, clock=clock).start() as emu:
        yield Env(tmp_path, emu, clock)


def test_a_submitted_activity_whose_task_ended_is_a_status_mismatch_until_polled(env: Env) -> None:
    first = env.run()
    assert first["outcomes"][0]["outcome"] == "scaled"
    assert env.kinds() == []  # task running, log says submitted: in sync
    env.clock.advance(2 * 60)  # task succeeded in the cloud, nobody polled yet
    (view,) = env.views()
    (drift,) = view.drift
    assert drift.kind == "status_mismatch" and drift.seq == 1
    assert "submitted in the log, task is success in the cloud" in drift.detail
    env.run()  # the next run polls the task (and cools down)
    assert env.kinds() == []


def test_a_task_we_did_not_start_is_untracked(env: Env) -> None:
    config = emu_config()
    creds = Credentials(config.access_key_id, Secret(config.access_key_secret))
    with CSClient("cn-hangzhou", lambda: creds, endpoint=env.emu.url, clock=env.clock.dt) as cs:
        body = {
            "count": 1,
            "worker_instance_type": "ens.sn1.tiny",
            "ens_region_id": "cn-hangzhou-telecom",
            "worker_image_id": "m-X",
            "ens_internet_charge_type": "BandwidthByDay",
            "worker_period": 1,
            "login_password": "Console-Passw0rd",
            "worker_system_disk_size": 20,
            "is_edge_worker": True,
        }
        task = cs.scale_out(CLUSTER, body).task_id
    (view,) = env.views()
    assert [(d.kind, d.task_id) for d in view.drift] == [("untracked_task", task)]
    # and the scaler will not add on top of it while it runs
    assert env.run()["outcomes"][0]["outcome"] == "in_flight"


def test_nodes_that_never_join_and_unresolved_scale_outs(env: Env) -> None:
    env.emu.inject_task_fault("never_join")
    assert env.run()["outcomes"][0]["outcome"] == "scaled"
    env.clock.advance(31 * 60)
    kinds = env.kinds()
    assert kinds.count("never_joined") == 3  # +3 to reach ceil(5 / 1) = 5
    assert "status_mismatch" in kinds  # log: submitted, cloud: timeout
    env.run()  # records the task's failure
    assert "status_mismatch" not in env.kinds()


def test_an_ambiguous_scale_out_is_unresolved(env: Env) -> None:
    env.emu.inject("ScaleOutCluster", "server_error")
    (o,) = env.run()["outcomes"]
    assert o["outcome"] == "error" and "outcome unknown" in o["reason"]
    (view,) = env.views()
    (drift,) = view.drift
    assert drift.kind == "unresolved" and "unknown" in drift.detail


def test_reconcile_cli_json(tmp_path: Path) -> None:
    wall = FakeClock(time.time())
    with Emulator(emu_config()).start() as emu:
        env = Env(tmp_path, emu, wall)
        assert env.run()["outcomes"][0]["outcome"] == "scaled"
        proc = subprocess.run(
            [sys.executable, "-m", "edgescaler.cli", "reconcile", "--json"],
            env={
                **env.env,
                "PATH": os.environ.get("PATH", ""),
                "PYTHONPATH": os.pathsep.join(sys.path),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    (view,) = json.loads(proc.stdout)
    assert (view["cluster_id"], view["activities"], view["error"]) == (CLUSTER, 1, None)
    assert view["edge_workers"] == 5 and view["drift"] == []

"""``edgescaler demo``: the whole pipeline against the emulator, through a scripted load rise.

Everything is real except the cloud: the CS emulator checks every signature and keeps tasks and
nodes, the scripted Prometheus endpoint serves the load, the SQLite store keeps the log, and each
tick invokes exactly the FC handler's code path with a timer event. It takes about ten seconds.

The embedded policy (``data/demo-policy.yaml`` in the package) tracks busy cores at 1.5 per node and
steps up on pending pods; the scenario raises the load, makes the pending-pods metric NaN for a
moment (the scaler must not act on it) and then keeps rising. Cooldown and the emulator's task
and join delays are seconds instead of minutes.
"""

from __future__ import annotations

import json
import secrets
import string
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from edgescaler.emulator import ClusterSpec, Emulator, EmulatorConfig, ScenarioStep
from edgescaler.handler import execute
from edgescaler.report import Outcome
from edgescaler.store.sqlite import SQLiteStore

CLUSTER_ID = "cdemo0e2961451182edacd74faf0001"
TICK_SECONDS = 1.0
TICKS = 12
BUSY = "edge_busy_cores"
PENDING = "edge_pending_pods"

# (seconds after start, busy cores, pending pods); None = NaN (the scaler must not act on it)
SCENARIO: list[tuple[float, float, float | None]] = [
    (0.0, 2.5, 0),
    (0.8, 4.2, 0),
    (3.8, 7.9, None),
    (5.8, 7.9, 3),
    (8.8, 13.0, 12),
]


def _password() -> str:
    """A fresh random password meeting the ENS rules; it never leaves this process's memory."""
    rng = secrets.SystemRandom()
    chars = [
        rng.choice(string.ascii_uppercase),
        rng.choice(string.ascii_lowercase),
        rng.choice(string.digits),
        rng.choice("!@#$%^&*"),
    ]
    chars += [rng.choice(string.ascii_letters + string.digits) for _ in range(12)]
    rng.shuffle(chars)
    return "".join(chars)


def _policy_text(prometheus_url: str) -> str:
    template = resources.files("edgescaler").joinpath("data/demo-policy.yaml").read_text()
    return template.replace("{CLUSTER_ID}", CLUSTER_ID).replace("{PROMETHEUS_URL}", prometheus_url)


def _line(tick: int, elapsed: float, outcome: Outcome) -> str:
    d = outcome.decision
    reading = d.readings.get("busy_cores") if d is not None else None
    head = f"t=+{elapsed:4.1f}s tick {tick:>2}  "
    if d is not None and reading is not None:
        head += f"busy={reading.value:5.1f} cores  nodes={d.current:>2}  "
    else:
        head += " " * 28
    what = str(outcome.outcome)
    if outcome.add:
        what += f" +{outcome.add}"
    if outcome.task_id:
        what += f" task={outcome.task_id}"
    return f"{head}{what:<40} {outcome.reason}"


def main(*, json_output: bool = False, out: Callable[[str], None] = print) -> int:
    """Run the demo; 0 if at least one scale-out went through with a task id."""
    with tempfile.TemporaryDirectory(prefix="edgescaler-demo-") as tmp:
        work = Path(tmp)
        scenario = [
            ScenarioStep(
                at,
                {BUSY: float(busy), PENDING: float("nan") if pending is None else float(pending)},
            )
            for at, busy, pending in SCENARIO
        ]
        config = EmulatorConfig(
            clusters={CLUSTER_ID: ClusterSpec(edge_workers=2, masters=3, cloud_workers=1)},
            task_delay=0.5,
            join_delay=1.0,
            scenario=scenario,
        )
        with Emulator(config).start() as emu:
            policies = work / "policies"
            policies.mkdir()
            (policies / "demo-edge.yaml").write_text(_policy_text(emu.url))
            store_path = work / "demo.db"
            env = {
                "EDGESCALER_POLICY_DIR": str(policies),
                "EDGESCALER_STORE": f"sqlite:///{store_path}",
                "EDGESCALER_CS_ENDPOINT": emu.url,
                "ALIBABA_CLOUD_ACCESS_KEY_ID": config.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": config.access_key_secret,
                "ENS_LOGIN_PASSWORD": _password(),
            }
            out(f"emulator (CS API + scripted Prometheus) at {emu.url}; store {store_path.name}")
            out(
                "policy demo-edge: target 1.5 busy cores per node, +1..+3 on pending pods, "
                "cooldown 2s, max 3 per step; cluster starts with 2 ENS workers\n"
            )
            start = time.monotonic()
            for tick in range(TICKS):
                wake = start + tick * TICK_SECONDS
                time.sleep(max(0.0, wake - time.monotonic()))
                now = datetime.now(timezone.utc)
                event = json.dumps(
                    {
                        "triggerTime": now.isoformat(timespec="milliseconds").replace(
                            "+00:00", "Z"
                        ),
                        "triggerName": "demo-every-second",
                        "payload": "",
                    }
                ).encode()
                report = execute(event, None, env=env)
                if json_output:
                    out(json.dumps(report.to_dict(), indent=2))
                    continue
                if report.error:
                    out(f"tick {tick}: run failed: {report.error}")
                    return 1
                for o in report.outcomes:
                    out(_line(tick, time.monotonic() - start, o))
            calls = emu.scale_out_calls()
            state = emu.state()
        store = SQLiteStore(store_path)
        history = list(reversed(store.history(cluster_id=CLUSTER_ID)))
        store.close()
    out("")
    out(f"ScaleOutCluster calls seen by the emulator: {len(calls)}")
    for act in history:
        out(
            f"  #{act.seq} +{act.add} task={act.task_id} status={act.status} "
            f"request_id={act.request_id}"
        )
    nodes = state["nodes"][CLUSTER_ID]
    out(
        f"ENS workers at the end: {nodes['edge_running']} running, {nodes['edge_initial']} "
        f"joining (plus {nodes['masters']} masters, {nodes['cloud_workers']} cloud workers)"
    )
    ok = any(a.task_id for a in history) and len(calls) == len(history)
    out(
        "demo finished: "
        + ("scale-outs recorded with their task ids" if ok else "NO scale-out happened")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

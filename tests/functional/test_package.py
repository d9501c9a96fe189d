"""`edgescaler package`: the FC code package is built from cp310 manylinux wheels and runs.

Downloads wheels from the package index (CI has it). The run test executes the packaged
handler under a real Python 3.10 with ``-S`` (no site-packages: only the package's own files)
against the emulator.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgescaler import package
from edgescaler.cloud.emulator import DEFAULT_CLUSTER_ID, Emulator, EmulatorConfig, ScenarioStep

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pkg")
    return package.build(source=REPO / "functions" / "scaler", policies=REPO / "policies", out=out)


def test_the_zip_holds_the_function_its_policies_and_cp310_wheels(built: Path) -> None:
    with zipfile.ZipFile(built) as zf:
        names = set(zf.namelist())
    assert {"index.py", "edgescaler/__init__.py", "edgescaler/handler.py"} <= names
    assert "policies/beijing-edge.yaml" in names
    assert "edgescaler/data/demo-policy.yaml" in names
    compiled = [n for n in names if n.endswith(".so")]
    assert any(
        n.startswith("pydantic_core/") and "cpython-310-x86_64-linux-gnu" in n for n in compiled
    )
    assert all("cpython-311" not in n for n in compiled)
    assert not any(n.startswith(("fc2/", "tests/", "boto3/")) for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_requirements_leave_out_the_fc_sdk() -> None:
    reqs = package.function_requirements()
    assert any(r.startswith("httpx") for r in reqs) and any(r.startswith("pydantic") for r in reqs)
    assert not any(r.startswith("aliyun-fc2") for r in reqs)
    assert any(r.startswith("boto3") for r in package.function_requirements(with_s3=True))


def test_an_invalid_policy_stops_the_build(tmp_path: Path) -> None:
    bad = tmp_path / "policies"
    bad.mkdir()
    (bad / "x.yaml").write_text("name: x\n")
    from edgescaler.errors import PolicyError

    with pytest.raises(PolicyError):
        package.build(
            source=REPO / "functions" / "scaler",
            policies=bad,
            out=tmp_path / "out",
            fetch=lambda reqs, dest: pytest.fail("must not download for an invalid policy"),
        )


def python310() -> str | None:
    """A working CPython 3.10 (pyenv shims may exist without the version being active)."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))
    candidates += [p for p in (shutil.which("python3.10"),) if p]
    for candidate in candidates:
        check = subprocess.run(
            [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
            capture_output=True,
        )
        if check.returncode == 0:
            return candidate
    return None


@pytest.fixture
def emulator_for_example_policy() -> Iterator[Emulator]:
    queries = {
        'sum(rate(node_cpu_seconds_total{mode!="idle",edge="true"}[2m]))': 9.0,
        'sum(kube_pod_status_phase{phase="Pending"})': 0.0,
        'max(timestamp(node_cpu_seconds_total{mode="idle",edge="true"}))': time.time(),
    }
    with Emulator(EmulatorConfig(scenario=[ScenarioStep(0.0, queries)])).start() as emu:
        yield emu


def test_the_packaged_handler_runs_on_python_310(
    built: Path, tmp_path: Path, emulator_for_example_policy: Emulator
) -> None:
    interpreter = python310()
    if interpreter is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    code = tmp_path / "code"
    with zipfile.ZipFile(built) as zf:
        zf.extractall(code)
    emu = emulator_for_example_policy
    config = EmulatorConfig()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "EDGESCALER_POLICY_DIR": str(code / "policies"),
        "EDGESCALER_STORE": f"sqlite:///{tmp_path / 'fc.db'}",
        "EDGESCALER_PROMETHEUS_URL": emu.url,
        "EDGESCALER_CS_ENDPOINT": emu.url,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": config.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": config.access_key_secret,
        "ENS_LOGIN_PASSWORD": "Packaged-Passw0rd",
    }
    script = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); import index; "
        "print(json.dumps(index.handler(b'', None)))"
    )
    proc = subprocess.run(
        [interpreter, "-S", "-c", script, str(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcomes = json.loads(proc.stdout)["outcomes"]
    # every example policy runs; beijing-edge's cluster is the emulator's
    assert {o["policy"] for o in outcomes} == {"beijing-edge", "edge-predictive"}
    (o,) = [o for o in outcomes if o["policy"] == "beijing-edge"]
    assert o["cluster_id"] == DEFAULT_CLUSTER_ID
    # ceil(9.0 / 1.4) = 7 desired, 2 current: +5 (max_step 5)
    assert (o["outcome"], o["add"]) == ("scaled", 5), o["reason"]
    assert len(emu.scale_out_calls()) == 1

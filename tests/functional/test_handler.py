"""The FC entry points as FC calls them: bytes + a context object, and the WSGI callback."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgescaler.emulator import ClusterSpec, Emulator, EmulatorConfig, ScenarioStep
from edgescaler.handler import handle, handle_http
from tests.support import builders
from tests.support.events import load_event

CLUSTER = "c0handler000000000000000000000001"
STS_TOKEN = "CAIS-handler-sts-token-0001"
KEY_SECRET = "handler-key-secret-0001"
PASSWORD = "Handler-Passw0rd"
TOKEN = "callback-token-0123456789"


@dataclass
class FCCredentials:  # the shape FC's runtime passes (python3.9/3.10)
    access_key_id: str
    access_key_secret: str
    security_token: str


@dataclass
class FCContext:
    request_id: str
    credentials: FCCredentials


@pytest.fixture
def fc(tmp_path: Path) -> Iterator[tuple[Emulator, dict[str, str]]]:
    config = EmulatorConfig(
        access_key_id="STS.handlerKeyId01",
        access_key_secret=KEY_SECRET,
        security_token=STS_TOKEN,
        clusters={CLUSTER: ClusterSpec(edge_workers=1)},
        scenario=[ScenarioStep(0.0, {"edge_load": 3.0})],
    )
    builders.write_policy(
        tmp_path / "policies",
        name="fc-edge",
        cluster_id=CLUSTER,
        password_env="FC_ENS_PW",
        limits={"max_nodes": 10, "max_step": 5},
        metrics={"load": {"query": "edge_load"}},
        rules=[{"type": "target_tracking", "metric": "load", "target_per_node": 1}],
    )
    with Emulator(config).start() as emu:
        env = {
            "EDGESCALER_POLICY_DIR": str(tmp_path / "policies"),
            "EDGESCALER_STORE": f"sqlite:///{tmp_path / 'fc.db'}",
            "EDGESCALER_PROMETHEUS_URL": emu.url,
            "EDGESCALER_CS_ENDPOINT": emu.url,
            "FC_ENS_PW": PASSWORD,
        }
        yield emu, env


def context() -> FCContext:
    return FCContext("1-abc", FCCredentials("STS.handlerKeyId01", KEY_SECRET, STS_TOKEN))


def test_fc_context_credentials_sign_the_calls_and_the_report_is_logged_as_json_lines(
    fc: tuple[Emulator, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    emu, env = fc
    report = handle(load_event("timer.json"), context(), env=env)  # no ALIBABA_CLOUD_* in env
    (o,) = report["outcomes"]
    assert (o["outcome"], o["add"]) == ("scaled", 2), o["reason"]
    assert len(emu.scale_out_calls()) == 1
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]  # every line is one JSON object
    policy_line, summary = lines
    assert policy_line["fc_request_id"] == "1-abc" and policy_line["trigger"] == "timer"
    assert (policy_line["policy"], policy_line["cluster_id"]) == ("fc-edge", CLUSTER)
    assert (policy_line["outcome"], policy_line["add"]) == ("scaled", 2)
    assert policy_line["task_id"] == o["task_id"] and policy_line["reason"] == o["reason"]
    assert summary["summary"] == "run trigger=timer policies=1 nodes_added=2 scaled=1"
    assert summary["counts"] == {"scaled": 1} and summary["error"] is None
    for secret in (PASSWORD, KEY_SECRET, STS_TOKEN):
        assert secret not in out
        assert secret not in str(report)


def test_an_event_cannot_turn_the_deployments_dry_run_off(
    fc: tuple[Emulator, dict[str, str]],
) -> None:
    """EDGESCALER_DRY_RUN=true is the deployment's switch: a console event saying
    "dry_run": false still runs dry, and the report says so."""
    emu, env = fc
    env = {**env, "EDGESCALER_DRY_RUN": "true"}
    report = handle(b'{"dry_run": false, "request_id": "ops-1"}', context(), env=env)
    (o,) = report["outcomes"]
    assert report["dry_run"] is True and o["outcome"] == "dry_run", o
    assert "the event's dry_run false was not followed" in report["note"]
    assert emu.scale_out_calls() == []
    # and with the switch off, the event's own dry run is followed
    report = handle(b'{"dry_run": true, "request_id": "ops-2"}', context(), env=fc[1])
    assert report["dry_run"] is True and report["note"] is None
    assert emu.scale_out_calls() == []


def test_without_any_credentials_nothing_is_called(fc: tuple[Emulator, dict[str, str]]) -> None:
    emu, env = fc
    (o,) = handle(b"", None, env=env)["outcomes"]
    assert o["outcome"] == "error" and "no credentials" in o["reason"]
    assert sum(emu.state()["calls"].values()) == 0  # not even a metric query


def test_bad_input_is_reported_not_raised(fc: tuple[Emulator, dict[str, str]]) -> None:
    emu, env = fc
    report = handle(b"[1, 2]", context(), env=env)
    assert report["error"] == "event: expected a JSON object, got list"
    assert report["outcomes"] == [] and emu.scale_out_calls() == []
    report = handle(b"{}", context(), env={**env, "EDGESCALER_DRY_RUN": "perhaps"})
    assert report["error"].startswith("EDGESCALER_DRY_RUN: expected true or false")


def wsgi(body: bytes, query: str, method: str = "POST") -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "fc.context": context(),
    }


class StartResponse:
    def __init__(self) -> None:
        self.status = ""

    def __call__(self, status: str, headers: list[tuple[str, str]]) -> None:
        self.status = status


def test_callback_needs_the_token(fc: tuple[Emulator, dict[str, str]]) -> None:
    emu, env = fc
    body = load_event("cloudmonitor-callback.form")
    sr = StartResponse()
    handle_http(wsgi(body, "token=wrong"), sr, env={**env, "EDGESCALER_CALLBACK_TOKEN": TOKEN})
    assert sr.status.startswith("403")
    handle_http(wsgi(body, f"token={TOKEN}"), sr, env=env)  # token not configured: refused
    assert sr.status.startswith("503")
    assert emu.scale_out_calls() == []


def test_callback_retries_are_deduplicated(fc: tuple[Emulator, dict[str, str]]) -> None:
    emu, env = fc
    env = {**env, "EDGESCALER_CALLBACK_TOKEN": TOKEN}
    body = load_event("cloudmonitor-callback.form")
    results = []
    for _ in range(3):  # CloudMonitor retries a slow callback up to 3 times
        sr = StartResponse()
        (payload,) = handle_http(wsgi(body, f"token={TOKEN}"), sr, env=env)
        results.append((sr.status, payload.decode()))
    assert all(status.startswith("200") for status, _ in results)
    assert "scaled=1" in results[0][1]
    assert all("duplicate_event=1" in p for _, p in results[1:])
    assert len(emu.scale_out_calls()) == 1

"""``edgescaler invoke`` end to end: the CLI, FC's invoke API (a fake that checks the FC 3.0 ACS3
and FC 2.0 ``FC`` signatures), and the real handler running in-process against the CS emulator."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgescaler import cli
from edgescaler.handler import handle
from tests.support.fc import FakeFC, FCCredentials
from tests.support.loopback import free_port, serve
from tests.support.world import KEY_ID, KEY_SECRET, PASSWORD, World, build_world

OP_KEY = "LTAIoperatorKeyId0001"
OP_SECRET = "operator-access-key-secret-0001"
OP_TOKEN = "CAIS-operator-sts-token-0001"
SECRETS = (OP_SECRET, OP_TOKEN, KEY_SECRET, PASSWORD)
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclass
class Setup:
    world: World
    fake: FakeFC
    url: str
    monkeypatch: pytest.MonkeyPatch

    def fc2(self) -> None:
        self.monkeypatch.setenv("EDGESCALER_FC_API", "2016-08-15")
        self.monkeypatch.setenv("EDGESCALER_FC_SERVICE", "edgescaler-svc")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(i.body) for i in self.fake.invocations]


@pytest.fixture
def fc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    for name in ("EDGESCALER_FC_API", "EDGESCALER_FC_SERVICE", "EDGESCALER_FC_QUALIFIER"):
        monkeypatch.delenv(name, raising=False)
    with build_world(tmp_path, ["edge-a", "edge-b"]) as world:

        def function(event: bytes, context: Any) -> dict[str, Any]:
            # The function's stdout (its JSON log lines) goes to FC's logs, not to the caller.
            with contextlib.redirect_stdout(io.StringIO()):
                return handle(event, context, env=world.env, now=world.now)

        def broken(event: bytes, context: Any) -> None:
            raise ZeroDivisionError("division by zero")

        def other_version(event: bytes, context: Any) -> dict[str, Any]:
            return {"summary": "run policies=1", "outcomes": [{"policy": "p"}]}

        fake = FakeFC(
            keys={OP_KEY: OP_SECRET},
            security_token=OP_TOKEN,
            # The function's role: the keys the CS emulator knows. The caller's keys never sign
            # anything but the invoke call.
            role=FCCredentials(KEY_ID, KEY_SECRET, ""),
            functions={
                "edgescaler": function,
                "broken": broken,
                "other-version": other_version,
                "edgescaler-svc/edgescaler": function,
                "edgescaler-svc/broken": broken,
            },
        )
        with serve(fake) as url:
            monkeypatch.setenv("EDGESCALER_FC_ENDPOINT", url)
            monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", OP_KEY)
            monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", OP_SECRET)
            monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", OP_TOKEN)
            yield Setup(world, fake, url, monkeypatch)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["invoke", *args])
    out, err = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in out and secret not in err
    return code, out, err


@pytest.mark.parametrize("api", ["fc3", "fc2"])
def test_dry_run_prints_the_report_and_scales_nothing(
    fc: Setup, capsys: pytest.CaptureFixture[str], api: str
) -> None:
    if api == "fc2":
        fc.fc2()
    code, out, err = run(capsys, "--dry-run", "--policy", "edge-a")
    assert code == 0, err
    assert out.startswith("edge-a") and "dry_run" in out.splitlines()[0]
    assert "run DRY-RUN trigger=manual policies=1 nodes_added=0" in out
    assert err.startswith("edgescaler: invoked ") and "FC request id 1-fake-00000001" in err
    (inv,) = fc.fake.invocations
    assert (inv.api, inv.problems, inv.status, inv.invocation_type) == (api, [], 200, "Sync")
    (event,) = fc.events()
    assert event["policies"] == ["edge-a"] and event["dry_run"] is True
    assert event["request_id"].startswith("invoke-") and event["request_id"] in err
    assert fc.world.posts() == []


@pytest.mark.parametrize("api", ["fc3", "fc2"])
def test_a_real_run_scales_once_and_prints_json(
    fc: Setup, capsys: pytest.CaptureFixture[str], api: str
) -> None:
    if api == "fc2":
        fc.fc2()
    code, out, _ = run(capsys, "--policy", "edge-a", "--json")
    assert code == 0
    report = json.loads(out)
    (o,) = report["outcomes"]
    assert (o["policy"], o["outcome"], o["add"]) == ("edge-a", "scaled", 3), o["reason"]
    assert "dry_run" not in fc.events()[0]  # the function's EDGESCALER_DRY_RUN decides
    assert len(fc.world.posts()) == 1
    fc.world.check_invariant()


@pytest.mark.parametrize("api", ["fc3", "fc2"])
def test_async_prints_the_request_id_and_a_redelivery_does_nothing(
    fc: Setup, capsys: pytest.CaptureFixture[str], api: str
) -> None:
    if api == "fc2":
        fc.fc2()
    fc.fake.async_deliveries = 2  # FC delivers async events at least once
    code, out, _ = run(capsys, "--async", "--policy", "edge-a")
    assert code == 0 and out.startswith("1-fake-00000001  (FC request id")
    first, second = fc.fake.async_results
    assert first["outcomes"][0]["outcome"] == "scaled"
    assert second["outcomes"][0]["outcome"] == "duplicate_event"
    assert len(fc.world.posts()) == 1

    code, out, _ = run(capsys, "--async", "--json", "--policy", "edge-a")
    answer = json.loads(out)
    assert answer["async"] is True and answer["request_id"] == "1-fake-00000002"
    ids = [e["request_id"] for e in fc.events()]
    assert len(set(ids)) == 2 and answer["event_request_id"] == ids[1]  # fresh per invoke
    assert fc.fake.async_results[2]["outcomes"][0]["outcome"] == "cooling_down"
    assert fc.fake.invocations[-1].invocation_type == "Async"
    fc.world.check_invariant()


@pytest.mark.parametrize("api", ["fc3", "fc2"])
def test_a_function_error_is_one_line(
    fc: Setup, capsys: pytest.CaptureFixture[str], api: str
) -> None:
    if api == "fc2":
        fc.fc2()
    fc.monkeypatch.setenv("EDGESCALER_FC_FUNCTION", "broken")
    code, out, err = run(capsys)
    assert code == 2 and out == ""
    expected = {
        "fc3": "edgescaler: function broken failed: UnhandledInvocationError: ZeroDivisionError: "
        "division by zero (request id 1-fake-00000001)\n",
        # fc2 keeps the error body but drops the X-Fc-Error-Type header.
        "fc2": "edgescaler: function edgescaler-svc/broken failed: FunctionError: "
        "ZeroDivisionError: division by zero (request id 1-fake-00000001)\n",
    }
    assert err == expected[api]


def test_a_report_this_version_cannot_show_is_one_line(
    fc: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    fc.monkeypatch.setenv("EDGESCALER_FC_FUNCTION", "other-version")
    code, out, err = run(capsys)
    assert code == 2 and out == ""
    last = err.splitlines()[-1]  # after the "invoked ..." line on stderr
    assert last.startswith("edgescaler: function other-version answered a run report this ")
    assert "KeyError 'outcome'" in last and "--json" in last
    code, out, _ = run(capsys, "--json")  # shown as it came
    assert code == 0 and json.loads(out)["outcomes"] == [{"policy": "p"}]


@pytest.mark.parametrize("api", ["fc3", "fc2"])
def test_api_errors_are_one_line(fc: Setup, capsys: pytest.CaptureFixture[str], api: str) -> None:
    if api == "fc2":
        fc.fc2()
    fc.monkeypatch.setenv("EDGESCALER_FC_FUNCTION", "absent")
    code, _, err = run(capsys)
    name = "absent" if api == "fc3" else "edgescaler-svc/absent"
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"edgescaler: InvokeFunction {name}: HTTP 404 FunctionNotFound: ")
    assert err.endswith("(request id 1-fake-00000001)\n")

    fc.monkeypatch.setenv("EDGESCALER_FC_FUNCTION", "edgescaler")
    fc.monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "a-wrong-secret-for-this-key")
    code, _, err = run(capsys)
    assert code == 2 and err.count("\n") == 1 and "HTTP 403 Signature" in err
    assert "a-wrong-secret-for-this-key" not in err
    assert fc.fake.invocations[-1].problems[0] == "signature mismatch"
    assert fc.world.posts() == []


def test_fc2_refused_connection_fails_at_once_and_restores_fc2(
    fc: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    import fc2.client

    fc.fc2()
    fc.monkeypatch.setenv("EDGESCALER_FC_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    slept: list[float] = []
    # urllib3's Retry sleeps through time.sleep between attempts: with fc2's defaults (5 retries,
    # backoff_factor 1) a refused connection would sleep ~30 s here.
    fc.monkeypatch.setattr(time, "sleep", slept.append)
    code, _, err = run(capsys)
    assert code == 2 and err.count("\n") == 1
    assert "InvokeFunction edgescaler-svc/edgescaler: http://127.0.0.1:" in err
    assert "ConnectionError" in err
    assert slept == []
    assert (fc2.client.retries, fc2.client.backoff_factor) == (5, 1)


def test_fc2_would_log_the_token_but_not_through_invoke(
    fc: Setup, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import fc2

    caplog.set_level(logging.DEBUG)
    # Control: fc2 on its own writes the security token to the root logger on an error.
    raw = fc2.Client(
        endpoint=fc.url, accessKeyID=OP_KEY, accessKeySecret=OP_SECRET, securityToken=OP_TOKEN
    )
    with pytest.raises(fc2.FcError):
        raw.invoke_function("edgescaler-svc", "absent", payload=b"{}")
    assert OP_TOKEN in caplog.text
    caplog.clear()

    fc.fc2()
    fc.monkeypatch.setenv("EDGESCALER_FC_FUNCTION", "absent")
    assert run(capsys)[0] == 2
    fc.monkeypatch.setenv("EDGESCALER_FC_FUNCTION", "broken")
    assert run(capsys)[0] == 2
    fc.monkeypatch.setenv("EDGESCALER_FC_FUNCTION", "edgescaler")
    assert run(capsys, "--dry-run")[0] == 0
    assert caplog.records, "the handler's own log lines are still there"
    for secret in SECRETS:
        assert secret not in caplog.text
    assert not [r for r in caplog.records if "fc2" in r.pathname]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EDGESCALER_FC_API": "3.0"}, "EDGESCALER_FC_API: expected 2023-03-30 (FC 3.0) or"),
        ({"EDGESCALER_FC_API": "2016-08-15"}, "EDGESCALER_FC_SERVICE: required with"),
        ({"EDGESCALER_FC_SERVICE": "svc"}, "EDGESCALER_FC_SERVICE: FC 3.0 has no services"),
        ({"EDGESCALER_FC_FUNCTION": "9lives"}, "EDGESCALER_FC_FUNCTION: '9lives' is not a valid"),
        ({"EDGESCALER_FC_FUNCTION": "f" * 65}, "at most 64 characters"),
        ({"EDGESCALER_FC_ENDPOINT": "fc.example.com"}, "EDGESCALER_FC_ENDPOINT: expected http"),
        ({"EDGESCALER_FC_ENDPOINT": ""}, "EDGESCALER_FC_REGION: expected a region id"),
        (
            {"EDGESCALER_FC_ENDPOINT": "", "EDGESCALER_FC_REGION": "cn-hangzhou"},
            "EDGESCALER_FC_ACCOUNT_ID: expected the numeric",
        ),
        ({"EDGESCALER_FC_TIMEOUT": "soon"}, "EDGESCALER_FC_TIMEOUT: expected a number"),
        ({"EDGESCALER_FC_QUALIFIER": "a b"}, "EDGESCALER_FC_QUALIFIER: 'a b' is not"),
        ({"ALIBABA_CLOUD_ACCESS_KEY_ID": ""}, "ALIBABA_CLOUD_ACCESS_KEY_ID is not set"),
    ],
)
def test_bad_settings_are_one_line_and_invoke_nothing(
    fc: Setup, capsys: pytest.CaptureFixture[str], env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        fc.monkeypatch.setenv(key, value)
    code, out, err = run(capsys)
    assert (code, out) == (2, "")
    assert err.startswith("edgescaler: ") and message in err and err.count("\n") == 1
    assert fc.fake.invocations == []


def test_without_credentials(fc: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("ACCESS_KEY_ID", "ACCESS_KEY_SECRET", "SECURITY_TOKEN"):
        fc.monkeypatch.delenv(f"ALIBABA_CLOUD_{name}")
    code, _, err = run(capsys)
    assert code == 2 and err.startswith("edgescaler: no credentials: set ALIBABA_CLOUD_ACCESS")


def test_the_production_endpoint_is_built_from_account_and_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edgescaler.invoke import InvokeSettings

    env = {"EDGESCALER_FC_REGION": "cn-beijing", "EDGESCALER_FC_ACCOUNT_ID": "1234567890123456"}
    settings = InvokeSettings.from_env(env)
    assert settings.endpoint == "https://1234567890123456.cn-beijing.fc.aliyuncs.com"
    assert (settings.api, settings.function, settings.timeout) == ("2023-03-30", "edgescaler", 130)


def test_fc2_is_imported_only_by_an_fc2_invoke() -> None:
    code = (
        "import sys, edgescaler.cli, edgescaler.invoke, edgescaler.cloud.fc_invoke; "
        "from edgescaler.invoke import InvokeSettings, build_invoker; "
        "from edgescaler.cloud.credentials import Credentials; "
        "from edgescaler.sensitive import Secret; "
        "s = InvokeSettings.from_env({'EDGESCALER_FC_ENDPOINT': 'http://127.0.0.1:9'}); "
        "build_invoker(s, Credentials('a', Secret('b'))).close(); "
        "print('fc2' in sys.modules, 'requests' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

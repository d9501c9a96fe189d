"""Our FC 3.0 ``InvokeFunction`` request against the one the official ``alibabacloud-tea-openapi``
sends, driven as the generated ``alibabacloud_fc20230330`` client drives it (``style=ROA``,
``pathname=/2023-03-30/functions/{name}/invocations``, ``body_type=binary``, the event as a
stream, ``x-fc-invocation-type`` / ``x-fc-log-type`` headers, ``qualifier`` in the query).

Both requests go to the fake FC on a real socket, which re-verifies ACS3 and runs a function.
Given the SDK's date and nonce (and user-agent), ours must match it header for header.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from alibabacloud_tea_openapi import utils_models as sdk_models
from alibabacloud_tea_openapi.client import Client as SdkClient
from darabonba.runtime import RuntimeOptions

from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.fc_invoke import FC3Invoker
from edgescaler.sensitive import Secret
from tests.support import acs_verify
from tests.support.fc import FakeFC
from tests.support.loopback import serve
from tests.support.sdk import FakeSdkCredential

AK_ID = "LTAI5tFCORACLEKeyId"
SECRET = "FCORACLEaccessKeySecret0123456789"
TOKEN = "CAIS-FC-ORACLE-STS-TOKEN"
EVENT = b'{"policies":["beijing-edge"],"dry_run":true,"request_id":"invoke-oracle-1"}'


def _sdk_invoke(
    hostport: str, sts: bool, qualifier: str | None, invocation_type: str, user_agent: str
) -> None:
    config = sdk_models.Config(
        credential=FakeSdkCredential(AK_ID, SECRET, TOKEN, sts), endpoint=hostport, protocol="HTTP"
    )
    params = sdk_models.Params(
        action="InvokeFunction",
        version="2023-03-30",
        protocol="HTTPS",
        pathname="/2023-03-30/functions/edgescaler/invocations",
        method="POST",
        auth_type="AK",
        style="ROA",
        req_body_type="json",
        body_type="binary",
    )
    request = sdk_models.OpenApiRequest(
        headers={
            "x-fc-invocation-type": invocation_type,
            "x-fc-log-type": "None",
            "user-agent": user_agent,
        },
        query={"qualifier": qualifier} if qualifier else None,
        stream=io.BytesIO(EVENT),
    )
    SdkClient(config).call_api(params, request, RuntimeOptions())


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("qualifier", [None, "LATEST"], ids=["latest", "qualified"])
@pytest.mark.parametrize("sts", [True, False], ids=["sts", "ak"])
def test_invoke_function_matches_the_sdk_on_the_wire(
    sts: bool, qualifier: str | None, asynchronous: bool
) -> None:
    seen: list[bytes] = []

    def function(event: bytes, context: Any) -> dict[str, Any]:
        seen.append(event)
        return {"summary": "ok", "outcomes": []}

    fake = FakeFC(
        keys={AK_ID: SECRET},
        security_token=TOKEN if sts else None,
        functions={"edgescaler": function},
    )
    creds = Credentials(AK_ID, Secret(SECRET), Secret(TOKEN) if sts else None)
    kind = "Async" if asynchronous else "Sync"
    with serve(fake) as url:
        hostport = url.removeprefix("http://")
        # 1. Learn our user-agent (signed, so the SDK must send the same one).
        ours = FC3Invoker("edgescaler", lambda: creds, endpoint=url, qualifier=qualifier)
        ours.invoke(EVENT, asynchronous=asynchronous)
        ours.close()
        user_agent = fake.invocations[-1].headers["user-agent"]

        # 2. The SDK's request, as the fake received (and accepted) it.
        _sdk_invoke(hostport, sts, qualifier, kind, user_agent)
        sdk = fake.invocations[-1]
        assert (sdk.problems, sdk.status) == ([], 202 if asynchronous else 200)
        sdk_date = datetime.strptime(sdk.headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ")

        # 3. Ours, with the SDK's date and nonce.
        ours = FC3Invoker(
            "edgescaler",
            lambda: creds,
            endpoint=url,
            qualifier=qualifier,
            clock=lambda: sdk_date.replace(tzinfo=timezone.utc),
            nonce=lambda: sdk.headers["x-acs-signature-nonce"],
        )
        result = ours.invoke(EVENT, asynchronous=asynchronous)
        ours.close()
        mine = fake.invocations[-1]

    assert mine.problems == [] and mine.status == sdk.status
    assert seen == [EVENT, EVENT, EVENT]
    assert (mine.target, mine.body) == (sdk.target, sdk.body)
    match = acs_verify.AUTH_RE.match(sdk.headers["authorization"])
    assert match is not None
    signed = match["names"].split(";")
    assert "x-fc-invocation-type" in signed and "content-type" in signed
    assert {n: mine.headers.get(n) for n in signed} == {n: sdk.headers[n] for n in signed}
    assert mine.headers["authorization"] == sdk.headers["authorization"]
    assert result.request_id == mine.request_id
    if not asynchronous:
        assert json.loads(result.body) == {"summary": "ok", "outcomes": []}


@pytest.mark.parametrize(
    "body",
    [b"[" * 5000 + b"]" * 5000, b'{"n": ' + b"1" * 5000 + b"}", b"<html>" + b"x" * 50_000],
)
def test_a_hostile_function_answer_is_one_short_error(body: bytes) -> None:
    from edgescaler.cloud.fc_invoke import Invocation
    from edgescaler.errors import InvokeError
    from edgescaler.invoke import report_from

    with pytest.raises(InvokeError) as info:
        report_from(Invocation("R-1", 200, body, False), "svc/fn")
    text = str(info.value)
    assert "not an edgescaler run report" in text and len(text) < 300 and "\n" not in text


def test_a_bug_in_a_command_is_one_redacted_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgescaler import cli
    from edgescaler.sensitive import Secret

    secret = "Bug-Report-S3cret-0001"
    Secret(secret)

    def broken(args: object) -> int:
        raise RuntimeError(f"something broke near {secret}")

    monkeypatch.setattr(cli, "cmd_validate", broken)  # forcing a bug: no other way to reach it
    assert cli.main(["validate", "policies"]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError" in err
    assert "Traceback" not in err and secret[:8] not in err


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"errorMessage": "' + b"m" * 50_000 + b'", "errorType": "' + b"T" * 50_000 + b'"}',
        b'{"errorMessage": "\\ud800"}',
    ],
)
def test_a_hostile_function_error_body_is_one_short_line(body: bytes) -> None:
    from edgescaler.cloud.fc_invoke import function_error

    err = function_error("svc/fn", "Unhandled" * 1000, body, "R-1")
    text = str(err)
    assert text.startswith("function svc/fn failed:") and len(text) < 600 and "\n" not in text
    text.encode("utf-8")  # no lone surrogate survives into the message

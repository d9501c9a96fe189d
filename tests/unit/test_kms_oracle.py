"""Our KMS GetSecretValue request against the one the official ``alibabacloud-tea-openapi`` sends.

The SDK is driven exactly as the generated KMS client drives it (``alibabacloud_kms20160120``:
``Params(action, version='2016-01-20', pathname='/', method='POST', style='RPC',
req_body_type='formData', body_type='json')`` with the request in ``query``), against the fake KMS
on a real socket. Then our ``KMSClient`` sends the same logical request with the SDK's date and
nonce and the same user-agent. Method, target, every header the SDK signed, and the Authorization
must be identical, and the fake (which re-verifies ACS3) must accept both.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alibabacloud_tea_openapi import utils_models as sdk_models
from alibabacloud_tea_openapi.client import Client as SdkClient
from darabonba.runtime import RuntimeOptions

from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.kms import KMSClient
from edgescaler.sensitive import Secret
from tests.support import acs_verify
from tests.support.kms import FakeKMS
from tests.support.loopback import serve
from tests.support.sdk import FakeSdkCredential

AK_ID = "LTAI5tKMSORACLEKeyId"
SECRET = "KMSORACLEaccessKeySecret0123456789"
TOKEN = "CAIS-KMS-ORACLE-STS-TOKEN"
NAMES = [
    "edgescaler/ens-login-password",
    "acs:kms:cn-hangzhou:1234567890:secret/app/db+pw=1@x.y_z-0",
]


def _sdk_get_secret_value(hostport: str, sts: bool, name: str, user_agent: str) -> dict[str, str]:
    config = sdk_models.Config(
        credential=FakeSdkCredential(AK_ID, SECRET, TOKEN, sts), endpoint=hostport, protocol="HTTP"
    )
    params = sdk_models.Params(
        action="GetSecretValue",
        version="2016-01-20",
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = sdk_models.OpenApiRequest(
        query={"SecretName": name}, headers={"user-agent": user_agent}
    )
    answer = SdkClient(config).call_api(params, request, RuntimeOptions())
    body = answer["body"]
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("sts", [True, False], ids=["sts", "ak"])
@pytest.mark.parametrize("name", NAMES, ids=["name", "arn"])
def test_get_secret_value_matches_the_sdk_on_the_wire(sts: bool, name: str) -> None:
    fake = FakeKMS(keys={AK_ID: SECRET}, security_token=TOKEN if sts else None)
    fake.put(name, "Oracle-Passw0rd!")
    creds = Credentials(AK_ID, Secret(SECRET), Secret(TOKEN) if sts else None)
    with serve(fake) as url:
        hostport = url.removeprefix("http://")
        # 1. Learn the user-agent our client sends (it is signed, so the SDK must send the same).
        with KMSClient("cn-hangzhou", lambda: creds, endpoint=url, max_retries=0) as kms:
            kms.get_secret_value(name)
        user_agent = fake.calls[-1].headers["user-agent"]

        # 2. The SDK's request, as the fake received (and accepted) it.
        body = _sdk_get_secret_value(hostport, sts, name, user_agent)
        assert body["SecretData"] == "Oracle-Passw0rd!"
        sdk = fake.calls[-1]
        assert sdk.problems == [] and sdk.status == 200
        sdk_date = datetime.strptime(sdk.headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ")

        # 3. Ours, given the SDK's date and nonce.
        with KMSClient(
            "cn-hangzhou",
            lambda: creds,
            endpoint=url,
            max_retries=0,
            clock=lambda: sdk_date.replace(tzinfo=timezone.utc),
            nonce=lambda: sdk.headers["x-acs-signature-nonce"],
        ) as kms:
            ours_value = kms.get_secret_value(name)
        ours = fake.calls[-1]

    assert ours_value.value.reveal() == "Oracle-Passw0rd!"
    assert ours.problems == [] and ours.status == 200
    assert ours.target == sdk.target
    match = acs_verify.AUTH_RE.match(sdk.headers["authorization"])
    assert match is not None
    signed = match["names"].split(";")
    assert {n: ours.headers.get(n) for n in signed} == {n: sdk.headers[n] for n in signed}
    assert ours.headers["authorization"] == sdk.headers["authorization"]
    # No body, so neither side sends (or signs) a content-type.
    assert "content-type" not in sdk.headers and "content-type" not in ours.headers

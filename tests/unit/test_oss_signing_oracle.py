"""Cross-check our OSS signature V4 against the official ``alibabacloud-oss-v2`` SDK's signer.

Hundreds of generated requests (seeded): :class:`OSSClient` builds the URL it would send (virtual
hosted or path-style), :class:`OssV4Auth` signs an ``httpx.Request`` for it, and the SDK's
``SignerV4`` signs the same request as sent (URL, headers, bucket, key, time, credentials). The
Authorization values must be identical, and so must the canonical requests. The SDK is a dev
dependency only; the function ships our ~200 lines instead (see README "The store").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from alibabacloud_oss_v2.signer.v4 import SignerV4
from alibabacloud_oss_v2.types import Credentials as SdkCredentials
from alibabacloud_oss_v2.types import HttpRequest, SigningContext

from edgescaler.cloud import oss_signing
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.oss import OSSClient
from edgescaler.sensitive import Secret

AK_ID = "LTAI5tOSSORACLEkeyId"
SECRET = "OSSORACLEaccessKeySecret0123456789"
TOKEN = "CAIS-OSS-ORACLE-STS-TOKEN/with+odd=chars"
CASES = 400
ALPHABET = [*"abcXYZ019-_.~ /+=&%*'()!:@,;$?#", "é", "节", "😀"]
ENDPOINTS = [
    "https://oss-cn-hangzhou-internal.aliyuncs.com",
    "https://oss-ap-southeast-1.aliyuncs.com",
    "http://127.0.0.1:9000",
    "http://localhost:34567",
]
QUERIES = [
    {},
    {"versioning": ""},
    {"list-type": "2", "prefix": "p/activities/c1/", "max-keys": 1000},
    {"list-type": "2", "prefix": "x", "continuation-token": "tok/en+==", "max-keys": 2},
]


@dataclass
class Case:
    method: str
    endpoint: str
    bucket: str
    key: str | None
    query: dict[str, str | int | None]
    headers: dict[str, str]
    additional: list[str]
    region: str
    sts: bool
    date: datetime


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(lo, hi)))


def _cases() -> list[Case]:
    rng = random.Random(20261201)
    out = []
    for _ in range(CASES):
        key = None
        if rng.random() < 0.8:
            key = "/".join(_text(rng, 1, 8).strip("/") or "k" for _ in range(rng.randint(1, 4)))
        query = dict(rng.choice(QUERIES)) if key is None else {}
        if key is None and "prefix" in query and rng.random() < 0.5:
            query["prefix"] = _text(rng, 0, 12)
        headers: dict[str, str] = {"user-agent": "edgescaler-oss/1"}
        if rng.random() < 0.5:
            headers["content-type"] = rng.choice(["application/json", "text/plain; charset=utf-8"])
        if rng.random() < 0.4:
            headers["content-md5"] = "tz9fpwVL781tCe335z8Png=="
        if rng.random() < 0.5:
            headers["x-oss-forbid-overwrite"] = "true"
        if rng.random() < 0.5:
            headers["x-oss-meta-edgescaler-writer"] = f"{rng.getrandbits(64):016x}"
        if rng.random() < 0.2:
            # (Not padded: we trim values as the documentation and the Go SDK do, the Python
            # SDK does not; HTTP itself drops surrounding whitespace, and we never send any.)
            headers["X-Oss-Meta-Mixed-Case"] = "Mixed Value"
        additional = rng.sample(
            ["host", "user-agent", "x-oss-date", "content-type"], rng.randint(0, 2)
        )
        out.append(
            Case(
                method=rng.choice(["GET", "PUT", "HEAD", "DELETE"]),
                endpoint=rng.choice(ENDPOINTS),
                bucket=rng.choice(["edgescaler-state", "b-1", "abc"]),
                key=key,
                query=query,
                headers=headers,
                additional=additional,
                region=rng.choice(["cn-hangzhou", "cn-beijing", "ap-southeast-1"]),
                sts=rng.random() < 0.5,
                date=datetime(2021, 1, 1, tzinfo=timezone.utc)
                + timedelta(seconds=rng.randrange(8 * 365 * 86400)),
            )
        )
    return out


CASE_LIST = _cases()


def _creds(case: Case) -> Credentials:
    return Credentials(AK_ID, Secret(SECRET), Secret(TOKEN) if case.sts else None)


def _ours(case: Case) -> httpx.Request:
    client = OSSClient(case.endpoint, case.bucket, case.region, _creds(case))
    url = client.url(case.key, case.query)
    request = httpx.Request(case.method, url, headers=case.headers)
    headers = oss_signing.sign_headers(
        method=case.method,
        bucket=case.bucket,
        key=case.key,
        raw_query=request.url.query.decode("ascii"),
        headers=dict(request.headers),
        credentials=_creds(case),
        region=case.region,
        now=case.date,
        additional=case.additional,
    )
    request.headers.update(headers)
    return request


def _sdk(case: Case, sent: httpx.Request) -> tuple[str, SigningContext]:
    """The SDK's Authorization for the request exactly as we send it (minus our signature)."""
    headers = {k: v for k, v in sent.headers.items() if k.lower() != "authorization"}
    request = HttpRequest(case.method, str(sent.url), headers)
    ctx = SigningContext(
        product="oss",
        region=case.region,
        bucket=case.bucket,
        key=case.key,
        request=request,
        credentials=SdkCredentials(AK_ID, SECRET, TOKEN if case.sts else None),
        signing_time=case.date,
        additional_headers=set(case.additional) or None,
    )
    SignerV4().sign(ctx)
    return request.headers["Authorization"], ctx


@pytest.mark.parametrize("n", range(0, CASES, 50))
def test_signatures_match_the_official_sdk(n: int) -> None:
    for case in CASE_LIST[n : n + 50]:
        sent = _ours(case)
        theirs, ctx = _sdk(case, sent)
        assert sent.headers["authorization"] == theirs, case
        # Same string to sign, hence the same canonical request.
        extra = oss_signing.additional_header_names(dict(sent.headers), case.additional)
        canonical = oss_signing.canonical_request(
            case.method,
            case.bucket,
            case.key,
            sent.url.query.decode("ascii"),
            dict(sent.headers),
            extra,
        )
        ts = sent.headers["x-oss-date"]
        assert oss_signing.string_to_sign(ts, case.region, canonical) == ctx.string_to_sign


def test_the_cases_cover_what_matters() -> None:
    """The generator really produced the tricky shapes (else the oracle proves little)."""
    keys = [c.key for c in CASE_LIST if c.key]
    assert any(" " in k for k in keys) and any("+" in k for k in keys)
    assert any(not k.isascii() for k in keys) and any("%" in k for k in keys)
    assert any(c.key is None and "versioning" in c.query for c in CASE_LIST)
    assert any(c.key is None and "/" in str(c.query.get("prefix", "")) for c in CASE_LIST)
    assert any(c.additional and "host" in c.additional for c in CASE_LIST)
    assert sum(c.sts for c in CASE_LIST) > CASES // 4
    assert {c.endpoint for c in CASE_LIST} == set(ENDPOINTS)


def test_sts_token_is_sent_and_signed() -> None:
    case = next(c for c in CASE_LIST if c.sts)
    sent = _ours(case)
    assert sent.headers["x-oss-security-token"] == TOKEN
    plain = _ours(Case(**{**case.__dict__, "sts": False}))
    assert "x-oss-security-token" not in plain.headers
    assert plain.headers["authorization"] != sent.headers["authorization"]


def test_a_create_only_put_canonical_request_reads_as_documented() -> None:
    """One request written out: what the module docstring describes, byte for byte."""
    at = datetime(2026, 11, 27, 8, 0, 5, tzinfo=timezone.utc)
    headers = {
        "content-type": "application/json",
        "x-oss-forbid-overwrite": "true",
        "user-agent": "edgescaler-oss/1",  # not signed
        "x-oss-date": oss_signing.timestamp(at),
        "x-oss-content-sha256": "UNSIGNED-PAYLOAD",
        "x-oss-security-token": "TOKEN",
    }
    canonical = oss_signing.canonical_request(
        "PUT", "edgescaler-state", "prod/activities/c1/000000000001", "", headers, []
    )
    assert canonical == (
        "PUT\n"
        "/edgescaler-state/prod/activities/c1/000000000001\n"
        "\n"
        "content-type:application/json\n"
        "x-oss-content-sha256:UNSIGNED-PAYLOAD\n"
        "x-oss-date:20261127T080005Z\n"
        "x-oss-forbid-overwrite:true\n"
        "x-oss-security-token:TOKEN\n"
        "\n"
        "\n"
        "UNSIGNED-PAYLOAD"
    )
    sts = oss_signing.string_to_sign("20261127T080005Z", "cn-hangzhou", canonical)
    assert sts.splitlines()[:3] == [
        "OSS4-HMAC-SHA256",
        "20261127T080005Z",
        "20261127/cn-hangzhou/oss/aliyun_v4_request",
    ]
    assert oss_signing.canonical_query("prefix=a%2Fb&list-type=2&versioning") == (
        "list-type=2&prefix=a%2Fb&versioning"
    )


def test_client_urls_virtual_hosted_for_oss_path_style_elsewhere() -> None:
    creds = Credentials(AK_ID, Secret(SECRET))
    oss = OSSClient("https://oss-cn-beijing-internal.aliyuncs.com", "b-1", "cn-beijing", creds)
    local = OSSClient("http://127.0.0.1:9000/", "b-1", "cn-beijing", creds)
    assert oss.url("p/a b+c") == "https://b-1.oss-cn-beijing-internal.aliyuncs.com/p/a%20b%2Bc"
    assert local.url("p/a b+c") == "http://127.0.0.1:9000/b-1/p/a%20b%2Bc"
    assert oss.url(None, {"versioning": ""}) == (
        "https://b-1.oss-cn-beijing-internal.aliyuncs.com/?versioning"
    )
    assert local.url(None, {"list-type": "2", "prefix": "p/x", "continuation-token": None}) == (
        "http://127.0.0.1:9000/b-1/?list-type=2&prefix=p%2Fx"
    )

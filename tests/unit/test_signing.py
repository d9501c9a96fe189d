"""ACS3-HMAC-SHA256: the worked vectors of reference/cs-api.md §3.8, query encoding, and AcsV3Auth
driven through httpx with an app that re-verifies every signature from what it received."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from edgescaler.cloud import signing
from edgescaler.cloud.credentials import Credentials
from edgescaler.sensitive import Secret
from tests.support import acs_verify

# --- common inputs of the worked examples (fake credentials)
AK_ID = "LTAI5tEXAMPLEaccessKeyId"
SECRET = "EXAMPLEaccessKeySecret0123456789"
TOKEN = "CAIS-EXAMPLE-STS-TOKEN"
DATE = "2025-01-02T03:04:05Z"
NONCE = "0123456789abcdef0123456789abcdef"
HOST = "cs.cn-hangzhou.aliyuncs.com"
CLUSTER = "c0123456789abcdef0123456789abcdef"
BODY = (
    b'{"count":1,"worker_instance_type":"ens.sn1.tiny","ens_region_id":"cn-beijing-telecom",'
    b'"worker_image_id":"m-EXAMPLEIMAGE","ens_internet_charge_type":"BandwidthByDay",'
    b'"worker_period":1,"login_password":"Hello1234!","worker_system_disk_size":20,'
    b'"is_edge_worker":true,"worker_data_disk_size":0,"timeout_mins":60}'
)
BODY_SHA = "dcf1ab9d41aab9837acb804a0b8d193bacdac7b283e766cb56ef19a51acf4fa0"

AK = Credentials(AK_ID, Secret(SECRET))
STS = Credentials(AK_ID, Secret(SECRET), Secret(TOKEN))

CANONICAL_A = (
    "POST\n"
    "/api/v2/clusters/c0123456789abcdef0123456789abcdef\n"
    "\n"
    "accept:application/json\n"
    "content-type:application/json; charset=utf-8\n"
    "host:cs.cn-hangzhou.aliyuncs.com\n"
    "x-acs-action:ScaleOutCluster\n"
    "x-acs-content-sha256:dcf1ab9d41aab9837acb804a0b8d193bacdac7b283e766cb56ef19a51acf4fa0\n"
    "x-acs-date:2025-01-02T03:04:05Z\n"
    "x-acs-signature-nonce:0123456789abcdef0123456789abcdef\n"
    "x-acs-version:2015-12-15\n"
    "\n"
    "accept;content-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;"
    "x-acs-signature-nonce;x-acs-version\n"
    "dcf1ab9d41aab9837acb804a0b8d193bacdac7b283e766cb56ef19a51acf4fa0"
)
AUTH_A = (
    "ACS3-HMAC-SHA256 Credential=LTAI5tEXAMPLEaccessKeyId,"
    "SignedHeaders=accept;content-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;"
    "x-acs-signature-nonce;x-acs-version,"
    "Signature=d7416e3b72f9fe631c0477f1c451e0c132585eb860c9e0e2a8d6d704bebba594"
)
AUTH_B = (
    "ACS3-HMAC-SHA256 Credential=LTAI5tEXAMPLEaccessKeyId,"
    "SignedHeaders=accept;content-type;host;user-agent;x-acs-accesskey-id;x-acs-action;"
    "x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-security-token;"
    "x-acs-signature-nonce;x-acs-version,"
    "Signature=567a804531f1f852186e8b94f7f0f3491c65dd4de74914bd93a0b64eae586b0c"
)
AUTH_C = (
    "ACS3-HMAC-SHA256 Credential=LTAI5tEXAMPLEaccessKeyId,"
    "SignedHeaders=accept;host;user-agent;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;"
    "x-acs-credentials-provider;x-acs-date;x-acs-security-token;x-acs-signature-nonce;"
    "x-acs-version,"
    "Signature=a508a503083bd514714eba785fecdcebb9f592b2afaab17d95094fd4155d0b5b"
)


def _base_headers(action: str) -> dict[str, str]:
    return {
        "host": HOST,
        **signing.acs_headers(
            action=action,
            version="2015-12-15",
            now=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
            nonce=NONCE,
        ),
        "accept": "application/json",
    }


# --------------------------------------------------------------------------- vectors


def test_body_of_the_examples_hashes_as_documented() -> None:
    assert len(BODY) == 308
    assert hashlib.sha256(BODY).hexdigest() == BODY_SHA
    assert signing.EMPTY_SHA256 == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_example_a_canonical_request_string_to_sign_and_authorization() -> None:
    headers = {
        **_base_headers("ScaleOutCluster"),
        "content-type": "application/json; charset=utf-8",
        "x-acs-content-sha256": BODY_SHA,
    }
    names = signing.signed_header_names(headers)
    path = f"/api/v2/clusters/{signing.percent_encode(CLUSTER)}"
    canonical = signing.canonical_request("POST", path, "", headers, names, BODY_SHA)

    assert canonical == CANONICAL_A
    assert signing.string_to_sign(canonical) == (
        "ACS3-HMAC-SHA256\n21b8343335ee9133905b45914a138b355a2c3db60d09216b36e9b38f4066ef28"
    )
    sig = signing.signature(SECRET, canonical)
    assert signing.authorization(AK_ID, names, sig) == AUTH_A


def test_example_a_through_sign_headers() -> None:
    headers = {
        **_base_headers("ScaleOutCluster"),
        "content-type": "application/json; charset=utf-8",
    }
    added = signing.sign_headers(
        method="POST",
        path=f"/api/v2/clusters/{CLUSTER}",
        query="",
        headers=headers,
        body=BODY,
        credentials=AK,
    )
    assert added == {"x-acs-content-sha256": BODY_SHA, "authorization": AUTH_A}


def test_example_b_full_sts_header_set() -> None:
    headers = {
        **_base_headers("ScaleOutCluster"),
        "content-type": "application/json; charset=utf-8",
        "user-agent": "example-agent/1.0",
        "x-acs-credentials-provider": "static_sts",
    }
    added = signing.sign_headers(
        method="POST",
        path=f"/api/v2/clusters/{CLUSTER}",
        query="",
        headers=headers,
        body=BODY,
        credentials=STS,
    )
    assert added == {
        "x-acs-content-sha256": BODY_SHA,
        "x-acs-security-token": TOKEN,
        "x-acs-accesskey-id": AK_ID,
        "authorization": AUTH_B,
    }
    # The complete header set, exactly as cs-api.md Example B lists it.
    sent = {**headers, **added}
    assert sorted(k for k in sent if k != "authorization") == [
        "accept",
        "content-type",
        "host",
        "user-agent",
        "x-acs-accesskey-id",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-credentials-provider",
        "x-acs-date",
        "x-acs-security-token",
        "x-acs-signature-nonce",
        "x-acs-version",
    ]
    assert sent["x-acs-date"] == DATE
    assert sent["x-acs-signature-nonce"] == NONCE


def test_example_c_get_without_body() -> None:
    headers = {
        **_base_headers("DescribeTaskInfo"),
        "user-agent": "example-agent/1.0",
        "x-acs-credentials-provider": "static_sts",
    }
    added = signing.sign_headers(
        method="GET",
        path="/tasks/T-5a54309c80282e39ea00002f",
        query="",
        headers=headers,
        body=b"",
        credentials=STS,
    )
    assert added["x-acs-content-sha256"] == signing.EMPTY_SHA256
    assert added["authorization"] == AUTH_C


def test_utc_timestamp_is_utc_to_the_second() -> None:
    beijing = timezone(timedelta(hours=8))
    assert signing.utc_timestamp(datetime(2025, 1, 2, 11, 4, 5, 999_000, tzinfo=beijing)) == DATE


# --------------------------------------------------------------------------- query encoding


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"a": "x y"}, "a=x%20y"),
        ({"a": "p/q"}, "a=p%2Fq"),
        ({"a": "~tilde"}, "a=~tilde"),
        ({"a": "a+b=c&d"}, "a=a%2Bb%3Dc%26d"),
        ({"a": "*'()!"}, "a=%2A%27%28%29%21"),
        ({"a": "é"}, "a=%C3%A9"),
        ({"a": "节点"}, "a=%E8%8A%82%E7%82%B9"),
        ({"a": ""}, "a="),
        ({"a": None, "b": "1"}, "b=1"),
        ({"a": None}, ""),
        ({"pageSize": 100, "pageNumber": 2}, "pageNumber=2&pageSize=100"),
        ({"b": "1", "a": "2", "A": "3", "_": "4"}, "A=3&_=4&a=2&b=1"),  # byte order
        ({"k-1.x_y~": "v"}, "k-1.x_y~=v"),
    ],
)
def test_encode_query(params: dict[str, str | int | None], expected: str) -> None:
    assert signing.encode_query(params) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("b=2&a=x%20y", "a=x%20y&b=2"),
        ("a=p/q", "a=p%2Fq"),  # decoded then re-encoded: "/" is canonical as %2F
        ("a=%7Etilde", "a=~tilde"),  # over-encoded "~" is canonical as "~"
        ("a=x+y", "a=x%2By"),  # RFC 3986: "+" is a literal plus, not a space
        ("a=%C3%A9", "a=%C3%A9"),
        ("a=%c3%a9", "a=%C3%A9"),  # lower-case hex is normalised
        ("flag&a=1", "a=1&flag="),
        ("a=1&&b=2", "a=1&b=2"),
        ("a=2&a=1", "a=1&a=2"),
    ],
)
def test_canonical_query_from_raw(raw: str, expected: str) -> None:
    assert signing.canonical_query_from_raw(raw) == expected


def test_encode_query_round_trips_through_the_receiving_side() -> None:
    params = {"nodepool_id": "np x/y~+z", "nodeLabels": "a=b,c=d", "name": "节点-1", "e": ""}
    encoded = signing.encode_query(params)
    assert signing.canonical_query_from_raw(encoded) == encoded
    assert dict(signing.parse_query(encoded)) == params


def test_percent_encode_path_segments() -> None:
    assert signing.percent_encode("c-1 2/3~") == "c-1%202%2F3~"
    assert signing.percent_encode("T-5a54309c80282e39ea00002f") == "T-5a54309c80282e39ea00002f"


# --------------------------------------------------------------------------- AcsV3Auth over httpx

FIXED_NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class VerifyingApp:
    """A tiny CS-like app: 200 when the signature re-verifies from what arrived, else 401."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []
        self.problems: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        found = acs_verify.request_problems(request, {AK_ID: SECRET})
        self.problems.append(found)
        if found:
            return httpx.Response(401, json={"code": "SignatureDoesNotMatch", "message": found})
        return httpx.Response(200, json={"ok": True})


@pytest.mark.parametrize("credentials", [AK, STS], ids=["ak", "sts"])
@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/tasks/T-5a54309c80282e39ea00002f", {}, None),
        ("GET", "/clusters/c1/nodes", {"pageNumber": 2, "pageSize": 100}, None),
        ("GET", "/clusters/c%201/nodes", {"nodeLabels": "a=b c/d~e+f", "x": "节点"}, None),
        ("POST", f"/api/v2/clusters/{CLUSTER}", {}, BODY),
        ("PUT", "/clusters/c1", {"q": ""}, json.dumps({"名": "值"}, ensure_ascii=False).encode()),
        ("DELETE", "/clusters/c1", {}, None),
    ],
)
def test_auth_signs_what_httpx_sends(
    credentials: Credentials,
    method: str,
    path: str,
    query: dict[str, str | int | None],
    body: bytes | None,
) -> None:
    app = VerifyingApp()
    auth = signing.AcsV3Auth(lambda: credentials, clock=lambda: FIXED_NOW)
    qs = signing.encode_query(query)
    url = f"https://{HOST}{path}" + (f"?{qs}" if qs else "")
    headers = {"x-acs-action": "Test", "x-acs-version": "2015-12-15", "accept": "application/json"}
    if body is not None:
        headers["content-type"] = "application/json; charset=utf-8"
    with httpx.Client(transport=httpx.MockTransport(app), auth=auth) as client:
        response = client.request(method, url, headers=headers, content=body)

    assert app.problems == [[]]
    assert response.status_code == 200
    sent = app.seen[0]
    assert sent.url.raw_path.decode() == path + (f"?{qs}" if qs else "")
    assert sent.headers["x-acs-date"] == DATE
    assert ("x-acs-security-token" in sent.headers) is credentials.is_sts
    assert sent.headers["x-acs-content-sha256"] == hashlib.sha256(body or b"").hexdigest()
    signed = acs_verify.AUTH_RE.match(sent.headers["authorization"])
    assert signed is not None
    names = signed["names"].split(";")
    # Headers the transport owns are left unsigned; the ones we set are signed.
    assert "content-length" not in names and "accept-encoding" not in names
    assert {"accept", "host", "user-agent", "x-acs-action"} <= set(names)


def test_auth_uses_a_fresh_nonce_and_current_credentials_per_request() -> None:
    app = VerifyingApp()
    rotating = iter([AK, STS])
    auth = signing.AcsV3Auth(lambda: next(rotating))
    headers = {"x-acs-action": "DescribeTaskInfo", "x-acs-version": "2015-12-15"}
    with httpx.Client(transport=httpx.MockTransport(app), auth=auth) as client:
        client.get(f"https://{HOST}/tasks/T-1", headers=headers)
        client.get(f"https://{HOST}/tasks/T-1", headers=headers)

    assert app.problems == [[], []]
    first, second = app.seen
    assert first.headers["x-acs-signature-nonce"] != second.headers["x-acs-signature-nonce"]
    assert len(first.headers["x-acs-signature-nonce"]) == 32
    assert "x-acs-security-token" not in first.headers
    assert second.headers["x-acs-security-token"] == TOKEN


def test_auth_nonce_is_injectable() -> None:
    app = VerifyingApp()
    auth = signing.AcsV3Auth(lambda: AK, clock=lambda: FIXED_NOW, nonce=lambda: NONCE)
    with httpx.Client(transport=httpx.MockTransport(app), auth=auth) as client:
        client.get(f"https://{HOST}/tasks/T-1", headers={"x-acs-action": "A", "x-acs-version": "v"})
    assert app.seen[0].headers["x-acs-signature-nonce"] == NONCE


# --------------------------------------------------------------------------- the verifier itself


def _signed_request() -> httpx.Request:
    request = httpx.Request(
        "POST",
        f"https://{HOST}/api/v2/clusters/{CLUSTER}?a=x%20y",
        headers={"x-acs-action": "ScaleOutCluster", "x-acs-version": "2015-12-15"},
        content=BODY,
    )
    flow = signing.AcsV3Auth(lambda: STS, clock=lambda: FIXED_NOW).sync_auth_flow(request)
    return next(flow)


def test_verifier_accepts_a_good_request() -> None:
    assert acs_verify.request_problems(_signed_request(), {AK_ID: SECRET}) == []


def _other_body(r: httpx.Request) -> httpx.Request:
    return httpx.Request(r.method, r.url, headers=r.headers, content=BODY + b" ")


def _other_action(r: httpx.Request) -> httpx.Request:
    r.headers["x-acs-action"] = "DeleteCluster"
    return r


def _plus_for_space(r: httpx.Request) -> httpx.Request:
    return httpx.Request(
        r.method, str(r.url).replace("x%20y", "x+y"), headers=r.headers, content=BODY
    )


def _other_token(r: httpx.Request) -> httpx.Request:
    r.headers["x-acs-security-token"] = "other"
    return r


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (
            _other_body,
            ["x-acs-content-sha256 does not match the body received", "signature mismatch"],
        ),
        (_other_action, ["signature mismatch"]),
        (_plus_for_space, ["signature mismatch"]),
        (_other_token, ["signature mismatch"]),
    ],
    ids=["body", "signed-header", "query-plus-for-space", "token"],
)
def test_verifier_rejects_tampered_requests(
    tamper: Callable[[httpx.Request], httpx.Request], expected: list[str]
) -> None:
    assert acs_verify.request_problems(tamper(_signed_request()), {AK_ID: SECRET}) == expected


def test_verifier_rejects_wrong_secret() -> None:
    assert acs_verify.request_problems(_signed_request(), {AK_ID: "other"}) == [
        "signature mismatch"
    ]

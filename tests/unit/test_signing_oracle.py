"""Cross-check our ACS3-HMAC-SHA256 signer against the official ``alibabacloud-tea-openapi``.

Two layers:

* Hundreds of generated requests (seeded): our ``AcsV3Auth`` signs an ``httpx.Request`` and the
  SDK's ``Utils.get_authorization`` signs the same logical request, with the header set built the
  way the SDK's ``do_request`` builds it. The Authorization values must be identical. We compare
  canonical forms only: the SDK *sends* spaces in the query as ``+`` but *signs* ``%20``
  (reference/cs-api.md §3.6), so its sent URL is not a usable reference.
* Full ``Client.call_api`` requests captured by a real local HTTP server, against our
  ``CSClient`` given the SDK's date, nonce and the same user-agent.

The SDK always adds and signs ``x-acs-credentials-provider`` (telemetry) when its credential
reports a provider name; our client does not send it. The SDK-side credential here is a small
fake that reports no provider name, so that both sides send the same header set.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from alibabacloud_tea_openapi import utils_models as sdk_models
from alibabacloud_tea_openapi.client import Client as SdkClient
from alibabacloud_tea_openapi.utils import Utils, get_canonical_query_string
from darabonba.core import DaraCore
from darabonba.request import DaraRequest
from darabonba.runtime import RuntimeOptions

from edgescaler.cloud import cs, signing
from edgescaler.cloud.credentials import Credentials
from edgescaler.sensitive import Secret
from tests.support import acs_verify
from tests.support.sdk import FakeSdkCredential

AK_ID = "LTAI5tORACLEaccessKeyId"
SECRET = "ORACLEaccessKeySecret0123456789"
TOKEN = "CAIS-ORACLE-STS-TOKEN"
HOST = "cs.cn-hangzhou.aliyuncs.com"
ALGO = "ACS3-HMAC-SHA256"
CASES = 400

# Characters that stress encoding: reserved, sub-delims, "~", "%", unicode (2-, 3- and 4-byte).
ALPHABET = [*"abcXYZ019-_.~ /+=&%*'()!:@,;$?#", "é", "ü", "节", "点", "😀"]
QUERY_KEYS = [
    "pageNumber",
    "pageSize",
    "page_number",
    "page_size",
    "nodepool_id",
    "state",
    "instanceIds",
    "nodeLabels",
    "nodeNames",
    "max_results",
    "next_token",
    "NodepoolName",
    "Z",
    "_x",
]
PATHS = [
    "/api/v2/clusters/{0}",
    "/clusters/{0}/nodes",
    "/clusters/{0}/nodepools/{1}",
    "/clusters/{0}/tasks",
    "/tasks/{0}",
    "/tasks/{0}/cancel",
    "/quota",
    "/",
    "",
]


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(lo, hi)))


def _segment(rng: random.Random) -> str:
    text = _text(rng, 1, 10)
    return "x" if text in (".", "..") else text


def _json_body(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"count": rng.randint(1, 50)}
    for i in range(rng.randint(0, 6)):
        kind = rng.randrange(5)
        key = f"k{i}_{_text(rng, 0, 4)}"
        if kind == 0:
            body[key] = _text(rng, 0, 16)
        elif kind == 1:
            body[key] = rng.random() < 0.5
        elif kind == 2:
            body[key] = [_text(rng, 1, 5) for _ in range(rng.randint(0, 3))]
        elif kind == 3:
            body[key] = {"key": _text(rng, 1, 6), "value": _text(rng, 0, 6)}
        else:
            body[key] = None
    return body


@dataclass
class Case:
    method: str
    path: str
    query: dict[str, str | None]
    body: bytes | None
    body_obj: dict[str, Any] | None
    sts: bool
    user_agent: str | None
    date: datetime
    nonce: str
    action: str = "ScaleOutCluster"
    tags: set[str] = field(default_factory=set)


def _cases() -> list[Case]:
    rng = random.Random(20250102)
    out: list[Case] = []
    for _ in range(CASES):
        # "." and ".." are left out: as URL path segments they are dot segments that httpx (like
        # any RFC 3986 client) removes; CSClient refuses such ids instead of sending them.
        segs = [signing.percent_encode(_segment(rng)) for _ in range(2)]
        path = rng.choice(PATHS).format(*segs)
        query: dict[str, str | None] = {}
        for key in rng.sample(QUERY_KEYS, rng.randint(0, 5)):
            query[key] = None if rng.random() < 0.1 else _text(rng, 0, 12)
        choice = rng.randrange(3)
        body_obj = _json_body(rng) if choice == 2 else None
        body = cs.encode_body(body_obj) if body_obj is not None else (b"" if choice == 1 else None)
        case = Case(
            method=rng.choice(["GET", "POST", "PUT", "DELETE"]),
            path=path,
            query=query,
            body=body,
            body_obj=body_obj,
            sts=rng.random() < 0.5,
            user_agent=rng.choice(
                [
                    None,
                    "edgescaler/0.1.0",
                    "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2 extra",
                ]
            ),
            date=datetime(2020, 1, 1, tzinfo=timezone.utc)
            + timedelta(seconds=rng.randrange(10 * 365 * 86400)),
            nonce=f"{rng.getrandbits(128):032x}",
            action=rng.choice(["ScaleOutCluster", "DescribeClusterNodes", "DescribeTaskInfo"]),
        )
        values = [v for v in query.values() if v is not None]
        for ch, tag in [(" ", "space"), ("/", "slash"), ("~", "tilde"), ("+", "plus")]:
            if any(ch in v for v in values):
                case.tags.add(tag)
        if any(not v.isascii() for v in values) or not path.isascii():
            case.tags.add("unicode")
        if "" in values:
            case.tags.add("empty-value")
        if None in query.values():
            case.tags.add("none-value")
        if "%25" in path or "%2F" in path:
            case.tags.add("encoded-path")
        if body is not None and not body.isascii():
            case.tags.add("unicode-body")
        out.append(case)
    return out


CASE_LIST = _cases()


def _ours(case: Case) -> httpx.Request:
    creds = Credentials(AK_ID, Secret(SECRET), Secret(TOKEN) if case.sts else None)
    qs = signing.encode_query(case.query)
    url = f"https://{HOST}{case.path}" + (f"?{qs}" if qs else "")
    headers = {"x-acs-action": case.action, "x-acs-version": "2015-12-15"}
    headers["accept"] = "application/json"
    if case.user_agent:
        headers["user-agent"] = case.user_agent
    if case.body:
        headers["content-type"] = "application/json; charset=utf-8"
    request = httpx.Request(case.method, url, headers=headers, content=case.body)
    auth = signing.AcsV3Auth(lambda: creds, clock=lambda: case.date, nonce=lambda: case.nonce)
    return next(auth.sync_auth_flow(request))


def _sdk(case: Case) -> str:
    """The SDK's Authorization, with headers assembled as ``Client.do_request`` does (0.4.6)."""
    request = DaraRequest()
    request.method = case.method
    request.pathname = case.path
    request.query = dict(case.query)
    headers = {
        "host": HOST,
        "x-acs-version": "2015-12-15",
        "x-acs-action": case.action,
        "x-acs-date": case.date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": case.nonce,
        "accept": "application/json",
    }
    if case.user_agent:
        headers["user-agent"] = case.user_agent
    payload = Utils.hash(case.body or b"", ALGO)
    if case.body_obj is not None:
        sdk_bytes = DaraCore.to_json_string(case.body_obj).encode("utf-8")
        assert sdk_bytes == case.body, "SDK and cs.encode_body serialise differently"
        headers["content-type"] = "application/json; charset=utf-8"
    headers["x-acs-content-sha256"] = payload.hex()
    if case.sts:
        headers["x-acs-accesskey-id"] = AK_ID
        headers["x-acs-security-token"] = TOKEN
    request.headers = headers
    return str(Utils.get_authorization(request, ALGO, payload.hex(), AK_ID, SECRET))


def test_generated_cases_cover_the_tricky_inputs() -> None:
    tags: dict[str, int] = {}
    for case in CASE_LIST:
        for tag in case.tags:
            tags[tag] = tags.get(tag, 0) + 1
    wanted = [
        "space",
        "slash",
        "tilde",
        "plus",
        "unicode",
        "empty-value",
        "none-value",
        "encoded-path",
        "unicode-body",
    ]
    assert {t: tags.get(t, 0) >= 10 for t in wanted} == dict.fromkeys(wanted, True), tags
    assert {c.method for c in CASE_LIST} == {"GET", "POST", "PUT", "DELETE"}
    assert 100 < sum(c.sts for c in CASE_LIST) < CASES - 100
    assert {c.body is None for c in CASE_LIST} == {True, False}
    assert any(c.body == b"" for c in CASE_LIST)


def test_authorization_matches_the_sdk_on_generated_requests() -> None:
    mismatches = []
    for i, case in enumerate(CASE_LIST):
        ours = _ours(case).headers["authorization"]
        theirs = _sdk(case)
        if ours != theirs:
            mismatches.append((i, case.method, case.path, case.query, ours, theirs))
    assert mismatches == []


def test_encoders_match_the_sdk_on_generated_inputs() -> None:
    for case in CASE_LIST:
        assert signing.encode_query(case.query) == get_canonical_query_string(case.query)
        for value in case.query.values():
            if value is not None:
                assert signing.percent_encode(value) == Utils.get_encode_param(value)


def test_our_signed_requests_reverify_from_what_httpx_holds() -> None:
    # The same requests, checked from the receiving side (what the emulator will do).
    bad = []
    for i, case in enumerate(CASE_LIST):
        found = acs_verify.request_problems(_ours(case), {AK_ID: SECRET})
        if found:
            bad.append((i, found))
    assert bad == []


# --------------------------------------------------------------------------- full call_api


@dataclass
class Captured:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class CaptureServer:
    """A real loopback HTTP server that records requests and answers like CS."""

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append(
                    Captured(
                        self.command, self.path, acs_verify.lowered(self.headers.items()), body
                    )
                )
                path = self.path.partition("?")[0]
                if path.startswith("/api/v2/clusters/"):
                    answer: dict[str, Any] = {
                        "cluster_id": "c1",
                        "task_id": "T-1",
                        "request_id": "R-1",
                    }
                elif path.startswith("/tasks/"):
                    answer = {"task_id": "T-1", "state": "running"}
                else:
                    answer = {"nodes": [], "page": {"page_number": 1, "page_size": 100}}
                    answer["page"]["total_count"] = 0
                out = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.hostport = f"127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptureServer]:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    srv = CaptureServer()
    yield srv
    srv.close()


CLUSTER = "c0123456789abcdef 01/~"  # not a real id: exercises path-segment encoding
TASK = "T-5a54309c80282e39ea00002f"
SCALE_BODY = {
    "count": 2,
    "worker_instance_type": "ens.sn1.tiny",
    "ens_region_id": "cn-beijing-telecom",
    "worker_image_id": "m-EXAMPLEIMAGE",
    "ens_internet_charge_type": "BandwidthByDay",
    "worker_period": 1,
    "login_password": "Oracle-Pw-1234!",
    "worker_system_disk_size": 20,
    "is_edge_worker": True,
    "worker_data_disk_size": 0,
    "timeout_mins": 60,
    "tags": [{"key": "site", "value": "北京-电信"}],
}

CALLS = {
    "ScaleOutCluster": (
        "POST",
        f"/api/v2/clusters/{Utils.get_encode_param(CLUSTER)}",
        None,
        lambda c: c.scale_out(CLUSTER, SCALE_BODY),
    ),
    "DescribeTaskInfo": (
        "GET",
        f"/tasks/{Utils.get_encode_param(TASK)}",
        None,
        lambda c: c.describe_task(TASK),
    ),
    "DescribeClusterNodes": (
        "GET",
        f"/clusters/{Utils.get_encode_param(CLUSTER)}/nodes",
        {"pageNumber": "1", "pageSize": "100"},
        lambda c: c.list_nodes(CLUSTER),
    ),
}


def _our_client(srv: CaptureServer, sts: bool, **kw: Any) -> cs.CSClient:
    creds = Credentials(AK_ID, Secret(SECRET), Secret(TOKEN) if sts else None)
    return cs.CSClient(
        "cn-hangzhou", lambda: creds, endpoint=f"http://{srv.hostport}", max_retries=0, **kw
    )


def _sdk_call(srv: CaptureServer, sts: bool, action: str, user_agent: str) -> Captured:
    method, pathname, query, _ = CALLS[action]
    config = sdk_models.Config(
        credential=FakeSdkCredential(AK_ID, SECRET, TOKEN, sts),
        endpoint=srv.hostport,
        protocol="HTTP",
    )
    params = sdk_models.Params(
        action=action,
        version="2015-12-15",
        protocol="HTTP",
        pathname=pathname,
        method=method,
        auth_type="AK",
        style="ROA",
        req_body_type="json",
        body_type="json",
    )
    request = sdk_models.OpenApiRequest(
        headers={"user-agent": user_agent},
        query=query,
        body=SCALE_BODY if method == "POST" else None,
    )
    SdkClient(config).call_api(params, request, RuntimeOptions())
    return srv.requests[-1]


@pytest.mark.parametrize("sts", [True, False], ids=["sts", "ak"])
@pytest.mark.parametrize("action", list(CALLS))
def test_cs_client_matches_sdk_call_api_on_the_wire(
    server: CaptureServer, action: str, sts: bool
) -> None:
    call = CALLS[action][3]
    # 1. Learn the user-agent our client sends (it is signed, so the SDK must send the same).
    with _our_client(server, sts) as client:
        call(client)
    user_agent = server.requests[-1].headers["user-agent"]

    # 2. The SDK's request, exactly as it reached the server.
    sdk = _sdk_call(server, sts, action, user_agent)
    sdk_date = datetime.strptime(sdk.headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ")

    # 3. Ours, given the SDK's date and nonce.
    with _our_client(
        server,
        sts,
        clock=lambda: sdk_date.replace(tzinfo=timezone.utc),
        nonce=lambda: sdk.headers["x-acs-signature-nonce"],
    ) as client:
        call(client)
    ours = server.requests[-1]

    assert ours.method == sdk.method
    assert ours.target == sdk.target
    assert hashlib.sha256(ours.body).hexdigest() == hashlib.sha256(sdk.body).hexdigest()
    sdk_auth = acs_verify.AUTH_RE.match(sdk.headers["authorization"])
    assert sdk_auth is not None
    signed = sdk_auth["names"].split(";")
    assert {n: ours.headers.get(n) for n in signed} == {n: sdk.headers[n] for n in signed}
    assert ours.headers["authorization"] == sdk.headers["authorization"]
    # Both are accepted by a receiving-side verifier built on our pure functions.
    assert acs_verify.problems(sdk.method, sdk.target, sdk.headers, sdk.body, {AK_ID: SECRET}) == []
    assert (
        acs_verify.problems(ours.method, ours.target, ours.headers, ours.body, {AK_ID: SECRET})
        == []
    )


def test_sdk_sends_plus_for_space_but_signs_percent20(server: CaptureServer) -> None:
    """reference/cs-api.md §3.6: why we build the query string ourselves."""
    config = sdk_models.Config(
        credential=FakeSdkCredential(AK_ID, SECRET, TOKEN, False),
        endpoint=server.hostport,
        protocol="HTTP",
    )
    params = sdk_models.Params(
        action="DescribeClusterNodes",
        version="2015-12-15",
        protocol="HTTP",
        pathname="/clusters/c1/nodes",
        method="GET",
        auth_type="AK",
        style="ROA",
        req_body_type="json",
        body_type="json",
    )
    SdkClient(config).call_api(
        params, sdk_models.OpenApiRequest(query={"nodepool_id": "np x"}), RuntimeOptions()
    )
    sdk = server.requests[-1]
    assert sdk.target == "/clusters/c1/nodes?nodepool_id=np+x"
    # Read with RFC 3986 ("+" is a plus), the SDK's own request does not verify; ours would.
    found = acs_verify.problems(sdk.method, sdk.target, sdk.headers, sdk.body, {AK_ID: SECRET})
    assert found == ["signature mismatch"]
    fixed_target = sdk.target.replace("+", "%20")
    assert acs_verify.problems(sdk.method, fixed_target, sdk.headers, b"", {AK_ID: SECRET}) == []

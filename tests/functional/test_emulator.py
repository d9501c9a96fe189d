"""The CS API emulator over real HTTP: signatures, body rules, tasks, nodes, faults, Prometheus.

Requests are signed with the project's own ``AcsV3Auth`` / signing functions (the CS client is
not used here). Time is a fake clock that the tests advance; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgescaler.cloud import signing
from edgescaler.cloud.credentials import Credentials
from edgescaler.emulator import (
    API_VERSION,
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    ClusterSpec,
    Emulator,
    EmulatorConfig,
    ScenarioStep,
    add_cli_arguments,
    config_from_args,
    load_scenario,
    verify_signature,
)
from edgescaler.sensitive import Secret
from tests.support import acs_verify
from tests.support.clock import FakeClock as _FakeClock

T0 = 1_735_787_045.0  # 2025-01-02T03:04:05Z
CLUSTER = "c-test-0001"
PASSWORD = "Zq7!emulatorPw"  # distinctive, so a leak is easy to spot
VALID_BODY: dict[str, Any] = {
    "count": 3,
    "worker_instance_type": "ens.sn1.tiny",
    "ens_region_id": "cn-beijing-telecom",
    "worker_image_id": "m-EXAMPLEIMAGE",
    "ens_internet_charge_type": "BandwidthByDay",
    "worker_period": 1,
    "login_password": PASSWORD,
    "worker_system_disk_size": 20,
    "is_edge_worker": True,
    "worker_data_disk_size": 0,
    "timeout_mins": 60,
}
MISSING = object()
ROOT = Path(__file__).resolve().parents[2]
# One shared context: every new httpx client would otherwise load the CA bundle (~50 ms each).
TLS = ssl.create_default_context()


class FakeClock(_FakeClock):
    def __init__(self, start: float = T0) -> None:
        super().__init__(start)


def creds(
    key_id: str = DEFAULT_ACCESS_KEY_ID,
    secret: str = DEFAULT_ACCESS_KEY_SECRET,
    token: str | None = None,
) -> Credentials:
    return Credentials(key_id, Secret(secret), Secret(token) if token else None)


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


class Api:
    """A tiny signed client: just enough to drive the four CS routes."""

    def __init__(
        self, emu: Emulator, clock: FakeClock, credentials: Credentials | None = None, **kw: Any
    ) -> None:
        c = credentials or creds()
        self.http = httpx.Client(
            base_url=emu.url,
            auth=signing.AcsV3Auth(lambda: c, clock=clock.dt),
            timeout=kw.pop("timeout", 5.0),
            verify=TLS,
        )

    def close(self) -> None:
        self.http.close()

    def _headers(self, action: str) -> dict[str, str]:
        return {"x-acs-action": action, "x-acs-version": API_VERSION, "accept": "application/json"}

    def scale_out(self, cluster: str = CLUSTER, body: Any = None) -> httpx.Response:
        headers = self._headers("ScaleOutCluster")
        headers["content-type"] = "application/json; charset=utf-8"
        content = encode(VALID_BODY if body is None else body)
        return self.http.post(f"/api/v2/clusters/{cluster}", content=content, headers=headers)

    def task(self, task_id: str) -> httpx.Response:
        return self.http.get(f"/tasks/{task_id}", headers=self._headers("DescribeTaskInfo"))

    def nodes(self, cluster: str = CLUSTER, **query: Any) -> httpx.Response:
        qs = signing.encode_query(query)
        url = f"/clusters/{cluster}/nodes" + (f"?{qs}" if qs else "")
        return self.http.get(url, headers=self._headers("DescribeClusterNodes"))

    def tasks(self, cluster: str = CLUSTER, **query: Any) -> httpx.Response:
        qs = signing.encode_query(query)
        url = f"/clusters/{cluster}/tasks" + (f"?{qs}" if qs else "")
        return self.http.get(url, headers=self._headers("DescribeClusterTasks"))


def get(url: str, **kw: Any) -> httpx.Response:
    return httpx.get(url, timeout=5, verify=TLS, **kw)


def post(url: str, **kw: Any) -> httpx.Response:
    return httpx.post(url, timeout=5, verify=TLS, **kw)


def make(clock: FakeClock, **kw: Any) -> Emulator:
    kw.setdefault("clusters", {CLUSTER: ClusterSpec(edge_workers=2)})
    return Emulator(EmulatorConfig(**kw), clock=clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[Emulator]:
    with make(clock, task_delay=30, join_delay=120) as e:
        yield e


@pytest.fixture
def api(emu: Emulator, clock: FakeClock) -> Iterator[Api]:
    a = Api(emu, clock)
    yield a
    a.close()


def raw_request(
    emu: Emulator,
    clock: FakeClock,
    *,
    method: str = "POST",
    path: str = f"/api/v2/clusters/{CLUSTER}",
    query: str = "",
    body: bytes | None = None,
    action: str = "ScaleOutCluster",
    version: str = API_VERSION,
    credentials: Credentials | None = None,
    nonce: str | None = None,
    now: datetime | None = None,
    signed_extra: dict[str, str] | None = None,
    send_body: bytes | None = None,
    send_query: str | None = None,
    tamper: Callable[[dict[str, str]], None] | None = None,
) -> httpx.Response:
    """Sign by hand with the pure signing functions, then optionally tamper before sending."""
    if body is None:
        body = encode(VALID_BODY) if method == "POST" else b""
    headers = {"host": emu.url.removeprefix("http://")}
    if body:
        headers["content-type"] = "application/json; charset=utf-8"
    headers.update(
        signing.acs_headers(
            action=action,
            version=version,
            now=now or clock.dt(),
            nonce=nonce or signing.new_nonce(),
        )
    )
    headers.update(signed_extra or {})
    headers.update(
        signing.sign_headers(
            method=method,
            path=path,
            query=signing.canonical_query_from_raw(query),
            headers=headers,
            body=body,
            credentials=credentials or creds(),
        )
    )
    if tamper:
        tamper(headers)
    sent_query = query if send_query is None else send_query
    url = emu.url + path + (f"?{sent_query}" if sent_query else "")
    content = body if send_body is None else send_body
    return httpx.request(method, url, headers=headers, content=content, timeout=5, verify=TLS)


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    data: dict[str, Any] = resp.json()
    assert data["code"] == code, data
    assert data["status"] == status
    assert data["requestId"] == resp.headers["x-acs-request-id"]
    return data


# --------------------------------------------------------------------------- happy path


def test_scale_out_task_and_nodes_follow_the_clock(
    emu: Emulator, api: Api, clock: FakeClock
) -> None:
    resp = api.scale_out()
    assert resp.status_code == 202
    data = resp.json()
    assert data["cluster_id"] == CLUSTER
    assert data["request_id"] == resp.headers["x-acs-request-id"]
    task_id = data["task_id"]
    assert task_id.startswith("T-") and len(task_id) == 26
    int(task_id[2:], 16)

    task = api.task(task_id).json()
    assert task["state"] == "running"
    assert task["task_type"] == "cluster_scaleout"
    assert task["cluster_id"] == CLUSTER
    assert task["error"] == {}
    assert [r["status"] for r in task["task_result"]] == ["initial"] * 3
    assert set(task) >= {"task_id", "created", "updated", "current_stage", "task_result"}

    clock.advance(29)
    assert api.task(task_id).json()["state"] == "running"
    clock.advance(1)
    done = api.task(task_id).json()
    assert done["state"] == "success"
    assert [r["status"] for r in done["task_result"]] == ["success"] * 3
    assert datetime.fromisoformat(done["updated"]) - datetime.fromisoformat(
        done["created"]
    ) == timedelta(seconds=30)

    new_ids = {r["data"] for r in done["task_result"]}
    nodes = api.nodes(pageSize=100).json()
    assert nodes["page"]["total_count"] == 3 + 1 + 2 + 3
    new = [n for n in nodes["nodes"] if n["instance_id"] in new_ids]
    assert len(new) == 3
    assert {n["state"] for n in new} == {"initial"}
    assert {n["instance_type"] for n in new} == {"ens.sn1.tiny"}
    assert {n["instance_role"] for n in new} == {"Worker"}

    clock.advance(90)  # 120 s after the scale-out
    nodes = api.nodes(pageSize=100).json()["nodes"]
    assert {n["state"] for n in nodes if n["instance_id"] in new_ids} == {"running"}
    assert {n["node_status"] for n in nodes if n["instance_id"] in new_ids} == {"Ready"}
    counts = emu.state()["nodes"][CLUSTER]
    assert counts["edge_workers"] == 5 and counts["edge_running"] == 5
    assert counts["masters"] == 3 and counts["cloud_workers"] == 1


def test_initial_nodes_have_roles_and_types(api: Api) -> None:
    nodes = api.nodes(pageSize=100).json()["nodes"]
    masters = [n for n in nodes if n["instance_role"] == "Master"]
    workers = [n for n in nodes if n["instance_role"] == "Worker"]
    assert len(masters) == 3 and len(workers) == 3
    assert all(n["instance_type"].startswith("ecs.") for n in masters)
    assert sorted(n["instance_type"].split(".")[0] for n in workers) == ["ecs", "ens", "ens"]
    assert all(n["state"] == "running" and n["node_status"] == "Ready" for n in nodes)
    for node in nodes:
        assert set(node) >= {"instance_id", "node_name", "nodepool_id", "creation_time"}


def test_zero_task_delay_is_done_at_the_next_read(clock: FakeClock) -> None:
    with make(clock) as emu:
        api = Api(emu, clock)
        task_id = api.scale_out().json()["task_id"]
        assert api.task(task_id).json()["state"] == "success"
        api.close()


def test_unknown_cluster_and_task(api: Api) -> None:
    assert_error(api.scale_out("c-nope"), 404, "ErrorClusterNotFound")
    assert_error(api.nodes("c-nope"), 404, "ErrorClusterNotFound")
    assert_error(api.tasks("c-nope"), 404, "ErrorClusterNotFound")
    assert_error(api.task("T-000000000000000000000000"), 404, "ErrorTaskNotFound")


def test_unknown_route_is_404(emu: Emulator) -> None:
    assert get(emu.url + "/api/v1/clusters").status_code == 404


def test_node_pagination(clock: FakeClock) -> None:
    with make(clock, clusters={CLUSTER: ClusterSpec(edge_workers=25)}) as emu:
        api = Api(emu, clock)
        first = api.nodes().json()
        assert first["page"] == {"page_number": 1, "page_size": 10, "total_count": 29}
        seen: list[str] = []
        for number, expected in ((1, 10), (2, 10), (3, 9), (4, 0)):
            page = api.nodes(pageNumber=number, pageSize=10).json()
            assert len(page["nodes"]) == expected
            assert page["page"]["page_number"] == number
            seen += [n["instance_id"] for n in page["nodes"]]
        assert len(seen) == len(set(seen)) == 29
        assert len(api.nodes(pageSize=100).json()["nodes"]) == 29
        assert_error(api.nodes(pageSize=101), 400, "InvalidParameter.pageSize")
        assert_error(api.nodes(pageNumber=0), 400, "InvalidParameter.pageNumber")
        running = api.nodes(pageSize=100, state="initial").json()
        assert running["page"]["total_count"] == 0
        api.close()


def test_describe_cluster_tasks_newest_first_and_paged(api: Api, clock: FakeClock) -> None:
    ids = []
    for _ in range(3):
        ids.append(api.scale_out().json()["task_id"])
        clock.advance(1)
    resp = api.tasks()
    data = resp.json()
    assert data["requestId"] == resp.headers["x-acs-request-id"]
    assert [t["task_id"] for t in data["tasks"]] == ids[::-1]
    assert data["page_info"] == {"page_number": 1, "page_size": 10, "total_count": 3}
    assert {t["task_type"] for t in data["tasks"]} == {"cluster_scaleout"}
    assert {t["state"] for t in data["tasks"]} == {"running"}
    page2 = api.tasks(page_number=2, page_size=2).json()
    assert [t["task_id"] for t in page2["tasks"]] == [ids[0]]


def test_concurrent_scale_outs_are_all_recorded(emu: Emulator, clock: FakeClock) -> None:
    barrier = threading.Barrier(16)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def one() -> None:
        client = Api(emu, clock)
        body = {**VALID_BODY, "count": 1}
        barrier.wait()
        resp = client.scale_out(body=body)
        client.close()
        with lock:
            results.append(resp)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert [r.status_code for r in results] == [202] * 16
    assert len({r.json()["task_id"] for r in results}) == 16
    state = emu.state()
    assert state["calls"]["ScaleOutCluster"] == 16
    assert state["nodes"][CLUSTER]["edge_workers"] == 2 + 16


# --------------------------------------------------------------------------- signatures


def _drop_signed(name: str) -> Callable[[dict[str, str]], None]:
    def tamper(headers: dict[str, str]) -> None:
        auth = headers["authorization"]
        head, _, rest = auth.partition("SignedHeaders=")
        names, _, tail = rest.partition(",")
        kept = ";".join(n for n in names.split(";") if n != name)
        headers["authorization"] = f"{head}SignedHeaders={kept},{tail}"

    return tamper


def test_hand_signed_request_is_accepted(emu: Emulator, clock: FakeClock) -> None:
    assert raw_request(emu, clock).status_code == 202


def test_missing_authorization(emu: Emulator, clock: FakeClock) -> None:
    def drop(headers: dict[str, str]) -> None:
        del headers["authorization"]

    resp = raw_request(emu, clock, tamper=drop)
    assert_error(resp, 400, "MissingAuthorization")


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abc",
        "ACS3-HMAC-SHA256 Credential=x",
        "ACS3-HMAC-SHA256 Credential=x,SignedHeaders=host,Signature=",
        "ACS3-HMAC-SHA256 Credential=x,SignedHeaders=host,Signature=a,Extra=b",
    ],
)
def test_garbled_authorization(emu: Emulator, clock: FakeClock, value: str) -> None:
    resp = raw_request(emu, clock, tamper=lambda h: h.__setitem__("authorization", value))
    assert_error(resp, 400, "InvalidAuthorization")


def test_unknown_access_key_id(emu: Emulator, clock: FakeClock) -> None:
    resp = raw_request(emu, clock, credentials=creds(key_id="LTAIsomeoneElse"))
    assert_error(resp, 404, "InvalidAccessKeyId.NotFound")


# The independent verifier's list (tests/support/acs_verify.py), not the emulator's own.
@pytest.mark.parametrize("name", acs_verify.REQUIRED)
def test_required_header_must_be_signed(emu: Emulator, clock: FakeClock, name: str) -> None:
    data = assert_error(
        raw_request(emu, clock, tamper=_drop_signed(name)), 400, "IncompleteSignature"
    )
    assert name in data["message"]


def test_unsigned_acs_header_is_rejected(emu: Emulator, clock: FakeClock) -> None:
    resp = raw_request(emu, clock, tamper=lambda h: h.__setitem__("x-acs-extra", "1"))
    assert "x-acs-extra" in assert_error(resp, 400, "IncompleteSignature")["message"]


def test_content_sha256_must_match_body(emu: Emulator, clock: FakeClock) -> None:
    other = encode({**VALID_BODY, "count": 4})
    assert_error(raw_request(emu, clock, send_body=other), 400, "ContentSha256Mismatch")
    assert emu.state()["scale_out_calls"] == []


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(-16 * 60, False), (16 * 60, False), (-14 * 60, True), (14 * 60, True)],
)
def test_date_window(emu: Emulator, clock: FakeClock, offset: int, ok: bool) -> None:
    resp = raw_request(emu, clock, now=clock.dt() + timedelta(seconds=offset))
    if ok:
        assert resp.status_code == 202
    else:
        assert_error(resp, 400, "InvalidTimeStamp.Expired")


def test_date_format(emu: Emulator, clock: FakeClock) -> None:
    resp = raw_request(emu, clock, signed_extra={"x-acs-date": "2025-01-02 03:04:05"})
    assert_error(resp, 400, "InvalidTimeStamp.Format")


def test_nonce_reuse_is_rejected_and_does_nothing(emu: Emulator, clock: FakeClock) -> None:
    nonce = "0123456789abcdef0123456789abcdef"
    assert raw_request(emu, clock, nonce=nonce).status_code == 202
    assert_error(raw_request(emu, clock, nonce=nonce), 400, "SignatureNonceUsed")
    assert len(emu.scale_out_calls()) == 1
    assert emu.state()["rejected"] == {"SignatureNonceUsed": 1}


def test_action_must_match_route(emu: Emulator, clock: FakeClock) -> None:
    resp = raw_request(emu, clock, action="DescribeTaskInfo")
    assert_error(resp, 400, "InvalidAction.Mismatch")


def test_version_must_be_2015_12_15(emu: Emulator, clock: FakeClock) -> None:
    assert_error(raw_request(emu, clock, version="2018-01-01"), 400, "InvalidVersion")


def test_wrong_secret_does_not_match(emu: Emulator, clock: FakeClock) -> None:
    resp = raw_request(emu, clock, credentials=creds(secret="not-the-secret"))
    data = assert_error(resp, 400, "SignatureDoesNotMatch")
    assert "not-the-secret" not in resp.text and DEFAULT_ACCESS_KEY_SECRET not in data["message"]


def test_raw_query_is_what_is_verified(emu: Emulator, clock: FakeClock) -> None:
    path = f"/clusters/{CLUSTER}/nodes"
    common: dict[str, Any] = {"method": "GET", "path": path, "action": "DescribeClusterNodes"}
    ok = raw_request(emu, clock, query="pageSize=2&pageNumber=2", **common)
    assert ok.status_code == 200 and len(ok.json()["nodes"]) == 2
    spaced = raw_request(emu, clock, query="nodepool_id=np%20x%2Fy", **common)
    assert spaced.status_code == 200 and spaced.json()["nodes"] == []
    tampered = raw_request(emu, clock, query="pageSize=2", send_query="pageSize=3", **common)
    assert_error(tampered, 400, "SignatureDoesNotMatch")


def test_sts_token_is_required_and_must_match(clock: FakeClock) -> None:
    token = "CAIS-emulator-token-0001"
    with make(clock, security_token=token) as emu:
        assert_error(raw_request(emu, clock), 400, "MissingSecurityToken")
        wrong = raw_request(emu, clock, credentials=creds(token="CAIS-other"))
        assert_error(wrong, 400, "InvalidSecurityToken.Mismatch")
        assert "CAIS-other" not in wrong.text
        assert raw_request(emu, clock, credentials=creds(token=token)).status_code == 202
        unsigned = raw_request(
            emu, clock, credentials=creds(token=token), tamper=_drop_signed("x-acs-security-token")
        )
        assert_error(unsigned, 400, "IncompleteSignature")
        assert token not in json.dumps(emu.state())


def test_token_sent_to_a_non_sts_emulator_is_rejected(emu: Emulator, clock: FakeClock) -> None:
    resp = raw_request(emu, clock, credentials=creds(token="CAIS-stray"))
    assert_error(resp, 400, "InvalidSecurityToken.Mismatch")


# --------------------------------------------------------------------------- body rules

BAD_FIELDS: list[tuple[str, Any]] = [
    ("count", MISSING),
    ("count", 0),
    ("count", 501),
    ("count", True),
    ("count", "2"),
    ("count", 1.5),
    ("worker_instance_type", MISSING),
    ("worker_instance_type", ""),
    ("worker_instance_type", "ecs.g6.large"),
    ("worker_instance_type", ["ens.sn1.tiny"]),
    ("ens_region_id", MISSING),
    ("ens_region_id", ""),
    ("ens_region_id", 7),
    ("worker_image_id", MISSING),
    ("worker_image_id", "  "),
    ("ens_internet_charge_type", MISSING),
    ("ens_internet_charge_type", "PayByTraffic"),
    ("worker_period", MISSING),
    ("worker_period", 4),
    ("worker_period", True),
    ("worker_period", "1"),
    ("login_password", MISSING),
    ("login_password", "Sh0rt!a"),
    ("login_password", "Aa1!" + "x" * 27),
    ("login_password", "onlylowercase1"),
    ("login_password", "Abcdefg1\u00e9"),  # a character ENS does not accept
    ("login_password", 12345678),
    ("worker_system_disk_size", MISSING),
    ("worker_system_disk_size", 25),
    ("worker_system_disk_size", 10),
    ("worker_system_disk_size", 110),
    ("worker_system_disk_size", True),
    ("is_edge_worker", MISSING),
    ("is_edge_worker", False),
    ("is_edge_worker", 1),
    ("is_edge_worker", "true"),
    ("worker_data_disk_size", 10),
    ("worker_data_disk_size", 25),
    ("worker_data_disk_size", 210),
    ("worker_data_disk_size", False),
    ("worker_auto_renew", "yes"),
    ("worker_auto_renew_period", 0),
    ("worker_auto_renew_period", 13),
    ("timeout_mins", 0),
    ("timeout_mins", True),
    ("timeout_mins", "60"),
    ("worker_instance_types", ["ens.sn1.tiny"]),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_body_rule(emu: Emulator, api: Api, field: str, value: Any) -> None:
    body = dict(VALID_BODY)
    if value is MISSING:
        del body[field]
    else:
        body[field] = value
    resp = api.scale_out(body=body)
    data = assert_error(resp, 400, f"InvalidParameter.{field}")
    assert field in data["message"]
    assert PASSWORD not in resp.text
    if field == "login_password" and isinstance(value, str):
        assert value not in resp.text
    assert emu.state()["scale_out_calls"] == []


def test_auto_renew_needs_a_period(api: Api) -> None:
    resp = api.scale_out(body={**VALID_BODY, "worker_auto_renew": True})
    assert_error(resp, 400, "InvalidParameter.worker_auto_renew_period")


@pytest.mark.parametrize(
    "changes",
    [
        {"worker_auto_renew": True, "worker_auto_renew_period": 12},
        {"worker_auto_renew": False},
        {"ens_internet_charge_type": "95BandwidthByMonth", "worker_period": 60},
        {"worker_data_disk_size": 200, "worker_system_disk_size": 100, "count": 500},
        {"login_password": "NoSpecial123"},
        {"login_password": "no-upper-123"},
    ],
)
def test_valid_body_variants(api: Api, changes: dict[str, Any]) -> None:
    assert api.scale_out(body={**VALID_BODY, **changes}).status_code == 202


def test_optional_fields_may_be_left_out(api: Api) -> None:
    body = {
        k: v for k, v in VALID_BODY.items() if k not in ("worker_data_disk_size", "timeout_mins")
    }
    assert api.scale_out(body=body).status_code == 202


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_body_must_be_a_json_object(emu: Emulator, clock: FakeClock, raw: bytes) -> None:
    assert_error(raw_request(emu, clock, body=raw), 400, "InvalidParameter")


# --------------------------------------------------------------------------- faults


def test_server_error_then_success(emu: Emulator, api: Api) -> None:
    emu.inject("ScaleOutCluster", "server_error", count=2)
    assert_error(api.scale_out(), 503, "ServiceUnavailable")
    assert_error(api.scale_out(), 503, "ServiceUnavailable")
    assert api.scale_out().status_code == 202
    state = emu.state()
    assert state["calls"]["ScaleOutCluster"] == 3
    assert len(state["scale_out_calls"]) == 1 and len(state["tasks"]) == 1
    assert state["faults"]["fired"] == {"server_error": 2}
    assert state["faults"]["pending"] == []


def test_throttle_sets_retry_after_and_does_nothing(emu: Emulator, api: Api) -> None:
    emu.inject("ScaleOutCluster", "throttle", seconds=0.25)
    emu.inject("ScaleOutCluster", "throttle")
    first = api.scale_out()
    assert_error(first, 400, "Throttling.User")
    assert first.headers["x-acs-retry-after"] == "250"
    second = api.scale_out()
    assert second.headers["x-acs-retry-after"] == "1000"
    assert emu.scale_out_calls() == []
    assert emu.state()["nodes"][CLUSTER]["edge_workers"] == 2


def test_faults_are_used_in_order_and_per_action(emu: Emulator, api: Api) -> None:
    emu.inject("DescribeClusterNodes", "server_error")
    emu.inject("ScaleOutCluster", "throttle", seconds=0.01)
    emu.inject("ScaleOutCluster", "server_error")
    assert_error(api.scale_out(), 400, "Throttling.User")
    assert_error(api.scale_out(), 503, "ServiceUnavailable")
    assert api.scale_out().status_code == 202
    assert_error(api.nodes(), 503, "ServiceUnavailable")
    assert api.nodes().status_code == 200


def test_slow_scale_out_is_performed_although_the_client_times_out(
    emu: Emulator, clock: FakeClock
) -> None:
    emu.inject("ScaleOutCluster", "slow", seconds=5)
    impatient = Api(emu, clock, timeout=0.2)
    with pytest.raises(httpx.ReadTimeout):
        impatient.scale_out()
    impatient.close()
    calls = emu.scale_out_calls()
    assert len(calls) == 1 and calls[0]["fault"] == "slow"
    assert emu.state()["nodes"][CLUSTER]["edge_workers"] == 5


def test_slow_read(emu: Emulator, clock: FakeClock) -> None:
    emu.inject("DescribeClusterNodes", "slow", seconds=5)
    impatient = Api(emu, clock, timeout=0.2)
    with pytest.raises(httpx.ReadTimeout):
        impatient.nodes()
    assert impatient.nodes().status_code == 200
    impatient.close()


def test_error_after_commit(emu: Emulator, api: Api, clock: FakeClock) -> None:
    emu.inject("ScaleOutCluster", "error_after_commit")
    assert_error(api.scale_out(), 500, "InternalError")
    calls = emu.scale_out_calls()
    assert len(calls) == 1
    assert calls[0]["status"] == 500 and calls[0]["fault"] == "error_after_commit"
    listed = api.tasks().json()["tasks"]
    assert [t["task_id"] for t in listed] == [calls[0]["task_id"]]
    clock.advance(30)
    assert api.task(calls[0]["task_id"]).json()["state"] == "success"


def _statuses_with_rate(clock: FakeClock, seed: int) -> list[int]:
    with make(clock, seed=seed) as emu:
        emu.inject("ScaleOutCluster", "server_error", count=20, rate=0.5)
        api = Api(emu, clock)
        statuses = [api.scale_out(body={**VALID_BODY, "count": 1}).status_code for _ in range(21)]
        api.close()
        assert len(emu.scale_out_calls()) == statuses.count(202)
        return statuses


def test_probabilistic_server_errors_are_seeded(clock: FakeClock) -> None:
    first = _statuses_with_rate(clock, seed=7)
    assert first == _statuses_with_rate(clock, seed=7)
    assert set(first[:20]) == {202, 503}
    assert first[20] == 202  # the rule covered 20 calls only


def test_task_fail(clock: FakeClock) -> None:
    with make(clock, task_delay=30, join_delay=10) as emu:
        emu.inject_task_fault("task_fail")
        api = Api(emu, clock)
        task_id = api.scale_out().json()["task_id"]
        clock.advance(15)  # past join_delay: failing nodes still do not join
        assert api.task(task_id).json()["state"] == "running"
        assert emu.state()["nodes"][CLUSTER]["edge_initial"] == 3
        clock.advance(15)
        task = api.task(task_id).json()
        assert task["state"] == "failed"
        assert task["error"]["code"] and task["error"]["message"]
        assert {r["status"] for r in task["task_result"]} == {"failed"}
        failed = api.nodes(pageSize=100, state="failed").json()["nodes"]
        assert {n["instance_id"] for n in failed} == {r["data"] for r in task["task_result"]}
        # count=1: the next scale-out is healthy
        second = api.scale_out().json()["task_id"]
        clock.advance(30)
        assert api.task(second).json()["state"] == "success"
        api.close()


def test_never_join_times_out_after_timeout_mins(clock: FakeClock) -> None:
    with make(clock, task_delay=30, join_delay=60) as emu:
        emu.inject_task_fault("never_join")
        api = Api(emu, clock)
        task_id = api.scale_out(body={**VALID_BODY, "timeout_mins": 5}).json()["task_id"]
        clock.advance(299)
        assert api.task(task_id).json()["state"] == "running"
        assert emu.state()["nodes"][CLUSTER]["edge_initial"] == 3
        clock.advance(1)
        task = api.task(task_id).json()
        assert task["state"] == "timeout"
        assert task["error"]["code"] == "Timeout"
        assert emu.state()["nodes"][CLUSTER]["edge_initial"] == 3
        api.close()


def test_inject_rejects_nonsense(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown action"):
        emu.inject("DeleteCluster", "server_error")
    with pytest.raises(ValueError, match="unknown fault kind"):
        emu.inject("ScaleOutCluster", "explode")
    with pytest.raises(ValueError, match="ScaleOutCluster only"):
        emu.inject("DescribeTaskInfo", "error_after_commit")
    with pytest.raises(ValueError, match="count"):
        emu.inject("ScaleOutCluster", "server_error", count=0)
    with pytest.raises(ValueError, match="rate"):
        emu.inject("ScaleOutCluster", "server_error", rate=1.5)
    with pytest.raises(ValueError, match="seconds"):
        emu.inject("ScaleOutCluster", "slow")
    with pytest.raises(ValueError, match="unknown task fault"):
        emu.inject_task_fault("boom")  # type: ignore[arg-type]


def test_admin_faults_and_reset_over_http(emu: Emulator, api: Api) -> None:
    faults = [
        {"action": "ScaleOutCluster", "kind": "server_error", "count": 1},
        {"kind": "task_fail"},
    ]
    resp = post(emu.url + "/_emulator/faults", json=faults)
    assert resp.status_code == 200
    assert resp.json()["faults"]["task_pending"] == [{"kind": "task_fail", "remaining": 1}]
    assert_error(api.scale_out(), 503, "ServiceUnavailable")
    assert api.scale_out().status_code == 202
    bad = post(emu.url + "/_emulator/faults", json={"action": "Nope", "kind": "slow"})
    assert_error(bad, 400, "InvalidFault")
    assert post(emu.url + "/_emulator/reset").status_code == 200
    state = emu.state()
    assert state["scale_out_calls"] == [] and state["tasks"] == []
    assert state["calls"]["ScaleOutCluster"] == 0
    assert state["nodes"][CLUSTER]["edge_workers"] == 2


# --------------------------------------------------------------------------- secrets and logs


def test_password_is_never_kept_or_logged(
    emu: Emulator, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgescaler.emulator")
    assert api.scale_out().status_code == 202
    assert api.scale_out(body={**VALID_BODY, "count": 0}).status_code == 400
    state_text = get(emu.url + "/_emulator/state").text
    assert PASSWORD not in state_text
    calls = emu.scale_out_calls()
    assert calls[0]["body"]["login_password"] == "***"
    assert calls[0]["body"]["count"] == 3
    assert PASSWORD not in caplog.text and DEFAULT_ACCESS_KEY_SECRET not in caplog.text
    lines = [r.getMessage() for r in caplog.records if r.name == "edgescaler.emulator"]
    assert f"POST /api/v2/clusters/{CLUSTER} action=ScaleOutCluster status=202" in lines
    assert f"POST /api/v2/clusters/{CLUSTER} action=ScaleOutCluster status=400" in lines


def test_config_repr_hides_secrets() -> None:
    text = repr(EmulatorConfig(access_key_secret="s3cr3t-value", security_token="tok-value"))
    assert "s3cr3t-value" not in text and "tok-value" not in text


# --------------------------------------------------------------------------- Prometheus

NAN = float("nan")
SCENARIO = [
    ScenarioStep(0, {"edge_cpu": 1.5, "pending_pods": 0}),
    ScenarioStep(60, {"edge_cpu": 7}),
    ScenarioStep(120, {"edge_cpu": NAN}),
    ScenarioStep(180, {"edge_cpu": 3.25}, stale={"edge_cpu": 600}),
    ScenarioStep(240, {"edge_cpu": None}),
]


def prom(emu: Emulator, query: str, **extra: str) -> dict[str, Any]:
    resp = get(emu.url + "/api/v1/query", params={"query": query, **extra})
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    assert data["status"] == "success" and data["data"]["resultType"] == "vector"
    return data


def sample(data: dict[str, Any]) -> tuple[float, str]:
    (item,) = data["data"]["result"]
    ts, value = item["value"]
    return ts, value


def test_prometheus_follows_the_scenario(clock: FakeClock) -> None:
    with make(clock, scenario=SCENARIO) as emu:
        first = prom(emu, "edge_cpu")
        assert first["data"]["result"][0]["metric"] == {"__name__": "edge_cpu"}
        assert sample(first) == (T0, "1.5")
        assert sample(prom(emu, "pending_pods")) == (T0, "0")
        clock.advance(59)
        assert sample(prom(emu, "edge_cpu"))[1] == "1.5"
        clock.advance(1)
        assert sample(prom(emu, "edge_cpu")) == (T0 + 60, "7")
        assert sample(prom(emu, "pending_pods"))[1] == "0"  # kept from step 0
        clock.advance(60)
        value = sample(prom(emu, "edge_cpu"))[1]
        assert value == "NaN" and math.isnan(float(value))
        clock.advance(60)
        assert sample(prom(emu, "edge_cpu")) == (T0 + 180 - 600, "3.25")
        assert sample(prom(emu, "timestamp(edge_cpu)"))[1] == str(int(T0 + 180 - 600))
        clock.advance(60)
        assert prom(emu, "edge_cpu")["data"]["result"] == []
        assert prom(emu, "no_such_metric")["data"]["result"] == []
        # an explicit evaluation time wins over the clock
        assert sample(prom(emu, "edge_cpu", time=str(T0 + 61)))[1] == "7"
        assert emu.state()["calls"]["PrometheusQuery"] == 11


def test_prometheus_decodes_like_prometheus(clock: FakeClock) -> None:
    query = 'sum(rate(node_cpu_seconds_total{mode!="idle"}[2m])) by (site)'
    scenario = [ScenarioStep(0, {query: 42})]
    with make(clock, scenario=scenario, scenario_start=T0 - 10) as emu:
        assert sample(prom(emu, query)) == (T0, "42")  # httpx sends spaces as "+"
        posted = post(emu.url + "/api/v1/query", data={"query": query})
        assert posted.json()["data"]["result"][0]["value"][1] == "42"
        missing = get(emu.url + "/api/v1/query")
        assert missing.status_code == 400 and missing.json()["errorType"] == "bad_data"
        assert get(emu.url + "/-/ready").status_code == 200


def test_load_scenario_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text(
        "- {at: 0, values: {cpu: 1}}\n"
        "- {at: 30, values: {cpu: .nan, mem: '+Inf'}, stale: {cpu: 300}}\n"
    )
    steps = load_scenario(yaml_file)
    assert steps[0] == ScenarioStep(0.0, {"cpu": 1.0})
    assert math.isnan(steps[1].values["cpu"] or 0.0) and steps[1].stale == {"cpu": 300.0}
    assert steps[1].values["mem"] == math.inf
    json_file = tmp_path / "s.json"
    json_file.write_text(json.dumps({"steps": [[5, {"cpu": "NaN"}]]}))
    (step,) = load_scenario(json_file)
    assert step.at == 5.0 and math.isnan(step.values["cpu"] or 0.0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"at": 0, "values": {"cpu": 1}, "stale": {"mem": 5}}]))
    with pytest.raises(ValueError, match="step #1"):
        load_scenario(bad)


# --------------------------------------------------------------------------- command line


def test_config_from_args_uses_env_then_defaults() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    args = parser.parse_args(["--cluster", "c-a:5", "--cluster", "c-b", "--task-delay", "3"])
    env = {"EDGESCALER_EMULATOR_ACCESS_KEY_SECRET": "from-env"}
    config = config_from_args(args, env)
    assert config.access_key_secret == "from-env"
    assert config.access_key_id == DEFAULT_ACCESS_KEY_ID
    assert config.clusters["c-a"].edge_workers == 5 and config.clusters["c-b"].edge_workers == 2
    assert config.task_delay == 3.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--cluster", "c-a:many"])


def test_subprocess_prints_its_url_and_answers(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("- {at: 0, values: {edge_cpu: 2.5}}\n")
    env = {
        **os.environ,
        "EDGESCALER_EMULATOR_ACCESS_KEY_SECRET": "subprocess-secret",
        "PYTHONPATH": str(ROOT / "functions" / "scaler"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgescaler.emulator",
            "--port",
            "0",
            "--cluster",
            "c-sub:1",
            "--scenario",
            str(scenario),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(20, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("emulator listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1]
        auth = signing.AcsV3Auth(lambda: creds(secret="subprocess-secret"))
        headers = {
            "x-acs-action": "ScaleOutCluster",
            "x-acs-version": API_VERSION,
            "content-type": "application/json; charset=utf-8",
        }
        with httpx.Client(base_url=url, auth=auth, timeout=5, verify=TLS) as client:
            resp = client.post(
                "/api/v2/clusters/c-sub", content=encode(VALID_BODY), headers=headers
            )
            assert resp.status_code == 202, resp.text
            fault = {"action": "ScaleOutCluster", "kind": "server_error"}
            assert post(url + "/_emulator/faults", json=fault).status_code == 200
            again = client.post(
                "/api/v2/clusters/c-sub", content=encode(VALID_BODY), headers=headers
            )
            assert_error(again, 503, "ServiceUnavailable")
        state = get(url + "/_emulator/state").json()
        assert state["nodes"]["c-sub"]["edge_workers"] == 1 + 3
        assert state["calls"]["ScaleOutCluster"] == 2
        value = get(url + "/api/v1/query", params={"query": "edge_cpu"}).json()
        assert value["data"]["result"][0]["value"][1] == "2.5"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        log_text = proc.stderr.read()
        assert "POST /api/v2/clusters/c-sub action=ScaleOutCluster status=202" in log_text
        assert PASSWORD not in log_text and "subprocess-secret" not in log_text
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_verifier_accepts_the_sdk_captured_request() -> None:
    """cs-api.md §3.8 example B, as produced by the official SDK, verifies unchanged."""
    body = (
        b'{"count":1,"worker_instance_type":"ens.sn1.tiny","ens_region_id":"cn-beijing-telecom",'
        b'"worker_image_id":"m-EXAMPLEIMAGE","ens_internet_charge_type":"BandwidthByDay",'
        b'"worker_period":1,"login_password":"Hello1234!","worker_system_disk_size":20,'
        b'"is_edge_worker":true,"worker_data_disk_size":0,"timeout_mins":60}'
    )
    names = (
        "accept;content-type;host;user-agent;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;"
        "x-acs-credentials-provider;x-acs-date;x-acs-security-token;x-acs-signature-nonce;"
        "x-acs-version"
    )
    headers = [
        ("accept", "application/json"),
        ("content-type", "application/json; charset=utf-8"),
        ("host", "cs.cn-hangzhou.aliyuncs.com"),
        ("user-agent", "example-agent/1.0"),
        ("x-acs-accesskey-id", "LTAI5tEXAMPLEaccessKeyId"),
        ("x-acs-action", "ScaleOutCluster"),
        (
            "x-acs-content-sha256",
            "dcf1ab9d41aab9837acb804a0b8d193bacdac7b283e766cb56ef19a51acf4fa0",
        ),
        ("x-acs-credentials-provider", "static_sts"),
        ("x-acs-date", "2025-01-02T03:04:05Z"),
        ("x-acs-security-token", "CAIS-EXAMPLE-STS-TOKEN"),
        ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
        ("x-acs-version", "2015-12-15"),
        (
            "Authorization",
            f"ACS3-HMAC-SHA256 Credential=LTAI5tEXAMPLEaccessKeyId,SignedHeaders={names},"
            "Signature=567a804531f1f852186e8b94f7f0f3491c65dd4de74914bd93a0b64eae586b0c",
        ),
    ]
    nonce = verify_signature(
        method="POST",
        raw_path="/api/v2/clusters/c0123456789abcdef0123456789abcdef",
        raw_query="",
        headers=headers,
        body=body,
        action="ScaleOutCluster",
        access_key_id="LTAI5tEXAMPLEaccessKeyId",
        access_key_secret="EXAMPLEaccessKeySecret0123456789",
        security_token="CAIS-EXAMPLE-STS-TOKEN",
        now=T0,
    )
    assert nonce == "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """70000 used to reach bind() and escape as OverflowError (a traceback)."""
    from edgescaler import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["emulator", "--port", port])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port:" in err and "Traceback" not in err

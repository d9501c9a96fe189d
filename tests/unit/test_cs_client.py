"""CSClient against tiny CS-like apps on ``httpx.MockTransport``.

Every app re-verifies the signature of what it received. Every error raised here is checked for
leaked secrets (password, access key secret, STS token) in ``str``, ``repr`` and the formatted
traceback, through :func:`raised`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from edgescaler.cloud import cs
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.model import Capacity, Node, ScaleOutResult, TaskInfo
from edgescaler.errors import ConfigError, CSApiError, CSTransportError, EdgescalerError
from edgescaler.sensitive import Secret
from tests.support import acs_verify

AK_ID = "LTAI5tTESTaccessKeyId"
SECRET = "TESTaccessKeySecret-must-not-leak"
TOKEN = "CAIS-TEST-STS-TOKEN-must-not-leak"
PASSWORD = "Pw-must-not-leak-9!"
SECRETS = (SECRET, TOKEN, PASSWORD)
CLUSTER = "c82e6987e2961451182edacd74faf0000"
REGION = "cn-beijing"

BODY: dict[str, Any] = {
    "count": 2,
    "worker_instance_type": "ens.sn1.tiny",
    "ens_region_id": "cn-beijing-cmcc-2",
    "worker_image_id": "m-2QVLO2T8NYgm8CNQVg0000",
    "ens_internet_charge_type": "BandwidthByDay",
    "worker_period": 1,
    "login_password": PASSWORD,
    "worker_system_disk_size": 20,
    "is_edge_worker": True,
    "worker_data_disk_size": 0,
    "worker_auto_renew": True,
    "worker_auto_renew_period": 1,
    "timeout_mins": 60,
}
EXPECTED_BYTES = (
    b'{"count":2,"worker_instance_type":"ens.sn1.tiny","ens_region_id":"cn-beijing-cmcc-2",'
    b'"worker_image_id":"m-2QVLO2T8NYgm8CNQVg0000","ens_internet_charge_type":"BandwidthByDay",'
    b'"worker_period":1,"login_password":"' + PASSWORD.encode() + b'",'
    b'"worker_system_disk_size":20,"is_edge_worker":true,"worker_data_disk_size":0,'
    b'"worker_auto_renew":true,"worker_auto_renew_period":1,"timeout_mins":60}'
)
ACCEPTED = {"cluster_id": CLUSTER, "task_id": "T-5faa48fb31b6b8078d000006", "request_id": "R-1"}


def sts() -> Credentials:
    return Credentials(AK_ID, Secret(SECRET), Secret(TOKEN))


Handler = Callable[[httpx.Request], httpx.Response]


class App:
    """Answers requests in order from ``script`` (the last entry repeats); records what it saw.

    An entry is a ``Response`` or an ``Exception`` instance (raised, as a transport would).
    A request whose signature does not re-verify gets a 400 ``SignatureDoesNotMatch`` instead.
    """

    def __init__(self, *script: httpx.Response | Exception | Handler) -> None:
        self.script = list(script)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        found = acs_verify.request_problems(request, {AK_ID: SECRET})
        if found:
            return httpx.Response(400, json={"code": "SignatureDoesNotMatch", "message": found})
        step = self.script[min(len(self.seen), len(self.script)) - 1]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):  # a fresh copy: a response is read only once
            return httpx.Response(step.status_code, headers=step.headers, content=step.content)
        return step(request)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(app: App, sleeps: Sleeps | None = None, **kw: Any) -> cs.CSClient:
    return cs.CSClient(
        REGION,
        sts,
        transport=httpx.MockTransport(app),
        sleep=sleeps if sleeps is not None else Sleeps(),
        rng=random.Random(7),
        **kw,
    )


def raised(exc_type: type[EdgescalerError], fn: Callable[[], object]) -> Any:
    """Run ``fn``, expect ``exc_type``, and check no secret shows anywhere in the error."""
    with pytest.raises(exc_type) as info:
        fn()
    exc = info.value
    shown = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(vars(exc))]
    for text in shown:
        for secret in SECRETS:
            assert secret not in text
    return exc


def ok(payload: dict[str, Any], status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=headers)


def err(status: int, payload: Any, **headers: str) -> httpx.Response:
    if isinstance(payload, (dict, list)):
        return httpx.Response(status, json=payload, headers=headers)
    return httpx.Response(status, text=payload, headers=headers)


def throttled(retry_after_ms: str | None = None) -> httpx.Response:
    headers = {"x-acs-retry-after": retry_after_ms.encode()} if retry_after_ms is not None else {}
    body = {"code": "Throttling.User", "message": "Request was denied", "requestId": "R-T"}
    return err(400, body, **headers)


def unavailable() -> httpx.Response:
    return err(503, {"code": "ServiceUnavailable", "message": "try later", "requestId": "R-5"})


def read_timeout() -> httpx.ReadTimeout:
    return httpx.ReadTimeout("timed out")


def task(state: str, **extra: Any) -> dict[str, Any]:
    return {"task_id": "T-1", "cluster_id": CLUSTER, "task_type": "cluster_scaleout"} | {
        "state": state,
        **extra,
    }


# --------------------------------------------------------------------------- ScaleOutCluster


def test_scale_out_sends_exact_signed_body_and_headers() -> None:
    app = App(ok(ACCEPTED))
    with client(app) as c:
        result = c.scale_out(CLUSTER, BODY)

    assert len(app.seen) == 1
    sent = app.seen[0]
    assert sent.method == "POST"
    assert str(sent.url) == f"https://cs.cn-beijing.aliyuncs.com/api/v2/clusters/{CLUSTER}"
    assert sent.content == EXPECTED_BYTES
    assert sent.headers["x-acs-content-sha256"] == hashlib.sha256(EXPECTED_BYTES).hexdigest()
    assert sent.headers["x-acs-action"] == "ScaleOutCluster"
    assert sent.headers["x-acs-version"] == "2015-12-15" == cs.API_VERSION
    assert sent.headers["content-type"] == "application/json; charset=utf-8"
    assert sent.headers["accept"] == "application/json"
    assert sent.headers["x-acs-security-token"] == TOKEN
    assert sent.headers["x-acs-accesskey-id"] == AK_ID
    assert result == ScaleOutResult(
        cluster_id=CLUSTER, task_id="T-5faa48fb31b6b8078d000006", request_id="R-1", status=200
    )


def test_scale_out_body_keeps_unicode_and_accepts_a_secret_password() -> None:
    app = App(ok(ACCEPTED))
    body = {
        "count": 1,
        "login_password": Secret(PASSWORD),
        "tags": [{"key": "站点", "value": "北京"}],
    }
    with client(app) as c:
        c.scale_out(CLUSTER, body)
    assert (
        app.seen[0].content
        == (
            '{"count":1,"login_password":"' + PASSWORD + '","tags":[{"key":"站点","value":"北京"}]}'
        ).encode()
    )


@pytest.mark.parametrize("status", [200, 201, 202])
def test_scale_out_accepts_any_2xx(status: int) -> None:
    app = App(ok(ACCEPTED, status))
    with client(app) as c:
        result = c.scale_out(CLUSTER, BODY)
    assert (result.status, result.task_id) == (status, ACCEPTED["task_id"])


def test_scale_out_request_id_from_header_when_body_has_none() -> None:
    app = App(ok({"task_id": "T-9"}, 202, **{"x-acs-request-id": "R-H"}))
    with client(app) as c:
        result = c.scale_out(CLUSTER, BODY)
    assert result == ScaleOutResult(CLUSTER, "T-9", "R-H", 202)


@pytest.mark.parametrize(
    "answer",
    [ok({"cluster_id": CLUSTER, "request_id": "R-2"}), ok({"task_id": ""}), err(200, "<html>")],
    ids=["no-task-id", "empty-task-id", "not-json"],
)
def test_scale_out_2xx_without_task_id_is_ambiguous(answer: httpx.Response) -> None:
    app = App(answer)
    sleeps = Sleeps()
    with client(app, sleeps) as c:
        exc = raised(CSTransportError, lambda: c.scale_out(CLUSTER, BODY))
    assert exc.may_have_acted is True  # the server may have acted
    assert exc.action == "ScaleOutCluster"
    assert (len(app.seen), sleeps) == (1, [])


@pytest.mark.parametrize(
    ("answer", "error", "timeout"),
    [
        (err(500, {"Code": "InternalError", "Message": "boom"}), CSApiError, None),
        (unavailable(), CSApiError, None),
        (throttled("2000"), CSApiError, None),
        (err(502, "<html>bad gateway</html>"), CSApiError, None),
        (httpx.ReadTimeout("timed out"), CSTransportError, True),
        (httpx.WriteTimeout("timed out"), CSTransportError, True),
        (httpx.PoolTimeout("timed out"), CSTransportError, True),
        (httpx.RemoteProtocolError("Server disconnected"), CSTransportError, True),
        (httpx.ReadError("connection reset by peer"), CSTransportError, True),
        (httpx.ConnectTimeout("timed out"), CSTransportError, False),
        (httpx.ConnectError("[Errno 111] Connection refused"), CSTransportError, False),
    ],
    ids=[
        "500",
        "503",
        "throttling",
        "502-html",
        "read-timeout",
        "write-timeout",
        "pool-timeout",
        "server-disconnected",
        "reset",
        "connect-timeout",
        "refused",
    ],
)
def test_scale_out_is_never_retried(
    answer: httpx.Response | Exception, error: type[EdgescalerError], timeout: bool | None
) -> None:
    app = App(answer, ok(ACCEPTED))  # a retry would succeed: it must not happen
    sleeps = Sleeps()
    with client(app, sleeps, max_retries=5) as c:
        exc = raised(error, lambda: c.scale_out(CLUSTER, BODY))
    assert len(app.seen) == 1
    assert sleeps == []
    assert exc.action == "ScaleOutCluster"
    if timeout is not None:
        assert exc.may_have_acted is timeout
        assert type(answer).__name__ in exc.detail
        assert exc.__cause__ is None and exc.__suppress_context__


@pytest.mark.parametrize("bad", ["", " ", ".", ".."])
def test_path_ids_that_would_address_another_resource_are_refused(bad: str) -> None:
    app = App(ok(ACCEPTED))
    with client(app) as c:
        raised(ConfigError, lambda: c.scale_out(bad, BODY))
        raised(ConfigError, lambda: c.describe_task(bad))
        raised(ConfigError, lambda: c.list_nodes(bad))
        raised(ConfigError, lambda: c.list_tasks(bad))
    assert app.seen == []


# --------------------------------------------------------------------------- GET retries


def test_get_retried_on_503_throttling_and_timeout_then_succeeds() -> None:
    app = App(unavailable(), throttled("3000"), read_timeout(), ok(task("running")))
    sleeps = Sleeps()
    with client(app, sleeps, max_retries=3, backoff_base=0.5, backoff_max=8.0) as c:
        info = c.describe_task("T-1")

    assert info.state == "running"
    assert len(app.seen) == 4
    assert [r.url.path for r in app.seen] == ["/tasks/T-1"] * 4
    nonces = {r.headers["x-acs-signature-nonce"] for r in app.seen}
    assert len(nonces) == 4  # a fresh nonce per attempt (each also re-verified by the app)
    assert len(sleeps) == 3
    assert 0 <= sleeps[0] <= 0.5  # full jitter under base * 2**0
    assert 3.0 <= sleeps[1] <= 8.0  # retry-after 3000 ms honoured, never above backoff_max
    assert 0 <= sleeps[2] <= 2.0  # base * 2**2


def test_get_backoff_is_bounded_by_backoff_max_and_jittered() -> None:
    app = App(unavailable())
    sleeps = Sleeps()
    with client(app, sleeps, max_retries=8, backoff_base=0.5, backoff_max=3.0) as c:
        raised(CSApiError, lambda: c.describe_task("T-1"))
    assert len(app.seen) == 9
    caps = [min(3.0, 0.5 * 2**i) for i in range(8)]
    assert all(0 <= s <= cap for s, cap in zip(sleeps, caps, strict=True))
    assert len(set(sleeps)) == len(sleeps)  # jittered, not a fixed schedule


@pytest.mark.parametrize(
    ("retry_after", "expected_min", "expected_max"),
    [
        ("600000", 8.0, 8.0),
        ("1500", 1.5, 8.0),
        ("0", 0.0, 0.5),
        ("soon", 0.0, 0.5),
        ("²", 0.0, 0.5),
    ],
    ids=["capped", "honoured", "zero-ignored", "garbage-ignored", "unicode-digit-ignored"],
)
def test_retry_after_header(retry_after: str, expected_min: float, expected_max: float) -> None:
    app = App(throttled(retry_after), ok(task("running")))
    sleeps = Sleeps()
    with client(app, sleeps, backoff_base=0.5, backoff_max=8.0) as c:
        c.describe_task("T-1")
    assert len(sleeps) == 1
    assert expected_min <= sleeps[0] <= expected_max


def test_get_gives_up_after_max_retries() -> None:
    app = App(read_timeout())
    sleeps = Sleeps()
    with client(app, sleeps, max_retries=2) as c:
        exc = raised(CSTransportError, lambda: c.describe_task("T-1"))
    assert len(app.seen) == 3
    assert len(sleeps) == 2
    assert exc.may_have_acted is True
    assert exc.action == "DescribeTaskInfo"


def test_max_retries_zero_means_one_attempt() -> None:
    app = App(unavailable(), ok(task("running")))
    with client(app, max_retries=0) as c:
        exc = raised(CSApiError, lambda: c.describe_task("T-1"))
    assert (len(app.seen), exc.status, exc.code) == (1, 503, "ServiceUnavailable")


def test_not_found_is_raised_once_with_its_details() -> None:
    body = {
        "code": "ErrorClusterNotFound",
        "message": "cluster not found",
        "requestId": "687C5BAA-D103-4993-884B-C35E4314A1E1",
        "status": 404,
    }
    app = App(err(404, body))
    sleeps = Sleeps()
    with client(app, sleeps) as c:
        exc = raised(CSApiError, lambda: c.list_nodes(CLUSTER))
    assert len(app.seen) == 1
    assert sleeps == []
    assert (exc.action, exc.status, exc.code, exc.message, exc.request_id) == (
        "DescribeClusterNodes",
        404,
        "ErrorClusterNotFound",
        "cluster not found",
        "687C5BAA-D103-4993-884B-C35E4314A1E1",
    )
    assert exc.retryable is False
    assert "ErrorClusterNotFound" in str(exc) and "687C5BAA" in str(exc)


@pytest.mark.parametrize(
    ("payload", "headers"),
    [
        ({"Code": "ErrorCheckAcl", "Message": "denied", "RequestId": "R-X"}, {}),
        ({"code": "ErrorCheckAcl", "message": "denied", "requestId": "R-X"}, {}),
        ({"code": "ErrorCheckAcl", "message": "denied", "requestid": "R-X"}, {}),
        ({"code": "ErrorCheckAcl", "message": "denied"}, {"x-acs-request-id": "R-X"}),
    ],
    ids=["PascalCase", "camelCase", "lowercase-id", "header-id"],
)
def test_error_body_in_either_casing(payload: dict[str, str], headers: dict[str, str]) -> None:
    app = App(err(403, payload, **headers))
    with client(app) as c:
        exc = raised(CSApiError, lambda: c.describe_task("T-1"))
    assert (exc.status, exc.code, exc.message, exc.request_id) == (
        403,
        "ErrorCheckAcl",
        "denied",
        "R-X",
    )
    assert len(app.seen) == 1


@pytest.mark.parametrize(
    ("status", "text", "retried"),
    [
        (502, "<html><body>" + "Bad Gateway " * 100 + "</body></html>", True),
        (403, "Forbidden", False),
        (404, "", False),
    ],
)
def test_non_json_error_bodies(status: int, text: str, retried: bool) -> None:
    app = App(err(status, text, **{"x-acs-request-id": "R-N"}))
    sleeps = Sleeps()
    with client(app, sleeps, max_retries=1) as c:
        exc = raised(CSApiError, lambda: c.describe_task("T-1"))
    assert exc.code == f"HTTP{status}"
    assert exc.request_id == "R-N"
    assert len(exc.message) <= 210
    assert "\n" not in str(exc)
    if text:
        assert exc.message.startswith(text[:20])
    else:
        assert exc.message  # falls back to the reason phrase
    assert len(app.seen) == (2 if retried else 1)


def test_error_text_echoing_secrets_is_redacted() -> None:
    echo = f"bad login_password {PASSWORD} with token {TOKEN} and key {SECRET}"
    app = App(err(400, {"code": "InvalidParameter", "message": echo, "requestId": "R-E"}))
    with client(app) as c:
        exc = raised(CSApiError, lambda: c.scale_out(CLUSTER, BODY))
    assert exc.message == "bad login_password *** with token *** and key ***"
    # A GET never carried the password; the credentials are still redacted from any echo.
    app = App(err(500, f"token {TOKEN} key {SECRET}"))
    with client(app, max_retries=0) as c:
        exc = raised(CSApiError, lambda: c.describe_task("T-1"))
    assert exc.message == "token *** key ***"


def test_debug_log_has_one_line_per_request_and_no_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(unavailable(), ok(task("success")))
    caplog.set_level(logging.DEBUG, logger="edgescaler.cs")
    with client(app) as c:
        c.describe_task("T-1")
    app2 = App(read_timeout())
    with client(app2) as c:
        raised(CSTransportError, lambda: c.scale_out(CLUSTER, BODY))
    app3 = App(ok(ACCEPTED))
    with client(app3) as c:
        c.scale_out(CLUSTER, BODY)

    lines = [r.getMessage() for r in caplog.records if r.name == "edgescaler.cs"]
    assert len(lines) == 4
    assert "DescribeTaskInfo" in lines[0] and "attempt=0" in lines[0] and "503" in lines[0]
    assert "R-5" in lines[0]
    assert "attempt=1" in lines[1] and "status=200" in lines[1]
    assert "ScaleOutCluster" in lines[2] and "ReadTimeout" in lines[2]
    assert "R-1" in lines[3]
    everything = "\n".join(lines) + caplog.text
    for secret in SECRETS:
        assert secret not in everything
    assert "ens.sn1.tiny" not in everything  # no body
    assert "authorization" not in everything.lower()  # no headers


def test_reprs_hold_no_secrets() -> None:
    app = App(ok(ACCEPTED))
    with client(app) as c:
        result = c.scale_out(CLUSTER, BODY)
        shown = repr(c) + repr(result) + repr(vars(c))
    for secret in SECRETS:
        assert secret not in shown


# --------------------------------------------------------------------------- nodes


def _node(i: int, role: str, itype: str, state: str) -> dict[str, Any]:
    return {
        "instance_id": f"i-{i:04d}",
        "node_name": f"node-{i}",
        "host_name": f"host-{i}",
        "instance_role": role,
        "state": state,
        "node_status": "Ready" if state == "running" else "NotReady",
        "instance_type": itype,
        "nodepool_id": "np-edge" if itype.lower().startswith("ens.") else "np-default",
        "creation_time": "2024-05-01T10:00:00+08:00",
        "ip_address": ["10.0.0.1"],
    }


def _fleet() -> tuple[list[dict[str, Any]], int]:
    """250 nodes and how many of them are active ENS edge workers (counted by hand)."""
    groups = [
        # (count, role, instance type, state, counts as an active edge worker)
        (3, "Master", "ecs.g6.large", "running", False),
        (2, "Master", "ens.sn1.large", "running", False),
        (40, "Worker", "ecs.g6.large", "running", False),
        (5, "Worker", "ecs.c6.xlarge", "starting", False),
        (150, "Worker", "ens.sn1.tiny", "running", True),
        (8, "worker", "ENS.sn1.small", "Running", True),
        (6, "Worker", "ens.sn1.tiny", "starting", True),
        (4, "Worker", "ens.sn1.tiny", "pending", True),
        (5, "Worker", "ens.sn1.tiny", "initial", True),
        (7, "Worker", "ens.sn1.tiny", "failed", False),
        (6, "Worker", "ens.sn1.tiny", "removing", False),
        (8, "Worker", "ens.sn1.tiny", "stopped", False),
        (4, "Worker", "ens.sn1.tiny", "stopping", False),
        (2, "Worker", "", "running", False),
    ]
    nodes: list[dict[str, Any]] = []
    active = 0
    for count, role, itype, state, counts in groups:
        for _ in range(count):
            nodes.append(_node(len(nodes), role, itype, state))
        active += count if counts else 0
    random.Random(3).shuffle(nodes)
    return nodes, active


class NodePages:
    """DescribeClusterNodes over a fixed node list, paged by pageNumber/pageSize."""

    def __init__(self, nodes: list[dict[str, Any]], total: int | None = None) -> None:
        self.nodes = nodes
        self.total = len(nodes) if total is None else total

    def __call__(self, request: httpx.Request) -> httpx.Response:
        q = request.url.params
        number, size = int(q["pageNumber"]), int(q["pageSize"])
        items = self.nodes[(number - 1) * size : number * size]
        page: dict[str, Any] = {"page_number": number, "page_size": size}
        if self.total >= 0:
            page["total_count"] = self.total
        return httpx.Response(200, json={"nodes": items, "page": page})


def test_list_nodes_reads_every_page_and_counts_edge_workers() -> None:
    nodes, active = _fleet()
    assert len(nodes) == 250
    app = App(NodePages(nodes))
    with client(app) as c:
        listed = c.list_nodes(CLUSTER)

    assert [r.url.raw_path.decode() for r in app.seen] == [
        f"/clusters/{CLUSTER}/nodes?pageNumber={n}&pageSize=100" for n in (1, 2, 3)
    ]
    assert len(listed) == 250
    assert {n.instance_id for n in listed} == {n["instance_id"] for n in nodes}
    assert Capacity.of(listed).count == active == 173
    first = next(n for n in listed if n.instance_id == "i-0000")
    assert first == Node(
        instance_id="i-0000",
        node_name="node-0",
        instance_role="Master",
        state="running",
        node_status="Ready",
        instance_type="ecs.g6.large",
        nodepool_id="np-default",
        creation_time=datetime(2024, 5, 1, 2, 0, tzinfo=timezone.utc),
    )


def test_list_nodes_uses_the_page_size_the_server_reports() -> None:
    nodes, _ = _fleet()

    def capped(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["pageNumber"])
        items = nodes[(number - 1) * 50 : number * 50]
        page = {"page_number": number, "page_size": 50, "total_count": len(nodes)}
        return httpx.Response(200, json={"nodes": items, "page": page})

    app = App(capped)
    with client(app) as c:
        listed = c.list_nodes(CLUSTER, page_size=100)
    assert len(app.seen) == 5
    assert len(listed) == 250


def test_list_nodes_stops_on_a_short_page_without_a_total() -> None:
    nodes, _ = _fleet()
    app = App(NodePages(nodes, total=-1))
    with client(app) as c:
        listed = c.list_nodes(CLUSTER)
    assert len(app.seen) == 3
    assert len(listed) == 250


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({"page": {"total_count": 9}}, "page 1 has no 'nodes' list"),
        ({"nodes": None, "page": {"total_count": 9}}, "page 1 has no 'nodes' list"),
        ({"Nodes": [], "page": {"total_count": 9}}, "page 1 has no 'nodes' list"),
        ({"nodes": "i-1", "page": {}}, "page 1 has no 'nodes' list"),
        ({"nodes": [1, 2], "page": {}}, "an item of 'nodes' is no object"),
        ({"nodes": [], "page": {"total_count": 9}}, "page 1 is empty after 0 of 9"),
    ],
    ids=["missing", "null", "other-case", "not-a-list", "not-objects", "empty-before-total"],
)
def test_a_node_listing_that_does_not_add_up_is_an_error_not_fewer_nodes(
    answer: dict[str, Any], why: str
) -> None:
    """A low count adds nodes: an answer that cannot be counted fails the read instead."""
    with client(App(ok(answer))) as c:
        exc = raised(CSTransportError, lambda: c.list_nodes(CLUSTER))
    assert why in str(exc) and "does not add up" in str(exc)


def test_a_node_listing_whose_total_is_never_reached_is_an_error() -> None:
    nodes, _ = _fleet()
    with client(App(NodePages(nodes, total=10_000))) as c:
        exc = raised(CSTransportError, lambda: c.list_nodes(CLUSTER))
    assert "page 4 is empty after 250 of 10000" in str(exc)


def test_a_node_listing_that_ends_short_of_its_total_is_an_error() -> None:
    def short(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["pageNumber"])
        items = [_node(i, "Worker", "ens.sn1.tiny", "running") for i in range(number * 10)][:10]
        page = {"page_number": number, "page_size": 100, "total_count": 150}
        return httpx.Response(200, json={"nodes": items, "page": page})

    with client(App(short)) as c:
        exc = raised(CSTransportError, lambda: c.list_nodes(CLUSTER))
    assert "ended after 20 of 150" in str(exc)


def test_an_empty_cluster_may_say_null() -> None:
    with client(App(ok({"nodes": None, "page": {"total_count": 0}}))) as c:
        assert c.list_nodes(CLUSTER) == []


@pytest.mark.parametrize(
    ("node", "why"),
    [
        ({"instance_id": "i-1", "state": "running"}, "no instance_role"),
        ({"instance_id": "i-1", "instance_role": "Worker", "state": "running"}, "instance_type"),
        (
            {"instance_id": "i-1", "instance_role": "Worker", "instance_type": "ens.sn1.tiny"},
            "state None",
        ),
        (
            {
                "instance_id": "i-1",
                "instance_role": "Worker",
                "instance_type": "ens.sn1.tiny",
                "state": "hibernating",
            },
            "state 'hibernating'",
        ),
    ],
    ids=["no-role", "worker-without-type", "ens-worker-without-state", "unknown-state"],
)
def test_a_node_that_cannot_be_counted_is_an_error(node: dict[str, Any], why: str) -> None:
    answer = {"nodes": [node], "page": {"total_count": 1}}
    with client(App(ok(answer))) as c:
        exc = raised(CSTransportError, lambda: c.list_nodes(CLUSTER))
    assert "node 1 of 1" in str(exc) and why in str(exc), str(exc)


def test_list_nodes_retries_a_failed_page() -> None:
    nodes, _ = _fleet()
    pages = NodePages(nodes)
    app = App(pages, unavailable(), pages)
    sleeps = Sleeps()
    with client(app, sleeps) as c:
        listed = c.list_nodes(CLUSTER)
    assert len(listed) == 250
    assert [r.url.params["pageNumber"] for r in app.seen] == ["1", "2", "2", "3"]
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    ("role", "itype", "state", "edge", "active"),
    [
        ("Worker", "ens.sn1.tiny", "running", True, True),
        ("WORKER", "ens.a", "RUNNING", True, True),
        ("Master", "ens.sn1.tiny", "running", False, True),
        ("Worker", "ecs.g6.large", "running", False, True),
        ("Worker", "ens.sn1.tiny", "failed", True, False),
        ("Worker", "ens.sn1.tiny", None, True, False),
        (None, "ens.sn1.tiny", "running", False, True),
        ("Worker", None, "pending", False, True),
        ("Worker", "xens.sn1", "running", False, True),
        ("Worker", "ensx.sn1", "running", False, True),
    ],
)
def test_node_predicates(
    role: str | None, itype: str | None, state: str | None, edge: bool, active: bool
) -> None:
    node = Node("i-1", None, role, state, None, itype, None, None)
    assert node.is_edge_worker is edge
    assert (node.lifecycle != "inactive") is active
    assert Capacity.of([node, node]).count == (2 if edge and active else 0)


# --------------------------------------------------------------------------- tasks


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("running", "running"),
        ("success", "success"),
        ("fail", "failed"),
        ("failed", "failed"),
        ("timeout", "failed"),
        ("canceled", "failed"),
        ("cancelled", "failed"),
        ("Success", "success"),
        ("FAILED", "failed"),
        ("paused", "running"),
        ("", "running"),
    ],
)
def test_task_phase(state: str, phase: str) -> None:
    app = App(ok(task(state)))
    with client(app) as c:
        info = c.describe_task("T-1")
    assert info.state == state
    assert info.phase == phase


def test_describe_task_parses_every_field() -> None:
    payload = task(
        "fail",
        created="2024-05-01T10:00:00+08:00",
        updated="2024-05-01 02:30:00",
        error={"code": "ENSQuotaExceeded", "message": "no quota"},
        task_result=[{"data": "i-1", "status": "success"}, {"data": "i-2", "status": "failed"}],
        stages=[{"state": "fail"}],
    )
    app = App(ok(payload))
    with client(app) as c:
        info = c.describe_task("T-1")
    assert info == TaskInfo(
        task_id="T-1",
        cluster_id=CLUSTER,
        task_type="cluster_scaleout",
        state="fail",
        created=datetime(2024, 5, 1, 2, 0, tzinfo=timezone.utc),
        updated=datetime(2024, 5, 1, 2, 30, tzinfo=timezone.utc),
        error_code="ENSQuotaExceeded",
        error_message="no quota",
        task_result=({"data": "i-1", "status": "success"}, {"data": "i-2", "status": "failed"}),
        raw=payload,
    )
    assert info.raw["stages"] == [{"state": "fail"}]
    assert "stages" not in repr(info) and "raw" not in repr(info)


def test_describe_task_encodes_the_task_id_in_the_path() -> None:
    app = App(ok({"state": "running"}))
    with client(app) as c:
        info = c.describe_task("T-1 2/3")
    assert app.seen[0].url.raw_path == b"/tasks/T-1%202%2F3"
    assert info.task_id == "T-1 2/3"  # absent from the answer: the one asked for


def test_list_tasks_is_lenient_and_paged() -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page_number"])
        size = int(request.url.params["page_size"])
        assert size == 2
        tasks: list[Any] = [
            {"task_id": "T-1", "state": "running", "created": "2024-05-01T10:00:00Z"},
            {"task_id": "T-2", "task_type": "cluster_scaleout", "error": None},
            {"state": "success"},
            {"task_id": "T-4", "state": "failed", "error": {"Code": "X", "Message": "Y"}},
            {"task_id": "T-5", "state": "success"},
        ]
        chunk = tasks[(number - 1) * 2 : number * 2]
        info = {"page_number": number, "page_size": 2, "total_count": 5}
        return httpx.Response(200, json={"tasks": chunk, "page_info": info, "requestId": "R"})

    app = App(pages)
    with client(app) as c:
        tasks = c.list_tasks(CLUSTER, page_size=2)
    assert [r.url.raw_path.decode() for r in app.seen] == [
        f"/clusters/{CLUSTER}/tasks?page_number={n}&page_size=2" for n in (1, 2, 3)
    ]
    assert [(t.task_id, t.state, t.phase) for t in tasks] == [
        ("T-1", "running", "running"),
        ("T-2", "", "running"),
        ("", "success", "success"),
        ("T-4", "failed", "failed"),
        ("T-5", "success", "success"),
    ]
    assert tasks[0].created == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    assert (tasks[3].error_code, tasks[3].error_message) == ("X", "Y")


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({"Tasks": [{"task_id": "T-9", "state": "running"}]}, "page 1 has no 'tasks' list"),
        ({"tasks": None, "page_info": {"total_count": 3}}, "page 1 has no 'tasks' list"),
        ({"tasks": [{"task_id": "T-9"}, "x"]}, "an item of 'tasks' is no object"),
        ({"tasks": [], "page_info": {"total_count": 3}}, "page 1 is empty after 0 of 3"),
    ],
    ids=["other-case", "null-with-a-total", "not-an-object", "empty-before-total"],
)
def test_a_task_listing_that_does_not_add_up_is_an_error_not_fewer_tasks(
    answer: dict[str, Any], why: str
) -> None:
    """A task missed here could let an ambiguous scale-out be resolved as never sent."""
    with client(App(ok(answer))) as c:
        exc = raised(CSTransportError, lambda: c.list_tasks(CLUSTER))
    assert why in str(exc)


def test_list_tasks_stops_at_max_pages() -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        n = request.url.params["page_number"]
        return ok({"tasks": [{"task_id": f"T-{n}", "state": "success"}], "page_info": {}})

    app = App(endless)
    with client(app) as c:
        tasks = c.list_tasks(CLUSTER, page_size=1, max_pages=3)
    assert [t.task_id for t in tasks] == ["T-1", "T-2", "T-3"]


def test_list_tasks_handles_null_tasks() -> None:
    app = App(ok({"tasks": None, "page_info": {"total_count": 0}}))
    with client(app) as c:
        assert c.list_tasks(CLUSTER) == []
    assert len(app.seen) == 1


# --------------------------------------------------------------------------- timestamps

UTC = timezone.utc


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00+08:00", datetime(2024, 5, 1, 2, tzinfo=UTC)),
        ("2024-05-01T10:00:00+0800", datetime(2024, 5, 1, 2, tzinfo=UTC)),
        ("2024-05-01T10:00:00.123Z", datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2024-05-01T10:00:00.1234567+00:00", datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01 10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("1714557600000", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        (1714557600, datetime(2024, 5, 1, 10, tzinfo=UTC)),
        (None, None),
        ("", None),
        ("yesterday", None),
        ("2024-13-01T00:00:00Z", None),
        (True, None),
        ({"a": 1}, None),
    ],
)
def test_parse_timestamp(value: Any, expected: datetime | None) -> None:
    parsed = cs.parse_timestamp(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() is not None  # always comparable


def test_parse_timestamp_keeps_the_offset_meaning() -> None:
    parsed = cs.parse_timestamp("2024-05-01T10:00:00+08:00")
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(hours=8)


# --------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("region", "override", "expected"),
    [
        ("cn-beijing", None, "https://cs.cn-beijing.aliyuncs.com"),
        ("cn-hangzhou", None, "https://cs.cn-hangzhou.aliyuncs.com"),
        ("ap-southeast-1", None, "https://cs.ap-southeast-1.aliyuncs.com"),
        ("cn-edge-1", None, "https://cs.aliyuncs.com"),
        ("cn-wuhan", None, "https://cs.aliyuncs.com"),
        ("cn-hangzhou-internal-prod-1", None, "https://cs.aliyuncs.com"),
        ("cn-hangzhou-internal-test-3", None, "https://cs.aliyuncs.com"),
        ("cn-beijing", "http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("cn-beijing", "http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        (
            "cn-edge-1",
            "https://cs-vpc.cn-beijing.aliyuncs.com",
            "https://cs-vpc.cn-beijing.aliyuncs.com",
        ),
    ],
)
def test_endpoint_for(region: str, override: str | None, expected: str) -> None:
    assert cs.endpoint_for(region, override) == expected


def test_special_regions() -> None:
    assert "cn-edge-1" in cs.SPECIAL_REGIONS
    assert "cn-beijing" not in cs.SPECIAL_REGIONS
    assert all(cs.endpoint_for(r) == "https://cs.aliyuncs.com" for r in cs.SPECIAL_REGIONS)


@pytest.mark.parametrize(
    ("region", "override"),
    [
        ("", None),
        ("CN-BEIJING", None),
        ("cn beijing", None),
        ("cn-beijing.evil.example/x", None),
        ("cn-beijing-", None),
        ("-cn", None),
        ("cn-beijing", "ftp://127.0.0.1"),
        ("cn-beijing", "127.0.0.1:8080"),
        ("cn-beijing", "http://"),
        ("cn-beijing", "http://host?x=1"),
    ],
)
def test_endpoint_for_rejects(region: str, override: str | None) -> None:
    raised(ConfigError, lambda: cs.endpoint_for(region, override))


def test_client_talks_to_the_override() -> None:
    app = App(ok(task("running")))
    with client(app, endpoint="http://127.0.0.1:8080") as c:
        c.describe_task("T-1")
    assert str(app.seen[0].url) == "http://127.0.0.1:8080/tasks/T-1"
    assert app.seen[0].headers["host"] == "127.0.0.1:8080"


def test_credentials_are_fetched_per_attempt() -> None:
    calls: list[int] = []

    def rotating() -> Credentials:
        calls.append(1)
        return sts()

    app = App(unavailable(), ok(task("running")))
    with cs.CSClient(
        REGION, rotating, transport=httpx.MockTransport(app), sleep=Sleeps(), rng=random.Random(1)
    ) as c:
        c.describe_task("T-1")
    assert len(calls) == 2


def test_json_helpers_roundtrip() -> None:
    # encode_body is what scale_out sends; it must equal the documented compact form.
    assert cs.encode_body(BODY) == EXPECTED_BYTES
    assert json.loads(cs.encode_body(BODY)) == BODY
    with pytest.raises(ValueError):
        cs.encode_body({"count": float("nan")})


# --------------------------------------------------------------------------- hostile answers


def _pieces(secret: str, shortest: int = 8) -> list[str]:
    return [
        secret[i : i + k]
        for k in range(shortest, len(secret) + 1)
        for i in range(len(secret) - k + 1)
    ]


@pytest.mark.parametrize("pad", range(150, 200, 7))
def test_text_error_echoing_the_request_leaks_no_piece_of_the_password(pad: int) -> None:
    """A gateway that answers text echoing the request: the message is redacted before it is
    cut, so wherever the cut falls no 8+ character piece of the password survives."""

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text="x" * pad + request.content.decode())

    Secret(PASSWORD)  # as the actuator's password resolution does
    with client(App(echo)) as c:
        exc = raised(CSApiError, lambda: c.scale_out(CLUSTER, BODY))
    for piece in _pieces(PASSWORD):
        assert piece not in str(exc), piece


def test_an_answer_larger_than_the_cap_is_abandoned() -> None:
    huge = {"nodes": [{"instance_id": "i-" + "x" * 100}] * 50_000, "page": {"total_count": 1}}
    with client(App(ok(huge)), max_answer_bytes=1_000_000, max_retries=0) as c:
        exc = raised(CSTransportError, lambda: c.list_nodes(CLUSTER))
    assert "larger than 1000000 bytes" in str(exc)
    with client(App(ok(huge)), max_answer_bytes=1_000_000) as c:
        exc = raised(CSTransportError, lambda: c.scale_out(CLUSTER, BODY))
    assert exc.may_have_acted is True  # the POST was sent: it may have acted


def test_a_trickled_answer_is_abandoned_at_the_deadline() -> None:
    def trickle(request: httpx.Request) -> httpx.Response:
        def chunks():  # type: ignore[no-untyped-def]
            import time

            yield b'{"nodes": ['
            while True:  # one byte at a time, for ever
                time.sleep(0.05)
                yield b" "

        return httpx.Response(200, content=chunks())

    from edgescaler.deadline import Deadline

    with client(App(trickle), deadline=Deadline(0.5), max_retries=3) as c:
        exc = raised(CSTransportError, lambda: c.list_nodes(CLUSTER))
    assert "still arriving" in str(exc) or "deadline" in str(exc)


def test_no_get_is_sent_once_the_deadline_has_passed() -> None:
    from edgescaler.deadline import Deadline

    now = [0.0]
    deadline = Deadline(5, clock=lambda: now[0])
    app = App(ok(task("running")))
    now[0] = 6.0
    with client(app, deadline=deadline) as c:
        exc = raised(CSTransportError, lambda: c.describe_task("T-1"))
    assert "run deadline passed" in str(exc) and app.seen == []


def test_retries_stop_when_the_deadline_is_near() -> None:
    from edgescaler.deadline import Deadline

    now = [0.0]
    deadline = Deadline(5, clock=lambda: now[0])
    sleeps = Sleeps()
    app = App(unavailable())

    def advancing(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += 2.0  # every pause (and attempt) costs two seconds of the run

    with cs.CSClient(
        REGION,
        sts,
        transport=httpx.MockTransport(app),
        sleep=advancing,
        rng=random.Random(7),
        deadline=deadline,
        max_retries=10,
    ) as c:
        exc = raised(CSTransportError, lambda: c.describe_task("T-1"))
    assert "deadline" in str(exc)
    assert len(app.seen) <= 3  # max_retries=10 would have allowed 11 attempts


@pytest.mark.parametrize(
    "body",
    [b"[" * 5000 + b"]" * 5000, b'{"task_id": ' + b"1" * 5000 + b"}", b'{"task_id": "\\ud800"}'],
)
def test_a_hostile_2xx_body_is_a_transport_error_not_a_crash(body: bytes) -> None:
    with client(App(httpx.Response(202, content=body))) as c:
        exc = raised(CSTransportError, lambda: c.scale_out(CLUSTER, BODY))
    assert exc.may_have_acted is True and "acceptable JSON" in str(exc)


def test_a_get_and_its_retries_get_twice_one_exchange_at_most() -> None:
    """Every answer late: not four read timeouts in a row, two exchanges' worth at most."""
    now = [0.0]
    slept = Sleeps()

    def late(request: httpx.Request) -> httpx.Response:
        now[0] += 10.0  # each attempt burns one full read timeout
        raise httpx.ReadTimeout("timed out")

    def pause(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    from edgescaler.deadline import Deadline

    run = Deadline(1000, clock=lambda: now[0])
    app = App(late)
    with cs.CSClient(
        REGION,
        sts,
        transport=httpx.MockTransport(app),
        sleep=pause,
        rng=random.Random(7),
        deadline=run,
        connect_timeout=5,
        read_timeout=10,
        max_retries=3,
    ) as c:
        raised(CSTransportError, lambda: c.describe_task("T-1"))
    assert len(app.seen) == 3  # 10 s + pause + 10 s + pause + 10 s > 30 s budget: no 4th
    assert now[0] <= 2 * (5 + 10) + 10

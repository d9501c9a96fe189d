"""A small client for the four CS (ACK) API 2015-12-15 calls edgescaler needs, over httpx.

    ScaleOutCluster      POST /api/v2/clusters/{ClusterId}   never retried (no idempotency token)
    DescribeTaskInfo     GET  /tasks/{TaskId}                  retried
    DescribeClusterNodes GET  /clusters/{ClusterId}/nodes      retried, every page
    DescribeClusterTasks GET  /clusters/{ClusterId}/tasks      retried, paged

Every request is signed with ACS3-HMAC-SHA256 (:class:`~edgescaler.cloud.signing.AcsV3Auth`).
The path and query are percent-encoded here, exactly as they are signed (reference/cs-api.md §3.6),
and a request body is serialised once and those bytes are both hashed and sent (§8.5).

Failures are :class:`~edgescaler.errors.CSApiError` (the API answered with an error status) or
:class:`~edgescaler.errors.CSTransportError` (no usable answer). ``CSTransportError.may_have_acted``
is the flag callers must respect after a ScaleOutCluster: ``True`` means *the server may have
received and acted on the request*, so the outcome is unknown and a new scale-out must not be
issued blindly; ``False`` means the request certainly never reached the server.

    may_have_acted=True   httpx ReadTimeout and WriteTimeout; ReadError, WriteError,
                          RemoteProtocolError (connection reset or closed mid-exchange) and every
                          other httpx error not listed below; PoolTimeout (raised before sending,
                          but reported as ambiguous to stay on the safe side); an answer abandoned
                          for its size or time; a 2xx answer whose body is not an acceptable JSON
                          object; a 2xx ScaleOutCluster answer without ``task_id``
    may_have_acted=False  httpx ConnectTimeout, ConnectError (refused, DNS failure, TLS
                          handshake), ProxyError, UnsupportedProtocol, InvalidURL, and a GET not
                          sent because the run's deadline had passed: nothing reached the server

Secrets: the ENS ``login_password`` travels only in the body bytes of the one ScaleOutCluster
request; the access key secret only as the HMAC key; the STS token only as a signed header. None
of them is logged, kept on the client, or put in an error message (server-provided error text is
redacted as well, in case an API echoes a parameter back).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import httpx

from edgescaler import safejson
from edgescaler.cloud import acs
from edgescaler.cloud.acs import MAX_ANSWER_BYTES, Abandoned, read_body
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.model import Node, ScaleOutResult, TaskInfo
from edgescaler.cloud.signing import encode_query, new_nonce, percent_encode
from edgescaler.deadline import Deadline, DeadlineExceeded
from edgescaler.errors import ConfigError, CSApiError, CSTransportError
from edgescaler.outside import message as outside_message
from edgescaler.outside import quote as outside_quote
from edgescaler.sensitive import Secret

API_VERSION = "2015-12-15"

log = logging.getLogger("edgescaler.cs")

# Region ids whose CS endpoint is the central ``cs.aliyuncs.com`` (SDK endpoint map, cs-api.md
# §1.1). Every ``cn-hangzhou-internal-*`` region is special too; see _SPECIAL_REGION_PREFIX.
SPECIAL_REGIONS: frozenset[str] = frozenset(
    {
        "ap-northeast-2-pop",
        "cn-beijing-finance-pop",
        "cn-beijing-gov-1",
        "cn-beijing-nu16-b01",
        "cn-edge-1",
        "cn-fujian",
        "cn-haidian-cm12-c01",
        "cn-hangzhou-bj-b01",
        "cn-hangzhou-test-306",
        "cn-hongkong-finance-pop",
        "cn-qingdao-nebula",
        "cn-shanghai-et15-b01",
        "cn-shanghai-et2-b01",
        "cn-shanghai-inner",
        "cn-shanghai-internal-test-1",
        "cn-shenzhen-inner",
        "cn-shenzhen-st4-d01",
        "cn-shenzhen-su18-b01",
        "cn-wuhan",
        "cn-yushanfang",
        "cn-zhangbei",
        "cn-zhangbei-na61-b01",
        "cn-zhangjiakou-na62-a01",
        "cn-zhengzhou-nebula-1",
        "eu-west-1-oxs",
        "rus-west-1-pop",
    }
)
_SPECIAL_REGION_PREFIX = "cn-hangzhou-internal-"
_CENTRAL_ENDPOINT = "https://cs.aliyuncs.com"

_OVERRIDE_RE = re.compile(r"^https?://[^/\s?#]+(?:/[^\s?#]*)?$")

RETRY_BUDGET_FACTOR = 2.0
_MAX_ERROR_TEXT = 200
_MAX_NODE_PAGES = 1000  # 100 000 nodes: far above any CS node quota; guards against a bad total

# Transport failures that certainly happened before any byte of the request left this process.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
    httpx.InvalidURL,
)


def endpoint_for(region: str, override: str | None = None) -> str:
    """The CS base URL for ``region``, without a trailing slash.

    ``override`` (e.g. ``http://127.0.0.1:8080`` for the emulator) wins when given. Otherwise
    regions in :data:`SPECIAL_REGIONS` and every ``cn-hangzhou-internal-*`` region use
    ``https://cs.aliyuncs.com``; all others ``https://cs.{region}.aliyuncs.com``. The region is
    validated in both cases: an empty or malformed one raises :class:`ConfigError`.
    """
    if not isinstance(region, str) or not acs.REGION_RE.match(region):
        raise ConfigError(f"invalid CS region {region!r}: expected an id such as cn-beijing")
    if override is not None:
        base = override.strip().rstrip("/")
        if not _OVERRIDE_RE.match(base):
            raise ConfigError(
                f"invalid CS endpoint override {override!r}: expected http(s)://host[:port]"
            )
        return base
    if region in SPECIAL_REGIONS or region.startswith(_SPECIAL_REGION_PREFIX):
        return _CENTRAL_ENDPOINT
    return f"https://cs.{region}.aliyuncs.com"


# --------------------------------------------------------------------------- parsing helpers

_FRACTION_RE = re.compile(r"(T\d{2}:\d{2}:\d{2})\.(\d+)")


def parse_timestamp(value: Any) -> datetime | None:
    """A timezone-aware datetime from what CS sends, or None when absent or unparseable.

    Accepts ISO 8601 with or without a zone (``Z``, ``+08:00``), any number of fractional digits,
    ``YYYY-MM-DD HH:MM:SS``, and epoch milliseconds/seconds (event timestamps). Values without a
    zone are taken as UTC so that results are always comparable with each other.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        try:
            number = float(value)
            seconds = number / 1000 if number > 1e11 else number
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    if len(text) > 10 and text[10] == " ":
        text = text[:10] + "T" + text[11:]
    # Python 3.10's fromisoformat wants exactly 3 or 6 fractional digits.
    text = _FRACTION_RE.sub(lambda m: f"{m.group(1)}.{(m.group(2) + '000000')[:6]}", text)
    # ...and a colon in the offset.
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _opt_str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value)
    return text or None


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None and value != "":
            return value
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _task_from(item: Mapping[str, Any], task_id: str = "") -> TaskInfo:
    error = item.get("error")
    error = error if isinstance(error, Mapping) else {}
    results = item.get("task_result")
    task_result = tuple(
        dict(r) for r in (results if isinstance(results, list) else []) if isinstance(r, Mapping)
    )
    return TaskInfo(
        task_id=_opt_str(item.get("task_id")) or task_id,
        cluster_id=_opt_str(item.get("cluster_id")),
        task_type=_opt_str(item.get("task_type")),
        state=_opt_str(item.get("state")) or "",
        created=parse_timestamp(item.get("created")),
        updated=parse_timestamp(item.get("updated")),
        error_code=_opt_str(_first(error, "code", "Code")),
        error_message=_opt_str(_first(error, "message", "Message")),
        task_result=task_result,
        raw=dict(item),
    )


def _shapeless(action: str, detail: str) -> CSTransportError:
    """A 2xx answer whose listing does not hold together (a GET: nothing was acted on)."""
    return CSTransportError(action=action, detail=f"answer does not add up: {detail}")


def _uncountable(item: Mapping[str, Any], node: Node) -> str | None:
    """Why ``node`` (from ``item``) cannot be counted, or None."""
    if not isinstance(item.get("instance_role"), str):
        return "no instance_role"
    if (node.instance_role or "").strip().lower() == "worker":
        if not isinstance(item.get("instance_type"), str):
            return "a worker without an instance_type"
        if node.is_edge_worker and not node.known_state:
            return f"an ENS worker in state {outside_quote(item.get('state'))}, not one it knows"
    return None


def _node_from(item: Mapping[str, Any]) -> Node:
    return Node(
        instance_id=_opt_str(item.get("instance_id")) or "",
        node_name=_opt_str(item.get("node_name")),
        instance_role=_opt_str(item.get("instance_role")),
        state=_opt_str(item.get("state")),
        node_status=_opt_str(item.get("node_status")),
        instance_type=_opt_str(item.get("instance_type")),
        nodepool_id=_opt_str(item.get("nodepool_id")),
        creation_time=parse_timestamp(item.get("creation_time")),
    )


def _segment(value: str, what: str) -> str:
    """One percent-encoded path segment. Empty, ``.`` and ``..`` are refused: they would address
    another resource (``POST /api/v2/clusters/`` is not ScaleOutCluster) or be dropped as dot
    segments by the URL parser after signing."""
    if not isinstance(value, str) or value.strip() in ("", ".", ".."):
        raise ConfigError(f"invalid {what} {value!r}")
    return percent_encode(value)


def _json_default(value: Any) -> Any:
    # A caller may pass the password as a Secret; it is revealed only into the body bytes.
    if isinstance(value, Secret):
        return value.reveal()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The exact request bytes: compact JSON, UTF-8, key order kept (what the SDK sends).

    A :class:`Secret` value is revealed into these bytes and nowhere else. NaN/infinity are
    refused (``ValueError``): they are not JSON.
    """
    text = json.dumps(
        body, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    )
    return text.encode("utf-8")


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer read whole (within the size and time limits): what parsing needs."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes

    def payload(self) -> Any:
        """The JSON body, or None when empty or not acceptable JSON (see safejson)."""
        if not self.body:
            return None
        try:
            return safejson.loads(self.body)
        except safejson.JSONError:
            return None


def _request_id(payload: Mapping[str, Any] | None, answer: _Answer) -> str | None:
    if payload:
        found = _first(payload, "request_id", "RequestId", "requestId", "requestid")
        if found is not None:
            return outside_message(found, 80)
    rid = answer.headers.get("x-acs-request-id")
    return outside_message(rid, 80) if rid else None


def _retry_after_seconds(answer: _Answer) -> float | None:
    """``x-acs-retry-after`` as seconds: a positive integer of milliseconds (the SDK's reading)."""
    raw = answer.headers.get("x-acs-retry-after", "").strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) <= 0:
        return None
    return int(raw) / 1000.0


# --------------------------------------------------------------------------- client


class CSClient:
    """Signed calls to one CS regional endpoint.

    ``credentials`` is called for every attempt (rotated STS credentials are picked up).
    Only GETs are retried: up to ``max_retries`` extra attempts on retryable API errors (5xx,
    ``Throttling*``) and on transport errors, sleeping a full-jitter exponential backoff
    ``uniform(0, min(backoff_max, backoff_base * 2**attempt))`` and at least the server's
    ``x-acs-retry-after`` (capped at ``backoff_max``). ``sleep``, ``rng``, ``clock``, ``nonce``
    and ``transport`` are the seams for tests.

    Limits: an answer larger than ``max_answer_bytes`` is abandoned; a GET (every attempt and
    every pause between them) gets at most twice ``connect_timeout + read_timeout``, and never
    more than the ``deadline``'s time left; its body is abandoned when that is up. The
    ScaleOutCluster POST is never shortened by the deadline (that would make its outcome
    unknown): the caller only starts it when its full ``connect_timeout + read_timeout`` fits,
    and its body must arrive within that time.
    """

    def __init__(
        self,
        region: str,
        credentials: Callable[[], Credentials],
        *,
        endpoint: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
        nonce: Callable[[], str] = new_nonce,
        deadline: Deadline | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        self.region = region
        self.base_url = endpoint_for(region, endpoint)
        self._credentials = acs.CredentialSource(credentials)
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._max_answer_bytes = max_answer_bytes
        # The policies of a run call one region's client from up to 64 threads at once.
        self._http = acs.ClientShards(
            lambda: acs.client(
                self._credentials,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                transport=transport,
                clock=clock,
                nonce=nonce,
            )
        )

    def __repr__(self) -> str:
        return f"CSClient(region={self.region!r}, base_url={self.base_url!r})"

    # -- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CSClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- API calls

    def scale_out(self, cluster_id: str, body: Mapping[str, Any]) -> ScaleOutResult:
        """ScaleOutCluster: exactly one POST, never retried, whatever goes wrong.

        Any 2xx is acceptance (the API has answered 200 and 202). A 2xx without ``task_id`` raises
        :class:`CSTransportError` with ``may_have_acted``: the cluster may be scaling, do not assume
        it failed. ``body`` is serialised once (compact, UTF-8) and those bytes are sent.
        """
        action = "ScaleOutCluster"
        password = body.get("login_password")
        content = encode_body(body)
        answer = self._send_once(
            action,
            "POST",
            f"/api/v2/clusters/{_segment(cluster_id, 'cluster id')}",
            content=content,
            attempt=0,
            secrets=(password,),
        )
        payload = self._check(action, answer, secrets=(password,))
        task_id = _opt_str(payload.get("task_id"))
        request_id = _request_id(payload, answer)
        if not task_id:
            rid = f" (request id {request_id})" if request_id else ""
            raise CSTransportError(
                action=action,
                detail=f"HTTP {answer.status} without task_id{rid}: the request was "
                "received and may have started a scale-out; check the cluster's tasks",
                may_have_acted=True,
            )
        return ScaleOutResult(
            cluster_id=_opt_str(payload.get("cluster_id")) or cluster_id,
            task_id=outside_message(task_id, 128),
            request_id=request_id,
            status=answer.status,
        )

    def describe_task(self, task_id: str) -> TaskInfo:
        """DescribeTaskInfo for one task (retried GET)."""
        payload = self._get("DescribeTaskInfo", f"/tasks/{_segment(task_id, 'task id')}")
        return _task_from(payload, task_id)

    def list_nodes(self, cluster_id: str, *, page_size: int = 100) -> list[Node]:
        """All nodes of the cluster, every DescribeClusterNodes page (``pageNumber``/``pageSize``).

        Stops when ``page_number * page_size >= total_count`` (using the page size the server
        reports, in case it capped ours), or, without a total, on a short or empty page. The
        count decides scale-outs, and a low one adds nodes, so an answer that does not add up is a
        :class:`CSTransportError`, never a smaller cluster: see :meth:`_pages`, and a node without
        an ``instance_role``, a worker without an ``instance_type``, or an ENS worker in a
        ``state`` this client does not know.
        """
        path = f"/clusters/{_segment(cluster_id, 'cluster id')}/nodes"
        items = self._pages(
            "DescribeClusterNodes",
            path,
            ("pageNumber", "pageSize"),
            ("nodes", "page"),
            page_size,
            _MAX_NODE_PAGES,
            whole=True,
        )
        nodes = [_node_from(i) for i in items]
        for n, (item, node) in enumerate(zip(items, nodes, strict=True), 1):
            problem = _uncountable(item, node)
            if problem:
                raise _shapeless("DescribeClusterNodes", f"node {n} of {len(items)}: {problem}")
        return nodes

    def list_tasks(
        self, cluster_id: str, *, page_size: int = 50, max_pages: int = 20
    ) -> list[TaskInfo]:
        """Recent tasks of the cluster (DescribeClusterTasks, ``page_size``/``page_number``).

        Items missing fields are kept (``state`` ``""`` reads as running); at most ``max_pages``
        (the newest tasks come first). A listing that does not hold together is a
        :class:`CSTransportError` (:meth:`_pages`): a task missed here could let an ambiguous
        scale-out be resolved as never sent.
        """
        path = f"/clusters/{_segment(cluster_id, 'cluster id')}/tasks"
        items = self._pages(
            "DescribeClusterTasks",
            path,
            ("page_number", "page_size"),
            ("tasks", "page_info"),
            page_size,
            max_pages,
        )
        return [_task_from(i) for i in items]

    def _pages(
        self,
        action: str,
        path: str,
        params: tuple[str, str],
        keys: tuple[str, str],
        page_size: int,
        max_pages: int,
        *,
        whole: bool = False,
    ) -> list[Mapping[str, Any]]:
        """Every item of a paged listing: ``params`` are the (number, size) query names the
        action uses, ``keys`` the (items, page info) response keys.

        A listing that does not hold together is a :class:`CSTransportError`, not fewer items: a
        page whose items are not a list of objects (missing or null only with a total of 0), an
        empty page before the total was read, and, with ``whole``, fewer items than the total or
        more pages than ``max_pages`` (without ``whole`` the listing stops there).
        """
        number_param, size_param = params
        items_key, page_key = keys
        out: list[Mapping[str, Any]] = []
        total: int | None = None
        for number in range(1, max_pages + 1):
            payload = self._get(action, path, {number_param: number, size_param: page_size})
            page = payload.get(page_key)
            page = page if isinstance(page, Mapping) else {}
            total = _as_int(page.get("total_count"))
            items = payload.get(items_key)
            if items is None and total == 0:
                items = []
            if not isinstance(items, list):
                raise _shapeless(action, f"page {number} has no {items_key!r} list")
            if not all(isinstance(i, Mapping) for i in items):
                raise _shapeless(action, f"page {number}: an item of {items_key!r} is no object")
            out.extend(items)
            if not items:
                if total is not None and len(out) < total:
                    raise _shapeless(action, f"page {number} is empty after {len(out)} of {total}")
                return out
            if self._last_page(page, total, number, page_size, len(items)):
                if whole and total is not None and len(out) < total:
                    raise _shapeless(action, f"the listing ended after {len(out)} of {total}")
                return out
        if whole:
            raise _shapeless(action, f"still more after {max_pages} pages")
        return out

    # -- plumbing

    @staticmethod
    def _last_page(
        page: Mapping[str, Any], total: int | None, number: int, asked: int, got: int
    ) -> bool:
        size = _as_int(page.get("page_size")) or asked
        current = _as_int(page.get("page_number")) or number
        if total is None:
            return got < size
        return current * size >= total

    def _message(self, text: str, secrets: Iterable[Any], limit: int = _MAX_ERROR_TEXT) -> str:
        """Outside text for an error: redacted (every known secret, this call's password and
        credentials included), then one line, then cut."""
        values: list[Secret | str | None] = [
            s if isinstance(s, (Secret, str)) else None for s in secrets
        ]
        return outside_message(text, limit, [*values, *self._credentials.secrets()])

    def _get(
        self, action: str, path: str, query: Mapping[str, str | int | None] | None = None
    ) -> dict[str, Any]:
        # A GET with its retries gets at most twice one exchange's timeouts (and never past the
        # run's deadline): a server answering every read late is not waited on four times over.
        budget = RETRY_BUDGET_FACTOR * (self._connect_timeout + self._read_timeout)
        limit = self._deadline.within(budget) if self._deadline is not None else Deadline(budget)
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                answer = self._send_once(
                    action, "GET", path, query=query, attempt=attempt, limit=limit
                )
                retry_after = _retry_after_seconds(answer)
                return self._check(action, answer, attempt=attempt)
            except CSApiError as exc:
                if not exc.retryable or attempt >= self._max_retries:
                    raise
            except CSTransportError:
                if attempt >= self._max_retries or limit.expired:
                    raise
            pause = self._delay(attempt, retry_after)
            if not limit.allows(pause + 0.1):
                raise CSTransportError(
                    action=action,
                    detail=f"GET {path}: giving up retries: out of time (call or run deadline)",
                    may_have_acted=False,
                )
            self._sleep(pause)
            attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cap = min(self._backoff_max, self._backoff_base * 2**attempt)
        delay = self._rng.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, min(self._backoff_max, retry_after))
        return delay

    def _send_once(
        self,
        action: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | None] | None = None,
        content: bytes | None = None,
        attempt: int,
        secrets: Iterable[Any] = (),
        limit: Deadline | None = None,
    ) -> _Answer:
        qs = encode_query(query) if query else ""
        # Built as a string, not with params=: httpx would encode spaces as "+", not as signed.
        url = f"{self.base_url}{path}" + (f"?{qs}" if qs else "")
        headers = {"x-acs-action": action, "x-acs-version": API_VERSION}
        if content is not None:
            headers["content-type"] = "application/json; charset=utf-8"
        # The whole exchange's time: the POST's full timeouts (never shortened, see the class
        # docstring); a GET's, capped by its call's limit (the run deadline included).
        total = self._connect_timeout + self._read_timeout
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if method != "POST" and limit is not None:
            try:
                total = limit.timeout(total)
            except DeadlineExceeded:
                raise CSTransportError(
                    action=action,
                    detail=f"{method} {path}: run deadline passed",
                    may_have_acted=False,
                ) from None
            read = min(self._read_timeout, total)
            timeout = httpx.Timeout(
                connect=min(self._connect_timeout, total), read=read, write=read, pool=read
            )
        sent = False
        try:
            http = self._http.get()
            request = http.build_request(
                method,
                url,
                content=content,
                headers=headers,
                timeout=timeout,
            )
            until = time.monotonic() + total
            # The whole exchange, headers included, within its time (acs.bounded): a server
            # trickling header bytes would otherwise hold send() as long as it likes.
            with acs.bounded(until):
                response = http.send(request, stream=True)
                sent = True
                try:
                    # A DescribeClusterNodes page of 100 nodes is ~150 kB; past the cap, or past
                    # its time, an answer is abandoned (a transport error), never parsed.
                    body = read_body(response, max_bytes=self._max_answer_bytes, until=until)
                finally:
                    response.close()
        except (httpx.RequestError, httpx.InvalidURL, Abandoned) as exc:
            log.debug(
                "cs %s attempt=%d status=error request_id=- error=%s",
                action,
                attempt,
                type(exc).__name__,
            )
            acted = sent or not isinstance(exc, _NOT_SENT)
            raise self._transport_error(action, method, path, exc, acted, secrets) from None
        return _Answer(response.status_code, response.reason_phrase, response.headers, body)

    def _transport_error(
        self,
        action: str,
        method: str,
        path: str,
        exc: Exception,
        may_have_acted: bool,
        secrets: Iterable[Any],
    ) -> CSTransportError:
        what = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport error"
        text = self._message(str(exc), secrets)
        detail = f"{method} {path}: {what}: {type(exc).__name__}" + (f": {text}" if text else "")
        return CSTransportError(action=action, detail=detail, may_have_acted=may_have_acted)

    def _check(
        self,
        action: str,
        answer: _Answer,
        *,
        attempt: int = 0,
        secrets: Iterable[Any] = (),
    ) -> dict[str, Any]:
        """The JSON object of a 2xx answer; :class:`CSApiError` for any other status."""
        secrets = tuple(secrets)
        payload = answer.payload()
        log.debug(
            "cs %s attempt=%d status=%d request_id=%s",
            action,
            attempt,
            answer.status,
            _request_id(payload if isinstance(payload, dict) else None, answer) or "-",
        )
        if not 200 <= answer.status < 300:
            raise self._api_error(action, answer, payload, secrets)
        if not isinstance(payload, dict):
            raise CSTransportError(
                action=action,
                detail=f"HTTP {answer.status} with a body that is not an acceptable JSON object",
                may_have_acted=True,
            )
        return payload

    def _api_error(
        self, action: str, answer: _Answer, payload: Any, secrets: tuple[Any, ...]
    ) -> CSApiError:
        status = answer.status
        if isinstance(payload, dict):
            code = _opt_str(_first(payload, "Code", "code")) or f"HTTP{status}"
            message = _opt_str(_first(payload, "Message", "message")) or ""
            request_id = _request_id(payload, answer)
        else:
            code = f"HTTP{status}"
            # Whole: self._message redacts (within outside.message's window) before it cuts.
            message = answer.body.decode("utf-8", "replace") or answer.reason
            request_id = _request_id(None, answer)
        return CSApiError(
            action=action,
            status=status,
            code=self._message(code, secrets, 80),
            message=self._message(message, secrets),
            request_id=request_id,
            retry_after=_retry_after_seconds(answer),
        )


__all__ = [
    "API_VERSION",
    "SPECIAL_REGIONS",
    "CSClient",
    "encode_body",
    "endpoint_for",
    "parse_timestamp",
]

"""A small client for the few OSS calls the store makes, in OSS's own REST dialect, over httpx.

Calls: PutObject (optionally create-only with ``x-oss-forbid-overwrite: true``), GetObject,
HeadObject, DeleteObject, ListObjectsV2 (``?list-type=2``) and GetBucketVersioning
(``?versioning``). Requests are signed with OSS signature V4 (:mod:`edgescaler.cloud.oss_signing`).

**Addressing.** Virtual-hosted (``https://<bucket>.oss-<region>[-internal].aliyuncs.com/<key>``)
for ``*.aliyuncs.com`` endpoints, which is all OSS serves; path-style
(``http://127.0.0.1:9000/<bucket>/<key>``) for any other endpoint (a local test server or a proxy).
The signature covers ``/<bucket>/<key>`` either way. The region in the signature is the
endpoint's (``oss-cn-hangzhou-internal.aliyuncs.com`` → ``cn-hangzhou``), else the one given.

**Failures** are :class:`OSSFailure`: the HTTP status, OSS's error ``Code``/``Message``/
``RequestId``/``EC`` from the XML body (or its ``x-oss-*`` headers for a HEAD), and whether an
earlier attempt of the same call may already have been applied (``maybe_applied``: a retried
write whose first answer was lost). Connection failures, timeouts, HTTP 500/502/503/504 and 429
are retried (three attempts in all, short jittered pauses); nothing else is. Text taken from the
wire is scrubbed of the credentials before it is kept.

Responses are read up to :data:`MAX_BODY` bytes and :data:`ANSWER_SECONDS` seconds; a listing
up to :data:`MAX_LIST_PAGES` pages; XML is parsed with the standard library (the
endpoint is the operator's own bucket over TLS; expat does not fetch external entities).
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx

from edgescaler.cloud import acs, tls
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.oss_signing import OssV4Auth, encode_query, uri_encode
from edgescaler.outside import message as outside_message

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
ATTEMPTS = 3
MAX_BODY = 4 * 1024 * 1024
ANSWER_SECONDS = CONNECT_TIMEOUT + READ_TIMEOUT  # a whole answer, however it trickles
MAX_LIST_PAGES = 100  # 100,000 keys: far beyond a day of one prefix's activity
DEFAULT_ENDPOINT = "https://oss-{region}-internal.aliyuncs.com"
_USER_AGENT = "edgescaler-oss/1"
_OSS_HOST = re.compile(r"^oss-(?P<region>[a-z]{2}-[a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")
_REGION = re.compile(r"^[a-z]{2}-[a-z0-9-]{1,40}$")
# Requests httpx gave up on before anything reached the server.
# (PoolTimeout is raised before sending, but counted as maybe sent, as the CS client does: the
# safe side for a create-only write.)
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol)

# Answers worth another attempt (not 501 NotImplemented: that one will not change its mind).
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

_http_clients: dict[str, acs.ClientShards] = {}
_http_lock = threading.Lock()


def endpoint_region(endpoint: str | None) -> str | None:
    """The region of an OSS endpoint (``https://oss-cn-beijing-internal.aliyuncs.com`` →
    ``cn-beijing``), None for any other endpoint."""
    if not endpoint:
        return None
    match = _OSS_HOST.match((urlsplit(endpoint).hostname or "").lower())
    return match.group("region") if match else None


def default_endpoint(region: str) -> str:
    """The region's internal endpoint: what a function in that region should use (no traffic
    fees, no public network)."""
    return DEFAULT_ENDPOINT.format(region=region)


def valid_region(region: str) -> bool:
    return bool(_REGION.match(region))


def virtual_hosted(endpoint: str) -> bool:
    """OSS itself wants the bucket in the host name; anything else gets path-style requests."""
    return (urlsplit(endpoint).hostname or "").lower().endswith(".aliyuncs.com")


class OSSFailure(Exception):
    """One failed call: an OSS error answer, or no usable answer at all (``status`` None)."""

    def __init__(
        self,
        code: str,
        status: int | None,
        message: str = "",
        *,
        request_id: str | None = None,
        ec: str | None = None,
        maybe_applied: bool = False,
    ) -> None:
        self.code = code
        self.status = status
        self.message = message
        self.request_id = request_id
        self.ec = ec
        self.maybe_applied = maybe_applied
        super().__init__(self.describe())

    def describe(self) -> str:
        status = f" (HTTP {self.status})" if self.status else ""
        text = f": {self.message}" if self.message else ""
        ids = ", ".join(
            part
            for part in (
                f"request id {self.request_id}" if self.request_id else "",
                f"EC {self.ec}" if self.ec else "",
            )
            if part
        )
        return f"{self.code}{status}{text}" + (f" ({ids})" if ids else "")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_xml(body: bytes) -> ET.Element | None:
    """The document element, or None for an empty or malformed body."""
    if not body.strip():
        return None
    try:
        return ET.fromstring(body)  # noqa: S314 - see the module docstring
    except ET.ParseError:
        return None


def child_text(elem: ET.Element, name: str) -> str | None:
    """Text of the first direct child called ``name`` (any XML namespace)."""
    for child in elem:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def _shared_http(base: str) -> acs.ClientShards:
    """Connection pools per endpoint per process (sharded between the run's threads,
    :class:`~edgescaler.cloud.acs.ClientShards`): a warm FC instance reuses its TLS connections
    across invocations. Credentials are per request (in the auth), not here."""

    def build() -> httpx.Client:
        return acs.bounding(
            httpx.Client(
                timeout=httpx.Timeout(
                    connect=CONNECT_TIMEOUT,
                    read=READ_TIMEOUT,
                    write=READ_TIMEOUT,
                    pool=CONNECT_TIMEOUT,
                ),
                headers={"user-agent": _USER_AGENT},
                follow_redirects=False,
                verify=tls.context(),  # one per process, shared with the CS and KMS clients
            )
        )

    with _http_lock:
        shards = _http_clients.get(base)
        if shards is None:
            shards = _http_clients[base] = acs.ClientShards(build)
        return shards


class OSSClient:
    """The calls of one bucket at one endpoint, signed with ``credentials`` for ``region``.

    ``http`` replaces the shared connection pool (it is then the caller's to close); ``clock``
    dates the signatures; ``sleep`` and ``attempts`` shape the retries.
    """

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        region: str,
        credentials: Credentials,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], datetime] | None = None,
        attempts: int = ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint[:80]!r}")
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.bucket = bucket
        self.region = region
        self._credentials = credentials
        self._virtual = virtual_hosted(endpoint)
        self._http: Callable[[], httpx.Client] = (
            (lambda: http) if http is not None else _shared_http(self.endpoint).get
        )
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._attempts = max(1, attempts)
        self._sleep = sleep
        self._secrets = tuple(
            s for s in (credentials.access_key_secret, credentials.security_token) if s
        )

    def __repr__(self) -> str:
        return (
            f"OSSClient(endpoint={self.endpoint!r}, bucket={self.bucket!r}, region={self.region!r})"
        )

    # -- addressing

    def url(self, key: str | None, query: Mapping[str, str | int | None] | None = None) -> str:
        scheme, _, host = self.endpoint.partition("://")
        path = uri_encode(key, keep_slash=True) if key else ""
        if self._virtual:
            base = f"{scheme}://{self.bucket}.{host}/{path}"
        else:
            base = f"{scheme}://{host}/{self.bucket}/{path}"
        qs = encode_query(query) if query else ""
        return base + (f"?{qs}" if qs else "")

    # -- one call

    def _scrub(self, text: str) -> str:
        return outside_message(text, 300, self._secrets)

    def _scrub_id(self, text: str | None) -> str | None:
        """A request id or error code of the answer: outside text, quoted short."""
        return outside_message(text, 80, self._secrets) if text else None

    def request(
        self,
        method: str,
        key: str | None,
        *,
        query: Mapping[str, str | int | None] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Answer:
        """Send one call (retried as the module docstring says); an :class:`Answer` for 2xx,
        else :class:`OSSFailure`."""
        url = self.url(key, query)
        auth = OssV4Auth(self._credentials, self.region, self.bucket, key, self._clock)
        maybe_applied = False
        for attempt in range(1, self._attempts + 1):
            last = attempt == self._attempts
            try:
                answer = self._send(method, url, dict(headers or {}), body, auth)
            except httpx.HTTPError as exc:
                sent = not isinstance(exc, _NOT_SENT)
                if last:
                    raise OSSFailure(
                        type(exc).__name__,
                        None,
                        self._scrub(str(exc)),
                        maybe_applied=maybe_applied or sent,
                    ) from None
                maybe_applied = maybe_applied or sent
            else:
                retryable = answer.status in _RETRY_STATUS
                if answer.status < 300:
                    return answer
                if last or not retryable:
                    raise self._failure(answer, maybe_applied)
                maybe_applied = True
            self._sleep(random.uniform(0.05, 0.2) * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, auth: OssV4Auth
    ) -> Answer:
        # Bounded in size and in time, headers included (acs.bounded): a body or headers
        # trickled under the read timeout would otherwise hold the run until its deadline.
        until = time.monotonic() + ANSWER_SECONDS
        with (
            acs.bounded(until),
            self._http().stream(
                method,
                url,
                headers=headers,
                content=body if method in ("PUT", "POST") else None,
                auth=auth,
            ) as response,
        ):
            try:
                data = acs.read_body(response, max_bytes=MAX_BODY, until=until)
            except acs.Abandoned as exc:
                raise OSSFailure(
                    "ResponseAbandoned", response.status_code, str(exc), maybe_applied=True
                ) from None
            lowered = {k.lower(): v for k, v in response.headers.items()}
            return Answer(response.status_code, lowered, data)

    def _failure(self, answer: Answer, maybe_applied: bool) -> OSSFailure:
        root = parse_xml(answer.body)
        code = message = request_id = ec = None
        if root is not None and _local(root.tag) == "Error":
            code = child_text(root, "Code")
            message = child_text(root, "Message")
            request_id = child_text(root, "RequestId")
            ec = child_text(root, "EC")
        if not code:
            code = "NoSuchKey" if answer.status == 404 else f"HTTP{answer.status}"
        return OSSFailure(
            self._scrub_id(code) or "",
            answer.status,
            self._scrub(message or ""),
            request_id=self._scrub_id(request_id or answer.headers.get("x-oss-request-id")),
            ec=self._scrub_id(ec or answer.headers.get("x-oss-ec")),
            maybe_applied=maybe_applied,
        )

    # -- operations

    def put_object(
        self,
        key: str,
        data: bytes,
        *,
        forbid_overwrite: bool = False,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        """PutObject; with ``forbid_overwrite`` OSS answers 409 ``FileAlreadyExists`` when the
        key exists (in a bucket that never had versioning)."""
        headers = {
            "content-type": "application/json",
            "content-md5": base64.b64encode(hashlib.md5(data).digest()).decode(),  # noqa: S324
        }
        if forbid_overwrite:
            headers["x-oss-forbid-overwrite"] = "true"
        for name, value in (meta or {}).items():
            headers[f"x-oss-meta-{name}"] = value
        self.request("PUT", key, headers=headers, body=data)

    def get_object(self, key: str) -> bytes | None:
        """The object's bytes, None when the key does not exist (another 404, such as
        ``NoSuchBucket``, is a failure)."""
        try:
            return self.request("GET", key).body
        except OSSFailure as failure:
            if failure.status == 404 and failure.code == "NoSuchKey":
                return None
            raise

    def head_object(self, key: str) -> dict[str, str] | None:
        """The object's headers (lower-case names), None when it does not exist."""
        try:
            return self.request("HEAD", key).headers
        except OSSFailure as failure:
            if failure.status == 404:
                return None
            raise

    def delete_object(self, key: str) -> None:
        self.request("DELETE", key)

    def list_keys(self, prefix: str, *, page_size: int = 1000) -> list[str]:
        """Every key starting with ``prefix`` (ListObjectsV2, all pages), in listing order."""
        keys: list[str] = []
        token: str | None = None
        for _ in range(MAX_LIST_PAGES):
            query: dict[str, str | int | None] = {
                "list-type": "2",
                "prefix": prefix,
                "max-keys": page_size,
                "continuation-token": token,
            }
            answer = self.request("GET", None, query=query)
            root = parse_xml(answer.body)
            if root is None or _local(root.tag) != "ListBucketResult":
                raise OSSFailure("MalformedListResponse", answer.status, "not a ListBucketResult")
            for item in root:
                if _local(item.tag) == "Contents":
                    name = child_text(item, "Key")
                    if name:
                        keys.append(name)
            truncated = (child_text(root, "IsTruncated") or "").lower() == "true"
            token = child_text(root, "NextContinuationToken")
            if not truncated:
                return keys
            if not token:  # the rest exists but cannot be asked for: not a listing
                raise OSSFailure(
                    "MalformedListResponse", answer.status, "truncated without a continuation token"
                )
        raise OSSFailure(
            "ListTooLong", None, f"more than {MAX_LIST_PAGES} pages of keys under {prefix!r}"
        )

    def versioning(self) -> str | None:
        """GetBucketVersioning's ``Status`` (``Enabled`` or ``Suspended``), None if versioning
        was never enabled."""
        answer = self.request("GET", None, query={"versioning": ""})
        root = parse_xml(answer.body)
        if root is None or _local(root.tag) != "VersioningConfiguration":
            raise OSSFailure(
                "MalformedVersioningResponse", answer.status, "not a VersioningConfiguration"
            )
        status = child_text(root, "Status")
        return status.strip() if status and status.strip() else None

"""Pytest plugin: OSS's dialect, rendered by a small layer in front of moto's real S3 server.

Load with ``-p tests.support.oss`` (or list it in ``pytest_plugins``)::

    def test_x(oss):                  # module-scoped layer in front of ``moto_s3``
        store = OSSStore(oss.bucket, oss.new_prefix(), credentials=oss.credentials(),
                         endpoint=oss.url, region=oss.region)

    def test_y(oss_layer):            # a fresh layer (fresh port, probe cache cleared)
        oss_layer.ignore_forbid_overwrite = True   # an endpoint that drops the header
        oss_layer.conflicts = ["FileImmutable"]    # next create-only PUT: 409 with that code
        oss_layer.lose_responses = 1  # do the next create-only PUT, answer 500 (lost reply)
        oss_layer.versioning_error = "AccessDenied"  # GetBucketVersioning answered 403
        oss_layer.seen; oss_layer.calls()

What it renders (OSS's documented behaviour for the calls the store makes), path-style only:

* **Signature V4** (``OSS4-HMAC-SHA256``) checked on every request, independently of the store's
  signer: the layer recomputes the Authorization header with the official SDK's
  ``alibabacloud_oss_v2.signer.v4.SignerV4`` from the request as received, for the accounts it
  knows (key id → secret, STS token). A mismatch is 403 ``SignatureDoesNotMatch`` whose body, like
  OSS's, carries the ``CanonicalRequest`` (and so the STS token): a client must not echo it. A
  missing or wrong STS token is 403 ``InvalidSecurityToken``.
* ``PutObject`` with ``x-oss-forbid-overwrite: true``: if the key exists, 409 with OSS's error XML,
  code ``FileAlreadyExists``, EC ``0026-00000002``. moto's own conditional put is check-then-set,
  so the layer makes create-only atomic itself: check and write under one lock.
* Any ``If-None-Match`` / ``If-Match`` on a PUT: 501 ``NotImplemented`` (what OSS answers).
* ``GetBucketVersioning`` (``?versioning``): the bucket's status in OSS's XML (no namespace; no
  ``Status`` element when versioning was never enabled); a test enables versioning through moto.
* ``x-oss-meta-*`` user metadata both ways; ``ListObjectsV2`` (``?list-type=2``) relayed; errors
  re-rendered as OSS error XML (Code, Message, RequestId, HostId, EC) with ``x-oss-request-id``.
"""

from __future__ import annotations

import http.client
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

import pytest

from edgescaler.cloud.credentials import Credentials
from edgescaler.sensitive import Secret
from tests.support.s3 import FAKE_KEY_ID, MotoS3

REGION = "cn-hangzhou"
KEY_ID = "LTAIossLayerKeyId0001"
SECRET = "oss-layer-secret-never-printed"
TOKEN = "CAIS-oss-layer-sts-token-never-printed"

_POLL = 0.05
# moto answers anonymous reads of private objects with 403, and checks no signature: a request
# that names an access key is enough for it to act as the bucket's owner.
_UPSTREAM_AUTH = (
    f"AWS4-HMAC-SHA256 Credential={FAKE_KEY_ID}/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=0"
)
_EC = {
    "FileAlreadyExists": "0026-00000002",
    "NoSuchKey": "0026-00000001",
    "NoSuchBucket": "0015-00000101",
    "NotImplemented": "0002-00000112",
    "SignatureDoesNotMatch": "0002-00000040",
    "InvalidSecurityToken": "0002-00000069",
    "InvalidAccessKeyId": "0002-00000021",
    "AccessDenied": "0003-00000001",
    "FileImmutable": "0026-00000009",
    "InternalError": "0000-00000001",
}
_MESSAGES = {
    "FileAlreadyExists": "The object you specified already exists and can not be overwritten.",
    "NotImplemented": "A header you provided implies functionality that is not implemented.",
    "FileImmutable": "Please contact the bucket owner. The file is immutable.",
    "AccessDenied": "You have no right to access this object because of bucket acl.",
    "InternalError": "We encountered an internal error. Please try again.",
}
_AUTH = re.compile(
    r"^OSS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/oss/"
    r"aliyun_v4_request,\s*(?:AdditionalHeaders=(?P<extra>[^,]*),\s*)?Signature=(?P<sig>[0-9a-f]{64})$"
)


def error_xml(code: str, message: str = "", **extra: str) -> tuple[bytes, str]:
    """OSS's error document and the request id it names."""
    request_id = uuid.uuid4().hex[:24].upper()
    fields = {
        "Code": code,
        "Message": message or _MESSAGES.get(code, code),
        "RequestId": request_id,
        "HostId": "oss-layer.127.0.0.1",
        **extra,
        "EC": _EC.get(code, "0000-00000000"),
    }
    body = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{body}</Error>'.encode(), request_id


@dataclass(frozen=True, repr=False)
class Seen:
    """One request the layer answered (its repr hides the token and the signature)."""

    method: str
    key: str  # object key without the bucket; "" for a bucket request
    query: str
    status: int
    code: str | None  # the OSS error code answered, if any
    headers: dict[str, str]  # lower-case names

    def __repr__(self) -> str:
        shown = {
            k: ("***" if k in ("authorization", "x-oss-security-token") else v)
            for k, v in self.headers.items()
        }
        return (
            f"Seen({self.method} {self.key!r}?{self.query} -> {self.status} {self.code}, {shown})"
        )


@dataclass
class _Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    code: str | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    layer: OSSLayer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        layer = self.server.layer
        reply = layer.handle(self.command, self.path, headers, body)
        reply.headers.setdefault("x-oss-request-id", uuid.uuid4().hex[:24].upper())
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.command == "HEAD":
            if "content-length" not in reply.headers:
                self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _serve


class OSSLayer:
    """An OSS-speaking HTTP endpoint on loopback relaying to the S3 server at ``upstream``."""

    def __init__(self, upstream: str, accounts: dict[str, tuple[str, str | None]]) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.accounts = dict(accounts)  # key id -> (secret, STS token or None)
        self.region = REGION
        self.ignore_forbid_overwrite = False
        self.conflicts: list[str] = []
        self.lose_responses = 0
        self.versioning_error: str | None = None
        self.check_signatures = True  # off only to time a client that signs otherwise (boto)
        self._seen: list[Seen] = []
        self._lock = threading.Lock()  # the layer's own state
        self._create_lock = threading.Lock()  # makes check-then-write atomic
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.layer = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL,), name="oss-layer", daemon=True
        )
        self._thread.start()

    # -- what happened

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def calls(self) -> list[tuple[str, int]]:
        return [(s.method, s.status) for s in self.seen]

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- one request

    def handle(self, method: str, raw: str, headers: dict[str, str], body: bytes) -> _Reply:
        path, _, query = raw.partition("?")
        bucket, _, key_part = path.lstrip("/").partition("/")
        key = unquote(key_part)
        reply = None
        if self.check_signatures:
            reply = self._check_signature(method, raw, path, query, headers, bucket, key)
        if reply is None:
            reply = self._route(method, bucket, key, query, headers, body)
        with self._lock:
            self._seen.append(Seen(method, key, query, reply.status, reply.code, headers))
        return reply

    def _error(self, status: int, code: str, message: str = "", **extra: str) -> _Reply:
        body, request_id = error_xml(code, message, **extra)
        return _Reply(
            status,
            {
                "content-type": "application/xml",
                "x-oss-request-id": request_id,
                "x-oss-ec": _EC.get(code, ""),
            },
            body,
            code,
        )

    def _check_signature(
        self,
        method: str,
        raw: str,
        path: str,
        query: str,
        headers: dict[str, str],
        bucket: str,
        key: str,
    ) -> _Reply | None:
        from alibabacloud_oss_v2.signer.v4 import SignerV4
        from alibabacloud_oss_v2.types import Credentials as SdkCredentials
        from alibabacloud_oss_v2.types import HttpRequest, SigningContext

        match = _AUTH.match(headers.get("authorization", ""))
        if match is None:
            return self._error(403, "AccessDenied", "Authorization header is not OSS V4.")
        account = self.accounts.get(match["key"])
        if account is None:
            return self._error(403, "InvalidAccessKeyId", "The OSS Access Key Id does not exist.")
        secret, token = account
        if token is not None and headers.get("x-oss-security-token") != token:
            return self._error(403, "InvalidSecurityToken", "The security token is invalid.")
        signed_at = datetime.strptime(headers.get("x-oss-date", ""), "%Y%m%dT%H%M%SZ")
        received = {k: v for k, v in headers.items() if k != "authorization"}
        request = HttpRequest(method, f"http://{headers.get('host', '')}{raw}", received)
        extra = [h for h in (match["extra"] or "").split(";") if h]
        ctx = SigningContext(
            product="oss",
            region=self.region,
            bucket=bucket or None,
            key=key or None,
            request=request,
            credentials=SdkCredentials(match["key"], secret, token),
            signing_time=signed_at.replace(tzinfo=timezone.utc),
            additional_headers=set(extra) if extra else None,
        )
        SignerV4().sign(ctx)
        expected = request.headers["Authorization"]
        got = headers["authorization"].replace(", ", ",")
        if match["region"] != self.region or got != expected:
            # OSS tells the client what it signed, the security token included.
            canonical = ctx.string_to_sign
            return self._error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
                StringToSign=canonical,
                CanonicalRequest="\n".join(f"{k}:{v}" for k, v in sorted(received.items())),
            )
        return None

    def _route(
        self, method: str, bucket: str, key: str, query: str, headers: dict[str, str], body: bytes
    ) -> _Reply:
        if method == "PUT" and ("if-none-match" in headers or "if-match" in headers):
            return self._error(501, "NotImplemented")
        if not key:
            return self._bucket_call(method, bucket, query)
        if method == "PUT":
            forbid = headers.get("x-oss-forbid-overwrite", "").lower() == "true"
            if forbid and not self.ignore_forbid_overwrite:
                return self._create(bucket, key, headers, body)
            return self._relay_object("PUT", bucket, key, headers, body)
        if method in ("GET", "HEAD", "DELETE"):
            return self._relay_object(method, bucket, key, headers, b"")
        return self._error(405, "MethodNotAllowed", "The specified method is not allowed.")

    def _create(self, bucket: str, key: str, headers: dict[str, str], body: bytes) -> _Reply:
        with self._lock:
            conflict = self.conflicts.pop(0) if self.conflicts else None
            lose = self.lose_responses > 0
            if lose:
                self.lose_responses -= 1
        if conflict is not None:
            return self._error(409, conflict)
        with self._create_lock:
            exists = self._upstream_call("HEAD", f"/{bucket}/{_quote(key)}", {}, b"")[0] == 200
            if exists:
                reply = self._error(409, "FileAlreadyExists")
            else:
                reply = self._relay_object("PUT", bucket, key, headers, body)
        if lose:  # whatever happened, the client only sees a 500
            return self._error(500, "InternalError")
        return reply

    def _bucket_call(self, method: str, bucket: str, query: str) -> _Reply:
        names = {part.partition("=")[0] for part in query.split("&") if part}
        if method == "GET" and "versioning" in names:
            if self.versioning_error:
                return self._error(403, self.versioning_error)
            status, _, raw = self._upstream_call("GET", f"/{bucket}?versioning", {}, b"")
            if status != 200:
                return self._upstream_error(status, raw)
            found = re.search(rb"<Status>(\w+)</Status>", raw)
            inner = f"<Status>{found.group(1).decode()}</Status>" if found else ""
            doc = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<VersioningConfiguration>{inner}</VersioningConfiguration>"
            )
            return _Reply(200, {"content-type": "application/xml"}, doc.encode())
        if method == "GET" and "list-type" in names:
            status, _, raw = self._upstream_call("GET", f"/{bucket}?{query}", {}, b"")
            if status != 200:
                return self._upstream_error(status, raw)
            raw = re.sub(rb'\sxmlns="[^"]*"', b"", raw, count=1)  # OSS's XML has no namespace
            return _Reply(200, {"content-type": "application/xml"}, raw)
        return self._error(400, "InvalidArgument", "The layer renders only what the store uses.")

    def _relay_object(
        self, method: str, bucket: str, key: str, headers: dict[str, str], body: bytes
    ) -> _Reply:
        upstream_headers = {}
        for name, value in headers.items():
            if name.startswith("x-oss-meta-"):
                upstream_headers["x-amz-meta-" + name[len("x-oss-meta-") :]] = value
            elif name in ("content-type", "content-md5"):
                upstream_headers[name] = value
        status, reply_headers, raw = self._upstream_call(
            method, f"/{bucket}/{_quote(key)}", upstream_headers, body
        )
        if status >= 300:
            if method == "HEAD":
                code = "NoSuchKey" if status == 404 else f"HTTP{status}"
                reply = self._error(status, code)
                return _Reply(status, {**reply.headers, "content-length": "0"}, b"", code)
            return self._upstream_error(status, raw)
        out: dict[str, str] = {}
        for name, value in reply_headers.items():
            if name.startswith("x-amz-meta-"):
                out["x-oss-meta-" + name[len("x-amz-meta-") :]] = value
            elif name in ("etag", "content-type", "last-modified"):
                out[name] = value
        if method == "HEAD":
            out["content-length"] = reply_headers.get("content-length", "0")
        return _Reply(204 if method == "DELETE" else 200, out, raw if method == "GET" else b"")

    def _upstream_error(self, status: int, raw: bytes) -> _Reply:
        code = re.search(rb"<Code>([^<]+)</Code>", raw)
        message = re.search(rb"<Message>([^<]*)</Message>", raw)
        return self._error(
            status,
            code.group(1).decode() if code else f"HTTP{status}",
            message.group(1).decode() if message else "",
        )

    def _upstream_call(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self._upstream, timeout=10)
        try:
            conn.request(
                method,
                path,
                body=body if method == "PUT" else None,
                headers={**headers, "authorization": _UPSTREAM_AUTH},
            )
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()


def _quote(key: str) -> str:
    from urllib.parse import quote

    return quote(key, safe="/~")


def credentials(*, token: bool = True) -> Credentials:
    """The layer's test account, with its STS token unless ``token=False``."""
    return Credentials(KEY_ID, Secret(SECRET), Secret(TOKEN) if token else None)


@dataclass
class OSS:
    """What ``oss`` yields: a running layer, its bucket and a view of moto underneath."""

    layer: OSSLayer
    moto: MotoS3
    bucket: str

    @property
    def url(self) -> str:
        return self.layer.url

    @property
    def region(self) -> str:
        return self.layer.region

    def new_prefix(self) -> str:
        return self.moto.new_prefix()

    def credentials(self) -> Credentials:
        return credentials()

    def keys(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        return self.moto.keys(prefix, bucket=bucket or self.bucket)

    def new_bucket(self, versioning: str | None = None) -> str:
        """A fresh bucket; ``versioning`` ``Enabled`` or ``Suspended`` sets its status."""
        name = self.moto.new_bucket()
        if versioning == "Suspended":
            self.moto.client().put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": "Enabled"}
            )
        if versioning:
            self.moto.client().put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": versioning}
            )
        return name


def _accounts(extra: dict[str, tuple[str, str | None]] | None = None) -> dict[str, Any]:
    return {KEY_ID: (SECRET, TOKEN), **(extra or {})}


@pytest.fixture(scope="module")
def oss(moto_s3: MotoS3) -> Iterator[OSS]:
    """A module-scoped OSS layer in front of ``moto_s3``, with its own fresh bucket."""
    layer = OSSLayer(moto_s3.endpoint, _accounts())
    try:
        yield OSS(layer, moto_s3, moto_s3.new_bucket())
    finally:
        layer.stop()


@pytest.fixture
def oss_layer(oss: OSS) -> Iterator[OSSLayer]:
    """A fresh layer (own port, own fault switches) over the same moto; the store's start-up
    check cache is cleared before and after."""
    from edgescaler.store.base import clear_probe_cache

    clear_probe_cache()
    layer = OSSLayer(oss.moto.endpoint, _accounts())
    yield layer
    layer.stop()
    clear_probe_cache()

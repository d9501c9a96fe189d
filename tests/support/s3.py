"""Pytest plugin: moto's S3 on loopback, and a proxy in front of it that misbehaves on purpose.

Load with ``-p tests.support.s3`` (or list it in ``pytest_plugins``)::

    def test_x(moto_s3):
        store = S3Store(moto_s3.bucket, moto_s3.new_prefix(), endpoint_url=moto_s3.endpoint)
        moto_s3.keys(prefix)          # what is really in the bucket, via a separate client

    def test_y(s3_proxy):             # a loopback HTTP proxy in front of moto_s3
        s3_proxy.strip_if_none_match = True   # an endpoint that ignores conditional writes
        s3_proxy.conflicts = 1        # next conditional PUT: 409 ConditionalRequestConflict
        s3_proxy.lose_responses = 1   # forward the next conditional PUT, answer 500 (a lost reply)
        s3_proxy.url; s3_proxy.seen   # requests relayed: method, key, status, headers
        s3_proxy.calls()              # [("PUT", 409), ("HEAD", 404), ...]

``moto_s3`` is module-scoped: one server and one fresh bucket per test module; fake AWS
credentials (and no proxies, no profile files, no ``ALIBABA_CLOUD_*``) in ``os.environ`` for
that module only. moto is imported when the fixture is first used, not when the plugin loads.

Why not ``moto.server.ThreadedMotoServer`` as is: it serves each request on its own thread, and
moto's PutObject checks ``If-None-Match`` and then stores the object without a lock, so two
concurrent create-only PUTs can both pass the check (seen here as a 500 "I/O operation on closed
file" when the second write disposes the first). S3 and OSS apply a conditional write
atomically. :class:`MotoS3Server` is therefore ThreadedMotoServer's few lines over the same moto
WSGI app and request handler, with one lock around each request: linearizable, like the real
service, so the concurrency tests test our store and not moto's race.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

REGION = "us-east-1"
FAKE_KEY_ID = "AKIDMOTOFAKEKEYID000"
FAKE_SECRET = "moto-fake-secret-key-never-printed"

_POLL = 0.05  # serve_forever's shutdown check: stopping a server takes at most this long
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "expect",
}
_CONFLICT_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ConditionalRequestConflict</Code>'
    b"<Message>A conflicting conditional operation is currently in progress against this "
    b"resource. Please try again.</Message><RequestId>PROXY409</RequestId></Error>"
)
_XML = [("Content-Type", "application/xml")]
_LOST_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message>"
    b"<RequestId>PROXY500</RequestId></Error>"
)


class _Linearized:
    """WSGI middleware: one request at a time, response body produced inside the lock."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            result = self._app(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


class MotoS3Server:
    """moto's server app on ``127.0.0.1:<free port>`` in a daemon thread (see module docstring)."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = _Linearized(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL,), name="moto-s3", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def make_client(endpoint: str) -> Any:
    """A plain botocore S3 client for ``endpoint`` (path style, the environment's credentials):
    the test's own view of the bucket, independent of the store under test."""
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3",
        region_name=REGION,
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@dataclass
class MotoS3:
    """What ``moto_s3`` yields: a running server and a fresh bucket on it."""

    endpoint: str
    bucket: str
    _client: Any = field(default=None, repr=False)

    def new_prefix(self) -> str:
        """A prefix no other test uses: ``t-<hex>``."""
        return f"t-{uuid.uuid4().hex[:12]}"

    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.endpoint)
        return self._client

    def keys(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        """Every object key under ``prefix`` (full keys, sorted)."""
        out: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket or self.bucket, Prefix=prefix):
            out.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(out)

    def new_bucket(self) -> str:
        name = f"edgescaler-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name


def _fake_aws_env(mp: pytest.MonkeyPatch, scratch: Path) -> None:
    mp.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    mp.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    mp.setenv("AWS_DEFAULT_REGION", REGION)
    # Nothing from the developer's machine: no profile files, no session token, no proxy.
    mp.setenv("AWS_CONFIG_FILE", str(scratch / "aws-config-absent"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(scratch / "aws-credentials-absent"))
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        mp.delenv(name, raising=False)
    no_proxy = os.environ.get("NO_PROXY", "")
    mp.setenv("NO_PROXY", ",".join(p for p in (no_proxy, "127.0.0.1", "localhost") if p))


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto S3 on a free loopback port with a fresh bucket; fake credentials for the module."""
    werkzeug_log = logging.getLogger("werkzeug")
    old_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)  # no line per request in captured output
    with pytest.MonkeyPatch.context() as mp:
        _fake_aws_env(mp, tmp_path_factory.mktemp("aws"))
        server = MotoS3Server()
        try:
            moto = MotoS3(endpoint=server.endpoint, bucket=f"edgescaler-{uuid.uuid4().hex[:16]}")
            moto.client().create_bucket(Bucket=moto.bucket)
            yield moto
            moto.client().close()
        finally:
            server.stop()
            werkzeug_log.setLevel(old_level)


# -- the misbehaving proxy ----------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request the proxy handled: method, object key (no bucket), answered status."""

    method: str
    key: str
    status: int
    headers: dict[str, str]  # lower-case names

    @property
    def conditional(self) -> bool:
        return "if-none-match" in self.headers


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: S3Proxy


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and "100 Continue" for botocore's Expect header
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _relay(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conditional = self.command == "PUT" and self.headers.get("If-None-Match") is not None
        action = proxy._next_action(conditional)
        if action == "conflict":
            status, reply_headers, reply = 409, _XML, _CONFLICT_BODY
        else:
            if proxy.strip_if_none_match:
                headers = {k: v for k, v in headers.items() if k.lower() != "if-none-match"}
            status, reply_headers, reply = proxy._forward(self.command, self.path, headers, body)
            if action == "lose":
                status, reply_headers, reply = 500, _XML, _LOST_BODY
        parts = urlsplit(self.path).path.lstrip("/").split("/", 1)
        key = unquote(parts[1]) if len(parts) > 1 else ""
        proxy._record(Seen(self.command, key, status, {k.lower(): v for k, v in headers.items()}))
        self.send_response(status)
        for name, value in reply_headers:
            if name.lower() not in _HOP_BY_HOP | {"content-length", "server", "date"}:
                self.send_header(name, value)
        if self.command == "HEAD":
            upstream_length = dict((k.lower(), v) for k, v in reply_headers).get("content-length")
            self.send_header("Content-Length", upstream_length or "0")
            self.end_headers()
        else:
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _relay


class S3Proxy:
    """A loopback HTTP proxy in front of an S3 endpoint, with switchable faults (see module doc)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.strip_if_none_match = False
        self.conflicts = 0
        self.lose_responses = 0
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL,), name="s3-proxy", daemon=True
        )
        self._thread.start()

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def calls(self) -> list[tuple[str, int]]:
        """(method, status) of every request relayed so far."""
        return [(s.method, s.status) for s in self.seen]

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def _next_action(self, conditional: bool) -> str:
        with self._lock:
            if conditional and self.conflicts > 0:
                self.conflicts -= 1
                return "conflict"
            if conditional and self.lose_responses > 0:
                self.lose_responses -= 1
                return "lose"
            return "forward"

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self._upstream, timeout=10)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def s3_proxy(moto_s3: MotoS3) -> Iterator[S3Proxy]:
    """A fresh proxy in front of ``moto_s3``; the store's probe cache is cleared (a new proxy may
    reuse the port, hence the endpoint URL, of an earlier one that passed the probe)."""
    from edgescaler.store.base import clear_probe_cache

    clear_probe_cache()
    proxy = S3Proxy(moto_s3.endpoint)
    yield proxy
    proxy.stop()
    clear_probe_cache()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

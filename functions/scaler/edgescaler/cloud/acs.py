"""The HTTP plumbing every ACS3-signed client shares (CS, KMS, FC 3.0 invoke).

:func:`client` builds the httpx client: ACS3-HMAC-SHA256 signing on every attempt (fresh date and
nonce), connect/read timeouts, no redirects (a signed request must not be replayed elsewhere),
our user agent. :func:`read_body` reads an answer within limits: httpx bounds each socket read,
not an answer, so a body trickled a byte at a time never trips a read timeout, and nothing
bounds its size; it abandons a body beyond ``max_bytes`` (decoded: a compressed bomb counts at
its real size) or once ``until`` (monotonic seconds) has passed.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import httpcore
import httpx

from edgescaler import __version__
from edgescaler.cloud import tls
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.signing import AcsV3Auth, new_nonce
from edgescaler.sensitive import Secret

USER_AGENT = f"edgescaler/{__version__}"

MAX_ANSWER_BYTES = 4 * 1024 * 1024
# A region id (cn-hangzhou, ap-southeast-1), and an endpoint override without a path.
REGION_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
BARE_ENDPOINT_RE = re.compile(r"^https?://[^/\s?#]+/?$")


class Abandoned(Exception):
    """An answer we stopped reading: too large, or still arriving when its time was up."""


# -- one limit on a whole exchange ------------------------------------------------------------
#
# httpx bounds each socket operation, not an exchange: a server that sends its status line and
# then a header byte every few seconds keeps send() going for as long as it likes (a POST
# measured 48 s against its 15 s), before read_body() could look at the clock. The transports
# built here give every socket operation of a thread at most the time left until the limit
# that thread set with bounded(); past it, each waits 1 ms, so the exchange ends in a timeout.

_limit = threading.local()
_PAST_LIMIT = 0.001


@contextlib.contextmanager
def bounded(until: float) -> Iterator[None]:
    """Within the block, the calling thread's exchanges through a :func:`bounding` client wait
    for no socket past ``until`` (monotonic seconds): connect, TLS, sending and every read,
    headers included. The timeout is httpx's own (``ConnectTimeout``, ``ReadTimeout``...)."""
    previous = getattr(_limit, "until", None)
    _limit.until = until
    try:
        yield
    finally:
        _limit.until = previous


def _capped(timeout: float | None) -> float | None:
    until: float | None = getattr(_limit, "until", None)
    if until is None:
        return timeout
    left = max(_PAST_LIMIT, until - time.monotonic())
    return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _capped(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _capped(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.start_tls(ssl_context, server_hostname, _capped(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _capped(timeout), local_address, socket_options
        )
        return _BoundedStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _BoundedStream(
            self._inner.connect_unix_socket(path, _capped(timeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bounding(client: httpx.Client) -> httpx.Client:
    """``client`` with its sockets honouring :func:`bounded`: its transport and the proxy
    transports it mounted from the environment (``HTTPS_PROXY``, ``NO_PROXY``: httpx mounts none
    when given a transport, so the client keeps its own). httpx takes no network backend; each
    transport's connection pool keeps one, which is wrapped here (httpx and httpcore are pinned
    to the versions the tests run). Other transports (a test's) are left as they are."""
    for transport in (client._transport, *client._mounts.values()):
        pool: Any = getattr(transport, "_pool", None)
        backend: Any = getattr(pool, "_network_backend", None)
        wrappable = isinstance(transport, httpx.HTTPTransport) and backend is not None
        if wrappable and not isinstance(backend, _BoundedBackend):
            pool._network_backend = _BoundedBackend(backend)
    return client


def read_body(response: httpx.Response, *, max_bytes: int, until: float) -> bytes:
    """The decoded body of a streamed ``response``; :class:`Abandoned` past either limit."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise Abandoned(f"answer larger than {max_bytes} bytes")
        if time.monotonic() > until:
            raise Abandoned("answer still arriving when its time was up")
    return bytes(body)


def exchange(
    http: httpx.Client, request: httpx.Request, *, max_bytes: int, seconds: float
) -> tuple[httpx.Response, bytes]:
    """Send ``request`` and read its whole answer within ``max_bytes`` and ``seconds`` from now
    (:func:`read_body`); the response (closed) and its body. httpx errors and
    :class:`Abandoned` propagate. (The CS client does the same steps itself: it must know
    whether an error came before or after the request was sent.)"""
    until = time.monotonic() + seconds
    with bounded(until):
        response = http.send(request, stream=True)
        try:
            return response, read_body(response, max_bytes=max_bytes, until=until)
        finally:
            response.close()


class CredentialSource:
    """``credentials()`` called for every attempt (rotated STS credentials are picked up),
    remembering the last ones it handed out: an error message is redacted with them
    (:meth:`secrets`) besides the process registry. The signing auth calls it; the clients
    (CS, KMS, FC invoke) keep one each instead of a copy of this bookkeeping."""

    def __init__(self, credentials: Callable[[], Credentials]) -> None:
        self._credentials = credentials
        self._last: Credentials | None = None

    def __call__(self) -> Credentials:
        self._last = creds = self._credentials()
        return creds

    def secrets(self) -> tuple[Secret | None, ...]:
        """The access key secret and STS token last handed out (none before the first call)."""
        last = self._last
        return (last.access_key_secret, last.security_token) if last is not None else ()


# Clients per ClientShards (a run has up to 64 policy threads: two per client). CPU per GET,
# measured by tests/bench/pool_shards.py (Python 3.10, 150 threads, 100 ms answers): 6.2-9.9 ms
# through one client, 3.7-3.9 through 4, 1.9-2.5 through 16, 1.6-1.8 through 150.
SHARDS = 32


class ClientShards:
    """Up to ``count`` httpx clients, built by ``build`` on first use, each serving the threads
    assigned to it (round-robin, on a thread's first call).

    httpcore's connection pool re-examines every waiting request and every connection, under one
    lock, whenever a request starts or ends: threads sharing one client pay for one another, and
    a fan-out of 50-150 threads through one client spent 3-4 times the CPU of the same calls made
    through clients of a few threads each. A thread keeps its client, so its calls in a row (a
    policy's reads, then its POST) reuse one keep-alive connection. Safe to share between threads.
    """

    def __init__(self, build: Callable[[], httpx.Client], count: int = SHARDS) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        self._build = build
        self._clients: list[httpx.Client | None] = [None] * count
        self._next = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def get(self) -> httpx.Client:
        """The calling thread's client."""
        slot: int | None = getattr(self._local, "slot", None)
        with self._lock:
            if slot is None:
                slot = self._local.slot = self._next % len(self._clients)
                self._next += 1
            built = self._clients[slot]
            if built is None:
                built = self._clients[slot] = self._build()
            return built

    def close(self) -> None:
        """Close every client built so far (a later :meth:`get` builds anew)."""
        with self._lock:
            built = [c for c in self._clients if c is not None]
            self._clients = [None] * len(self._clients)
        for c in built:
            c.close()


def client(
    credentials: Callable[[], Credentials],
    *,
    connect_timeout: float,
    read_timeout: float,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], datetime] | None = None,
    nonce: Callable[[], str] = new_nonce,
) -> httpx.Client:
    """An httpx client that signs every request with ``credentials()`` (called per attempt, so
    rotated STS credentials are picked up). ``clock``, ``nonce`` and ``transport`` are the seams
    for tests."""
    auth = (
        AcsV3Auth(credentials, clock, nonce)
        if clock is not None
        else AcsV3Auth(credentials, nonce=nonce)
    )
    built = httpx.Client(
        auth=auth,
        transport=transport,
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        ),
        headers={"accept": "application/json", "user-agent": USER_AGENT},
        follow_redirects=False,
        verify=tls.context(),  # one per process: loading the CA bundle costs 21-26 ms of CPU
    )
    return bounding(built)

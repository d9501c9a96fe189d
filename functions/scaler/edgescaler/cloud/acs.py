"""The HTTP plumbing every ACS3-signed client shares (CS, KMS, FC 3.0 invoke).

:func:`client` builds the httpx client: ACS3-HMAC-SHA256 signing on every attempt (fresh date and
nonce), connect/read timeouts, no redirects (a signed request must not be replayed elsewhere),
our user agent. :func:`read_body` reads an answer within limits: httpx bounds each socket read,
not an answer, so a body trickled a byte at a time never trips a read timeout, and nothing
bounds its size; it abandons a body beyond ``max_bytes`` (decoded: a compressed bomb counts at
its real size) or once ``until`` (monotonic seconds) has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import httpx

from edgescaler import __version__
from edgescaler.cloud import tls
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.signing import AcsV3Auth, new_nonce

USER_AGENT = f"edgescaler/{__version__}"

MAX_ANSWER_BYTES = 4 * 1024 * 1024


class Abandoned(Exception):
    """An answer we stopped reading: too large, or still arriving when its time was up."""


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
    return httpx.Client(
        auth=auth,
        transport=transport,
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        ),
        headers={"accept": "application/json", "user-agent": USER_AGENT},
        follow_redirects=False,
        verify=tls.context(),  # one per process: loading the CA bundle costs 21-26 ms of CPU
    )

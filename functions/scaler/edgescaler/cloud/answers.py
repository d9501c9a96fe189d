"""Reading an HTTP answer from an Alibaba Cloud endpoint within limits (shared by the clients).

httpx bounds each socket read, not an answer: a body trickled a byte at a time never trips a read
timeout, and nothing bounds its size. :func:`read_body` streams the body and abandons it beyond
``max_bytes`` (decoded: a compressed bomb counts at its real size) or once ``until`` (monotonic
seconds) has passed.
"""

from __future__ import annotations

import time

import httpx

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

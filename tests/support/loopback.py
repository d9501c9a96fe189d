"""Serve a tiny "app" on a free loopback port, or hand it to httpx as a MockTransport.

An app is a callable ``app(method, target, headers, body) -> (status, headers, body)`` where
``target`` is the raw request target (path + query, exactly as received), ``headers`` the received
header pairs and ``body`` the received bytes. The fakes in tests/support (KMS, FC) are apps, so a
test can drive them through httpx's transport seam or through a real socket (what ``requests``
and the ``fc2`` SDK need).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

Reply = tuple[int, Mapping[str, str], bytes]
App = Callable[[str, str, list[tuple[str, str]], bytes], Reply]


@contextmanager
def serve(app: App) -> Iterator[str]:
    """Run ``app`` behind a threading HTTP server on 127.0.0.1; yields ``http://127.0.0.1:PORT``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, out = app(self.command, self.path, list(self.headers.items()), body)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def transport(app: App) -> httpx.MockTransport:
    """``app`` as an httpx transport (no socket)."""

    def handler(request: httpx.Request) -> httpx.Response:
        status, headers, out = app(
            request.method,
            request.url.raw_path.decode("ascii"),
            request.headers.multi_items(),
            request.read(),
        )
        return httpx.Response(status, headers=dict(headers), content=out)

    return httpx.MockTransport(handler)


def free_port() -> int:
    """A loopback port nothing listens on (for "connection refused" tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

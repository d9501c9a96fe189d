"""HTTP plumbing: a threading HTTP/1.1 server that hands each request to the emulator.

It knows nothing of CS or Prometheus: it reads the body (Content-Length or chunked, at most
:data:`MAX_BODY_BYTES`), calls ``app(method, target, headers, body)``, holds a delayed answer
back until it is due or the server stops, logs one line per request on the
``edgescaler.emulator`` logger and writes the answer. A bug in ``app`` becomes a 500, never a
hanging client.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from edgescaler.emulator.api import ApiError, Response, error_response, new_request_id

log = logging.getLogger("edgescaler.emulator")

MAX_BODY_BYTES = 1 << 20

App = Callable[[str, str, Sequence[tuple[str, str]], bytes], Response]


class _BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Server(ThreadingHTTPServer):
    """Serves ``app`` on ``address``; ``stopping`` set cuts delayed answers short."""

    daemon_threads = True
    request_queue_size = 128  # 16 processes connecting at once must not overflow the backlog

    def __init__(self, address: tuple[str, int], app: App, stopping: threading.Event) -> None:
        self.app = app
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """Kept-alive connections outlive ``shutdown()``; cut them so no handler keeps serving."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgescaler-emulator/0.1"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped after this

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this Nagle + delayed ACK add ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cast(Server, self.server).track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            cast(Server, self.server).track(self.connection, add=False)

    def do_GET(self) -> None:  # http.server's naming
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's own stderr lines; we log one line per request instead."""

    def _serve(self) -> None:
        server = cast(Server, self.server)
        raw_path = self.path.partition("?")[0]
        try:
            body = self._read_body()
        except _BodyError as err:
            self.close_connection = True
            request_id = new_request_id()
            response = error_response(
                ApiError(err.status, "InvalidRequest", err.message), request_id, "-"
            )
        else:
            try:
                response = server.app(self.command, self.path, list(self.headers.items()), body)
            except Exception:  # a bug here must not leave the client hanging
                log.exception("%s %s failed", self.command, raw_path)
                response = error_response(
                    ApiError(500, "InternalError", "emulator error"), new_request_id(), "-"
                )
        if response.delay > 0:
            server.stopping.wait(response.delay)
        # Logged before writing, so the line exists by the time the client has its answer.
        log.info(
            "%s %s action=%s status=%d", self.command, raw_path, response.action, response.status
        )
        self._write(response)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise _BodyError(400, "invalid Content-Length") from None
        if size < 0 or size > MAX_BODY_BYTES:
            raise _BodyError(413, f"body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(size)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(65537).strip():
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyError(413, f"body larger than {MAX_BODY_BYTES} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65537)

    def _write(self, response: Response) -> None:
        data = response.body()
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-acs-request-id", response.request_id)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            # The client gave up (e.g. timed out on a slow fault); the work is done anyway.
            self.close_connection = True

"""Pytest plugin: a real Prometheus with backfilled series, and a misbehaving HTTP server.

Load with ``-p tests.support.prometheus`` (or list it in ``pytest_plugins``).

Real Prometheus (Debian package ``prometheus``: ``/usr/bin/prometheus`` and ``promtool``)::

    def test_x(prometheus_factory):
        server = prometheus_factory.start([Series("up", {"job": "a"}, [(t0, 1.0), (t1, 1.0)])])
        server.url  # http://127.0.0.1:<port>

For a module-scoped server, build a :class:`PrometheusLauncher` in your own fixture::

    @pytest.fixture(scope="module")
    def prom(tmp_path_factory):
        with PrometheusLauncher(tmp_path_factory.mktemp("prom")) as launcher:
            yield launcher.start([...])

The series are written as OpenMetrics and backfilled with ``promtool tsdb create-blocks-from
openmetrics`` before Prometheus starts (no scrape jobs). Instant queries only see a series whose
last sample is at most 5 minutes (the lookback delta) before the evaluation time; samples up to a
few seconds before "now" backfill and query fine, so use timestamps relative to ``time.time()``.
If the binaries are missing the test is skipped, or fails when ``CI`` is set.

Fault server (stdlib, loopback, free port)::

    def test_y(fault_server):
        fault_server.reply(503, "overloaded")   # or .hang() to accept and never answer
        fault_server.url; fault_server.requests  # request targets received so far
"""

from __future__ import annotations

import http.client
import math
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import pytest

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
_POLL_INTERVAL = 0.01
_MINIMAL_CONFIG = "# edgescaler test server: no scrape jobs, data comes from backfilled blocks\n"


@dataclass(frozen=True)
class Series:
    """One time series: metric ``name``, ``labels``, and ``(unix_ts, value)`` samples.

    Values may be NaN or ±Inf. Samples are written in timestamp order.
    """

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    samples: list[tuple[float, float]] = field(default_factory=list)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _om_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _om_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_openmetrics(series: list[Series]) -> str:
    """OpenMetrics text for ``series``: one gauge family per metric name, ``# EOF`` at the end."""
    families: dict[str, list[Series]] = {}
    for s in series:  # a family's samples must be contiguous in OpenMetrics
        families.setdefault(s.name, []).append(s)
    lines: list[str] = []
    for name, members in families.items():
        lines.append(f"# TYPE {name} gauge")
        for s in members:
            labels = ",".join(f'{k}="{_om_label_value(v)}"' for k, v in sorted(s.labels.items()))
            selector = f"{name}{{{labels}}}" if labels else name
            for ts, value in sorted(s.samples, key=lambda sample: sample[0]):
                lines.append(f"{selector} {_om_value(value)} {ts!r}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _require_binaries() -> tuple[str, str]:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus and promtool:
        return prometheus, promtool
    missing = " and ".join(
        n for n, p in (("prometheus", prometheus), ("promtool", promtool)) if not p
    )
    message = (
        f"{missing} not found on PATH; install the Debian package "
        "(apt-get install -y --no-install-recommends prometheus)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {message}", pytrace=False)
    pytest.skip(message)


def _is_ready(port: int) -> bool:
    # http.client rather than urllib: no proxy settings from the environment apply to loopback.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/-/ready")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class PromServer:
    """A running Prometheus process. :meth:`stop` is idempotent."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, workdir: Path) -> None:
        self._process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.log = workdir / "prometheus.log"

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        """Terminate; kill if it has not exited after STOP_TIMEOUT seconds."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=STOP_TIMEOUT)

    def __repr__(self) -> str:
        return f"PromServer(url={self.url!r}, pid={self.pid}, running={self.running})"


class PrometheusLauncher:
    """Starts Prometheus servers under ``basedir`` and stops all of them on :meth:`close`."""

    def __init__(self, basedir: Path) -> None:
        self._prometheus, self._promtool = _require_binaries()
        self._basedir = basedir
        self._servers: list[PromServer] = []
        self._count = 0

    def __enter__(self) -> PrometheusLauncher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, series: list[Series] | None = None) -> PromServer:
        """Backfill ``series``, start Prometheus on a free loopback port, wait until ready."""
        self._count += 1
        workdir = self._basedir / f"prometheus-{self._count}"
        tsdb = workdir / "tsdb"
        tsdb.mkdir(parents=True)
        config = workdir / "prometheus.yml"
        config.write_text(_MINIMAL_CONFIG)
        if series:
            self._backfill(series, workdir, tsdb)
        last_error = ""
        for _attempt in range(3):  # the free port can be taken between probe and bind
            port = free_port()
            server = self._spawn(workdir, config, tsdb, port)
            self._servers.append(server)
            error = self._wait_ready(server)
            if error is None:
                return server
            server.stop()
            last_error = error
            if "address already in use" not in _tail(server.log).lower():
                break
        pytest.fail(last_error, pytrace=False)

    def close(self) -> None:
        """Stop every server this launcher started (safe to call more than once)."""
        errors: list[str] = []
        while self._servers:
            server = self._servers.pop()
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"pid {server.pid}: {exc!r}")
        if errors:
            raise RuntimeError("could not stop Prometheus: " + "; ".join(errors))

    def _backfill(self, series: list[Series], workdir: Path, tsdb: Path) -> None:
        data = workdir / "series.om"
        data.write_text(to_openmetrics(series))
        done = subprocess.run(
            [self._promtool, "tsdb", "create-blocks-from", "openmetrics", str(data), str(tsdb)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            out = (done.stdout + done.stderr).strip().splitlines()[-15:]
            pytest.fail(
                f"promtool backfill failed (exit {done.returncode}):\n" + "\n".join(out),
                pytrace=False,
            )

    def _spawn(self, workdir: Path, config: Path, tsdb: Path, port: int) -> PromServer:
        log = workdir / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    self._prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tsdb}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",  # startup chatter only clutters the log tail
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        return PromServer(process, port, workdir)

    def _wait_ready(self, server: PromServer) -> str | None:
        """None when /-/ready answers 200; otherwise why not, with the log tail."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not server.running:
                return (
                    f"Prometheus exited with code {server._process.returncode} before it was "
                    f"ready; log tail:\n{_tail(server.log)}"
                )
            if _is_ready(server.port):
                return None
            time.sleep(_POLL_INTERVAL)  # polling a condition, not synchronising on a guess
        return f"Prometheus not ready after {READY_TIMEOUT:g}s; log tail:\n{_tail(server.log)}"


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[PrometheusLauncher]:
    """Start real Prometheus servers with backfilled series; all are stopped at teardown."""
    with PrometheusLauncher(tmp_path) as launcher:
        yield launcher


# -- fault server ---------------------------------------------------------------------------


class _FaultHandler(BaseHTTPRequestHandler):
    server: _FaultHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        owner = self.server.owner
        with owner._lock:
            owner.requests.append(self.path)
            owner.headers.append(dict(self.headers.items()))
            status, body, content_type, hang, dribble = (
                owner._status,
                owner._body,
                owner._content_type,
                owner._hang,
                owner._dribble,
            )
        if dribble is not None:
            # A start, then one byte per interval for ever (until the server closes): no read
            # timeout ever fires.
            start, byte, interval = dribble
            self.wfile.write(start)
            self.wfile.flush()
            while not owner._closing.wait(interval):
                try:
                    self.wfile.write(byte)
                    self.wfile.flush()
                except OSError:
                    break
            self.close_connection = True
            return
        if hang:
            # Hold the connection open without a byte of answer until the server is closed.
            owner._closing.wait()
            self.close_connection = True
            return
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


class _FaultHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultServer


class FaultServer:
    """Answers every request with a configurable status and body, or never answers.

    ``requests`` lists the request targets (path and query) received, in order, and
    ``headers`` the request headers of each.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._status = 200
        self._body = '{"status":"success","data":{"resultType":"vector","result":[]}}'
        self._content_type = "application/json"
        self._hang = False
        self._dribble: tuple[bytes, bytes, float] | None = None  # start, byte, interval
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._httpd = _FaultHTTPServer(("127.0.0.1", 0), _FaultHandler)
        self._httpd.owner = self
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def reply(self, status: int, body: str, content_type: str = "application/json") -> None:
        """Answer each following request with ``status`` and ``body``."""
        with self._lock:
            self._status, self._body, self._content_type = status, body, content_type
            self._hang, self._dribble = False, None

    def hang(self) -> None:
        """Accept each following request and never answer it (provokes a read timeout)."""
        with self._lock:
            self._hang = True

    def trickle_headers(self, interval: float) -> None:
        """Answer each following request with a status line and then one header byte per
        ``interval`` seconds: headers that never end."""
        with self._lock:
            self._dribble = (b"HTTP/1.1 200 OK\r\nX-Pad: ", b"a", interval)

    def trickle(self, interval: float) -> None:
        """Answer each following request with a body that never ends: one byte per
        ``interval`` seconds."""
        start = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
            b'{"status":"success","data":{"resultType":"vector","result":['
        )
        with self._lock:
            self._dribble = (start, b" ", interval)

    def close(self) -> None:
        self._closing.set()  # release hanging handlers first, or shutdown() waits for them
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A loopback HTTP server that answers as told (see :class:`FaultServer`)."""
    with FaultServer() as server:
        yield server

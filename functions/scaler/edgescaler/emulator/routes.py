"""The :class:`Emulator`: its lifecycle, its control methods, and where each request goes.

Signed CS routes (reference/cs-api.md §1, §2; signatures checked by :mod:`.verify`)::

    POST /api/v2/clusters/{cluster_id}   ScaleOutCluster       202 {cluster_id, request_id, task_id}
    GET  /tasks/{task_id}                DescribeTaskInfo
    GET  /clusters/{cluster_id}/nodes    DescribeClusterNodes  pageNumber, pageSize (10, max 100),
                                                               state, nodepool_id, instanceIds
    GET  /clusters/{cluster_id}/tasks    DescribeClusterTasks  page_number, page_size (10, max 100)

Unsigned routes::

    GET|POST /api/v1/query?query=Q[&time=T]   Prometheus instant query over the scenario
    GET|POST /api/v1/query_range?query=Q&start=S&end=E&step=D   the same at every step
    GET  /-/ready, /-/healthy                 200
    GET  /_emulator/state                     call counts, scale-outs (redacted), tasks, nodes
    POST /_emulator/faults                    {"action", "kind", "count", "seconds", "rate"} or
                                              {"kind": "task_fail"|"never_join", "count"}, or a list
    POST /_emulator/reset                     back to the configured clusters, no tasks or faults
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import unquote

from edgescaler.cloud import signing
from edgescaler.emulator import prometheus
from edgescaler.emulator.api import (
    ApiError,
    Response,
    bad_parameter,
    error_response,
    new_request_id,
)
from edgescaler.emulator.config import EmulatorConfig
from edgescaler.emulator.rules import is_int, redact_body, validate_scale_out
from edgescaler.emulator.server import Server
from edgescaler.emulator.verify import verify_signature
from edgescaler.emulator.world import FAULT_KINDS, TASK_FAULT_KINDS, Fault, World

ACTIONS = ("ScaleOutCluster", "DescribeTaskInfo", "DescribeClusterNodes", "DescribeClusterTasks")
DEFAULT_RETRY_AFTER_MS = 1000

_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/api/v2/clusters/([^/]+)$"), "ScaleOutCluster"),
    ("GET", re.compile(r"^/tasks/([^/]+)$"), "DescribeTaskInfo"),
    ("GET", re.compile(r"^/clusters/([^/]+)/nodes$"), "DescribeClusterNodes"),
    ("GET", re.compile(r"^/clusters/([^/]+)/tasks$"), "DescribeClusterTasks"),
)


def _int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_parameter(name, f"must be an integer in {lo}..{hi}") from None
    if not lo <= value <= hi:
        raise bad_parameter(name, f"must be an integer in {lo}..{hi}, got {value}")
    return value


def _page(items: list[Any], number: int, size: int) -> list[Any]:
    start = (number - 1) * size
    return items[start : start + size]


class Emulator:
    """The CS API emulator and scripted Prometheus, served on ``host:port`` once started.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``clock`` returns wall
    seconds; tests pass a fake one and advance it instead of sleeping. All state sits behind one
    lock, so any number of client threads or processes may call it at once.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._host = host
        self._port = port
        self._clock = clock
        self._lock = threading.Lock()
        self._tag = secrets.token_hex(4)  # keeps ids unique across emulator instances
        self._seq = itertools.count(1)
        self._world = World(config, clock(), self._tag, self._seq)
        self._scenario = sorted(config.scenario, key=lambda s: s.at)
        self._scenario_start = (
            config.scenario_start if config.scenario_start is not None else clock()
        )
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not started"
        return f"Emulator({where}, clusters={list(self.config.clusters)})"

    # -- lifecycle

    def start(self) -> Emulator:
        """Bind and serve in a background thread; raises OSError when the port is taken."""
        if self._server is not None:
            return self
        self._stopping.clear()
        if self.config.scenario_start is None:
            self._scenario_start = self._clock()
        self._server = Server((self._host, self._port), self._handle, self._stopping)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # bounds how long stop() waits
            name="edgescaler-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping on a "slow" fault
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        host = str(host)
        if host in ("0.0.0.0", ""):  # noqa: S104 - only to print a reachable address
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    # -- faults, state, reset

    def inject(
        self,
        action: str,
        kind: str,
        *,
        count: int = 1,
        seconds: float = 0,
        rate: float | None = None,
    ) -> None:
        """Queue a fault for the next ``count`` authenticated calls of ``action``.

        ``server_error``: 503 ServiceUnavailable, nothing done. ``throttle``: 400
        Throttling.User with ``x-acs-retry-after`` = ``seconds`` in ms (1000 ms when 0), nothing
        done. ``slow``: answer after ``seconds``; a ScaleOutCluster is performed first, so a
        client that times out does not know. ``error_after_commit`` (ScaleOutCluster only): the
        scale-out is performed, then 500 InternalError. ``echo``: 400 with a text/plain body
        that names the body's ``login_password`` and echoes the raw request body (a misbehaving
        gateway), nothing done. With ``rate`` each covered call is hit
        with that probability (seeded RNG) instead of always. Faults of one action are used in
        the order they were queued; a call consumes one unit of the first matching fault.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        if kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}"
            )
        if kind == "error_after_commit" and action != "ScaleOutCluster":
            raise ValueError("error_after_commit applies to ScaleOutCluster only")
        if not is_int(count) or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
        if kind == "slow" and seconds <= 0:
            raise ValueError("a slow fault needs seconds > 0")
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1
        ):
            raise ValueError(f"rate must be in (0, 1], got {rate!r}")
        with self._lock:
            self._world.faults.append(
                Fault(action, kind, count, float(seconds), None if rate is None else float(rate))
            )

    def inject_task_fault(
        self, kind: Literal["task_fail", "never_join"], *, count: int = 1
    ) -> None:
        """Make the next ``count`` scale-outs go wrong after they are accepted.

        ``task_fail``: the task ends ``failed`` after ``task_delay`` with ``error{code,message}``
        and failed ``task_result`` entries; its nodes end ``failed``. ``never_join``: the nodes
        stay ``initial``; the task ends ``timeout`` after the body's ``timeout_mins`` (60).
        """
        if kind not in TASK_FAULT_KINDS:
            raise ValueError(
                f"unknown task fault {kind!r}; expected one of {', '.join(TASK_FAULT_KINDS)}"
            )
        if not is_int(count) or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        with self._lock:
            self._world.task_faults.append([kind, count])

    def reset(self) -> None:
        """Back to the configured clusters: no tasks, calls, faults or remembered nonces."""
        with self._lock:
            self._world = World(self.config, self._clock(), self._tag, self._seq)

    def state(self) -> dict[str, Any]:
        """Everything a test wants to assert on, as JSON-ready data (same as /_emulator/state)."""
        with self._lock:
            now = self._clock()
            world = self._world
            data = {
                "now": now,
                "config": {
                    "access_key_id": self.config.access_key_id,
                    "sts": self.config.security_token is not None,
                    "clusters": list(self.config.clusters),
                    "task_delay": self.config.task_delay,
                    "join_delay": self.config.join_delay,
                },
                "calls": {action: world.calls[action] for action in (*ACTIONS, "PrometheusQuery")},
                "rejected": dict(world.rejected),
                "scale_out_calls": world.scale_outs,
                "tasks": [task.view(now) for task in world.tasks.values()],
                "nodes": world.node_counts(now),
                "faults": {
                    "pending": [f.view() for f in world.faults],
                    "task_pending": [{"kind": k, "remaining": r} for k, r in world.task_faults],
                    "fired": dict(world.fired),
                },
            }
            # A deep copy that is guaranteed JSON-clean.
            result: dict[str, Any] = json.loads(json.dumps(data))
            return result

    def scale_out_calls(self) -> list[dict[str, Any]]:
        """Every ScaleOutCluster that was performed (also those answered with an error), in order.

        Each: ``cluster_id``, ``count``, ``task_id``, ``request_id``, ``status`` (HTTP status
        answered), ``fault`` (kind or None), ``time``, ``body`` (``login_password`` = ``***``).
        """
        calls: list[dict[str, Any]] = self.state()["scale_out_calls"]
        return calls

    def evaluate(self, query: str, at: float) -> list[dict[str, Any]]:
        """The instant-vector result of ``query`` at wall time ``at`` (the scenario is immutable).

        See :func:`edgescaler.emulator.prometheus.evaluate`.
        """
        return prometheus.evaluate(self._scenario, self._scenario_start, query, at)

    # -- request handling (called by the HTTP handler threads)

    def _handle(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Response:
        raw_path, _, raw_query = target.partition("?")
        request_id = new_request_id()
        action = "-"
        try:
            if raw_path.startswith("/_emulator/"):
                return self._admin(method, raw_path, body, request_id)
            if raw_path == "/api/v1/query":
                action = "PrometheusQuery"
                return self._prometheus(method, raw_query, body, request_id)
            if raw_path == "/api/v1/query_range":
                action = "PrometheusQuery"
                return self._prometheus_range(method, raw_query, body, request_id)
            if raw_path in ("/-/ready", "/-/healthy") and method == "GET":
                return Response(200, b"ready\n", request_id, content_type="text/plain")
            for route_method, pattern, route_action in _ROUTES:
                match = pattern.match(raw_path)
                if match and method == route_method:
                    action = route_action
                    return self._cs(
                        action,
                        unquote(match.group(1)),
                        method,
                        raw_path,
                        raw_query,
                        headers,
                        body,
                        request_id,
                    )
            raise ApiError(404, "InvalidAction.NotFound", f"no route for {method} {raw_path}")
        except ApiError as err:
            return error_response(err, request_id, action)

    def _cs(
        self,
        action: str,
        param: str,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        request_id: str,
    ) -> Response:
        config = self.config
        try:
            nonce = verify_signature(
                method=method,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=headers,
                body=body,
                action=action,
                access_key_id=config.access_key_id,
                access_key_secret=config.access_key_secret,
                security_token=config.security_token,
                now=self._clock(),
            )
            with self._lock:
                now = self._clock()
                self._world.use_nonce(nonce, now)
        except ApiError as err:
            with self._lock:
                self._world.rejected[err.code] += 1
            raise

        with self._lock:
            now = self._clock()
            world = self._world
            world.calls[action] += 1
            fault = world.take_fault(action)
            kind = fault.kind if fault else None
            if fault is not None and kind == "server_error":
                raise ApiError(
                    503, "ServiceUnavailable", "The request has failed due to a temporary failure."
                )
            if fault is not None and kind == "throttle":
                retry_ms = round(fault.seconds * 1000) or DEFAULT_RETRY_AFTER_MS
                raise ApiError(
                    400,
                    "Throttling.User",
                    "Request was denied due to user flow control.",
                    {"x-acs-retry-after": str(max(1, retry_ms))},
                )
            if fault is not None and kind == "echo":
                # Like a gateway that names the value it choked on, then dumps the request.
                echo = b"400 Bad Request: the gateway could not forward this request"
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    value = json.loads(body).get("login_password")
                    echo += f" (bad login_password={value})".encode()
                echo += b": " + body
                return Response(
                    400, echo, request_id, action, content_type="text/plain; charset=utf-8"
                )
            if action == "ScaleOutCluster":
                payload = self._scale_out(param, body, now, request_id, kind)
            elif action == "DescribeTaskInfo":
                payload = {**world.task(param).view(now), "request_id": request_id}
            elif action == "DescribeClusterNodes":
                payload = self._describe_nodes(param, raw_query, now, request_id)
            else:
                payload = self._describe_tasks(param, raw_query, now, request_id)
        if kind == "error_after_commit":
            raise ApiError(
                500, "InternalError", "The request processing has failed due to some unknown error."
            )
        status = 202 if action == "ScaleOutCluster" else 200
        delay = fault.seconds if fault is not None and kind == "slow" else 0.0
        return Response(status, payload, request_id, action, delay=delay)

    def _scale_out(
        self, cluster_id: str, raw_body: bytes, now: float, request_id: str, fault: str | None
    ) -> dict[str, Any]:
        world = self._world
        world.cluster_nodes(cluster_id)  # 404 before looking at the body
        try:
            body = json.loads(raw_body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "InvalidParameter", "the request body is not valid JSON") from None
        validate_scale_out(body)
        task = world.scale_out(cluster_id, body, now)
        world.scale_outs.append(
            {
                "cluster_id": cluster_id,
                "count": body["count"],
                "task_id": task.task_id,
                "request_id": request_id,
                "status": 500 if fault == "error_after_commit" else 202,
                "fault": fault,
                "time": now,
                "body": redact_body(body),
            }
        )
        return {"cluster_id": cluster_id, "request_id": request_id, "task_id": task.task_id}

    def _describe_nodes(
        self, cluster_id: str, raw_query: str, now: float, request_id: str
    ) -> dict[str, Any]:
        nodes = self._world.cluster_nodes(cluster_id)
        params = dict(signing.parse_query(raw_query))
        number = _int_param(params, "pageNumber", 1, 1, 1_000_000)
        size = _int_param(params, "pageSize", 10, 1, 100)
        wanted_state = params.get("state") or "all"
        if wanted_state not in ("all", "running", "initial", "failed", "removing"):
            raise bad_parameter("state", "must be one of all, running, initial, failed, removing")
        pool = params.get("nodepool_id") or None
        ids = {i for i in (params.get("instanceIds") or "").split(",") if i}
        selected = [
            n
            for n in nodes
            if (wanted_state == "all" or n.state(now) == wanted_state)
            and (pool is None or n.nodepool_id == pool)
            and (not ids or n.instance_id in ids)
        ]
        return {
            "nodes": [n.view(now) for n in _page(selected, number, size)],
            "page": {"page_number": number, "page_size": size, "total_count": len(selected)},
            "request_id": request_id,
        }

    def _describe_tasks(
        self, cluster_id: str, raw_query: str, now: float, request_id: str
    ) -> dict[str, Any]:
        world = self._world
        world.cluster_nodes(cluster_id)
        params = dict(signing.parse_query(raw_query))
        number = _int_param(params, "page_number", 1, 1, 1_000_000)
        size = _int_param(params, "page_size", 10, 1, 100)
        tasks = [t for t in reversed(world.tasks.values()) if t.cluster_id == cluster_id]
        items = []
        for task in _page(tasks, number, size):
            view = task.view(now)
            items.append(
                {
                    k: view[k]
                    for k in ("task_id", "task_type", "state", "created", "updated", "error")
                }
            )
        return {
            "tasks": items,
            "page_info": {"page_number": number, "page_size": size, "total_count": len(tasks)},
            "requestId": request_id,
        }

    def _prometheus(self, method: str, raw_query: str, body: bytes, request_id: str) -> Response:
        try:
            query, at = prometheus.read_request(method, raw_query, body)
        except ValueError as err:
            return Response(400, prometheus.bad_data(err), request_id, "PrometheusQuery")
        with self._lock:
            self._world.calls["PrometheusQuery"] += 1
            now = self._clock()
        result = self.evaluate(query, now if at is None else at)
        return Response(200, prometheus.vector(result), request_id, "PrometheusQuery")

    def _prometheus_range(
        self, method: str, raw_query: str, body: bytes, request_id: str
    ) -> Response:
        try:
            query, start, end, step = prometheus.read_range_request(method, raw_query, body)
        except ValueError as err:
            return Response(400, prometheus.bad_data(err), request_id, "PrometheusQuery")
        with self._lock:
            self._world.calls["PrometheusQuery"] += 1
        answer = prometheus.matrix(self._scenario, self._scenario_start, query, start, end, step)
        return Response(200, answer, request_id, "PrometheusQuery")

    def _admin(self, method: str, raw_path: str, body: bytes, request_id: str) -> Response:
        if raw_path == "/_emulator/state" and method == "GET":
            return Response(200, self.state(), request_id, "admin")
        if raw_path == "/_emulator/reset" and method == "POST":
            self.reset()
            return Response(200, {"ok": True, "request_id": request_id}, request_id, "admin")
        if raw_path == "/_emulator/faults" and method == "POST":
            try:
                spec = json.loads(body.decode("utf-8") or "null")
                for item in spec if isinstance(spec, list) else [spec]:
                    self._inject_from_json(item)
            except (ValueError, TypeError, UnicodeDecodeError) as err:
                raise ApiError(400, "InvalidFault", str(err)) from None
            pending = self.state()["faults"]
            return Response(200, {"ok": True, "faults": pending}, request_id, "admin")
        raise ApiError(404, "InvalidAction.NotFound", f"no route for {method} {raw_path}")

    def _inject_from_json(self, item: Any) -> None:
        if not isinstance(item, dict):
            raise ValueError("a fault is a JSON object with at least 'kind'")
        unknown = sorted(set(item) - {"action", "kind", "count", "seconds", "rate"})
        if unknown:
            raise ValueError(f"unknown fault keys {unknown}")
        kind = item.get("kind")
        count = item.get("count", 1)
        if kind in TASK_FAULT_KINDS:
            if "action" in item:
                raise ValueError("task faults take no action")
            self.inject_task_fault(cast(Literal["task_fail", "never_join"], kind), count=count)
        else:
            self.inject(
                str(item.get("action")),
                str(kind),
                count=count,
                seconds=item.get("seconds", 0),
                rate=item.get("rate"),
            )

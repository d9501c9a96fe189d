"""The FC entry point's body: event bytes in, run report out.

This module (with the CLI) is the only place that reads the environment, the clock and the policy
files; it builds the dependencies and hands them to :mod:`edgescaler.pipeline`.

Logging goes through module loggers that propagate to the root logger, because FC installs its
own handler there (request id, level, time); ``basicConfig`` would be a no-op under FC.
:func:`edgescaler.logs.install` quiets header-dumping libraries and redacts every line.

Nothing escapes :func:`handle` or :func:`handle_http` (``SystemExit``, FC's timeout signal,
aside): an exception would make FC retry an async invocation with the same bad input. Bad input
(a malformed event, policy or setting) is the report's ``error`` — one line, at most
:data:`edgescaler.outside.MAX_MESSAGE` characters, redacted — logged at ERROR; nothing is scaled.
Every run holds to a :class:`~edgescaler.deadline.Deadline` derived from the function's timeout.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgescaler import logs, policyfile, triggers
from edgescaler.actuator import Actuator, DryRunActuator, ScaleOutActuator
from edgescaler.cloud import credentials as creds_mod
from edgescaler.deadline import Deadline, budget
from edgescaler.errors import ConfigError, EdgescalerError, EventError
from edgescaler.outside import message
from edgescaler.pipeline import CloudAPI, Deps, run, select
from edgescaler.policy import Policy
from edgescaler.report import RunReport
from edgescaler.settings import Settings
from edgescaler.store import Store, open_store

log = logging.getLogger("edgescaler")

# In the FC code package the policies sit beside index.py: /code/policies.
PACKAGED_POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Runtime:
    """The dependencies of one invocation, built from settings; closed at the end.

    Clients are built on first use, once per region (Prometheus: per URL and timeout), under a
    lock: policies are evaluated concurrently.
    """

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        context: Any,
        clock: Callable[[], datetime],
        deadline: Deadline | None = None,
    ) -> None:
        self.settings = settings
        self.deadline = deadline or Deadline.never()
        self._env = env
        self._context = context
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._sources: dict[str, Any] = {}
        self.store: Store | None = None

    def open_store(self) -> Store:
        if self.store is None:
            # Inside FC, the function role's per-invocation STS credentials. The OSS store signs
            # every request and reads no environment: it also gets the ALIBABA_CLOUD_* fallback.
            fc_creds = creds_mod.from_fc_context(self._context) if self._context else None
            if self.settings.store.startswith("oss://"):
                fc_creds = creds_mod.resolve(self._context, self._env)
            self.store = open_store(
                self.settings.store,
                s3_endpoint=self.settings.s3_endpoint,
                credentials=fc_creds,
                oss_endpoint=self.settings.oss_endpoint,
                oss_region=self.settings.oss_region,
            )
        return self.store

    def cloud_for(self, region: str) -> CloudAPI:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                from edgescaler.cloud.cs import CSClient

                credentials = creds_mod.resolve(self._context, self._env)
                client = CSClient(
                    region,
                    lambda: credentials,
                    endpoint=self.settings.cs_endpoint,
                    connect_timeout=self.settings.cs_connect_timeout,
                    read_timeout=self.settings.cs_read_timeout,
                    clock=self._clock,
                    deadline=self.deadline,
                )
                self._clients[region] = client
        return client

    def metrics_for(self, policy: Policy) -> Any:
        from edgescaler.metrics.prometheus import PrometheusSource

        url = policy.prometheus.url if policy.prometheus else self.settings.prometheus_url
        if not url:
            raise ConfigError(
                f"{policy.name}: no Prometheus URL: set prometheus.url in the policy or "
                "EDGESCALER_PROMETHEUS_URL"
            )
        timeout = policy.prometheus.timeout.total_seconds() if policy.prometheus else 5.0
        key = f"{url}|{timeout}"
        with self._lock:
            source = self._sources.get(key)
            if source is None:
                source = PrometheusSource(url, timeout=timeout, deadline=self.deadline)
                self._sources[key] = source
        return source

    def actuator(self, dry_run: bool) -> Actuator:
        if dry_run:
            return DryRunActuator()
        return ScaleOutActuator(
            self.open_store(),
            self.cloud_for,
            self._env,
            deadline=self.deadline,
            scale_out_seconds=self.settings.scale_out_seconds,
        )

    def close(self) -> None:
        for c in [*self._clients.values(), *self._sources.values()]:
            with contextlib.suppress(Exception):  # best effort at the end of an invocation
                c.close()
        if self.store is not None:
            self.store.close()


def count_workers(nodes: Sequence[Any]) -> int:
    from edgescaler.cloud.cs import count_edge_workers

    return count_edge_workers(nodes)


def function_timeout(context: Any) -> float | None:
    """FC's ``context.function.timeout`` (seconds), when the context carries a usable one."""
    value = getattr(getattr(context, "function", None), "timeout", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 86400:
        return float(value)
    return None


def handle(
    event: bytes | str | None,
    context: Any = None,
    *,
    env: Mapping[str, str] | None = None,
    now: Callable[[], datetime] = _now,
    force_dry_run: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
    accept: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Run the pipeline for one event and return the report as a JSON-able dict.

    ``accept`` limits the trigger kinds this entry runs (the alert callback accepts only
    ``cloudmonitor``); any other is an error. Never raises (``SystemExit`` aside).
    """
    started = _safe_now(now)
    try:
        return _handle(event, context, env, now, started, force_dry_run, monotonic, accept)
    except Exception as exc:  # the last line of defence: nothing escapes an FC entry point
        text = message(f"internal error: {type(exc).__name__}: {exc}")
        log.error("%s", text)
        rep = RunReport("unknown", None, True, started_at=started, error=text)
        rep.finished_at = _safe_now(now)
        return rep.to_dict()


def _safe_now(now: Callable[[], datetime]) -> datetime:
    try:
        return now()
    except Exception:
        return _now()


def _handle(
    event: bytes | str | None,
    context: Any,
    env: Mapping[str, str] | None,
    now: Callable[[], datetime],
    started: datetime,
    force_dry_run: bool,
    monotonic: Callable[[], float],
    accept: frozenset[str] | None,
) -> dict[str, Any]:
    logs.install()
    env = os.environ if env is None else env
    try:
        if event is not None and not isinstance(event, bytes | str):
            raise EventError(f"event: expected bytes, got {type(event).__name__}")
        settings = Settings.from_env(env, default_policy_dir=_default_policy_dir())
        request = triggers.parse_event(event)
        if accept is not None and request.trigger not in accept:
            raise EventError(
                f"event: a {request.trigger} event is not accepted here "
                f"(expected {', '.join(sorted(accept))})"
            )
        policies = select(policyfile.load([settings.policy_dir]), request.policies)
    except EdgescalerError as exc:
        rep = RunReport(
            "unknown", None, True, started_at=started, finished_at=now(), error=message(exc)
        )
        log.error("%s", rep.summary_line())
        return rep.to_dict()

    dry_run = force_dry_run or (
        request.dry_run if request.dry_run is not None else settings.dry_run
    )
    deadline = Deadline(budget(function_timeout(context), settings.deadline), clock=monotonic)
    runtime = Runtime(settings, env, context, now, deadline)
    try:
        store = runtime.open_store()
        deps = Deps(
            store=store,
            cloud_for=runtime.cloud_for,
            metrics_for=runtime.metrics_for,
            actuator=runtime.actuator(dry_run),
            count_workers=count_workers,
            deadline=deadline,
        )
        rep = run(request, policies, deps, now=started, dry_run=dry_run)
    except EdgescalerError as exc:
        rep = RunReport(
            request.trigger, request.event_key, dry_run, started_at=started, error=message(exc)
        )
    finally:
        runtime.close()
    rep.finished_at = now()
    for outcome in rep.outcomes:
        level = logging.ERROR if outcome.outcome == "error" else logging.INFO
        log.log(level, "%s", outcome.log_line())
    log.log(logging.ERROR if rep.error else logging.INFO, "%s", rep.summary_line())
    return rep.to_dict()


MAX_CALLBACK_BYTES = 64 * 1024
_CALLBACK_TRIGGERS = frozenset({"cloudmonitor"})


def handle_http(
    environ: Mapping[str, Any],
    start_response: Callable[..., Any],
    *,
    env: Mapping[str, str] | None = None,
    now: Callable[[], datetime] = _now,
) -> list[bytes]:
    """WSGI entry for CloudMonitor's alert callback (an FC HTTP trigger).

    Only ``POST`` with a well-formed CloudMonitor callback body runs anything:

    ========================================  =====================================
    ``EDGESCALER_CALLBACK_TOKEN`` unset/bad   503, nothing runs
    ``?token=`` missing or wrong              403 (CloudMonitor cannot sign callbacks)
    method other than POST                    405 with ``Allow: POST``
    missing/invalid ``Content-Length``        400
    body larger than 64 KiB                   413
    empty body, or not a callback             400 with the one-line reason
    a well-formed callback                    200 with the run's summary (its event key
                                              deduplicates CloudMonitor's retries)
    anything unexpected                       500; no exception escapes
    ========================================  =====================================
    """
    sent: list[bool] = []

    def answer(
        status: str, payload: dict[str, Any], extra: Sequence[tuple[str, str]] = ()
    ) -> list[bytes]:
        body = json.dumps(payload).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(status, [*headers, *extra])
        sent.append(True)
        return [body]

    try:
        return _handle_http(environ, answer, env, now)
    except Exception as exc:
        log.error("callback failed: %s", message(f"{type(exc).__name__}: {exc}"))
        if sent:  # start_response itself failed: nothing more can be sent
            return [b""]
        try:
            return answer("500 Internal Server Error", {"error": "internal error"})
        except Exception:
            return [b""]


def _handle_http(
    environ: Mapping[str, Any],
    answer: Callable[..., list[bytes]],
    env: Mapping[str, str] | None,
    now: Callable[[], datetime],
) -> list[bytes]:
    logs.install()
    env = os.environ if env is None else env
    try:
        expected = Settings.from_env(env).callback_token
    except ConfigError as exc:
        log.error("callback refused: %s", message(exc))
        return answer("503 Service Unavailable", {"error": "callback not configured"})
    if expected is None:
        log.error("callback refused: EDGESCALER_CALLBACK_TOKEN is not set")
        return answer("503 Service Unavailable", {"error": "callback not configured"})
    query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", ""))[:4096])
    given = (query.get("token") or [""])[-1]
    if not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.reveal().encode()
    ):
        log.warning("callback refused: bad token")
        return answer("403 Forbidden", {"error": "forbidden"})
    method = str(environ.get("REQUEST_METHOD", "")).upper()
    if method != "POST":
        return answer(
            "405 Method Not Allowed", {"error": "only POST is accepted"}, [("Allow", "POST")]
        )
    raw_length = str(environ.get("CONTENT_LENGTH") or "").strip()
    if not raw_length.isdigit() or len(raw_length) > 12:
        return answer("400 Bad Request", {"error": "missing or invalid Content-Length"})
    length = int(raw_length)
    if length > MAX_CALLBACK_BYTES:
        return answer("413 Payload Too Large", {"error": "body too large"})
    stream = environ.get("wsgi.input")
    body = stream.read(length) if stream is not None and length > 0 else b""
    if not isinstance(body, bytes) or not body.strip():
        return answer("400 Bad Request", {"error": "empty body: expected a CloudMonitor alert"})
    report = handle(body, environ.get("fc.context"), env=env, now=now, accept=_CALLBACK_TRIGGERS)
    status = "400 Bad Request" if report.get("error") else "200 OK"
    return answer(status, {"summary": report["summary"], "error": report.get("error")})


def _default_policy_dir() -> Path:
    return PACKAGED_POLICY_DIR if PACKAGED_POLICY_DIR.is_dir() else Path("policies")

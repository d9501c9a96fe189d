"""The FC entry point's body: event bytes in, run report out.

This module (with the CLI) is the only place that reads the environment, the clock and the policy
files; it builds the dependencies and hands them to :mod:`edgescaler.pipeline`.

Logging goes through module loggers that propagate to the root logger, because FC installs its
own handler there (request id, level, time); ``basicConfig`` would be a no-op under FC.

Bad input (a malformed event, policy or setting) never raises out of the handler: an exception
would make FC retry an async invocation three times with the same bad input. Instead the report
carries ``error`` (one line), logged at ERROR, and nothing is scaled.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgescaler import policyfile, triggers
from edgescaler.actuator import Actuator, DryRunActuator, ScaleOutActuator
from edgescaler.cloud import credentials as creds_mod
from edgescaler.errors import EdgescalerError
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
    """The dependencies of one invocation, built from settings; closed at the end."""

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        context: Any,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self._env = env
        self._context = context
        self._clock = clock
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
            )
            self._clients[region] = client
        return client

    def metrics_for(self, policy: Policy) -> Any:
        from edgescaler.errors import ConfigError
        from edgescaler.metrics.prometheus import PrometheusSource

        url = policy.prometheus.url if policy.prometheus else self.settings.prometheus_url
        if not url:
            raise ConfigError(
                f"{policy.name}: no Prometheus URL: set prometheus.url in the policy or "
                "EDGESCALER_PROMETHEUS_URL"
            )
        timeout = policy.prometheus.timeout.total_seconds() if policy.prometheus else 5.0
        key = f"{url}|{timeout}"
        source = self._sources.get(key)
        if source is None:
            source = PrometheusSource(url, timeout=timeout)
            self._sources[key] = source
        return source

    def actuator(self, dry_run: bool) -> Actuator:
        if dry_run:
            return DryRunActuator()
        return ScaleOutActuator(self.open_store(), self.cloud_for, self._env)

    def close(self) -> None:
        for c in [*self._clients.values(), *self._sources.values()]:
            with contextlib.suppress(Exception):  # best effort at the end of an invocation
                c.close()
        if self.store is not None:
            self.store.close()


def count_workers(nodes: Sequence[Any]) -> int:
    from edgescaler.cloud.cs import count_edge_workers

    return count_edge_workers(nodes)


def handle(
    event: bytes | str | None,
    context: Any = None,
    *,
    env: Mapping[str, str] | None = None,
    now: Callable[[], datetime] = _now,
    force_dry_run: bool = False,
) -> dict[str, Any]:
    """Run the pipeline for one event and return the report as a JSON-able dict."""
    env = os.environ if env is None else env
    started = now()
    try:
        settings = Settings.from_env(env, default_policy_dir=_default_policy_dir())
        request = triggers.parse_event(event)
        policies = select(policyfile.load([settings.policy_dir]), request.policies)
    except EdgescalerError as exc:
        rep = RunReport(
            "unknown", None, True, started_at=started, finished_at=now(), error=str(exc)
        )
        log.error("%s", rep.summary_line())
        return rep.to_dict()

    dry_run = force_dry_run or (
        request.dry_run if request.dry_run is not None else settings.dry_run
    )
    runtime = Runtime(settings, env, context, now)
    try:
        store = runtime.open_store()
        deps = Deps(
            store=store,
            cloud_for=runtime.cloud_for,
            metrics_for=runtime.metrics_for,
            actuator=runtime.actuator(dry_run),
            count_workers=count_workers,
        )
        rep = run(request, policies, deps, now=started, dry_run=dry_run)
    except EdgescalerError as exc:
        rep = RunReport(
            request.trigger, request.event_key, dry_run, started_at=started, error=str(exc)
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


def handle_http(
    environ: Mapping[str, Any],
    start_response: Callable[..., Any],
    *,
    env: Mapping[str, str] | None = None,
    now: Callable[[], datetime] = _now,
) -> list[bytes]:
    """WSGI entry for CloudMonitor's alert callback (an FC HTTP trigger).

    The query string must carry ``token=<EDGESCALER_CALLBACK_TOKEN>`` (CloudMonitor cannot sign
    its callbacks); a wrong or missing token is 403 and nothing runs. The body is handed to
    :func:`handle` unchanged; its event key deduplicates CloudMonitor's retries.
    """
    env = os.environ if env is None else env

    def answer(status: str, payload: dict[str, Any]) -> list[bytes]:
        body = json.dumps(payload).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    expected = env.get("EDGESCALER_CALLBACK_TOKEN", "")
    if len(expected) < 16:
        log.error("callback refused: EDGESCALER_CALLBACK_TOKEN is not set (or shorter than 16)")
        return answer("503 Service Unavailable", {"error": "callback not configured"})
    query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
    given = (query.get("token") or [""])[-1]
    if not hmac.compare_digest(given.encode(), expected.encode()):
        log.warning("callback refused: bad token")
        return answer("403 Forbidden", {"error": "forbidden"})
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_CALLBACK_BYTES:
        return answer("413 Payload Too Large", {"error": "body too large"})
    stream = environ.get("wsgi.input")
    body = stream.read(length) if stream is not None and length > 0 else b""
    report = handle(body, environ.get("fc.context"), env=env, now=now)
    status = "400 Bad Request" if report.get("error") else "200 OK"
    return answer(status, {"summary": report["summary"], "error": report.get("error")})


def _default_policy_dir() -> Path:
    return PACKAGED_POLICY_DIR if PACKAGED_POLICY_DIR.is_dir() else Path("policies")

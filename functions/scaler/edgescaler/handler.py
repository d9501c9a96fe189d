"""The FC entry points' bodies: event bytes in, run report out.

This module (with the CLI) is where a run starts: it reads the environment (through
:class:`~edgescaler.settings.Settings` and :class:`~edgescaler.runtime.Runtime`), the clock and
the policy files, and hands the dependencies to :mod:`edgescaler.pipeline`.

Logging: the run report goes out as JSON lines on stdout in the function and as text lines for
the CLI (:func:`edgescaler.logs.write_report`); other messages go through module loggers that
propagate to the root logger, where FC installs its own handler. :func:`edgescaler.logs.install`
quiets header-dumping libraries and redacts every line.

Nothing escapes :func:`handle` or :func:`handle_http` (``SystemExit``, FC's timeout signal,
aside): an exception would make FC retry an async invocation with the same bad input. Bad input
(a malformed event, policy or setting) is the report's ``error`` — one line, at most
:data:`edgescaler.outside.MAX_MESSAGE` characters, redacted — logged at ERROR; nothing is scaled.
Every run holds to a :class:`~edgescaler.deadline.Deadline` derived from the function's timeout.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgescaler import callback, logs, triggers
from edgescaler.deadline import Deadline, budget
from edgescaler.errors import ConfigError, EdgescalerError, EventError
from edgescaler.outside import message
from edgescaler.report import RunReport
from edgescaler.settings import Settings

# The policy machinery (yaml, pydantic, the policy models) and the pipeline are imported by the
# first run that reads policies, not by ``import index``: the import stays what every event
# needs, and an event refused before its policies are read (a callback without the token, a
# malformed event) never pays for them. The network clients load on first use (Runtime).

log = logging.getLogger("edgescaler")

# In the FC code package the policies sit beside index.py: /code/policies.
PACKAGED_POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"


def _now() -> datetime:
    return datetime.now(timezone.utc)


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
    monotonic: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """``index.handler``: one FC event in, a JSON-able dict out. Never raises (``SystemExit``,
    FC's timeout signal, aside).

    An FC 3.0 HTTP trigger event (the alert callback) gets an HTTP response dict
    (:mod:`edgescaler.callback`); any other event runs the pipeline and gets the run report.
    The report is also logged as JSON lines on stdout, for SLS.
    """
    try:
        http = callback.from_fc3_event(event)
        if http is not None:
            return callback.to_fc3_response(_callback(http, context, env, now, monotonic))
    except Exception as exc:  # the last line of defence: nothing escapes an FC entry point
        log.error("callback failed: %s", message(f"{type(exc).__name__}: {exc}"))
        return callback.to_fc3_response(callback.INTERNAL_ERROR)
    report = execute(event, context, env=env, now=now, monotonic=monotonic, structured_logs=True)
    return report.to_dict()


def execute(
    event: bytes | str | None,
    context: Any = None,
    *,
    env: Mapping[str, str] | None = None,
    now: Callable[[], datetime] = _now,
    force_dry_run: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
    accept: frozenset[str] | None = None,
    structured_logs: bool = False,
) -> RunReport:
    """Run the pipeline for one event and return the typed report (the CLI formats it).

    ``accept`` limits the trigger kinds this entry runs (the alert callback accepts only
    ``cloudmonitor``); any other is an error. ``structured_logs``: log the report as JSON lines
    on stdout (the function) rather than text lines (the CLI). Never raises (``SystemExit``
    aside).
    """
    started = _safe_now(now)
    try:
        report = _execute(event, context, env, now, started, force_dry_run, monotonic, accept)
    except Exception as exc:  # the last line of defence: nothing escapes an FC entry point
        text = message(f"internal error: {type(exc).__name__}: {exc}")
        report = RunReport("unknown", None, True, started_at=started, error=text)
        report.finished_at = _safe_now(now)
    try:
        logs.write_report(report, structured=structured_logs, request_id=_request_id(context))
    except Exception:  # a closed stdout must not turn a finished run into a failure
        log.error("could not write the run report's log lines")
    return report


def _request_id(context: Any) -> str | None:
    rid = getattr(context, "request_id", None) or getattr(context, "requestId", None)
    return message(rid, 80) if isinstance(rid, str) and rid else None


def _safe_now(now: Callable[[], datetime]) -> datetime:
    try:
        return now()
    except Exception:
        return _now()


def _execute(
    event: bytes | str | None,
    context: Any,
    env: Mapping[str, str] | None,
    now: Callable[[], datetime],
    started: datetime,
    force_dry_run: bool,
    monotonic: Callable[[], float],
    accept: frozenset[str] | None,
) -> RunReport:
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
        from edgescaler import policyfile
        from edgescaler.pipeline import select

        policies = select(policyfile.load([settings.policy_dir]), request)
    except EdgescalerError as exc:
        return RunReport(
            "unknown", None, True, started_at=started, finished_at=now(), error=message(exc)
        )

    # EDGESCALER_DRY_RUN=true is the deployment's switch: an event may ask for a dry run, never
    # turn one into a real scale-out (a console test event with "dry_run": false, a timer
    # payload).
    dry_run = force_dry_run or settings.dry_run or bool(request.dry_run)
    overruled = settings.dry_run and request.dry_run is False
    from edgescaler.pipeline import Deps, run
    from edgescaler.runtime import Runtime

    deadline = Deadline(budget(function_timeout(context), settings.deadline), clock=monotonic)
    runtime = Runtime(settings, env, context, now, deadline)
    try:
        deps = Deps(
            store=runtime.open_store(),
            cloud_for=runtime.cloud_for,
            metrics_for=runtime.metrics_for,
            actuator=runtime.actuator(dry_run),
            deadline=deadline,
            clock=now,
            known=runtime.password_known,
        )
        report = run(request, policies, deps, now=started, dry_run=dry_run)
    except EdgescalerError as exc:
        report = RunReport(
            request.trigger, request.event_key, dry_run, started_at=started, error=message(exc)
        )
    finally:
        runtime.close()
    if overruled:
        said = "EDGESCALER_DRY_RUN is true: the event's dry_run false was not followed"
        report.note = f"{report.note}; {said}" if report.note else said
    report.finished_at = now()
    return report


def handle_http(
    environ: Mapping[str, Any],
    start_response: Callable[..., Any],
    *,
    env: Mapping[str, str] | None = None,
    now: Callable[[], datetime] = _now,
) -> list[bytes]:
    """``index.http_handler``: the alert callback through FC 2.0's WSGI call (the rules are
    :mod:`edgescaler.callback`'s). No exception escapes."""
    sent: list[bool] = []

    def answer(response: callback.HttpResponse) -> list[bytes]:
        body = json.dumps(response.payload).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(response.status_line, [*headers, *response.headers])
        sent.append(True)
        return [body]

    try:
        request = callback.from_wsgi(environ)
        return answer(_callback(request, environ.get("fc.context"), env, now))
    except Exception as exc:
        log.error("callback failed: %s", message(f"{type(exc).__name__}: {exc}"))
        if sent:  # start_response itself failed: nothing more can be sent
            return [b""]
        try:
            return answer(callback.INTERNAL_ERROR)
        except Exception:
            return [b""]


def _callback(
    request: callback.HttpRequest,
    context: Any,
    env: Mapping[str, str] | None,
    now: Callable[[], datetime],
    monotonic: Callable[[], float] = time.monotonic,
) -> callback.HttpResponse:
    logs.install()
    env = os.environ if env is None else env
    try:
        expected = Settings.from_env(env).callback_token
    except ConfigError as exc:
        log.error("callback refused: %s", message(exc))
        return callback.HttpResponse(503, {"error": "callback not configured"})

    def run_body(body: bytes) -> RunReport:
        return execute(
            body,
            context,
            env=env,
            now=now,
            monotonic=monotonic,
            accept=callback.TRIGGERS,
            structured_logs=True,
        )

    return callback.respond(request, expected, run_body)


def _default_policy_dir() -> Path:
    return PACKAGED_POLICY_DIR if PACKAGED_POLICY_DIR.is_dir() else Path("policies")

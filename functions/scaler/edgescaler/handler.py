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

import hmac
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgescaler import logs, policyfile, triggers
from edgescaler.deadline import Deadline, budget
from edgescaler.errors import ConfigError, EdgescalerError, EventError
from edgescaler.outside import message
from edgescaler.pipeline import Deps, run, select
from edgescaler.report import OutcomeCode, RunReport
from edgescaler.runtime import Runtime
from edgescaler.settings import Settings

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
    force_dry_run: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
    accept: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Run the pipeline for one event and return the report as a JSON-able dict (for FC).

    Never raises (``SystemExit`` aside); see :func:`execute`.
    """
    return execute(
        event,
        context,
        env=env,
        now=now,
        force_dry_run=force_dry_run,
        monotonic=monotonic,
        accept=accept,
    ).to_dict()


def execute(
    event: bytes | str | None,
    context: Any = None,
    *,
    env: Mapping[str, str] | None = None,
    now: Callable[[], datetime] = _now,
    force_dry_run: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
    accept: frozenset[str] | None = None,
) -> RunReport:
    """Run the pipeline for one event and return the typed report (the CLI formats it).

    ``accept`` limits the trigger kinds this entry runs (the alert callback accepts only
    ``cloudmonitor``); any other is an error. Never raises (``SystemExit`` aside).
    """
    started = _safe_now(now)
    try:
        return _execute(event, context, env, now, started, force_dry_run, monotonic, accept)
    except Exception as exc:  # the last line of defence: nothing escapes an FC entry point
        text = message(f"internal error: {type(exc).__name__}: {exc}")
        log.error("%s", text)
        rep = RunReport("unknown", None, True, started_at=started, error=text)
        rep.finished_at = _safe_now(now)
        return rep


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
        policies = select(policyfile.load([settings.policy_dir]), request)
    except EdgescalerError as exc:
        rep = RunReport(
            "unknown", None, True, started_at=started, finished_at=now(), error=message(exc)
        )
        log.error("%s", rep.summary_line())
        return rep

    dry_run = force_dry_run or (
        request.dry_run if request.dry_run is not None else settings.dry_run
    )
    deadline = Deadline(budget(function_timeout(context), settings.deadline), clock=monotonic)
    runtime = Runtime(settings, env, context, now, deadline)
    try:
        deps = Deps(
            store=runtime.open_store(),
            cloud_for=runtime.cloud_for,
            metrics_for=runtime.metrics_for,
            actuator=runtime.actuator(dry_run),
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
        level = logging.ERROR if outcome.outcome == OutcomeCode.ERROR else logging.INFO
        log.log(level, "%s", outcome.log_line())
    log.log(logging.ERROR if rep.error else logging.INFO, "%s", rep.summary_line())
    return rep


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
    if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.reveal().encode()):
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

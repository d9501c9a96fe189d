"""Triggers: turn the raw FC event bytes into a :class:`RunRequest`. Pure.

Accepted shapes (fc.md §2):

* **timer** — ``{"triggerTime": "2026-11-27T07:05:00Z", "triggerName": "every-minute",
  "payload": "<string>"}``. ``payload`` is a string (FC always sends one): empty, or a JSON object
  with the manual keys below (``{"policies": ["beijing-edge"], "dry_run": true}``).
  Event key: ``timer:<triggerName>:<triggerTime>``.
* **manual** (FC console test, ``edgescaler run``) — a JSON object with only these optional keys:
  ``policies`` (list of policy names; absent = all), ``dry_run`` (bool), ``request_id`` (string;
  makes the request idempotent: event key ``manual:<request_id>``), ``reason`` (free text, logged).
  An empty body (FC's empty test event) or ``{}`` means "all policies".

Anything else — invalid UTF-8 or JSON, a list, unknown keys, wrong types — is an EventError with
a one-line message, and never leads to a scale-out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edgescaler.errors import EventError

MAX_EVENT_BYTES = 256 * 1024
_MANUAL_KEYS = frozenset({"policies", "dry_run", "request_id", "reason"})
_TIMER_KEYS = frozenset({"triggerTime", "triggerName", "payload"})
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class RunRequest:
    """What one invocation asks for.

    ``policies`` None means all policies; ``dry_run`` None means "use the EDGESCALER_DRY_RUN
    setting"; ``event_key`` None means the trigger carries no identity (it cannot be
    deduplicated, e.g. a manual run without ``request_id``).
    """

    trigger: str
    policies: tuple[str, ...] | None = None
    dry_run: bool | None = None
    event_key: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def parse_event(raw: bytes | str | None) -> RunRequest:
    """Parse one invocation event. Raises EventError for anything not accepted."""
    if raw is None:
        raw = b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError(f"event: {len(raw)} bytes is larger than {MAX_EVENT_BYTES}")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise EventError(f"event: not UTF-8 (byte {exc.start})") from None
    if not text:
        return RunRequest(trigger="manual")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(
            f"event: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise EventError(f"event: expected a JSON object, got {type(data).__name__}")
    if "triggerName" in data or "triggerTime" in data:
        return _timer(data)
    return _manual(data, "manual", "event")


def _timer(data: dict[str, Any]) -> RunRequest:
    unknown = sorted(set(data) - _TIMER_KEYS)
    if unknown:
        raise EventError(f"timer event: unknown key {unknown[0]!r}")
    name = data.get("triggerName")
    when = data.get("triggerTime")
    if not isinstance(name, str) or not name.strip():
        raise EventError("timer event: triggerName must be a non-empty string")
    if not isinstance(when, str):
        raise EventError("timer event: triggerTime must be a string like 2026-11-27T07:05:00Z")
    try:
        datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        raise EventError(
            f"timer event: triggerTime {when[:40]!r} is not an ISO 8601 time"
        ) from None
    payload = data.get("payload", "")
    if payload is None:
        payload = ""
    if not isinstance(payload, str):
        raise EventError("timer event: payload must be a string (the trigger's message)")
    options: dict[str, Any] = {}
    if payload.strip():
        try:
            options = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise EventError(f"timer event: payload is not JSON: {exc.msg}") from None
        if not isinstance(options, dict):
            raise EventError("timer event: payload must be a JSON object")
        if "request_id" in options:
            raise EventError("timer event: payload key 'request_id' is not allowed")
    base = _manual(options, "timer", "timer event: payload")
    return RunRequest(
        trigger="timer",
        policies=base.policies,
        dry_run=base.dry_run,
        event_key=f"timer:{name}:{when}",
        detail={"trigger_name": name, "trigger_time": when, **base.detail},
    )


def _manual(data: dict[str, Any], trigger: str, where: str) -> RunRequest:
    unknown = sorted(set(data) - _MANUAL_KEYS)
    if unknown:
        raise EventError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_MANUAL_KEYS))})"
        )
    policies = data.get("policies")
    if policies is not None:
        if not isinstance(policies, list) or not policies:
            raise EventError(f"{where}: policies must be a non-empty list of policy names")
        for p in policies:
            if not isinstance(p, str) or not _NAME.match(p):
                raise EventError(f"{where}: policies: {str(p)[:64]!r} is not a policy name")
        policies = tuple(dict.fromkeys(policies))
    dry_run = data.get("dry_run")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise EventError(f"{where}: dry_run must be true or false")
    request_id = data.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or not request_id.strip()):
        raise EventError(f"{where}: request_id must be a non-empty string")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise EventError(f"{where}: reason must be a string")
    detail: dict[str, Any] = {}
    if reason:
        detail["reason"] = reason[:200]
    if request_id:
        detail["request_id"] = request_id[:128]
    return RunRequest(
        trigger=trigger,
        policies=policies,
        dry_run=dry_run,
        event_key=f"manual:{request_id[:128]}" if request_id else None,
        detail=detail,
    )

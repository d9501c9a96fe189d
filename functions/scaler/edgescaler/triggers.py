"""Triggers: turn the raw FC event bytes into a :class:`RunRequest`. Pure.

Accepted shapes (fc.md §2):

* **timer** — ``{"triggerTime": "2026-11-27T07:05:00Z", "triggerName": "every-minute",
  "payload": "<string>"}``. ``payload`` is a string (FC always sends one): empty, or a JSON object
  with the manual keys below (``{"policies": ["beijing-edge"], "dry_run": true}``).
  Event key: ``timer:<triggerName>:<triggerTime>``.
* **manual** (FC console test, ``edgescaler run``) — a JSON object with only these optional keys:
  ``policies`` (list of policy names; absent = all), ``dry_run`` (bool), ``request_id`` (string;
  makes the request idempotent: event key ``manual:<request_id>``), ``reason`` (free text, kept with
  the event's record in the store, as every trigger's :attr:`RunRequest.detail` is).
  An empty body (FC's empty test event) or ``{}`` means "all policies".
* **EventBridge** (CloudEvents 1.0: ``specversion``, ``source``, ``id``, ``type``, ``data``) —
  e.g. a CloudMonitor ``cms:CloudMonitor:AlertWebHook`` event; evaluates all policies.
  Event key: ``eventbridge:<source>:<id>`` (EventBridge delivers at least once).
* **CloudMonitor alert callback** — the legacy webhook body, form-encoded or JSON, with
  ``alertName``, ``alertState``, ``ruleId``, ``timestamp`` (seconds or milliseconds). Event key:
  ``cloudmonitor:<ruleId>:<alertState>:<timestamp>`` (CloudMonitor retries a callback up to 3
  times).
* **MNS topic** (CloudMonitor → MNS → FC, alibaba-today.md §4) — the alert body (``ruleId``,
  ``ruleName``, ``curLevel``, ``metricName``, ``metricData``, ``time``...) inside FC's JSON envelope
  (``TopicOwner``, ``Message`` as a string, ``MessageId``...; event key ``mns:<MessageId>``), or in
  STREAM form: the raw body, or ``{"body": "...", "attrs": {...}}`` (event key
  ``cloudmonitor:<ruleId>:<curLevel>:<time>``: a redelivery carries the same body).

Every alarm route yields an :class:`Alarm`: which rule, its state (``ALERT``, ``OK``,
``INSUFFICIENT_DATA``), and the value and time that tripped it when the payload carries them.
An alarm says "look now": the policies it concerns are evaluated on their own metrics, and a
metric that opts in (``alarm:`` in the policy) may take the alarm's value when Prometheus
cannot answer. An alarm that is not firing evaluates nothing.

Anything else — invalid UTF-8 or JSON, a list, unknown keys, wrong types, and hostile shapes
(nesting deeper than :data:`edgescaler.safejson.MAX_DEPTH`, huge numbers, lone surrogates) — is
an EventError with a one-line message that quotes at most a short, escaped excerpt of the input,
and never leads to a scale-out.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from edgescaler import safejson
from edgescaler.errors import EventError
from edgescaler.outside import message, quote

MAX_EVENT_BYTES = 256 * 1024
_MANUAL_KEYS = frozenset({"policies", "dry_run", "request_id", "reason"})
_TIMER_KEYS = frozenset({"triggerTime", "triggerName", "payload"})
MAX_TRIGGER_NAME = 128
MAX_REQUEST_ID = 128
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


ALERT, OK, INSUFFICIENT_DATA = "ALERT", "OK", "INSUFFICIENT_DATA"
# CloudMonitor's words for a state, across the callback (alertState), MNS (curLevel) and
# EventBridge routes; "ALARM" appears in some documents for the callback.
_STATES = {
    "ALERT": ALERT,
    "ALARM": ALERT,
    "CRITICAL": ALERT,
    "WARN": ALERT,
    "WARNING": ALERT,
    "INFO": ALERT,
    "OK": OK,
    "INSUFFICIENT_DATA": INSUFFICIENT_DATA,
    "NODATA": INSUFFICIENT_DATA,
}
_MNS_ENVELOPE = frozenset({"TopicOwner", "Message", "MessageId"})


@dataclass(frozen=True)
class Alarm:
    """What a CloudMonitor alarm says. ``value``/``timestamp`` are None when not carried."""

    rule_id: str | None
    rule_name: str | None
    state: str
    metric: str | None = None
    value: float | None = None
    timestamp: datetime | None = None

    @property
    def firing(self) -> bool:
        return self.state == ALERT

    def names(self) -> set[str]:
        """The names a policy may use to say this alarm concerns it: rule id and rule name."""
        return {n for n in (self.rule_id, self.rule_name) if n}

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "state": self.state,
            "metric": self.metric,
            "value": self.value,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
        }


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
    alarm: Alarm | None = None


def parse_event(raw: bytes | str | None) -> RunRequest:
    """Parse one invocation event. Raises EventError for anything not accepted."""
    if raw is None:
        raw = b""
    if isinstance(raw, str):
        # surrogatepass: a str holding a lone surrogate then fails the UTF-8 check below.
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError(f"event: {len(raw)} bytes is larger than {MAX_EVENT_BYTES}")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise EventError(f"event: not UTF-8 (byte {exc.start})") from None
    if not text:
        return RunRequest(trigger="manual")
    if not text.startswith(("{", "[")) and "=" in text:
        return _callback(_form(text))
    data = _json(text, "event")
    if not isinstance(data, dict):
        raise EventError(f"event: expected a JSON object, got {type(data).__name__}")
    if "triggerName" in data or "triggerTime" in data:
        return _timer(data)
    if "specversion" in data:
        return _eventbridge(data)
    if set(data) >= _MNS_ENVELOPE:
        return _mns_envelope(data)
    if set(data) <= {"body", "attrs"} and isinstance(data.get("body"), str):
        return _mns_alert(_json(data["body"], "MNS message body"), None)
    if "curLevel" in data or "metricData" in data:
        return _mns_alert(data, None)
    if "alertName" in data or "ruleId" in data:
        return _callback(data)
    return _manual(data, "manual", "event")


def _json(text: str, where: str) -> Any:
    try:
        return safejson.loads(text)
    except safejson.JSONError as exc:
        raise EventError(f"{where}: {exc}") from None


def _form(text: str) -> dict[str, Any]:
    try:
        pairs = urllib.parse.parse_qs(
            text, keep_blank_values=True, strict_parsing=False, errors="strict", max_num_fields=100
        )
    except UnicodeDecodeError:
        raise EventError("event: a form field is not UTF-8 once percent-decoded") from None
    except ValueError:
        raise EventError("event: a form-encoded body with more than 100 fields") from None
    if not pairs or not ({"alertName", "ruleId"} & set(pairs)):
        raise EventError("event: a form-encoded body that is not a CloudMonitor alert callback")
    return {k: v[-1] for k, v in pairs.items()}


def _text(data: dict[str, Any], key: str, where: str, limit: int = 200) -> str:
    """A required identifier of an event (a part of its event key, a state): see
    :func:`_key_part`."""
    value = data.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or value == "null":
        raise EventError(f"{where}: {key} is missing")
    return _key_part(value.strip(), key, where, limit)


def _key_part(value: str, key: str, where: str, limit: int) -> str:
    """``value`` if it can stand in an event key: the key is stored, logged and shown, one short
    line each time, and two events must not share one because a long value was cut. EventError
    naming ``key`` otherwise."""
    if len(value) > limit or not value.isprintable():
        raise EventError(
            f"{where}: {key} {quote(value)} is not an identifier (at most {limit} printable "
            f"characters)"
        )
    return value


def _alert_detail(data: dict[str, Any]) -> dict[str, Any]:
    keep = ("alertName", "alertState", "ruleId", "metricName", "curValue", "triggerLevel")
    return {
        k: message(str(data[k]), 120) for k in keep if isinstance(data.get(k), str | int | float)
    }


def _opt_text(data: dict[str, Any], key: str, limit: int = 200) -> str | None:
    value = data.get(key)
    if isinstance(value, str) and value.strip() and value != "null":
        return value.strip()[:limit]
    return None


def _state(raw: str | None, where: str) -> str:
    state = _STATES.get((raw or "").strip().upper())
    if state is None:
        raise EventError(f"{where}: unknown alarm state {quote(raw or '')}")
    return state


def _number(value: Any) -> float | None:
    """A finite number from a payload value (CloudMonitor sends "91.37" or 91.37), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _epoch(value: Any) -> datetime | None:
    """Epoch seconds or milliseconds (number or digits) as an aware datetime, else None."""
    number = _number(value)
    if number is None or number <= 0:
        return None
    seconds = number / 1000 if number > 1e11 else number
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _webhook_alarm(data: dict[str, Any], where: str) -> Alarm:
    """The alarm of a callback body (or EventBridge's data of one)."""
    return Alarm(
        rule_id=_opt_text(data, "ruleId"),
        rule_name=_opt_text(data, "alertName"),
        state=_state(_opt_text(data, "alertState", 40), where),
        metric=_opt_text(data, "metricName"),
        value=_number(data.get("curValue")),
        timestamp=_epoch(data.get("timestamp")),
    )


def _mns_envelope(data: dict[str, Any]) -> RunRequest:
    where = "MNS message"
    message_id = _text(data, "MessageId", where)
    message = data.get("Message")
    if not isinstance(message, str):
        raise EventError(f"{where}: Message must be a string (the alert body)")
    body = _json(message, f"{where}: Message")
    if not isinstance(body, dict):
        raise EventError(f"{where}: Message must hold a JSON object")
    return _mns_alert(body, f"mns:{message_id}")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _mns_alert(body: Any, event_key: str | None) -> RunRequest:
    """A CloudMonitor alert body delivered through MNS (envelope or STREAM)."""
    where = "CloudMonitor alert (MNS)"
    if not isinstance(body, dict):
        raise EventError(f"{where}: expected a JSON object")
    rule = _text(body, "ruleId", where)
    level = _text(body, "curLevel", where, 40)
    metric_data = _mapping(body.get("metricData"))
    statistic = _mapping(body.get("escalation")).get("statistics")
    value = _number(metric_data.get(statistic)) if isinstance(statistic, str) else None
    when = _epoch(metric_data.get("timestamp")) or _epoch(body.get("time"))
    alarm = Alarm(
        rule_id=rule,
        rule_name=_opt_text(body, "ruleName"),
        state=_state(level, where),
        metric=_opt_text(body, "metricName"),
        value=value,
        timestamp=when,
    )
    if event_key is None:
        stamp = int(when.timestamp() * 1000) if when else _text(body, "time", where, 40)
        event_key = f"cloudmonitor:{rule}:{level}:{stamp}"
    detail = {"rule_id": rule, "rule_name": alarm.rule_name, "state": alarm.state}
    return RunRequest(trigger="mns", event_key=event_key, detail=detail, alarm=alarm)


def _eventbridge(data: dict[str, Any]) -> RunRequest:
    where = "EventBridge event"
    if data.get("specversion") != "1.0":
        raise EventError(f"{where}: specversion must be '1.0'")
    source = _text(data, "source", where)
    event_id = _text(data, "id", where)
    kind = _text(data, "type", where)
    payload = data.get("data")
    detail: dict[str, Any] = {"source": source, "type": kind}
    alarm = None
    if isinstance(payload, dict):
        detail.update(_alert_detail(payload))
        if "alertState" in payload:  # a CloudMonitor alert: who, which state, what value
            alarm = _webhook_alarm(payload, where)
    return RunRequest(
        trigger="eventbridge",
        event_key=f"eventbridge:{source}:{event_id}",
        detail=detail,
        alarm=alarm,
    )


def _callback(data: dict[str, Any]) -> RunRequest:
    where = "CloudMonitor callback"
    rule = _text(data, "ruleId", where)
    state = _text(data, "alertState", where, 40)
    raw_ts = _text(data, "timestamp", where, 40)
    if not (raw_ts.isascii() and raw_ts.isdigit()):  # '²'.isdigit() is True
        raise EventError(f"{where}: timestamp {quote(raw_ts)} is not epoch seconds or milliseconds")
    # Old documents say seconds, real callbacks carry milliseconds: normalise to milliseconds.
    millis = int(raw_ts) if len(raw_ts) > 11 else int(raw_ts) * 1000
    return RunRequest(
        trigger="cloudmonitor",
        event_key=f"cloudmonitor:{rule}:{state}:{millis}",
        detail=_alert_detail(data),
        alarm=_webhook_alarm(data, where),
    )


def _timer(data: dict[str, Any]) -> RunRequest:
    unknown = sorted(set(data) - _TIMER_KEYS)
    if unknown:
        raise EventError(f"timer event: unknown key {quote(unknown[0])}")
    name = data.get("triggerName")
    when = data.get("triggerTime")
    if not isinstance(name, str) or not name.strip():
        raise EventError("timer event: triggerName must be a non-empty string")
    name = _key_part(name, "triggerName", "timer event", MAX_TRIGGER_NAME)  # FC's limit
    if not isinstance(when, str):
        raise EventError("timer event: triggerTime must be a string like 2026-11-27T07:05:00Z")
    try:
        datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        raise EventError(
            f"timer event: triggerTime {quote(when)} is not an ISO 8601 time"
        ) from None
    payload = data.get("payload", "")
    if payload is None:
        payload = ""
    if not isinstance(payload, str):
        raise EventError("timer event: payload must be a string (the trigger's message)")
    options: dict[str, Any] = {}
    if payload.strip():
        options = _json(payload, "timer event: payload")
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
            f"{where}: unknown key {quote(unknown[0])} (allowed: {', '.join(sorted(_MANUAL_KEYS))})"
        )
    policies = data.get("policies")
    if policies is not None:
        if not isinstance(policies, list) or not policies:
            raise EventError(f"{where}: policies must be a non-empty list of policy names")
        for p in policies:
            if not isinstance(p, str) or not _NAME.match(p):
                raise EventError(f"{where}: policies: {quote(p)} is not a policy name")
        policies = tuple(dict.fromkeys(policies))
    dry_run = data.get("dry_run")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise EventError(f"{where}: dry_run must be true or false")
    request_id = data.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or not request_id.strip()):
        raise EventError(f"{where}: request_id must be a non-empty string")
    if request_id is not None:
        request_id = _key_part(request_id, "request_id", where, MAX_REQUEST_ID)
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise EventError(f"{where}: reason must be a string")
    detail: dict[str, Any] = {}
    if reason:
        detail["reason"] = message(reason, 200)
    if request_id:
        detail["request_id"] = message(request_id, MAX_REQUEST_ID)
    return RunRequest(
        trigger=trigger,
        policies=policies,
        dry_run=dry_run,
        event_key=f"manual:{request_id}" if request_id else None,
        detail=detail,
    )

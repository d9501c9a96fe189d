"""Trigger parsing: timer and manual shapes, and a clear error for everything else."""

from __future__ import annotations

import json

import pytest

from edgescaler.errors import EventError
from edgescaler.triggers import parse_event
from tests.support.events import EVENTS, load_event


def test_timer_event() -> None:
    r = parse_event(load_event("timer.json"))
    assert r.trigger == "timer"
    assert r.policies is None and r.dry_run is None
    assert r.event_key == "timer:every-minute:2026-11-27T07:05:00Z"


def test_timer_payload_is_a_json_string_decoded_twice() -> None:
    r = parse_event(load_event("timer-with-payload.json"))
    assert (r.trigger, r.policies, r.dry_run) == ("timer", ("beijing-edge",), True)
    assert r.event_key == "timer:every-minute:2026-11-27T07:06:00Z"


@pytest.mark.parametrize(
    "name", ["x" * 129, "every\nminute", "tab\there", "a" * 200_000 + "\nINJECTED"]
)
def test_a_timer_name_that_is_no_trigger_name_is_refused_in_one_short_line(name: str) -> None:
    event = json.dumps({"triggerName": name, "triggerTime": "2026-11-27T07:05:00Z"}).encode()
    with pytest.raises(EventError) as info:
        parse_event(event)
    text = str(info.value)
    assert "triggerName" in text and "\n" not in text and len(text) < 200


@pytest.mark.parametrize(
    "event",
    [
        {"request_id": "abc\nINJECTED line"},
        {"request_id": "r" * 129},
        {
            "specversion": "1.0",
            "source": "acs.cloudmonitor",
            "id": "x\ny",
            "type": "cms:Alarm:StateChange",
            "data": {},
        },
    ],
    ids=["manual-newline", "manual-too-long", "eventbridge-newline"],
)
def test_an_event_key_part_that_is_no_identifier_is_refused(event: dict[str, object]) -> None:
    """Every part of an event key is one short printable identifier: the key is stored and
    logged, and a long one cut short could make two events one."""
    with pytest.raises(EventError) as info:
        parse_event(json.dumps(event).encode())
    text = str(info.value)
    assert "is not an identifier" in text and "\n" not in text and len(text) < 200, text


def test_the_report_shows_the_event_key_as_one_short_line() -> None:
    from datetime import datetime, timezone

    from edgescaler.report import RunReport

    rep = RunReport("timer", "timer:" + "k" * 5000 + "\nX", False, datetime.now(timezone.utc))
    key = rep.to_dict()["event_key"]
    assert "\n" not in key and len(key) <= 300


@pytest.mark.parametrize("raw", [b"", b"   \n", None, b"{}"])
def test_empty_manual_event_means_all_policies(raw: bytes | None) -> None:
    r = parse_event(raw)
    assert (r.trigger, r.policies, r.dry_run, r.event_key) == ("manual", None, None, None)


def test_manual_event() -> None:
    r = parse_event(load_event("manual.json"))
    assert (r.policies, r.dry_run, r.event_key) == (("beijing-edge",), True, None)


def test_manual_request_id_makes_it_idempotent() -> None:
    r = parse_event(load_event("manual-idempotent.json"))
    assert r.event_key == "manual:ops-2026-11-27-01"
    assert r.detail["reason"] == "pre-warm for the launch"


def test_duplicate_policy_names_collapse() -> None:
    assert parse_event(b'{"policies": ["a", "b", "a"]}').policies == ("a", "b")


INVALID = sorted((EVENTS / "invalid").iterdir())
MESSAGES = {
    "list": "expected a JSON object, got list",
    "policies-not-a-list": "policies must be a non-empty list",
    "dry-run-not-bool": "dry_run must be true or false",
    "unknown-key": "unknown key 'action'",
    "timer-payload-mapping": "payload must be a string",
    "timer-bad-time": "triggerTime 'yesterday' is not an ISO 8601 time",
    "timer-payload-not-json": "payload: not JSON",
    "truncated": "not JSON",
    "not-utf8": "not UTF-8",
    "bad-policy-name": "'Bad Name!' is not a policy name",
    "eventbridge-without-id": "EventBridge event: id is missing",
    "callback-bad-timestamp": "timestamp 'yesterday' is not epoch seconds or milliseconds",
    "callback-unicode-digit-timestamp": "timestamp '²³' is not epoch seconds or milliseconds",
    "form-not-a-callback": "not a CloudMonitor alert callback",
    "mns-message-not-json": "MNS message: Message: not JSON",
    "mns-message-not-a-string": "MNS message: Message must be a string",
    "mns-without-rule-id": "CloudMonitor alert (MNS): ruleId is missing",
    "mns-unknown-level": "unknown alarm state 'PANIC'",
}


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_events_are_one_line_errors(path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EventError) as info:
        parse_event(path.read_bytes())
    msg = str(info.value)
    assert MESSAGES[path.stem] in msg
    assert "\n" not in msg


def test_every_invalid_fixture_has_an_expected_message() -> None:
    assert {p.stem for p in INVALID} == set(MESSAGES)


def test_eventbridge_cloudmonitor_alert() -> None:
    r = parse_event(load_event("eventbridge-alert.json"))
    assert r.trigger == "eventbridge" and r.policies is None
    assert r.event_key == "eventbridge:acs.cms:9f2c1e4a-5b6d-4c3e-8a7f-0123456789ab"
    assert r.detail["alertName"] == "edge-cpu-high" and r.detail["alertState"] == "ALERT"


def test_cloudmonitor_callback_form_encoded() -> None:
    r = parse_event(load_event("cloudmonitor-callback.form"))
    assert r.trigger == "cloudmonitor"
    assert r.event_key == (
        "cloudmonitor:applyTemplate1a2b3c4d-0000-1111-2222-333344445555:ALERT:1764227100000"
    )
    assert r.detail["curValue"] == "91.37"


def test_callback_seconds_and_milliseconds_give_the_same_key() -> None:
    seconds = parse_event(load_event("cloudmonitor-callback-seconds.json"))
    millis = parse_event(load_event("cloudmonitor-callback.form"))
    assert seconds.event_key == millis.event_key


def test_oversized_event() -> None:
    with pytest.raises(EventError, match="larger than"):
        parse_event(b"{" + b" " * 300_000 + b"}")


# -- alarms on every route ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "trigger", "key", "state"),
    [
        ("fc3-mns-topic-json.json", "mns", "mns:6CC4D900CA59A2CD-1-19A0B1C2D3E-200000001", "ALERT"),
        ("fc3-mns-topic-json-attrs.json", "mns", "mns:", "ALERT"),
        ("fc3-mns-topic-stream.json", "mns", "cloudmonitor:", "ALERT"),
        ("fc3-mns-topic-stream-attrs.json", "mns", "cloudmonitor:", "ALERT"),
        ("mns-alert-ok.json", "mns", "mns:", "OK"),
        ("eventbridge-alert.json", "eventbridge", "eventbridge:acs.cms:", "ALERT"),
        ("eventbridge-alert-ok.json", "eventbridge", "eventbridge:acs.cms:", "OK"),
        (
            "eventbridge-alert-insufficient-data.json",
            "eventbridge",
            "eventbridge:",
            "INSUFFICIENT_DATA",
        ),
        ("cloudmonitor-callback.form", "cloudmonitor", "cloudmonitor:applyTemplate", "ALERT"),
    ],
)
def test_every_alarm_route_yields_an_alarm(name: str, trigger: str, key: str, state: str) -> None:
    request = parse_event(load_event(name))
    assert request.trigger == trigger and request.event_key is not None
    assert request.event_key.startswith(key)
    alarm = request.alarm
    assert alarm is not None and alarm.state == state and alarm.firing == (state == "ALERT")
    assert alarm.rule_id == "applyTemplate1a2b3c4d-0000-1111-2222-333344445555"
    assert alarm.metric == "CPUUtilization" and alarm.value == pytest.approx(91.37)
    assert alarm.timestamp is not None and alarm.timestamp.year == 2025


def test_a_redelivered_stream_message_has_the_same_key() -> None:
    a = parse_event(load_event("fc3-mns-topic-stream.json"))
    b = parse_event(load_event("fc3-mns-topic-stream-attrs.json"))  # same body, with attrs
    assert (
        a.event_key
        == b.event_key
        == "cloudmonitor:applyTemplate1a2b3c4d-0000-1111-2222-333344445555:WARN:1764227100000"
    )

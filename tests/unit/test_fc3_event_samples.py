"""The FC 3.0 event samples in tests/events/ keep the documented shapes (see fc3-SOURCES.md).

They are inputs for parsers still to be written; these checks only keep the samples honest: the
HTTP event wraps exactly the recorded CloudMonitor callback, the MNS envelopes carry the alert body
as a string, and the STREAM forms carry the same body."""

from __future__ import annotations

import json

from edgescaler import triggers
from tests.support.events import load_event

HTTP_KEYS = {"version", "rawPath", "body", "isBase64Encoded", "headers", "queryParameters"}
MNS_KEYS = {
    "TopicOwner", "Message", "Subscriber", "PublishTime", "SubscriptionName", "MessageMD5",
    "TopicName", "MessageId",
}  # fmt: skip


def test_http_event_wraps_the_callback_body() -> None:
    event = json.loads(load_event("fc3-http-callback.json"))
    assert HTTP_KEYS | {"requestContext"} == set(event) and event["version"] == "v1"
    assert event["isBase64Encoded"] is False
    assert event["body"].encode() == load_event("cloudmonitor-callback.form").strip()
    assert triggers.parse_event(event["body"]).trigger == "cloudmonitor"
    ctx = event["requestContext"]
    assert set(ctx["http"]) == {"method", "path", "protocol", "sourceIp", "userAgent"}
    assert all(isinstance(v, str) for v in (*event["headers"].values(), ctx["timeEpoch"]))


def test_mns_json_envelopes_carry_the_alert_as_a_string() -> None:
    plain = json.loads(load_event("fc3-mns-topic-json.json"))
    with_attrs = json.loads(load_event("fc3-mns-topic-json-attrs.json"))
    assert set(plain) == MNS_KEYS and set(with_attrs) == MNS_KEYS | {"source"}
    assert isinstance(plain["Message"], str)
    alert = json.loads(plain["Message"])
    assert {"ruleId", "ruleName", "curLevel", "metricData", "time"} <= set(alert)
    stream = json.loads(load_event("fc3-mns-topic-stream.json"))
    assert stream == alert
    wrapped = json.loads(load_event("fc3-mns-topic-stream-attrs.json"))
    assert set(wrapped) == {"body", "attrs"} and json.loads(wrapped["body"]) == alert

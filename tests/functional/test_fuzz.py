"""Fuzzing every entry: thousands of hostile inputs through ``index.handler`` (timer,
EventBridge, CloudMonitor callback as JSON and form, manual, raw bytes) and ``index.http_handler``.

For every input: no exception escapes; a refused input is one line under 300 characters, and
starts no scale-out; no secret (or an 8-character piece of one) appears in a report, a log line
or a store row. The world behind the handler would scale out on any valid event (+3 nodes), so
"no scale-out" is a real constraint, not a quiet backend. Seeded (derandomized): every CI run
tries the same inputs.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgescaler.handler import handle, handle_http
from tests.support.events import load_event
from tests.support.world import KEY_SECRET, PASSWORD, World, build_world

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions" / "scaler"))
import index

TOKEN = "fz7Qk2Lm9Xw4Rt8Bv3Np6Hs"
SECRETS = (PASSWORD, KEY_SECRET, TOKEN)
FUZZ = settings(
    max_examples=2000,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("fuzz")
    with build_world(root, extra_env={"EDGESCALER_CALLBACK_TOKEN": TOKEN}) as w:
        collect = Collect()
        logging.getLogger().addHandler(collect)
        w.log_lines = collect.lines  # type: ignore[attr-defined]
        try:
            yield w
        finally:
            logging.getLogger().removeHandler(collect)
        _assert_clean("\n".join(collect.lines) + w.stored_text())


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        for i in range(len(secret) - 8 + 1):
            assert secret[i : i + 8] not in text, "a piece of a secret leaked"


# -- hostile values ---------------------------------------------------------------------------

any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
texts = st.one_of(
    st.text(any_char, max_size=30),
    st.just("\ud800"),
    st.just("x" * 5000),
    st.sampled_from(["", " ", "null", "ALERT", "OK", "2026-11-27T07:05:00Z", "edge-a", "1e999"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
raw_fragments = st.sampled_from(
    [
        "[" * 3000 + "]" * 3000,
        '{"a":' * 2000 + "1" + "}" * 2000,
        "1" * 5000,
        '"\\ud800"',
        '"\\udfff\\ud800"',
        "NaN",
        "-Infinity",
        '"' + "y" * 100_000 + '"',
    ]
)

ROUTES: dict[str, dict[str, Any]] = {
    "timer": json.loads(load_event("timer-with-payload.json")),
    "eventbridge": json.loads(load_event("eventbridge-alert.json")),
    "callback-json": json.loads(load_event("cloudmonitor-callback-seconds.json")),
    "manual": json.loads(load_event("manual-idempotent.json")),
    "mns": json.loads(load_event("fc3-mns-topic-json.json")),
    "fc3-http": json.loads(load_event("fc3-http-callback.json")),
}
FORM = dict(urllib.parse.parse_qsl(load_event("cloudmonitor-callback.form").decode()))


def _dumps(value: Any) -> str:
    # ensure_ascii: lone surrogates travel as \\udXXX escapes, as a hostile sender would send
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A recorded event of some route with one field (maybe nested) replaced or added."""
    route = draw(st.sampled_from(sorted(ROUTES)))
    event = json.loads(json.dumps(ROUTES[route]))
    target = event
    if route == "eventbridge" and draw(st.booleans()):
        target = event["data"]
    key = draw(st.one_of(st.sampled_from(sorted(target)), texts))
    if draw(st.booleans()):
        raw = draw(raw_fragments)
        text = _dumps({**{k: v for k, v in target.items() if k != key}, "__slot__": 0})
        text = text.replace('"__slot__": 0', f"{_dumps(key)}: {raw}")
        if target is not event:
            outer = {**event, "data": "__data__"}
            text = _dumps(outer).replace('"__data__"', text)
        return text.encode()
    target[key] = draw(json_values)
    return _dumps(event).encode()


@st.composite
def form_events(draw: st.DrawFn) -> bytes:
    fields = dict(FORM)
    key = draw(st.one_of(st.sampled_from(sorted(fields)), texts))
    value = draw(st.one_of(texts, st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
    fields[key] = value
    body = urllib.parse.urlencode(fields, errors="surrogatepass")
    if draw(st.booleans()):
        body += "&" + draw(st.sampled_from(["%ED%A0%80", "%FF", "&&&", "=" * 50, "a=" + "%" * 9]))
    return body.encode("utf-8", "surrogatepass")


events = st.one_of(
    mutated_events(),
    form_events(),
    json_values.map(lambda v: _dumps(v).encode()),
    raw_fragments.map(str.encode),
    st.binary(max_size=200),
)


# -- the properties ---------------------------------------------------------------------------


def _check_report(w: World, report: dict[str, Any], posts_before: int) -> None:
    assert isinstance(report, dict)
    if "statusCode" in report:  # an FC 3.0 HTTP trigger event: the callback's answer
        assert report["statusCode"] in {200, 400, 403, 405, 413}, report
        payload = json.loads(report["body"])
        if report["statusCode"] != 200:
            assert len(w.posts()) == posts_before
        if payload.get("error"):
            assert len(payload["error"]) < 300 and "\n" not in payload["error"]
        _assert_clean(json.dumps(report))
        return
    error = report.get("error")
    if error is not None:
        assert isinstance(error, str) and "\n" not in error and len(error) < 300, error[:400]
        assert len(w.posts()) == posts_before, "a refused event scaled out"
        assert report["outcomes"] == []
    for o in report.get("outcomes", []):
        assert "\n" not in o["reason"]
    _assert_clean(json.dumps(report))


@FUZZ
@given(event=events)
def test_no_input_escapes_the_event_handler(world: World, event: bytes) -> None:
    before = len(world.posts())
    report = handle(event, None, env=world.env, now=world.now)  # index.handler's body
    _check_report(world, report, before)


methods = st.sampled_from(["POST", "POST", "GET", "PUT", "", "post", "DELETE"])
lengths = st.one_of(st.none(), st.sampled_from(["", "x", "-1", "99999999999", "0"]))


@FUZZ
@given(body=events, method=methods, length=lengths, token=st.sampled_from([TOKEN, "", "nope"]))
def test_no_input_escapes_the_callback(
    world: World, body: bytes, method: str, length: str | None, token: str
) -> None:
    before = len(world.posts())
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]]) -> None:
        status.append(s)

    environ = {
        "REQUEST_METHOD": method,
        "QUERY_STRING": urllib.parse.urlencode({"token": token}),
        "CONTENT_LENGTH": str(len(body)) if length is None else length,
        "wsgi.input": io.BytesIO(body),
    }
    (payload,) = handle_http(environ, start_response, env=world.env, now=world.now)
    (code,) = status
    data = json.loads(payload)
    assert code[:3] in {"200", "400", "403", "405", "413"}, code
    if code[:3] != "200":
        assert len(world.posts()) == before
    if data.get("error"):
        assert len(data["error"]) < 300 and "\n" not in data["error"]
    _assert_clean(payload.decode())


def test_the_fc_entry_itself_never_raises(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """``index.handler`` / ``index.http_handler`` as FC calls them (the real environment)."""
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    for event in (b"[" * 5000, b'{"request_id": "\\ud800"}', b"\xff", "\ud800", 42):
        report = index.handler(event, None)  # type: ignore[arg-type]
        assert report["error"] and len(report["error"]) < 300
    (payload,) = index.http_handler({"REQUEST_METHOD": "GET"}, lambda s, h: None)
    assert json.loads(payload)["error"] == "forbidden"

"""The alert callback (``index.http_handler``) under the wrong method, a missing or malformed
body, hostile JSON, and a failing server: only POST with a well-formed callback runs anything,
and no exception ever escapes the WSGI entry."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgescaler.handler import handle_http
from tests.support.events import load_event
from tests.support.world import World, build_world

TOKEN = "callback-token-0123456789"
BODY = load_event("cloudmonitor-callback.form")


class StartResponse:
    def __init__(self, fail: bool = False) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.fail = fail

    def __call__(self, status: str, headers: list[tuple[str, str]]) -> None:
        if self.fail:
            raise OSError("the client went away")
        self.status, self.headers = status, headers


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with build_world(tmp_path, extra_env={"EDGESCALER_CALLBACK_TOKEN": TOKEN}) as w:
        yield w


def call(
    w: World, body: bytes = BODY, method: str = "POST", length: str | None = None, **extra: Any
) -> tuple[StartResponse, dict[str, Any]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "QUERY_STRING": f"token={TOKEN}",
        "wsgi.input": io.BytesIO(body),
        **extra,
    }
    environ["CONTENT_LENGTH"] = str(len(body)) if length is None else length
    sr = StartResponse()
    (payload,) = handle_http(environ, sr, env=w.env, now=w.now)
    return sr, json.loads(payload)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", ""])
def test_only_post_runs_anything(world: World, method: str) -> None:
    sr, _payload = call(world, method=method)
    assert sr.status.startswith("405") and ("Allow", "POST") in sr.headers
    assert world.emulator.state()["calls"]["DescribeClusterNodes"] == 0


@pytest.mark.parametrize(
    "length",
    ["", "abc", "-5", "1e3", "99999999999999999999", "²", "١٢"],  # isdigit() says yes
)
def test_a_missing_or_invalid_content_length_is_400(world: World, length: str) -> None:
    sr, payload = call(world, length=length)
    assert sr.status.startswith("400") and "Content-Length" in payload["error"]
    assert world.posts() == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{}",  # a manual "all policies" run: not a callback
        b'{"policies": ["edge-a"]}',
        load_event("timer.json"),
        b"[" * 5000 + b"]" * 5000,
        b'{"alertName": "a", "alertState": "ALERT", "ruleId": "\\ud800", "timestamp": "1"}',
        b"ruleId=%ED%A0%80&alertState=ALERT&timestamp=1",  # an encoded lone surrogate
        b"\xff\xfe\x00",
    ],
)
def test_anything_but_a_callback_is_400_and_runs_nothing(world: World, body: bytes) -> None:
    sr, payload = call(world, body=body)
    assert sr.status.startswith("400"), (sr.status, payload)
    assert payload["error"] and len(payload["error"]) < 300 and "\n" not in payload["error"]
    assert world.posts() == [] and world.emulator.state()["calls"]["DescribeClusterNodes"] == 0


def test_a_well_formed_callback_runs(world: World) -> None:
    sr, payload = call(world)
    assert sr.status.startswith("200") and "scaled=1" in payload["summary"]
    assert len(world.posts()) == 1


def test_nothing_escapes_even_when_the_server_side_fails(world: World) -> None:
    class Broken(io.BytesIO):
        def read(self, *args: Any) -> bytes:
            raise ConnectionResetError("peer reset")

    sr = StartResponse()
    environ = {
        "REQUEST_METHOD": "POST",
        "QUERY_STRING": f"token={TOKEN}",
        "CONTENT_LENGTH": "10",
        "wsgi.input": Broken(),
    }
    (payload,) = handle_http(environ, sr, env=world.env, now=world.now)
    assert sr.status.startswith("500") and json.loads(payload) == {"error": "internal error"}
    # start_response itself failing: still no exception, an empty body
    assert handle_http(environ, StartResponse(fail=True), env=world.env) == [b""]
    assert world.posts() == []

"""CloudMonitor's alert callback as an HTTP endpoint: one set of rules for both ways FC delivers
an HTTP request — FC 2.0's WSGI call (``index.http_handler``) and FC 3.0's HTTP trigger event to
the ordinary ``index.handler`` (``{"version": "v1", "rawPath", "headers", "queryParameters",
"body", "isBase64Encoded", "requestContext": {"http": {"method": ...}}}``; see
tests/events/fc3-SOURCES.md).

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

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgescaler import safejson, triggers
from edgescaler.report import RunReport
from edgescaler.sensitive import Secret

log = logging.getLogger("edgescaler.callback")

MAX_CALLBACK_BYTES = 64 * 1024
TRIGGERS = frozenset({"cloudmonitor"})
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class HttpRequest:
    """What the rules look at: the method, the ``token`` query parameter, the declared length
    (None: none declared) and a way to read that many bytes of body."""

    method: str
    token: str
    length: str | None
    read: Callable[[int], bytes]


@dataclass(frozen=True)
class HttpResponse:
    status: int
    payload: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = field(default=())

    @property
    def status_line(self) -> str:
        return f"{self.status} {REASONS.get(self.status, '')}".strip()


INTERNAL_ERROR = HttpResponse(500, {"error": "internal error"})


def respond(
    request: HttpRequest, expected: Secret | None, run: Callable[[bytes], RunReport]
) -> HttpResponse:
    """Apply the rules above; ``run(body)`` runs the pipeline on a body worth running."""
    if expected is None:
        log.error("callback refused: EDGESCALER_CALLBACK_TOKEN is not set")
        return HttpResponse(503, {"error": "callback not configured"})
    given = request.token.encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(given, expected.reveal().encode()):
        log.warning("callback refused: bad token")
        return HttpResponse(403, {"error": "forbidden"})
    if request.method.upper() != "POST":
        return HttpResponse(405, {"error": "only POST is accepted"}, (("Allow", "POST"),))
    raw_length = (request.length or "").strip()
    if not (raw_length.isascii() and raw_length.isdigit()) or len(raw_length) > 12:
        return HttpResponse(400, {"error": "missing or invalid Content-Length"})
    length = int(raw_length)
    if length > MAX_CALLBACK_BYTES:
        return HttpResponse(413, {"error": "body too large"})
    body = request.read(length) if length > 0 else b""
    if not isinstance(body, bytes) or not body.strip():
        return HttpResponse(400, {"error": "empty body: expected a CloudMonitor alert"})
    report = run(body)
    return HttpResponse(
        400 if report.error else 200, {"summary": report.summary_line(), "error": report.error}
    )


def from_wsgi(environ: Mapping[str, Any]) -> HttpRequest:
    """The request FC 2.0 hands a WSGI entry."""
    from urllib.parse import parse_qs

    query = parse_qs(str(environ.get("QUERY_STRING", ""))[:4096])
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH")
    return HttpRequest(
        method=str(environ.get("REQUEST_METHOD", "")),
        token=(query.get("token") or [""])[-1],
        length=None if length is None else str(length),
        read=(lambda n: stream.read(n)) if stream is not None else (lambda n: b""),
    )


def from_fc3_event(event: bytes | str | None) -> HttpRequest | None:
    """The request inside an FC 3.0 HTTP trigger event, or None when ``event`` is not one.

    FC 3.0 has read the body already, so its length is the body's; a body FC marked
    ``isBase64Encoded`` is decoded (an undecodable one reads as empty, hence a 400). An event
    larger than any event the function takes is not parsed here (None): the ordinary event path
    refuses it by its size, before reading it.
    """
    if isinstance(event, str):
        event = event.encode("utf-8", "surrogatepass")
    if (
        not isinstance(event, bytes)
        or len(event) > triggers.MAX_EVENT_BYTES
        or b'"requestContext"' not in event
    ):
        return None
    try:
        data = safejson.loads(event)
    except safejson.JSONError:
        return None
    context = data.get("requestContext") if isinstance(data, dict) else None
    http = context.get("http") if isinstance(context, dict) else None
    if not isinstance(data, dict) or data.get("version") != "v1" or not isinstance(http, dict):
        return None
    query = data.get("queryParameters")
    token = query.get("token") if isinstance(query, dict) else None
    raw = data.get("body")
    body = raw.encode("utf-8") if isinstance(raw, str) else b""
    if data.get("isBase64Encoded") is True:
        try:
            body = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            body = b""
    return HttpRequest(
        method=str(http.get("method") or ""),
        token=token if isinstance(token, str) else "",
        length=str(len(body)),
        read=lambda n: body[:n],
    )


def to_fc3_response(response: HttpResponse) -> dict[str, Any]:
    """The dict an FC 3.0 event handler returns for an HTTP trigger."""
    import json

    headers = {"Content-Type": "application/json", **dict(response.headers)}
    return {
        "statusCode": response.status,
        "headers": headers,
        "isBase64Encoded": False,
        "body": json.dumps(response.payload),
    }

"""The answers every emulator route gives: the JSON error shape, responses, request ids.

Errors are JSON ``{"code", "message", "requestId", "status"}``; every response carries a request
id in the ``x-acs-request-id`` header (and in the body of CS answers).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ApiError(Exception):
    """An answer other than success; becomes the JSON error shape."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def bad_parameter(name: str, message: str) -> ApiError:
    """400 ``InvalidParameter.<name>``; ``message`` must never hold a secret's value."""
    return ApiError(400, f"InvalidParameter.{name}", f"{name}: {message}")


@dataclass
class Response:
    """What the HTTP layer writes: status, JSON payload (or raw bytes), extra headers.

    ``delay`` holds the answer back (a "slow" fault); ``action`` is for the request log line.
    """

    status: int
    payload: Any
    request_id: str
    action: str = "-"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json; charset=utf-8"

    def body(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        return json.dumps(self.payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def error_response(err: ApiError, request_id: str, action: str) -> Response:
    payload = {
        "code": err.code,
        "message": err.message,
        "requestId": request_id,
        "status": err.status,
    }
    return Response(err.status, payload, request_id, action, err.headers)


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()

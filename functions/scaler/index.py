"""Function Compute entry points.

* ``index.handler`` — event functions (timer, EventBridge, console/SDK invocations): ``event``
  is the raw invocation body (bytes).
* ``index.http_handler`` — an HTTP-trigger function for CloudMonitor's legacy alert callback,
  which FC calls WSGI-style. The URL must carry ``?token=<EDGESCALER_CALLBACK_TOKEN>``; without
  the setting every call is refused.

Kept thin so the FC cold start imports only what the first invocation needs; everything lives
in the ``edgescaler`` package next to this file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from edgescaler.handler import handle, handle_http


def handler(event: bytes, context: Any) -> dict[str, Any]:
    """FC 2.0 event handler."""
    return handle(event, context)


def http_handler(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """FC 2.0 HTTP-trigger handler (WSGI)."""
    return handle_http(environ, start_response)

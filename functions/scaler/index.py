"""Function Compute entry point (``Handler: index.handler``).

Kept thin so the FC cold start imports only what the first invocation needs; everything lives
in the ``edgescaler`` package next to this file.
"""

from __future__ import annotations

from typing import Any

from edgescaler.handler import handle


def handler(event: bytes, context: Any) -> dict[str, Any]:
    """FC 2.0 event handler: ``event`` is the raw invocation body (bytes)."""
    return handle(event, context)

"""Errors of ``edgescaler replay``; each renders as one line naming the file or option.

EdgescalerError
└── ReplayError        a replay that cannot run as asked (an option, a policy it cannot replay)
    └── TraceError     a trace file that cannot be read or parsed (names file and row)
"""

from __future__ import annotations

from edgescaler.errors import EdgescalerError


class ReplayError(EdgescalerError):
    """The replay cannot run as asked."""


class TraceError(ReplayError):
    """The trace file cannot be read, or a row of it cannot be parsed."""

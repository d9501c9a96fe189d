"""What a metric source returns and promises.

A source either returns one finite :class:`Reading` with the timestamp of its sample, or raises
:class:`~edgescaler.errors.MetricError` with a reason code. There is no third way: an empty result
is never read as zero, NaN is never compared, and a stale sample is never acted on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True)
class Reading:
    """One finite metric value and the time its sample was taken (UTC, timezone-aware)."""

    metric: str
    value: float
    timestamp: datetime
    source: str = "prometheus"

    def to_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "value": self.value,
            "timestamp": self.timestamp.isoformat(),
            "source": self.source,
        }


class MetricSource(Protocol):
    """Reads one named metric. Implementations must be safe to call from several threads."""

    def read(
        self,
        name: str,
        query: str,
        *,
        max_age: timedelta,
        now: datetime,
        freshness_query: str | None = None,
    ) -> Reading:
        """Evaluate ``query`` (one series expected) and return its reading.

        Raises MetricError(reason=...) with reason one of: ``empty``, ``nan`` (NaN or ±Inf),
        ``multiple_series``, ``stale`` (sample older than ``max_age`` at ``now``), ``http_error``,
        ``timeout``, ``connection_error``, ``bad_response``.
        """
        ...

    def close(self) -> None:
        """Release connections (the end of a run)."""

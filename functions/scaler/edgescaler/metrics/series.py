"""A metric's recent history at a regular step, and the sources that can read one.

Predictive rules forecast from a :class:`Series`. In production it comes from one Prometheus
``query_range`` per metric per run (:meth:`PrometheusSource.history
<edgescaler.metrics.prometheus.PrometheusSource.history>`); in ``edgescaler replay`` from the
trace. A missing or non-finite sample is a gap (``None``), never a zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

# Prometheus refuses a query_range of more than 11,000 points per series.
MAX_POINTS = 11_000


@dataclass(frozen=True)
class Series:
    """``values[i]`` is the sample at ``start + i * step`` (UTC, aware), or ``None`` (a gap).

    The newest point is ``values[-1]`` at :attr:`end`. The sequence is not copied: callers must
    not change it afterwards.
    """

    metric: str
    start: datetime
    step: timedelta
    values: Sequence[float | None]

    def __post_init__(self) -> None:
        if self.step <= timedelta(0):
            raise ValueError("step must be positive")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def end(self) -> datetime:
        """The time of the newest point (``start`` for an empty series)."""
        return self.start + self.step * max(0, len(self.values) - 1)

    @property
    def observed(self) -> int:
        """How many points are not gaps."""
        return sum(1 for v in self.values if v is not None)

    @classmethod
    def from_samples(
        cls,
        metric: str,
        samples: Sequence[tuple[float, float]],
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series:
        """Place ``(unix_ts, value)`` samples on the grid ``start, start+step, ... <= end``.

        A sample lands on the nearest grid point within half a step; grid points without one,
        and non-finite values, are gaps.
        """
        n = int((end - start) / step) + 1 if end >= start else 0
        values: list[float | None] = [None] * n
        t0 = start.timestamp()
        s = step.total_seconds()
        for ts, value in samples:
            i = round((ts - t0) / s)
            if 0 <= i < n and abs(ts - (t0 + i * s)) <= s / 2 and math.isfinite(value):
                values[i] = value
        return cls(metric, start, step, values)


@runtime_checkable
class HistorySource(Protocol):
    """A metric source that can also read a metric's history (for predictive rules)."""

    def history(
        self,
        name: str,
        query: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> Series:
        """``query`` evaluated at ``start, start+step, ... <= end`` (one series expected).

        Raises MetricError with reason ``empty``, ``multiple_series``, ``http_error``,
        ``timeout``, ``connection_error`` or ``bad_response``; NaN samples are gaps, not errors.
        """
        ...

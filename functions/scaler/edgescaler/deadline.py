"""The run deadline: every run ends inside the function's timeout, whatever the network does.

FC kills an invocation at its ``Timeout`` (``SystemExit`` mid-flight, no cleanup). Timeouts per
read do not bound a run: an answer trickled one byte a second never trips a read timeout, and
many slow reads add up. So each run gets one :class:`Deadline` and the pipeline holds to it:

* work not begun when the deadline has passed is reported ``deadline``;
* every read gets at most the time left (:meth:`Deadline.timeout`), and a body still arriving
  when its time is up is abandoned;
* a scale-out is begun only if its whole exchange (claim, POST, record) fits in the time left
  (:meth:`Deadline.allows`): cutting a ScaleOutCluster short would make its outcome unknown.

By default the deadline is the function's timeout minus a safety margin (:func:`budget`), which
covers one read in progress when the deadline passes and the final store writes and logs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

DEFAULT_FUNCTION_TIMEOUT = 120.0  # template.yml's Timeout
MIN_MARGIN = 15.0
MARGIN_FRACTION = 0.2


def budget(function_timeout: float | None, override: float | None = None) -> float:
    """Seconds a run may take: ``override`` if set, else the function timeout (FC's
    ``context.function.timeout``, default 120 s) minus max(15 s, 20 %)."""
    if override is not None:
        return override
    timeout = function_timeout if function_timeout and function_timeout > 0 else None
    timeout = timeout or DEFAULT_FUNCTION_TIMEOUT
    return max(1.0, timeout - max(MIN_MARGIN, MARGIN_FRACTION * timeout))


class DeadlineExceeded(Exception):
    """The run's deadline passed before the work could start (internal signal)."""


class Deadline:
    """A point in monotonic time; ``clock`` is injectable for tests."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"deadline must be a positive number of seconds, got {seconds}")
        self._clock = clock
        self.seconds = seconds
        self._at = clock() + seconds

    @classmethod
    def never(cls) -> Deadline:
        """A deadline a day away: for tools and tests that do not care."""
        return cls(86400.0)

    def within(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now, or this one if it comes first (same clock)."""
        earlier = Deadline(max(seconds, 1e-9), clock=self._clock)
        earlier._at = min(earlier._at, self._at)
        earlier.seconds = self.seconds if earlier._at == self._at else seconds
        return earlier

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._at - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def allows(self, seconds: float) -> bool:
        """True if ``seconds`` of work would still finish before the deadline."""
        return self.remaining() >= seconds

    def timeout(self, wanted: float) -> float:
        """``wanted`` seconds, or the time left if less; DeadlineExceeded if none is left."""
        left = self.remaining()
        if left <= 0.0:
            raise DeadlineExceeded(f"run deadline of {self.seconds:g}s passed")
        return min(wanted, left)

    def __repr__(self) -> str:
        return f"Deadline({self.seconds:g}s, {self.remaining():.1f}s left)"

"""Forecast the peak of a metric over the next ``horizon`` from its own history. Pure, stdlib.

This runs in the Function Compute function on every evaluation of a predictive rule, from scratch
(no state between runs), so it reads only a few hundred of the history's points: a handful of
robust statistics over short windows, and short stretches of past cycles.

The *point* forecast of the peak over ``(now, now + horizon]``::

    level     median of the newest ``level_window`` of samples   (robust to single spikes)
    seasonal  how far above the level the metric peaked over the same stretch of time in past
              cycles (``seasons`` x ``cycles``, e.g. 1, 2, 3 days and 1, 2, 3 weeks ago): the
              median over cycles of the highest ``level_window`` median in that stretch
    trend     the recent slope over ``trend_window`` (the median of slopes between consecutive
              blocks, so a single level shift is not a trend), minus the slope the same past
              cycles had then, times the horizon, damped by ``trend_damping``
    point  =  level + max(seasonal, trend, 0)

The two estimates of how far it may go beyond that, and the *bound* the rule acts on::

    noise     robust standard deviation of the samples (MAD of first differences / sqrt 2)
              over ``noise_window``                          -> point + uncertainty * noise
    surprise  the ``surprise_quantile`` over ``surprise_window`` of how far the metric went,
              within one horizon, above its high of the horizon before (jumps, bursts, ramps
              the model did not see coming)                  -> recent high + surprise
    bound  =  the larger of the two, at most (1 + max_growth) x the highest sample of the last
              ``growth_window`` (once the history covers it: the growth limit)

Robust to gaps (``None`` samples are skipped; a statistic with too few points is left out and
:attr:`Forecast.basis` says which parts were used) and to a level that changes (the level is the
newest samples' median; the seasonal part is a past *peak* compared with today's level, never a
past level carried over).
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from edgescaler.metrics.series import Series

# Robust standard deviation from the median absolute deviation of Gaussian data.
MAD_TO_SIGMA = 1.4826
MIN_NOISE_POINTS = 8
MIN_SURPRISE_SAMPLES = 8
MIN_TREND_BLOCKS = 3


@dataclass(frozen=True)
class ForecastParams:
    """How to forecast; every field is a field of the predictive rule (see :mod:`policy`)."""

    horizon: timedelta
    seasons: tuple[timedelta, ...] = (timedelta(days=1), timedelta(days=7))
    cycles: int = 3
    level_window: timedelta = timedelta(minutes=10)
    trend_window: timedelta = timedelta(hours=1)
    trend_damping: float = 0.5
    noise_window: timedelta = timedelta(hours=2)
    uncertainty: float = 2.0
    surprise_window: timedelta = timedelta(days=1)
    surprise_quantile: float | None = 0.9
    growth_window: timedelta = timedelta(days=1)
    max_growth: float | None = 0.15


@dataclass(frozen=True)
class Forecast:
    """The forecast peak and everything it was made from (values in the metric's unit)."""

    at: datetime
    horizon: timedelta
    points: int  # history points up to ``at`` (gaps included)
    level: float
    seasonal: float
    trend: float
    noise: float
    surprise: float
    point: float
    bound: float
    cap: float | None  # the growth limit, when it cut the bound
    cycles: int  # past cycles the seasonal part was made from
    basis: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "at": self.at.isoformat(),
            "horizon_s": self.horizon.total_seconds(),
            "points": self.points,
            "level": self.level,
            "seasonal": self.seasonal,
            "trend": self.trend,
            "noise": self.noise,
            "surprise": self.surprise,
            "point": self.point,
            "bound": self.bound,
            "cap": self.cap,
            "cycles": self.cycles,
            "basis": list(self.basis),
        }


def _steps(d: timedelta, step: float) -> int:
    return max(1, round(d.total_seconds() / step))


def _present(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


# Gaps are rare, so the helpers below first try the gap-free computation at C speed: a None
# anywhere makes it raise TypeError (None does not compare or subtract), and only then do they
# take the slow path that skips gaps.


def _tail_max(values: Sequence[float | None], end: int, n: int) -> float | None:
    """The highest non-gap value of the ``n`` points ending at ``end``."""
    seg = values[max(0, end - n + 1) : end + 1]
    try:
        return max(seg) if seg else None  # type: ignore[type-var]
    except TypeError:
        present = _present(seg)
        return max(present) if present else None


def _tail(values: Sequence[float | None], end: int, n: int) -> list[float]:
    """The non-gap values of the ``n`` points ending at ``end`` (inclusive)."""
    return _present(values[max(0, end - n + 1) : end + 1])


def _block_stats(
    values: Sequence[float | None], lo: int, hi: int, block: int, fn: str
) -> list[float | None]:
    """``fn`` ("max" or "median") of each ``block``-point block of ``values[lo:hi]``, aligned so
    the last block ends at ``hi - 1``; None for an empty (all-gap) block."""
    start = hi - ((hi - lo) // block) * block
    seg = values[start:hi]
    f: Callable[[Sequence[float]], float] = max if fn == "max" else median
    try:
        return list(map(f, zip(*[iter(seg)] * block, strict=True)))
    except TypeError:
        pass
    out: list[float | None] = []
    for i in range(0, len(seg), block):
        chunk = _present(seg[i : i + block])
        out.append(f(chunk) if chunk else None)
    return out


def noise(values: Sequence[float | None], end: int, n: int) -> float | None:
    """Robust standard deviation of single samples over the ``n`` points ending at ``end``:
    the median absolute first difference x 1.4826 / sqrt 2, repeated values left out (None
    with too few pairs)."""
    seg = values[max(0, end - n + 1) : end + 1]
    try:
        diffs: list[float] = sorted(map(abs, map(operator.sub, seg[1:], seg)))
    except TypeError:
        diffs = sorted(
            abs(b - a) for a, b in itertools.pairwise(seg) if a is not None and b is not None
        )
    # A repeated value is no new sample (a source slower than the step, Prometheus' lookback),
    # not a change of zero: leave repeats out, unless nothing ever changes.
    moves = diffs[bisect.bisect_right(diffs, 0.0) :]
    if len(moves) >= MIN_NOISE_POINTS:
        diffs = moves
    if len(diffs) < MIN_NOISE_POINTS:
        return None
    return median(diffs) * MAD_TO_SIGMA / math.sqrt(2)


def block_slope(values: Sequence[float | None], end: int, n: int, block: int) -> float | None:
    """Robust slope per point over the ``n`` points ending at ``end``: the median of the slopes
    between consecutive ``block`` medians. A level shift moves one of them, a trend all."""
    meds = _block_stats(values, max(0, end - n + 1), end + 1, block, "median")
    diffs = [
        (b - a) / block for a, b in itertools.pairwise(meds) if a is not None and b is not None
    ]
    if len(diffs) < MIN_TREND_BLOCKS - 1:
        return None
    return median(diffs)


def cycle_peak(
    values: Sequence[float | None], end: int, lag: int, horizon: int, block: int
) -> float | None:
    """The highest ``block`` median over ``(end - lag, end - lag + horizon]``: how high the
    metric went over the coming horizon, one cycle (``lag`` points) ago."""
    start = end - lag
    if start < 0:
        return None
    stop = min(start + horizon, end)
    meds = [m for m in _block_stats(values, start + 1, stop + 1, block, "median") if m is not None]
    return max(meds) if meds else None


def surprise(
    values: Sequence[float | None], end: int, window: int, horizon: int, block: int, q: float
) -> tuple[float, int] | None:
    """The ``q``-quantile, over the ``window`` points ending at ``end``, of how far the metric went
    above its high of one horizon within the next horizon: at every block boundary s with a
    whole horizon after it, max(values[s+1 .. s+horizon]) - max(values[s-horizon+1 .. s]).
    Returns (quantile, samples), or None with too few samples."""
    blocks = _block_stats(values, max(0, end - window + 1), end + 1, block, "max")
    gaps = None in blocks
    maxes: list[float] = [-math.inf if m is None else m for m in blocks] if gaps else blocks  # type: ignore[assignment]
    per = max(1, horizon // block)  # blocks per horizon
    # the highest block max of the `per` blocks starting at each block
    ahead = list(map(max, *(maxes[k:] for k in range(per))))
    out = list(map(operator.sub, ahead[per:], ahead))
    if gaps:  # a horizon without any sample on either side says nothing
        out = [d for d in out if math.isfinite(d)]
    if len(out) < MIN_SURPRISE_SAMPLES:
        return None
    out.sort()
    return out[min(len(out) - 1, int(q * len(out)))], len(out)


def forecast(series: Series, params: ForecastParams, *, now: datetime | None = None) -> Forecast:
    """The forecast peak of ``series`` over ``(now, now + params.horizon]``.

    ``now`` defaults to the newest point of the series; points after it are never read (a
    replay may pass a longer series without leaking the future). With no sample in the level
    window the forecast's ``bound`` is NaN (the rule then acts on the current value).
    """
    step = series.step.total_seconds()
    values = series.values
    at = series.end if now is None else now
    end = min(len(values) - 1, math.floor((at - series.start).total_seconds() / step + 1e-9))
    horizon = _steps(params.horizon, step)
    block = _steps(params.level_window, step)
    points = end + 1
    basis: list[str] = []

    recent = _tail(values, end, block)
    if not recent:
        nan = math.nan
        return Forecast(
            at,
            params.horizon,
            points,
            nan,
            0.0,
            0.0,
            0.0,
            0.0,
            nan,
            nan,
            None,
            0,
            ("no sample in the level window",),
        )
    level = median(recent)
    basis.append(f"level: median of {len(recent)}")

    peaks: list[float] = []
    past_slopes: list[float] = []
    trend_n = _steps(params.trend_window, step)
    for season in params.seasons:
        period = _steps(season, step)
        for k in range(1, params.cycles + 1):
            peak = cycle_peak(values, end, k * period, horizon, block)
            if peak is None:
                continue
            peaks.append(peak)
            s = block_slope(values, end - k * period, trend_n, block)
            if s is not None:
                past_slopes.append(s)
    seasonal = max(0.0, median(peaks) - level) if peaks else 0.0
    if peaks:
        basis.append(f"seasonal: {len(peaks)} past cycles")

    trend = 0.0
    slope = block_slope(values, end, trend_n, block)
    if slope is not None:
        if past_slopes:
            slope -= median(past_slopes)
        trend = max(0.0, slope * horizon * params.trend_damping)
        basis.append(f"trend over {trend_n} points")

    point = level + max(seasonal, trend)
    sigma = noise(values, end, _steps(params.noise_window, step)) or 0.0
    bound = point + params.uncertainty * sigma
    if sigma:
        basis.append("noise")

    jump = 0.0
    if params.surprise_quantile is not None:
        got = surprise(
            values,
            end,
            _steps(params.surprise_window, step),
            horizon,
            block,
            params.surprise_quantile,
        )
        if got is not None:
            jump = max(0.0, got[0])
            basis.append(f"surprise: q{params.surprise_quantile:g} of {got[1]}")
            high = _tail_max(values, end, horizon)
            if high is None:  # a level window longer than the horizon
                high = level
            bound = max(bound, high + jump)

    cap: float | None = None
    growth_n = _steps(params.growth_window, step)
    if params.max_growth is not None and end + 1 >= growth_n:
        top = _tail_max(values, end, growth_n)
        limit = (level if top is None else top) * (1 + params.max_growth)
        if bound > limit:
            bound, cap = limit, limit
            basis.append("growth limit")
    return Forecast(
        at=at,
        horizon=params.horizon,
        points=points,
        level=level,
        seasonal=seasonal,
        trend=trend,
        noise=sigma,
        surprise=jump,
        point=point,
        bound=bound,
        cap=cap,
        cycles=len(peaks),
        basis=tuple(basis),
    )

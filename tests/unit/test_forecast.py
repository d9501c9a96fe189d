"""The forecaster on synthetic series with known answers: level, seasonality, trend, noise,
surprise, the growth limit; gaps and level shifts; no peeking past ``now``."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from edgescaler.forecast import ForecastParams, forecast, noise
from edgescaler.metrics.series import Series

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)

# Every part off: each test switches on the one it checks.
BARE = ForecastParams(
    horizon=timedelta(minutes=30),
    seasons=(),
    cycles=3,
    level_window=timedelta(minutes=10),
    trend_window=timedelta(hours=1),
    trend_damping=1.0,
    noise_window=timedelta(hours=2),
    uncertainty=0.0,
    surprise_quantile=None,
    max_growth=None,
)


def series(values: list[float | None], step: timedelta = MIN) -> Series:
    return Series("load", T0, step, values)


def test_a_constant_is_forecast_as_itself() -> None:
    f = forecast(series([50.0] * 180), replace(BARE, uncertainty=2.0, surprise_quantile=0.9))
    assert (f.level, f.seasonal, f.trend, f.noise, f.surprise) == (50, 0, 0, 0, 0)
    assert f.bound == 50 and f.point == 50 and f.cap is None
    assert f.points == 180 and f.at == T0 + 179 * MIN


def test_a_linear_trend_is_extrapolated_over_the_horizon() -> None:
    values: list[float | None] = [10 + 0.5 * i for i in range(180)]
    f = forecast(series(values), BARE)
    assert f.level == pytest.approx(10 + 0.5 * 174.5)  # median of the newest 10
    assert f.trend == pytest.approx(0.5 * 30)  # slope 0.5 per point x 30 points
    assert f.bound == pytest.approx(f.level + 15)
    damped = forecast(series(values), replace(BARE, trend_damping=0.5))
    assert damped.trend == pytest.approx(7.5)
    falling = forecast(series([100 - 0.5 * i for i in range(180)]), BARE)
    assert falling.trend == 0 and falling.bound == falling.level  # a fall never lowers the peak


def test_a_level_shift_is_not_a_trend() -> None:
    shift: list[float | None] = [10.0] * 155 + [20.0] * 25
    f = forecast(series(shift), BARE)
    assert f.level == 20 and f.trend == 0 and f.bound == 20


def daily_square(days: int, step: timedelta, until: timedelta) -> list[float | None]:
    """30 from 08:00 to 20:00 UTC, else 10; from T0 for ``days`` days plus ``until``."""
    n = int((timedelta(days=days) + until) / step) + 1
    out: list[float | None] = []
    for i in range(n):
        t = T0 + i * step
        out.append(30.0 if 8 <= t.hour < 20 else 10.0)
    return out


SEASONAL = replace(BARE, seasons=(timedelta(days=1),), cycles=3)


@pytest.mark.parametrize(
    ("until", "level", "seasonal"),
    [
        (timedelta(hours=7, minutes=45), 10, 20),  # the morning rise is 15 min away
        (timedelta(hours=7), 10, 0),  # an hour before: not within the 30 min horizon
        (timedelta(hours=8, minutes=30), 30, 0),  # already up
        (timedelta(hours=19, minutes=45), 30, 0),  # the evening fall never lowers the peak
    ],
)
def test_daily_seasonality_adds_the_rise_seen_in_past_days(
    until: timedelta, level: float, seasonal: float
) -> None:
    step = timedelta(minutes=5)
    f = forecast(series(daily_square(3, step, until), step), SEASONAL)
    assert f.level == level and f.seasonal == seasonal and f.trend == 0
    assert f.bound == level + seasonal
    assert f.cycles == 3


def test_seasonality_and_trend_survive_gaps() -> None:
    step = timedelta(minutes=5)
    values = daily_square(3, step, timedelta(hours=7, minutes=45))
    holed: list[float | None] = [None if i % 5 == 2 else v for i, v in enumerate(values)]
    f = forecast(series(holed, step), SEASONAL)
    assert (f.level, f.seasonal, f.bound) == (10, 20, 30)
    ramp: list[float | None] = [None if i % 7 == 3 else 10 + 0.5 * i for i in range(180)]
    assert forecast(series(ramp), BARE).trend == pytest.approx(15, abs=1.5)


def test_a_past_cycle_that_is_all_gaps_is_left_out() -> None:
    step = timedelta(minutes=5)
    values = daily_square(3, step, timedelta(hours=7, minutes=45))
    per_day = 288
    for i in range(per_day - 12, per_day + 12):  # day 1 around 07:45 was not observed
        values[i + 7 * 12 + 9] = None
    f = forecast(series(values, step), SEASONAL)
    assert f.cycles == 2 and f.seasonal == 20


def test_noise_is_the_robust_spread_of_single_samples() -> None:
    zigzag: list[float | None] = [9.0 if i % 2 else 11.0 for i in range(120)]
    assert noise(zigzag, 119, 120) == pytest.approx(2 * 1.4826 / math.sqrt(2))
    f = forecast(series(zigzag), replace(BARE, uncertainty=2.0))
    assert f.level == 10 and f.bound == pytest.approx(10 + 2 * 2 * 1.4826 / math.sqrt(2))
    assert noise([1.0, None, 2.0], 2, 3) is None  # too few pairs to say


def spikes(hours: int) -> list[float | None]:
    """10, with a 10-minute burst to 20 every two hours; flat for the newest hour."""
    out: list[float | None] = []
    for i in range(hours * 60):
        out.append(20.0 if (i % 120) < 10 and i < (hours - 1) * 60 else 10.0)
    return out


def test_surprise_is_the_quantile_of_past_jumps_above_the_recent_high() -> None:
    p = replace(BARE, surprise_quantile=0.9, surprise_window=timedelta(days=1))
    f = forecast(series(spikes(24)), p)
    assert f.level == 10 and f.surprise == 10
    assert f.bound == 20  # the recent high (10) plus a burst's jump
    median = forecast(series(spikes(24)), replace(p, surprise_quantile=0.5))
    assert median.surprise == 0 and median.bound == 10  # most half-hours bring no jump


def test_the_growth_limit_caps_the_bound_once_the_history_covers_its_window() -> None:
    p = replace(
        BARE,
        surprise_quantile=0.9,
        max_growth=0.5,
        growth_window=timedelta(hours=1),
    )
    f = forecast(series(spikes(24)), p)
    assert f.bound == 15 and f.cap == 15  # (1 + 0.5) x the 1 h high of 10
    assert "growth limit" in f.basis
    zigzag: list[float | None] = [9.0 if i % 2 else 11.0 for i in range(120)]
    noisy = replace(p, uncertainty=10.0, surprise_quantile=None)
    assert forecast(series(zigzag), noisy).bound == pytest.approx(1.5 * 11)
    short = forecast(series(zigzag[-50:]), noisy)  # 50 min of history: the range is unknown
    assert short.cap is None and short.bound > 30


def test_no_sample_in_the_level_window_gives_no_forecast() -> None:
    values: list[float | None] = [10.0] * 50 + [None] * 10
    f = forecast(series(values), BARE)
    assert math.isnan(f.bound) and f.basis == ("no sample in the level window",)


def test_points_after_now_are_never_read() -> None:
    values: list[float | None] = [10.0] * 120 + [500.0] * 60
    now = T0 + 119 * MIN
    p = replace(BARE, uncertainty=2.0, surprise_quantile=0.9, seasons=(timedelta(hours=1),))
    assert forecast(series(values), p, now=now) == forecast(series(values[:120]), p)

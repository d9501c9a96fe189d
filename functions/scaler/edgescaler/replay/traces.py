"""Load traces, and put them on the replay's regular grid. Gaps stay gaps, never zero load.

Formats (recognised from the content, not the file name):

* **CSV with a ``timestamp`` column** (also ``time`` or ``ts``): ISO 8601 (with or without an
  offset; naive means UTC), Unix seconds (or milliseconds), or seconds from the start of the trace
  (values below 10⁸, e.g. the Azure 2019 trace). An ``observed`` column, when present, marks rows
  with ``observed=0`` as gaps (the NASA 1995 trace). The value column is ``--column``, else the
  first column that is not the timestamp or ``observed``. Empty, ``NaN`` and infinite values are
  gaps; so is any stretch of time without rows.
* **The Alibaba 2018 cluster-usage CSV** (``cpu_util_percent,mem_util_percent,...``, no timestamp
  column): rows are 30 s apart except for the trace's known hole on day 2: rows 4718-4727 average
  only a few machines and are dropped as a gap, and from row 4728 on the clock is 18,750 s ahead
  (so that day 3 starts at row 5135 exactly at 48 h; see ``traces/README.md``).
* **Prometheus ``query_range`` JSON** (the whole API answer, or its ``data`` object): exactly one
  series; ``NaN`` samples and missing steps are gaps.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any

from edgescaler import safejson
from edgescaler.outside import one_line, quote
from edgescaler.replay.errors import TraceError

TIMESTAMP_COLUMNS = ("timestamp", "time", "ts")
OBSERVED_COLUMN = "observed"
RELATIVE_BELOW = 1e8  # smaller numeric timestamps are seconds from the start of the trace
MILLIS_ABOVE = 1e11  # larger ones are Unix milliseconds

ALIBABA_HEADER = (
    "cpu_util_percent",
    "mem_util_percent",
    "net_in",
    "net_out",
    "disk_io_percent",
)
ALIBABA_STEP = 30.0
MAX_TRACE_BYTES = 512 * 2**20  # the largest shared trace is 2.7 MB
# A year at one-second steps is 31.5 million; the largest shared trace fills 89,280 points.
MAX_GRID_POINTS = 5_000_000
ALIBABA_BAD_ROWS = range(4718, 4728)  # the few-machine averages at the edge of the hole
ALIBABA_HOLE_SECONDS = 18_750.0


@dataclass(frozen=True)
class Trace:
    """The observed samples of one column, in time order (gaps are simply absent).

    ``times`` are Unix seconds, or seconds from the start when ``absolute`` is False.
    ``step`` is the nominal spacing (the median distance between consecutive samples).
    ``dropped`` counts rows read as gaps (unobserved, empty, NaN, known bad rows).
    """

    source: str
    column: str
    times: Sequence[float]
    values: Sequence[float]
    step: float
    absolute: bool
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class Grid:
    """A trace on the replay's regular grid: ``values[i]`` is the mean load of the samples in
    ``[start + i*interval, start + (i+1)*interval)``, or, when the trace is coarser than the grid,
    the latest sample still within its own step; ``None`` is a gap."""

    trace: Trace
    start: float
    interval: float
    values: list[float | None]

    def __len__(self) -> int:
        return len(self.values)

    def time(self, i: int) -> float:
        return self.start + i * self.interval

    @property
    def gaps(self) -> int:
        return self.values.count(None)


def _value(raw: str) -> float | None:
    try:
        v = float(raw)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _timestamp(raw: str) -> tuple[float, bool]:
    """(seconds, absolute) of one timestamp cell; ValueError if it is neither a number nor ISO."""
    raw = raw.strip()
    try:
        number = float(raw)
    except ValueError:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return t.timestamp(), True
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    if number < RELATIVE_BELOW:
        return number, False
    return (number / 1000.0 if number > MILLIS_ABOVE else number), True


def _nominal_step(times: Sequence[float]) -> float:
    diffs = [b - a for a, b in itertools.pairwise(times)]
    return median(diffs) if diffs else 60.0


def load(path: str | Path, column: str | None = None) -> Trace:
    """Read a trace file (any of the formats above). Raises TraceError naming file and row."""
    p = Path(path)
    try:
        if p.exists() and not p.is_file():  # never open a FIFO or a device: it could block
            raise TraceError(f"{p}: not a regular file")
        if p.stat().st_size > MAX_TRACE_BYTES:
            raise TraceError(f"{p}: larger than {MAX_TRACE_BYTES // 2**20} MiB")
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{p}: cannot read: {one_line(str(exc), 120)}") from None
    if text.lstrip().startswith("{"):
        return _load_prometheus(text, str(p), column)
    try:
        return _load_csv(text, str(p), column)
    except csv.Error as exc:  # a NUL byte, a cell past csv's field size limit...
        raise TraceError(f"{p}: not a readable CSV: {one_line(str(exc), 120)}") from None


def _pick_column(header: Sequence[str], column: str | None, skip: set[str], src: str) -> int:
    if column is not None:
        if column not in header:
            raise TraceError(
                f"{src}: no column {quote(column)} (columns: {quote(', '.join(header), 120)})"
            )
        return header.index(column)
    for i, name in enumerate(header):
        if name not in skip:
            return i
    raise TraceError(f"{src}: no value column besides {', '.join(sorted(skip))}")


def _load_csv(text: str, src: str, column: str | None) -> Trace:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise TraceError(f"{src}: empty file") from None
    if tuple(header) == ALIBABA_HEADER:
        return _load_alibaba(reader, header, src, column)
    ts_col = next((header.index(c) for c in TIMESTAMP_COLUMNS if c in header), None)
    if ts_col is None:
        raise TraceError(
            f"{src}: no timestamp column (expected one of {', '.join(TIMESTAMP_COLUMNS)}; "
            f"columns: {quote(', '.join(header), 120)})"
        )
    obs_col = header.index(OBSERVED_COLUMN) if OBSERVED_COLUMN in header else None
    val_col = _pick_column(header, column, {header[ts_col], OBSERVED_COLUMN}, src)
    all_times: list[float] = []
    times: list[float] = []
    values: list[float] = []
    dropped = 0
    absolute: bool | None = None
    for row_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise TraceError(f"{src}:{row_no}: {len(row)} cells, expected {len(header)}")
        try:
            t, is_abs = _timestamp(row[ts_col])
        except ValueError:
            raise TraceError(
                f"{src}:{row_no}: {one_line(header[ts_col], 40)}: {quote(row[ts_col])} "
                "is not a timestamp"
            ) from None
        if absolute is None:
            absolute = is_abs
        elif absolute != is_abs:
            raise TraceError(
                f"{src}:{row_no}: {one_line(header[ts_col], 40)}: mixes timestamp kinds"
            )
        if all_times and t <= all_times[-1]:
            raise TraceError(
                f"{src}:{row_no}: {one_line(header[ts_col], 40)}: not after the previous row"
            )
        all_times.append(t)
        unobserved = obs_col is not None and row[obs_col].strip() in ("0", "false", "False")
        v = None if unobserved else _value(row[val_col])
        if v is None:
            dropped += 1
            continue
        times.append(t)
        values.append(v)
    if not values:
        raise TraceError(f"{src}: no observed values in column {quote(header[val_col])}")
    return Trace(
        src, header[val_col], times, values, _nominal_step(all_times), bool(absolute), dropped
    )


def _load_alibaba(reader: Any, header: list[str], src: str, column: str | None) -> Trace:
    val_col = _pick_column(header, column, set(), src)
    times: list[float] = []
    values: list[float] = []
    dropped = 0
    for row_no, row in enumerate(reader):
        if not row:
            continue
        if len(row) != len(header):
            raise TraceError(f"{src}:{row_no + 2}: {len(row)} cells, expected {len(header)}")
        v = _value(row[val_col])
        if v is None or row_no in ALIBABA_BAD_ROWS:
            dropped += 1
            continue
        hole = ALIBABA_HOLE_SECONDS if row_no >= ALIBABA_BAD_ROWS.stop else 0.0
        times.append(row_no * ALIBABA_STEP + hole)
        values.append(v)
    if not values:
        raise TraceError(f"{src}: no values in column {quote(header[val_col])}")
    return Trace(src, header[val_col], times, values, ALIBABA_STEP, False, dropped)


def _load_prometheus(text: str, src: str, column: str | None) -> Trace:
    try:
        doc = safejson.loads(text)
    except safejson.JSONError as exc:
        raise TraceError(f"{src}: {exc}") from None
    data = doc.get("data", doc) if isinstance(doc, dict) else None
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise TraceError(f"{src}: not a Prometheus query_range answer (no matrix result)")
    result = data.get("result")
    if not isinstance(result, list) or not result:
        raise TraceError(f"{src}: the query_range answer has no series")
    if len(result) > 1:
        raise TraceError(f"{src}: {len(result)} series in the answer, expected 1")
    series = result[0]
    samples = series.get("values") if isinstance(series, dict) else None
    if not isinstance(samples, list):
        raise TraceError(f"{src}: the series has no values")
    labels = series.get("metric") or {}
    name = column or str(labels.get("__name__", "value"))
    all_times: list[float] = []
    times: list[float] = []
    values: list[float] = []
    dropped = 0
    for i, sample in enumerate(samples):
        try:
            ts, raw = sample
            t = float(ts)
        except (TypeError, ValueError):
            raise TraceError(f'{src}: values[{i}]: expected [unix_time, "value"]') from None
        if all_times and t <= all_times[-1]:
            raise TraceError(f"{src}: values[{i}]: not after the previous sample")
        all_times.append(t)
        v = _value(str(raw))
        if v is None:
            dropped += 1
            continue
        times.append(t)
        values.append(v)
    if not values:
        raise TraceError(f"{src}: no finite samples")
    return Trace(src, name, times, values, _nominal_step(all_times), True, dropped)


def to_grid(trace: Trace, interval: float) -> Grid:
    """Put ``trace`` on a grid of ``interval`` seconds starting at its first sample."""
    if interval <= 0:
        raise ValueError("interval must be positive")
    start = trace.times[0]
    span = (trace.times[-1] - start) // interval + 1
    if not span <= MAX_GRID_POINTS:  # also NaN: never allocate what the trace's times ask
        raise TraceError(
            f"{trace.source}: {span:g} grid points of {interval:g}s from its first to its last "
            f"time, more than {MAX_GRID_POINTS:,}: give a longer --interval"
        )
    n = int(span)
    sums = [0.0] * n
    counts = [0] * n
    for t, v in zip(trace.times, trace.values, strict=True):
        i = int((t - start) // interval)
        sums[i] += v
        counts[i] += 1
    values: list[float | None] = [None] * n
    last_t = -math.inf
    last_v = 0.0
    ti = 0
    times = trace.times
    for i in range(n):
        if counts[i]:
            values[i] = sums[i] / counts[i]
            # the newest sample of this bucket covers later grid points for one trace step
            t_end = start + (i + 1) * interval
            while ti < len(times) and times[ti] < t_end:
                ti += 1
            last_t, last_v = times[ti - 1], trace.values[ti - 1]
        elif start + i * interval < last_t + trace.step:
            values[i] = last_v
    return Grid(trace, start, float(interval), values)

"""Trace loading: every format, gaps never read as zero, the replay grid."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edgescaler.replay.errors import TraceError
from edgescaler.replay.traces import (
    ALIBABA_HEADER,
    ALIBABA_HOLE_SECONDS,
    Trace,
    load,
    to_grid,
)

TRACES = Path(__file__).resolve().parent.parent / "fixtures" / "traces"


def test_nasa_layout_skips_unobserved_minutes_but_keeps_observed_zeros() -> None:
    t = load(TRACES / "nasa-like.csv")
    assert t.column == "requests" and t.absolute
    start = datetime(1995, 7, 1, 4, 0, tzinfo=timezone.utc).timestamp()  # 00:00 EDT
    # 00:02 has observed=0 (a gap); 00:03 is an observed zero (a quiet minute); 00:04 is missing
    assert [x - start for x in t.times] == [0, 60, 180, 300]
    assert list(t.values) == [42, 61, 0, 55]
    assert t.dropped == 1 and t.step == 60
    grid = to_grid(t, 60)
    assert grid.values == [42, 61, None, 0, None, 55]
    assert grid.gaps == 2


def test_azure_layout_is_seconds_from_the_start_and_an_empty_cell_is_a_gap() -> None:
    t = load(TRACES / "azure-like.csv")
    assert t.column == "cpu_usage" and not t.absolute
    assert list(t.times) == [0, 300, 900] and t.step == 300
    # a 5-minute trace on a 1-minute grid: each sample holds for its own step, no longer
    grid = to_grid(t, 60)
    assert len(grid) == 16
    assert grid.values[:5] == [6_000_000.0] * 5
    assert grid.values[5:10] == [6_200_000.0] * 5
    assert grid.values[10:15] == [None] * 5  # the empty cell at 600 s
    assert grid.values[15] == 6_400_000.0


def test_column_choice_and_a_file_without_a_trailing_newline() -> None:
    t = load(TRACES / "azure-like.csv", column="assigned_mem")
    assert t.column == "assigned_mem" and list(t.values)[:2] == [2_000_000.0, 2_000_100.0]
    assert list(load(TRACES / "no-trailing-newline.csv").values) == [1.0, 3.0]
    with pytest.raises(TraceError, match=r"azure-like.csv: no column 'cpu' \(columns: "):
        load(TRACES / "azure-like.csv", column="cpu")


def test_plain_csv_iso_timestamps_nan_and_inf_are_gaps() -> None:
    t = load(TRACES / "plain.csv")
    assert t.column == "value" and t.dropped == 2
    assert list(t.values) == [10, 14.5, 12]
    assert to_grid(t, 60).values == [10, None, 14.5, None, 12]


def test_unix_seconds_and_a_grid_coarser_than_the_trace_averages() -> None:
    t = load(TRACES / "unix-seconds.csv")
    assert t.absolute and t.times[0] == 1_795_000_000 and t.step == 30
    assert to_grid(t, 60).values == [4.0, 8.0]  # means of 3,5 and 7,9


def test_prometheus_query_range_json() -> None:
    t = load(TRACES / "query-range.json")
    assert t.column == "edge_load" and t.absolute and t.dropped == 1
    assert list(t.values) == [10, 12, 15]
    assert to_grid(t, 60).values == [10, 12, None, None, 15]


def _alibaba(tmp_path: Path, rows: int) -> Path:
    lines = [",".join(ALIBABA_HEADER)]
    lines += [f"{20 + (i % 7)},{80},{40},{30},{5}" for i in range(rows)]
    f = tmp_path / "alibaba.csv"
    f.write_text("\n".join(lines) + "\n")
    return f


def test_alibaba_layout_has_30s_rows_and_its_known_hole(tmp_path: Path) -> None:
    t = load(_alibaba(tmp_path, 4740))
    assert t.column == "cpu_util_percent" and not t.absolute and t.step == 30
    assert t.dropped == 10  # rows 4718-4727 average only a few machines
    assert t.times[4717] == 4717 * 30
    assert t.times[4718] == 4728 * 30 + ALIBABA_HOLE_SECONDS  # the clock jumps over the hole
    grid = to_grid(t, 60)
    hole = [i for i, v in enumerate(grid.values) if v is None]
    assert (hole[0], hole[-1]) == (2359, 2675)  # the bad rows and the 5.2 h hole


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no-timestamp.csv", r"no-timestamp.csv: no timestamp column \(expected one of"),
        ("bad-timestamp.csv", r"bad-timestamp.csv:3: timestamp: 'yesterday' is not a timestamp"),
        ("not-increasing.csv", r"not-increasing.csv:3: timestamp: not after the previous row"),
        ("query-range-two-series.json", r"2 series in the answer, expected 1"),
        ("missing.csv", r"missing.csv: cannot read"),
    ],
)
def test_bad_traces_are_one_line_errors_naming_file_and_row(name: str, message: str) -> None:
    with pytest.raises(TraceError, match=message) as info:
        load(TRACES / name)
    assert "\n" not in str(info.value)


def test_the_grid_of_a_single_sample_and_a_bad_interval() -> None:
    t = Trace("x", "v", [100.0], [3.0], 60.0, True)
    grid = to_grid(t, 60)
    assert grid.values == [3.0] and grid.time(0) == 100.0
    with pytest.raises(ValueError):
        to_grid(t, 0)
    assert not math.isnan(grid.values[0] or math.nan)


# -- hostile trace files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"data": ' + "[" * 5000 + "]" * 5000 + "}", "nested more than 64 levels deep"),
        (
            '{"data": {"resultType": "matrix", "result": [{"values": [[1, "'
            + "1" * 5000
            + '"]]}]}, "n": '
            + "9" * 50
            + "}",
            "a number with 50 digits",
        ),
        ("timestamp,value\n" + "x" * 200_000 + ",1\n", "not a readable CSV"),
        ("timestamp,value\n" + "y" * 100_000 + ",1\n", "is not a timestamp"),
        ("a" * 50_000 + ",b\n1,2\n", "no timestamp column"),
    ],
)
def test_a_hostile_trace_is_one_short_error(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(content)
    with pytest.raises(TraceError) as info:
        load(path)
    assert expected in str(info.value) and len(str(info.value)) < 300, str(info.value)[:400]


def test_a_fifo_is_refused_not_read(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "trace.csv")  # reading it would block for ever
    with pytest.raises(TraceError, match="not a regular file"):
        load(tmp_path / "trace.csv")

"""``edgescaler replay`` end to end: the table, ``--json`` exactly, seeds, errors, ``--plot``."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import pytest

from edgescaler.cli import main as cli

REPO = Path(__file__).resolve().parents[2]

POLICY = (REPO / "policies" / "edge-predictive.yaml").read_text()


def write_trace(path: Path, days: int = 2, step: int = 300, absolute: bool = True) -> Path:
    """A daily cycle between 20 and 80 load units, with a burst on the last afternoon."""
    t0 = 1_795_000_000 - 1_795_000_000 % 86400 if absolute else 0
    lines = ["timestamp,load"]
    for i in range(days * 86400 // step):
        t = i * step
        hour = (t % 86400) / 3600
        load = 50 - 30 * math.cos(2 * math.pi * hour / 24)
        if t > (days - 1) * 86400 + 14 * 3600 and t < (days - 1) * 86400 + 15 * 3600:
            load *= 1.6
        lines.append(f"{t0 + t},{load:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("target_per_node: 1.4", "target_per_node: 10"))
    return write_trace(tmp_path / "trace.csv"), policy


def replay(trace: Path, policy: Path, *extra: str) -> list[str]:
    return [
        "replay",
        "--trace",
        str(trace),
        "--policy",
        str(policy),
        "--per-node",
        "10",
        *extra,
    ]


# The scores issue 9 specifies, in its order: the --json contract.
FIELDS = (
    "unmet_node_minutes",
    "unmet_minutes",
    "nodes_added",
    "node_hours",
    "scale_out_calls",
    "largest_step",
)


def test_json_prints_exactly_the_scores(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(replay(*setup, "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["policy", "oracle", "baselines"]
    assert list(out["baselines"]) == ["target_tracking", "step", "threshold"]
    for s in (out["policy"], out["oracle"], *out["baselines"].values()):
        assert list(s) == list(FIELDS)
        assert all(isinstance(v, int | float) for v in s.values())
    loads = [float(line.split(",")[1]) for line in setup[0].read_text().splitlines()[1:]]
    peak, first = max(math.ceil(v / 10) for v in loads), math.ceil(loads[0] / 10)
    assert out["oracle"]["nodes_added"] == peak - first  # exactly what the burst needs
    assert out["policy"]["nodes_added"] >= out["oracle"]["nodes_added"]


def test_the_table_and_seeds(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(replay(*setup, "--seeds", "3", "--join-delay", "5m-15m")) == 0
    out = capsys.readouterr().out
    assert "mean over seeds 1-3" in out and "join delay 5m-15m" in out
    lines = out.splitlines()
    table = lines[lines.index("") + 1 :]
    head = ["unmet", "node-min", "unmet", "min", "nodes", "added", "node-hours", "calls", "max"]
    assert table[0].split() == [*head, "step"]
    rows = [line.split()[0] for line in table[1:7]]
    assert rows == ["policy", "target_tracking", "step", "threshold", "oracle", "policy:"]
    assert "x target tracking" in out and "x the oracle" in out
    assert "count nodes differently" not in out


def test_a_policy_in_other_units_is_flagged(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    trace, policy = setup
    assert cli([*replay(trace, policy)[:-1], "20"]) == 0
    out = capsys.readouterr().out
    assert "note: rule 0 counts 10 per node but --per-node is 20" in out


def test_failures_and_idle_scale_in(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(replay(*setup, "--json", "--failure-rate", "1")) == 0
    failing = json.loads(capsys.readouterr().out)
    assert failing["policy"]["nodes_added"] == 0 and failing["policy"]["scale_out_calls"] > 0
    assert cli(replay(*setup, "--json", "--scale-in", "idle:1h")) == 0
    idle = json.loads(capsys.readouterr().out)
    assert cli(replay(*setup, "--json")) == 0
    kept = json.loads(capsys.readouterr().out)
    assert idle["policy"]["node_hours"] < kept["policy"]["node_hours"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--per-node", "0"], "--per-node: must be a positive number"),
        (["--interval", "soon"], "--interval: 'soon' is not a duration"),
        (["--scale-in", "sometimes"], "--scale-in: 'sometimes': expected none or idle:DURATION"),
        (["--failure-rate", "2"], "--failure-rate: must be within 0..1"),
        (["--seeds", "0"], "--seeds: must be within 1..100"),
        (["--column", "cpu"], "no column 'cpu'"),
        (["--metric", "cpu"], "has no metric 'cpu'"),
        (["--interval", "7m"], "history step 1m is not a multiple of the replay interval (7m)"),
    ],
)
def test_bad_options_are_one_line_errors(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert cli(replay(*setup, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("edgescaler: ")


def test_a_bad_policy_or_trace_file(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, policy = setup
    assert cli(replay(trace, tmp_path / "nope.yaml")) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text(POLICY.replace("max_step: 10", "max_step: 0"))
    assert cli(replay(trace, broken)) == 2
    assert "limits.max_step" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,load\nnot-a-time,3\n")
    assert cli(replay(bad, policy)) == 2
    assert "bad.csv:2: timestamp: 'not-a-time' is not a timestamp" in capsys.readouterr().err


def test_a_plot_that_cannot_be_written_is_refused_before_the_replay(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "no-such-dir" / "replay.png"
    assert cli(replay(*setup, "--plot", str(out))) == 2
    err = capsys.readouterr().err
    assert err == f"edgescaler: --plot: {out.parent}: no such directory\n"


def test_a_plot_format_matplotlib_does_not_write_is_refused_before_the_replay(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to run the whole replay, then fail in savefig as an internal error (exit 1)."""
    out = tmp_path / "replay.xyz"
    assert cli(replay(*setup, "--plot", str(out))) == 2
    err = capsys.readouterr().err
    assert "'replay.xyz': not a format matplotlib writes" in err and "png" in err
    assert err.count("\n") == 1 and not out.exists()


def test_a_trace_spanning_too_many_grid_points_is_refused_unallocated(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    far = tmp_path / "far.csv"
    far.write_text("timestamp,load\n100000000,3\n99999999999,4\n")
    assert cli(replay(far, setup[1], "--interval", "1s")) == 2
    err = capsys.readouterr().err
    assert "grid points" in err and "longer --interval" in err and err.count("\n") == 1


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("absolute", [True, False])
def test_plot_writes_a_readable_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], absolute: bool
) -> None:
    try:
        import matplotlib
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but matplotlib is missing", pytrace=False)
        pytest.skip("matplotlib is not installed")
    trace = write_trace(tmp_path / "t.csv", absolute=absolute)
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.replace("target_per_node: 1.4", "target_per_node: 10"))
    out = tmp_path / "replay.png"
    assert cli(replay(trace, policy, "--plot", str(out))) == 0
    assert f"plot: {out}" in capsys.readouterr().out
    width, height = png_size(out)
    assert width >= 1200 and height >= 800
    import matplotlib.image

    pixels = matplotlib.image.imread(str(out))
    colours = {tuple(p) for p in pixels[::7, ::7].reshape(-1, pixels.shape[-1]).round(2)}
    assert len(colours) > 30  # lines, fills, markers and text, not an empty canvas

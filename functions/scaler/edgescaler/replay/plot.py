"""``--plot``: one PNG that shows at a glance what the policy did to the load.

Top: the whole replay, in nodes — demand (its range per pixel, grey), the policy's ready nodes
(green) and nodes asked for (ready + joining, orange dashes), its forecast (purple), target
tracking's and the oracle's ready nodes for comparison, every scale-out (triangles; failed ones
as red crosses) and a red tick under each stretch of unmet demand. Bottom: the six hours where
target tracking left the most demand unmet (the hardest moment of the trace), point by point,
with each scale-out's size and the policy's unmet demand shaded red.

matplotlib is an optional extra (``pip install 'edgescaler[replay]'``), imported here only.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from edgescaler.outside import quote
from edgescaler.policy import Policy
from edgescaler.replay.compare import Comparison
from edgescaler.replay.errors import ReplayError
from edgescaler.replay.simulator import Run, Setup, Timeline
from edgescaler.replay.traces import Grid

BUCKETS = 1600  # points per panel width
ZOOM = timedelta(hours=6)
NAN = math.nan

COLORS = {
    "demand": "#9e9e9e",
    "ready": "#2e7d32",
    "requested": "#ef6c00",
    "forecast": "#7b1fa2",
    "tt": "#c62828",
    "oracle": "#212121",
    "unmet": "#e53935",
}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ReplayError("--plot needs matplotlib: pip install 'edgescaler[replay]'") from None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _x(grid: Grid, times: Sequence[float], unit: float = 86400.0) -> list[Any]:
    """Datetimes for absolute traces; for relative ones, ``unit`` seconds since the start."""
    if grid.trace.absolute:
        return [datetime.fromtimestamp(t, tz=timezone.utc) for t in times]
    return [(t - grid.start) / unit for t in times]


def _buckets(n: int, width: int) -> list[tuple[int, int]]:
    size = max(1, math.ceil(n / width))
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def _reduce(
    values: Sequence[float | int | None], spans: list[tuple[int, int]], fn: Any
) -> list[float]:
    out = []
    for a, b in spans:
        chunk = [v for v in values[a:b] if v is not None]
        out.append(float(fn(chunk)) if chunk else NAN)
    return out


def _worst_window(tl: Timeline, points: int) -> tuple[int, int]:
    """A ``points``-long stretch centred on the third of that length with the most unmet
    node-minutes of ``tl`` (the hardest moment, with its run-up and aftermath)."""
    unmet = [
        max(0, d - r) if d is not None else 0 for d, r in zip(tl.demand, tl.ready, strict=True)
    ]
    n = len(unmet)
    if n <= points:
        return 0, n
    core = max(1, points // 3)
    best, best_i, s = -1, 0, sum(unmet[:core])
    for i in range(n - core + 1):
        if i:
            s += unmet[i + core - 1] - unmet[i - 1]
        if s > best:
            best, best_i = s, i
    lo = min(max(0, best_i + core // 2 - points // 2), n - points)
    return lo, lo + points


def _floor(*series: Sequence[float]) -> float:
    """A y-axis floor a little below the lowest value (0 when the data comes near it)."""
    low = min((v for ser in series for v in ser if not math.isnan(v)), default=0.0)
    high = max((v for ser in series for v in ser if not math.isnan(v)), default=1.0)
    floor = low - 0.15 * (high - low) - 1
    return 0.0 if floor < 0.25 * high else math.floor(floor)


def check_output(out: Path) -> None:
    """ReplayError unless matplotlib is there, ``out``'s directory exists and matplotlib
    writes its format (checked before a replay's minutes of simulation, not after them)."""
    plt = _pyplot()
    if not out.parent.is_dir():
        raise ReplayError(f"--plot: {out.parent}: no such directory")
    formats = plt.gcf().canvas.get_supported_filetypes()
    plt.close("all")
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ReplayError(
            f"--plot: {quote(out.name)}: not a format matplotlib writes "
            f"({', '.join(sorted(formats))})"
        )


def draw(result: Comparison, grid: Grid, setup: Setup, policy: Policy, out: Path) -> None:
    """Write the PNG to ``out`` (parent directories must exist)."""
    plt = _pyplot()
    runs = result.runs
    pol, tt, orc = runs["policy"], runs.get("target_tracking"), runs["oracle"]
    tl = pol.timeline
    if tl is None or orc.timeline is None:
        raise ReplayError("the replay kept no timeline to plot")
    n = len(tl.times)
    zoom_n = max(1, round(ZOOM.total_seconds() / grid.interval))
    lo, hi = _worst_window(tt.timeline if tt and tt.timeline else tl, zoom_n)

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(16, 9), gridspec_kw={"height_ratios": [3, 2]}, layout="constrained"
    )
    spans = _buckets(n, BUCKETS)
    xs = _x(grid, [tl.times[a] for a, _ in spans])
    dmax = _reduce(tl.demand, spans, max)
    dmin = _reduce(tl.demand, spans, min)
    # the demand's range within each pixel, and its top edge (what capacity has to cover)
    top.fill_between(xs, dmin, dmax, step="post", color=COLORS["demand"], alpha=0.45, lw=0)
    top.step(xs, dmax, where="post", color=COLORS["demand"], lw=0.7, label="demand")
    top.step(
        xs,
        _reduce(tl.ready, spans, max),
        where="post",
        color=COLORS["ready"],
        lw=1.8,
        label="ready",
    )
    top.step(
        xs,
        _reduce(tl.requested, spans, max),
        where="post",
        color=COLORS["requested"],
        lw=1.2,
        ls="--",
        label="ready + joining",
    )
    if any(f is not None for f in tl.forecast):
        top.plot(
            xs,
            _reduce(tl.forecast, spans, max),
            color=COLORS["forecast"],
            lw=0.8,
            alpha=0.8,
            label="forecast peak",
        )
    if tt is not None and tt.timeline is not None:
        top.step(
            xs,
            _reduce(tt.timeline.ready, spans, max),
            where="post",
            color=COLORS["tt"],
            lw=1.0,
            alpha=0.8,
            label="target tracking: ready",
        )
    top.step(
        xs,
        _reduce(orc.timeline.ready, spans, max),
        where="post",
        color=COLORS["oracle"],
        lw=1.0,
        ls=":",
        label="oracle: ready",
    )
    _calls(top, grid, pol, annotate=False)
    unmet_x = [
        x
        for x, (a, b) in zip(xs, spans, strict=True)
        if any(d is not None and d > r for d, r in zip(tl.demand[a:b], tl.ready[a:b], strict=True))
    ]
    if unmet_x:
        # at the foot of the axes, whatever the y range
        top.plot(
            unmet_x,
            [0.012] * len(unmet_x),
            "|",
            color=COLORS["unmet"],
            ms=12,
            mew=1.5,
            label="unmet demand",
            transform=top.get_xaxis_transform(),
        )
    top.axvspan(
        _x(grid, [tl.times[lo]])[0],
        _x(grid, [tl.times[hi - 1]])[0],
        color="#1565c0",
        alpha=0.08,
        lw=0,
    )
    top.set_ylabel("nodes")
    top.set_ylim(bottom=_floor(dmin, _reduce(tl.ready, spans, min)))
    top.grid(alpha=0.3)
    s, o = pol.score, orc.score
    summary = (
        f"{policy.name}: unmet {s.unmet_node_minutes:,.0f} node-min, +{s.nodes_added:,.0f} nodes"
    )
    if tt is not None:
        b = tt.score
        summary += f"  |  target tracking: {b.unmet_node_minutes:,.0f}, +{b.nodes_added:,.0f}"
    summary += f"  |  oracle: {o.unmet_node_minutes:,.0f}, +{o.nodes_added:,.0f}"
    top.set_title(
        f"{policy.name} on {Path(grid.trace.source).name} ({grid.trace.column}), per node "
        f"{setup.per_node:g}, join delay {setup.join_delay}, seed {setup.seed}\n{summary}",
        fontsize=11,
    )

    # -- the hardest six hours, point by point ----------------------------------------------
    idx = range(lo, hi)
    zx = _x(grid, [tl.times[i] for i in idx], 3600.0)
    demand: list[float] = [NAN if (d := tl.demand[i]) is None else float(d) for i in idx]
    ready = [tl.ready[i] for i in idx]
    bottom.step(zx, demand, where="post", color=COLORS["demand"], lw=1.0, label="demand")
    bottom.fill_between(
        zx,
        ready,
        demand,
        where=[d > r for d, r in zip(demand, ready, strict=True)],
        step="post",
        color=COLORS["unmet"],
        alpha=0.35,
        lw=0,
        label="unmet",
    )
    bottom.step(zx, ready, where="post", color=COLORS["ready"], lw=2.0, label="ready")
    bottom.step(
        zx,
        [tl.requested[i] for i in idx],
        where="post",
        color=COLORS["requested"],
        lw=1.2,
        ls="--",
        label="ready + joining",
    )
    fc: list[float] = [NAN if (f := tl.forecast[i]) is None else f for i in idx]
    if any(not math.isnan(f) for f in fc):
        bottom.plot(zx, fc, color=COLORS["forecast"], lw=0.9, alpha=0.8, label="forecast peak")
    if tt is not None and tt.timeline is not None:
        bottom.step(
            zx,
            [tt.timeline.ready[i] for i in idx],
            where="post",
            color=COLORS["tt"],
            lw=1.0,
            alpha=0.8,
            label="target tracking: ready",
        )
    bottom.step(
        zx,
        [orc.timeline.ready[i] for i in idx],
        where="post",
        color=COLORS["oracle"],
        lw=1.0,
        ls=":",
        label="oracle: ready",
    )
    _calls(
        bottom,
        grid,
        pol,
        annotate=True,
        window=(tl.times[lo], tl.times[hi - 1] + grid.interval),
        unit=3600.0,
    )
    bottom.set_ylabel("nodes")
    bottom.set_ylim(bottom=_floor([d for d in demand if not math.isnan(d)], ready))
    bottom.grid(alpha=0.3)
    bottom.set_title(
        "zoom: the six hours around where target tracking left the most demand unmet",
        fontsize=10,
    )
    handles: dict[str, Any] = {}
    for ax in (top, bottom):
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=9)
    if grid.trace.absolute:
        mdates: Any = importlib.import_module("matplotlib.dates")
        for ax in (top, bottom):
            loc = mdates.AutoDateLocator()
            ax.xaxis.set_major_locator(loc)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=timezone.utc))
        bottom.set_xlabel("time (UTC)")
    else:
        top.set_xlabel("days since the start of the trace")
        bottom.set_xlabel("hours since the start of the trace")
    try:
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise ReplayError(f"--plot: {out}: {exc.strerror or type(exc).__name__}") from None
    finally:
        plt.close(fig)


def _calls(
    ax: Any,
    grid: Grid,
    run: Run,
    *,
    annotate: bool,
    window: tuple[float, float] | None = None,
    unit: float = 86400.0,
) -> None:
    ok = [
        e for e in run.events if not e.fails and (window is None or window[0] <= e.at <= window[1])
    ]
    bad = [e for e in run.events if e.fails and (window is None or window[0] <= e.at <= window[1])]
    tl = run.timeline
    assert tl is not None

    def level(t: float) -> float:
        i = min(len(tl.requested) - 1, max(0, round((t - grid.start) / grid.interval)))
        return float(tl.requested[i])

    if ok:
        ax.plot(
            _x(grid, [e.at for e in ok], unit),
            [level(e.at) for e in ok],
            "^",
            color=COLORS["requested"],
            ms=6,
            mec="black",
            mew=0.4,
            label="scale-out",
        )
    if bad:
        ax.plot(
            _x(grid, [e.at for e in bad], unit),
            [level(e.at) for e in bad],
            "x",
            color=COLORS["unmet"],
            ms=7,
            mew=1.5,
            label="failed scale-out",
        )
    if annotate:
        for e in ok + bad:
            ax.annotate(
                f"+{e.add}",
                (_x(grid, [e.at], unit)[0], level(e.at)),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=8,
            )

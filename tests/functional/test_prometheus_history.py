"""PrometheusSource.history (one query_range) against a real Prometheus, and the pipeline
handing that history to a predictive rule."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from edgescaler import pipeline
from edgescaler.actuator import DryRunActuator
from edgescaler.cloud.model import Node
from edgescaler.errors import MetricError
from edgescaler.metrics.prometheus import PrometheusSource
from edgescaler.metrics.series import MAX_POINTS, HistorySource
from edgescaler.store.memory import MemoryStore
from edgescaler.triggers import RunRequest
from tests.support.builders import policy
from tests.support.prometheus import FaultServer, PrometheusLauncher, PromServer, Series

needs_prometheus = pytest.mark.prometheus
MIN = timedelta(minutes=1)


class Backfilled:
    def __init__(self, server: PromServer, end: int) -> None:
        self.url = server.url
        self.end = end  # a whole minute, the newest sample of es_hist


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    end = int(time.time()) // 60 * 60 - 60
    start = end - 2 * 3600
    hist = [
        (float(t), float((t - start) // 60))  # the minute number: 0, 1, ... 120
        for t in range(start, end + 1, 60)
        if not end - 1800 <= t < end - 1200  # a 10-minute hole 30 minutes ago
    ]
    hist = [(t, math.nan if t == end - 300 else v) for t, v in hist]
    series = [
        Series("es_hist", {"edge": "true"}, hist),
        Series("es_two", {"node": "a"}, [(float(end), 1.0)]),
        Series("es_two", {"node": "b"}, [(float(end), 2.0)]),
    ]
    with PrometheusLauncher(tmp_path_factory.mktemp("prom-history")) as launcher:
        yield Backfilled(launcher.start(series), end)


@pytest.fixture
def source(prom: Backfilled) -> Iterator[PrometheusSource]:
    with PrometheusSource(prom.url, timeout=5.0) as src:
        yield src


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


@needs_prometheus
def test_history_is_the_series_on_the_grid_with_gaps(
    source: PrometheusSource, prom: Backfilled
) -> None:
    assert isinstance(source, HistorySource)
    end = at(prom.end)
    s = source.history("load", 'es_hist{edge="true"}', start=end - 60 * MIN, end=end, step=MIN)
    assert s.metric == "load" and s.start == end - 60 * MIN and s.end == end and len(s) == 61
    assert s.values[0] == 60 and s.values[-1] == 120
    # Prometheus looks back up to 5 minutes for a sample, so a hole shorter than that is filled
    # with the last value; the 10-minute hole shows from its 5th minute on. NaN is a gap.
    hole = [i for i, v in enumerate(s.values) if v is None]
    assert hole == [35, 36, 37, 38, 39, 55]
    assert s.values[29] == 89 and s.values[34] == 89  # the last sample before the hole
    coarse = source.history("load", "es_hist", start=end - 60 * MIN, end=end, step=10 * MIN)
    assert coarse.values == [60, 70, 80, 89, 100, 110, 120]


@needs_prometheus
def test_history_errors_are_metric_errors(source: PrometheusSource, prom: Backfilled) -> None:
    end = at(prom.end)
    with pytest.raises(MetricError) as info:
        source.history("x", "es_nothing", start=end - 10 * MIN, end=end, step=MIN)
    assert info.value.reason == "empty"
    with pytest.raises(MetricError) as info:
        source.history("x", "es_two", start=end - 10 * MIN, end=end, step=MIN)
    assert info.value.reason == "multiple_series" and 'node="b"' in info.value.detail
    with pytest.raises(MetricError) as info:
        source.history("x", "sum(", start=end - 10 * MIN, end=end, step=MIN)
    assert info.value.reason == "http_error" and "HTTP 400" in info.value.detail
    with pytest.raises(ValueError, match="timezone-aware"):
        source.history("x", "es_hist", start=datetime(2026, 1, 1), end=end, step=MIN)


@needs_prometheus
def test_history_is_capped_to_the_newest_points(source: PrometheusSource, prom: Backfilled) -> None:
    end = at(prom.end)
    s = source.history("load", "es_hist", start=end - 30 * timedelta(days=1), end=end, step=MIN)
    assert len(s) == MAX_POINTS and s.end == end and s.values[-1] == 120


def test_history_of_a_broken_server_is_a_metric_error(fault_server: FaultServer) -> None:
    fault_server.reply(503, '{"status":"error","errorType":"unavailable","error":"overloaded"}')
    end = datetime.now(timezone.utc)
    with PrometheusSource(fault_server.url, timeout=2.0) as src, pytest.raises(MetricError) as info:
        src.history("load", "es_hist", start=end - 10 * MIN, end=end, step=MIN)
    assert info.value.reason == "http_error" and "overloaded" in info.value.detail
    assert "/api/v1/query_range" in fault_server.requests[0]


class Cloud:
    """Just enough of the CS API for a dry run: six ready edge workers, no tasks."""

    def list_nodes(self, cluster_id: str) -> Sequence[Node]:
        worker = Node("i-1", None, "Worker", "running", None, "ens.sn1.tiny", None, None)
        return [worker] * 6

    def close(self) -> None:
        pass

    def list_tasks(self, cluster_id: str) -> Sequence[Any]:
        return []

    def describe_task(self, task_id: str) -> Any:
        raise AssertionError("no task to describe")

    def scale_out(self, cluster_id: str, body: Mapping[str, Any]) -> Any:
        raise AssertionError("a dry run never scales out")


@needs_prometheus
def test_the_pipeline_gives_predictive_rules_their_history(prom: Backfilled) -> None:
    p = policy(
        metrics={"load": {"query": 'es_hist{edge="true"}', "max_age": "10m"}},
        rules=[
            {
                "type": "predictive",
                "metric": "load",
                "target_per_node": 10,
                "horizon": "30m",
                "history": {"window": "1h", "step": "1m"},
                "seasons": [],
                "surprise_quantile": None,
                "max_growth": None,
                "uncertainty": 0,
                "trend_damping": 1,
                "noise_window": "1h",
            }
        ],
        limits={"min_nodes": 0, "max_nodes": 100, "max_step": 50},
    )
    src = PrometheusSource(prom.url, timeout=5.0)
    deps = pipeline.Deps(
        store=MemoryStore(),
        cloud_for=lambda region: Cloud(),
        metrics_for=lambda pol: src,
        actuator=DryRunActuator(),
    )
    now = at(prom.end + 30)
    try:
        rep = pipeline.run(RunRequest("manual", None), [p], deps, now=now, dry_run=True)
    finally:
        src.close()
    (out,) = rep.outcomes
    assert out.decision is not None
    f = out.decision.to_dict()["rules"][0]["forecast"]
    assert f["points"] == 61 and f["level"] == 116  # median of 111-120 but the NaN at 115
    assert f["trend"] == pytest.approx(30)  # one per minute, over the 30-minute horizon
    # ceil(146 / 10) = 15 nodes for the peak, 6 there: the dry run would add 9
    assert out.outcome == "dry_run" and out.add == 9

"""PrometheusSource against a real Prometheus with backfilled series, and against faulty servers.

Needs the ``tests.support.prometheus`` plugin (``-p tests.support.prometheus``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from edgescaler.errors import ConfigError, MetricError
from edgescaler.metrics.prometheus import PrometheusSource
from edgescaler.sensitive import Secret
from tests.support.prometheus import (
    FaultServer,
    PrometheusLauncher,
    PromServer,
    Series,
)

needs_prometheus = pytest.mark.prometheus  # tests that start the real server

MINUTE = timedelta(minutes=1)
STEP = 15


def _series(name: str, labels: dict[str, str], start: int, end: int, last: float) -> Series:
    """Samples every STEP s from ``start`` to ``end`` (inclusive); 10.0 except ``last`` at end."""
    stamps = list(range(start, end + 1, STEP))
    if stamps[-1] != end:
        stamps.append(end)
    return Series(name, labels, [(float(t), 10.0) for t in stamps[:-1]] + [(float(end), last)])


class Backfilled:
    """The module's server and the wall-clock second its series were laid out around."""

    def __init__(self, server: PromServer, t0: int) -> None:
        self.server = server
        self.t0 = t0
        self.url = server.url


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    t0 = int(time.time())
    start = t0 - 1800
    series = [
        _series("es_load", {"edge": "true"}, start, t0 - 15, 42.5),
        _series("es_cpu", {"edge": "true", "node": "a"}, start, t0 - 15, 1.5),
        _series("es_cpu", {"edge": "true", "node": "b"}, start, t0 - 15, 2.25),
        _series("es_cpu", {"edge": "true", "node": "c"}, start, t0 - 15, 4.0),
        _series("es_old", {}, start, t0 - 600, 5.0),  # beyond the 5 min lookback
        _series("es_nan", {}, start, t0 - 15, math.nan),
        _series("es_inf", {}, start, t0 - 15, math.inf),
        _series("es_lagging", {"edge": "true"}, start, t0 - 180, 3.0),
    ]
    with PrometheusLauncher(tmp_path_factory.mktemp("prom")) as launcher:
        yield Backfilled(launcher.start(series), t0)


@pytest.fixture
def source(prom: Backfilled) -> Iterator[PrometheusSource]:
    with PrometheusSource(prom.url, timeout=5.0) as src:
        yield src


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def read_error(src: PrometheusSource, query: str, **kwargs: object) -> MetricError:
    params: dict[str, object] = {"max_age": 2 * MINUTE, "now": utcnow(), **kwargs}
    with pytest.raises(MetricError) as info:
        src.read("m", query, **params)  # type: ignore[arg-type]
    assert info.value.metric == "m"
    assert "\n" not in info.value.detail
    return info.value


# -- values -------------------------------------------------------------------------------


@needs_prometheus
def test_single_series_value_timestamp_and_source(source: PrometheusSource) -> None:
    before = utcnow()
    reading = source.read("load", 'es_load{edge="true"}', max_age=2 * MINUTE, now=before)
    after = utcnow()

    assert reading.metric == "load"
    assert reading.value == 42.5
    assert reading.source == "prometheus"
    assert reading.timestamp.utcoffset() == timedelta(0)
    # Without a freshness query the timestamp is the server's evaluation time.
    assert before - timedelta(seconds=1) <= reading.timestamp <= after + timedelta(seconds=1)


@needs_prometheus
def test_sum_over_labelled_series(source: PrometheusSource) -> None:
    reading = source.read("cpu", 'sum(es_cpu{edge="true"})', max_age=2 * MINUTE, now=utcnow())
    assert reading.value == 7.75


@needs_prometheus
@pytest.mark.parametrize(
    ("query", "expected"),
    [('scalar(es_load{edge="true"})', 42.5), ("7", 7.0), ("-1.5 * 2", -3.0)],
)
def test_scalar_results(source: PrometheusSource, query: str, expected: float) -> None:
    assert source.read("s", query, max_age=2 * MINUTE, now=utcnow()).value == expected


# -- empty, NaN, several series, wrong result types -----------------------------------------


@needs_prometheus
@pytest.mark.parametrize("query", ["es_unknown", "es_old", 'es_load{edge="false"}'])
def test_no_series_is_empty_not_zero(source: PrometheusSource, query: str) -> None:
    err = read_error(source, query)
    assert err.reason == "empty"
    assert query in err.detail
    assert "127.0.0.1" in err.detail


@needs_prometheus
@pytest.mark.parametrize(
    ("query", "shown"),
    [("es_nan", "NaN"), ("es_inf", "+Inf"), ("-es_inf", "-Inf"), ("scalar(es_cpu)", "NaN")],
)
def test_non_finite_values(source: PrometheusSource, query: str, shown: str) -> None:
    err = read_error(source, query)
    assert err.reason == "nan"
    assert shown in err.detail


@needs_prometheus
def test_several_series(source: PrometheusSource) -> None:
    err = read_error(source, 'es_cpu{edge="true"}')
    assert err.reason == "multiple_series"
    assert "3 series" in err.detail
    for node in "abc":
        assert f'node="{node}"' in err.detail


@needs_prometheus
@pytest.mark.parametrize(("query", "kind"), [('"foo"', "string"), ("es_load[1m]", "matrix")])
def test_string_and_matrix_results_are_bad_responses(
    source: PrometheusSource, query: str, kind: str
) -> None:
    err = read_error(source, query)
    assert err.reason == "bad_response"
    assert kind in err.detail


# -- freshness ------------------------------------------------------------------------------

LAGGING = 'es_lagging{edge="true"}'
LAGGING_NEWEST = 'max(timestamp(es_lagging{edge="true"}))'


@needs_prometheus
def test_freshness_query_makes_old_data_stale(source: PrometheusSource) -> None:
    # The plain query still answers (3 min is inside the 5 min lookback) ...
    assert source.read("lag", LAGGING, max_age=MINUTE, now=utcnow()).value == 3.0
    # ... but its newest sample is 3 minutes old.
    err = read_error(source, LAGGING, max_age=MINUTE, freshness_query=LAGGING_NEWEST)
    assert err.reason == "stale"
    assert "newest sample" in err.detail
    age = float(err.detail.split(" is ")[1].split("s old")[0])
    assert 170 < age < 300


@needs_prometheus
def test_freshness_query_timestamp_becomes_the_reading_timestamp(
    prom: Backfilled, source: PrometheusSource
) -> None:
    reading = source.read(
        "lag", LAGGING, max_age=5 * MINUTE, now=utcnow(), freshness_query=LAGGING_NEWEST
    )
    assert reading.value == 3.0
    assert reading.timestamp == datetime.fromtimestamp(prom.t0 - 180, tz=timezone.utc)


@needs_prometheus
def test_freshness_query_errors_are_reported(source: PrometheusSource) -> None:
    err = read_error(source, LAGGING, freshness_query="max(timestamp(es_unknown))")
    assert err.reason == "empty"
    assert "freshness query" in err.detail


@needs_prometheus
def test_evaluation_time_far_from_now_is_stale(source: PrometheusSource) -> None:
    # A caching front-end or a skewed clock: the answer is stamped 10 minutes before our now ...
    err = read_error(source, "es_load", max_age=2 * MINUTE, now=utcnow() + 10 * MINUTE)
    assert err.reason == "stale"
    assert "evaluation time" in err.detail and "s old" in err.detail
    # ... or 10 minutes after it.
    err = read_error(source, "es_load", max_age=2 * MINUTE, now=utcnow() - 10 * MINUTE)
    assert err.reason == "stale"
    assert "in the future" in err.detail


# -- HTTP and transport failures ------------------------------------------------------------


@needs_prometheus
def test_bad_promql_is_http_400_with_prometheus_message(source: PrometheusSource) -> None:
    err = read_error(source, "sum(")
    assert err.reason == "http_error"
    assert "HTTP 400" in err.detail
    assert "bad_data" in err.detail
    assert "parse error" in err.detail


@needs_prometheus
def test_stopped_server_is_connection_error(prometheus_factory: PrometheusLauncher) -> None:
    server = prometheus_factory.start([])
    src = PrometheusSource(server.url, timeout=2.0)
    assert src.read("m", "vector(1)", max_age=MINUTE, now=utcnow()).value == 1.0  # it was up ...
    server.stop()
    err = read_error(src, "vector(1)")  # ... and now refuses connections
    assert err.reason == "connection_error"
    assert "refused" in err.detail.lower()
    src.close()


def test_a_secret_cut_by_an_excerpt_is_redacted_first(fault_server: FaultServer) -> None:
    """Label sets are shown cut to 120 characters: the cut must come after redaction, or the
    5 characters of the secret that end the excerpt would escape fragment redaction."""
    secret = Secret("Prom-Label-Secret-Value-42")
    value = "x" * 108 + secret.reveal()
    series = [{"metric": {"l": value}, "value": [time.time(), "1"]} for _ in range(2)]
    fault_server.reply(
        200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}})
    )
    err = read_error(PrometheusSource(fault_server.url, timeout=2.0), "up")
    assert err.reason == "multiple_series"
    assert secret.reveal()[:5] not in err.detail


def test_unknown_host_is_connection_error() -> None:
    err = read_error(PrometheusSource("http://prometheus.invalid:9090", timeout=2.0), "up")
    assert err.reason == "connection_error"
    assert "prometheus.invalid:9090" in err.detail


def test_no_answer_is_a_timeout_without_retries(fault_server: FaultServer) -> None:
    fault_server.hang()
    src = PrometheusSource(fault_server.url, timeout=0.5)
    err = read_error(src, "up")
    assert err.reason == "timeout"
    assert "0.5s" in err.detail
    assert len(fault_server.requests) == 1
    src.close()


def test_503_is_http_error_without_retries(fault_server: FaultServer) -> None:
    fault_server.reply(503, "Service Unavailable: too many queries", "text/plain")
    src = PrometheusSource(fault_server.url, timeout=2.0)
    err = read_error(src, "up")
    assert err.reason == "http_error"
    assert "HTTP 503" in err.detail
    assert "too many queries" in err.detail
    assert len(fault_server.requests) == 1  # the library's default would retry 3 times
    src.close()


def test_long_error_body_is_truncated_to_one_line(fault_server: FaultServer) -> None:
    fault_server.reply(502, "<html>\n<body>\n" + "gateway " * 500 + "</body></html>", "text/html")
    err = read_error(PrometheusSource(fault_server.url), "up")
    assert err.reason == "http_error"
    assert "HTTP 502" in err.detail
    assert len(err.detail) <= 300


@pytest.mark.parametrize(
    "body",
    [
        "<html>not json</html>",
        '{"status": "success"}',
        '{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}',
        '{"status":"success","data":{"resultType":"vector","result":[{"value":[1,2]}]}}',
        '{"status":"success","data":{"resultType":"scalar","result":[1, "x"]}}',
        '{"status":"error","data":{"resultType":"vector","result":[]}}',
    ],
    ids=["not-json", "no-data", "no-value", "number-value", "unparsable-value", "status-error"],
)
def test_malformed_200_is_bad_response(fault_server: FaultServer, body: str) -> None:
    fault_server.reply(200, body)
    err = read_error(PrometheusSource(fault_server.url), "up")
    assert err.reason == "bad_response"


def test_a_partial_answer_with_warnings_is_bad_response(fault_server: FaultServer) -> None:
    """Thanos with partial responses, or Prometheus when a remote read failed: status success,
    a value, and warnings that part of the data is missing. Not acted on."""
    now = time.time()
    fault_server.reply(
        200,
        '{"status":"success","warnings":["remote_read: connection refused; partial result"],'
        f'"data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{now},"3"]}}]}}}}',
    )
    err = read_error(PrometheusSource(fault_server.url), "sum(load)")
    assert err.reason == "bad_response" and "partial answer" in str(err), err
    assert "remote_read" in str(err)


def test_an_informational_promql_note_is_not_a_partial_answer(fault_server: FaultServer) -> None:
    now = time.time()
    fault_server.reply(
        200,
        '{"status":"success","warnings":["PromQL info: metric might not be a counter"],'
        f'"data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{now},"3"]}}]}}}}',
    )
    reading = PrometheusSource(fault_server.url).read(
        "load", "sum(load)", max_age=timedelta(minutes=1), now=datetime.now(timezone.utc)
    )
    assert reading.value == 3.0


def test_stale_result_timestamp_from_a_caching_front_end(fault_server: FaultServer) -> None:
    old = time.time() - 3600
    fault_server.reply(
        200,
        '{"status":"success","data":{"resultType":"vector",'
        f'"result":[{{"metric":{{}},"value":[{old},"1"]}}]}}}}',
    )
    err = read_error(PrometheusSource(fault_server.url), "up")
    assert err.reason == "stale"


def test_request_shape_headers_and_no_time_parameter(fault_server: FaultServer) -> None:
    now = time.time()
    fault_server.reply(
        200,
        '{"status":"success","data":{"resultType":"vector",'
        f'"result":[{{"metric":{{"job":"x"}},"value":[{now},"12.5"]}}]}}}}',
    )
    token = "Bearer s3cr3t-t0ken"
    src = PrometheusSource(fault_server.url + "/", headers={"Authorization": token})
    reading = src.read("m", 'sum(up{job="x"})', max_age=MINUTE, now=utcnow())

    assert reading.value == 12.5
    target = urlsplit(fault_server.requests[0])
    assert target.path == "/api/v1/query"
    assert parse_qs(target.query) == {"query": ['sum(up{job="x"})']}  # no time=
    assert fault_server.headers[0]["Authorization"] == token
    assert "s3cr3t" not in repr(src)
    src.close()


def test_credentials_in_url_stay_out_of_errors() -> None:
    src = PrometheusSource("http://admin:hunter2-pass@127.0.0.1:1", timeout=1.0)
    err = read_error(src, "up")
    assert err.reason == "connection_error"
    assert "hunter2" not in str(err)
    assert "hunter2" not in repr(src)


@pytest.mark.parametrize("url", ["prometheus:9090", "ftp://host/", "http://", ""])
def test_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        PrometheusSource(url)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        PrometheusSource("http://127.0.0.1:1").read(
            "m", "es_load", max_age=MINUTE, now=datetime.now()
        )


# -- concurrency and imports ----------------------------------------------------------------


@needs_prometheus
def test_concurrent_reads_from_threads(source: PrometheusSource) -> None:
    queries = {
        'es_load{edge="true"}': 42.5,
        'sum(es_cpu{edge="true"})': 7.75,
        'es_cpu{node="c"}': 4.0,
        "es_lagging": 3.0,
    }

    def one(query: str) -> tuple[str, float | str]:
        try:
            return query, source.read("m", query, max_age=2 * MINUTE, now=utcnow()).value
        except MetricError as exc:
            return query, exc.reason

    jobs = list(queries) * 10 + ["es_unknown", "es_nan"] * 5
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, jobs))

    for query, got in results:
        want = {"es_unknown": "empty", "es_nan": "nan"}.get(query, queries.get(query))
        assert got == want, query


def test_importing_the_module_does_not_import_requests() -> None:
    code = (
        "import sys, edgescaler.metrics.prometheus as m; "
        "m.PrometheusSource('http://127.0.0.1:9090'); "
        "bad = sorted(n for n in ('requests', 'prometheus_api_client', 'urllib3') "
        "if n in sys.modules); print(','.join(bad))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    assert done.stdout.strip() == ""


# -- the environment, read once per session (requests' trust_env, resolved at build) ----------


def _one_series(value: float) -> str:
    return json.dumps(
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": {}, "value": [time.time(), f"{value:g}"]}],
            },
        }
    )


def test_proxy_from_the_environment_carries_every_query(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with FaultServer() as proxy:  # a request sent through a proxy names the absolute URL
        proxy.reply(200, _one_series(4.0))
        monkeypatch.setenv("http_proxy", proxy.url)
        # A host nobody can reach: only the proxy can answer for it.
        src = PrometheusSource("http://prometheus.invalid:9090", timeout=2.0)
        for _ in range(2):  # the second query too: the environment was read once, and kept
            assert src.read("load", "up", max_age=MINUTE, now=utcnow()).value == 4.0
        src.close()
        assert len(proxy.requests) == 2
        assert all(
            r.startswith("http://prometheus.invalid:9090/api/v1/query?") for r in proxy.requests
        )


def test_no_proxy_from_the_environment_is_honoured(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault_server.reply(200, _one_series(5.0))
    with FaultServer() as proxy:
        proxy.reply(200, _one_series(4.0))
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        src = PrometheusSource(fault_server.url, timeout=2.0)
        assert src.read("load", "up", max_age=MINUTE, now=utcnow()).value == 5.0  # direct
        src.close()
        assert proxy.requests == []
        assert len(fault_server.requests) == 1

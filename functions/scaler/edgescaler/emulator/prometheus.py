"""The scripted Prometheus: instant and range queries answered from the scenario's steps.

The query must equal a metric key of the scenario (``timestamp(KEY)`` is answered too); the
value is that of the last step naming the metric whose ``at`` has passed, rendered as Prometheus
does (``"NaN"``, ``"+Inf"``); the sample timestamp is the evaluation time unless the step marks
the metric stale. Anything else is an empty vector. A range query (``/api/v1/query_range``,
for predictive rules' history) evaluates the same at every step from ``start`` to ``end``; steps
before the scenario began have no sample (a gap), and at most :data:`MAX_POINTS` are answered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from edgescaler.emulator.api import ApiError
from edgescaler.emulator.config import ScenarioStep

_TIMESTAMP_QUERY = re.compile(r"^timestamp\((.+)\)$")
MAX_POINTS = 11_000  # Prometheus' own limit of points per series


def _prom_value(value: float) -> str:
    """Prometheus renders samples as strings: ``NaN``, ``+Inf``, ``-Inf``, shortest decimal."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _prom_time(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"cannot parse {raw!r} to a valid timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _params(method: str, raw_query: str, body: bytes) -> tuple[dict[str, str], str]:
    """The parameters of a query request (URL and, for POST, form body) and its ``query``."""
    # Prometheus decodes queries like Go's url.ParseQuery: "+" is a space, unlike signing.
    params = dict(parse_qsl(raw_query, keep_blank_values=True))
    if method == "POST":
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif method != "GET":
        raise ApiError(405, "MethodNotAllowed", "use GET or POST")
    query = params.get("query", "").strip()
    if not query:
        raise ValueError('invalid parameter "query": missing')
    return params, query


def read_request(method: str, raw_query: str, body: bytes) -> tuple[str, float | None]:
    """The ``query`` and ``time`` (None: now) of a ``/api/v1/query`` request.

    Raises :class:`ApiError` 405 for a method other than GET or POST, ``ValueError`` (Prometheus'
    ``bad_data``, see :func:`bad_data`) for a missing query or an unparseable time.
    """
    params, query = _params(method, raw_query, body)
    at = _prom_time(params["time"]) if params.get("time") else None
    return query, at


def read_range_request(method: str, raw_query: str, body: bytes) -> tuple[str, float, float, float]:
    """The ``query``, ``start``, ``end`` and ``step`` (seconds) of a ``/api/v1/query_range``
    request; ``ValueError`` (``bad_data``) for anything missing or out of range."""
    params, query = _params(method, raw_query, body)
    try:
        start, end = _prom_time(params["start"]), _prom_time(params["end"])
        step = float(params["step"])
    except KeyError as missing:
        raise ValueError(f"invalid parameter {missing}: missing") from None
    if not step > 0 or end < start:
        raise ValueError("need a positive step and start <= end")
    if (end - start) / step + 1 > MAX_POINTS:
        raise ValueError("exceeded maximum resolution of 11,000 points per timeseries")
    return query, start, end, step


def bad_data(err: ValueError) -> dict[str, Any]:
    """Prometheus' 400 answer to a request it cannot read."""
    return {"status": "error", "errorType": "bad_data", "error": str(err)}


def vector(result: list[dict[str, Any]]) -> dict[str, Any]:
    """Prometheus' 200 answer carrying an instant vector."""
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def matrix(
    scenario: Sequence[ScenarioStep],
    begun: float,
    query: str,
    start: float,
    end: float,
    step: float,
) -> dict[str, Any]:
    """Prometheus' 200 answer to a range query: one series with a sample at every step that has
    one (see :func:`evaluate`), or no series at all."""
    values = []
    n = int((end - start) // step) + 1
    for i in range(n):
        at = start + i * step
        found = evaluate(scenario, begun, query, at) if at >= begun else []
        if found:
            values.append([round(at, 3), found[0]["value"][1]])
    result = [{"metric": {"__name__": query}, "values": values}] if values else []
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def evaluate(
    scenario: Sequence[ScenarioStep], start: float, query: str, at: float
) -> list[dict[str, Any]]:
    """The instant-vector result of ``query`` at wall time ``at``.

    ``scenario`` is sorted by ``at``; ``start`` (wall seconds) is when it began. ``query`` must
    equal a metric key of the scenario; ``timestamp(KEY)`` gives the sample timestamp of KEY as
    its value. Anything else, or a metric with no value yet, is empty.
    """
    wrapped = _TIMESTAMP_QUERY.match(query)
    key = wrapped.group(1).strip() if wrapped else query
    found: tuple[float, float] | None = None  # (value, sample timestamp)
    elapsed = at - start
    for step in scenario:
        if step.at > elapsed:
            break
        if key in step.values:
            value = step.values[key]
            if value is None:
                found = None
                continue
            stamp = start + step.at - step.stale[key] if key in step.stale else at
            found = (value, stamp)
    if found is None:
        return []
    value, stamp = found
    if wrapped:
        return [{"metric": {}, "value": [round(at, 3), _prom_value(round(stamp, 3))]}]
    return [{"metric": {"__name__": key}, "value": [round(stamp, 3), _prom_value(value)]}]

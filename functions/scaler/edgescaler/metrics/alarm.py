"""A CloudMonitor alarm's value standing in for a metric the policy could not read. Pure.

A metric opts in with ``alarm: {metric: <CloudMonitor metric name>, max_age: 2m}``
(:class:`~edgescaler.policy.AlarmValue`). Only a firing alarm of that metric, carrying a value and
a time no older than ``max_age`` (and not in the future by more than that), stands in.
"""

from __future__ import annotations

from datetime import datetime

from edgescaler.metrics.base import Reading
from edgescaler.policy import MetricSpec
from edgescaler.triggers import Alarm


def stand_in(name: str, spec: MetricSpec, alarm: Alarm | None, now: datetime) -> Reading | None:
    """The alarm's value as metric ``name``'s reading, or None when it may not stand in."""
    opt_in = spec.alarm
    if opt_in is None or alarm is None or not alarm.firing:
        return None
    if alarm.metric != opt_in.metric or alarm.value is None or alarm.timestamp is None:
        return None
    age = now - alarm.timestamp
    if age > opt_in.max_age or -age > opt_in.max_age:
        return None
    return Reading(metric=name, value=alarm.value, timestamp=alarm.timestamp, source="alarm")

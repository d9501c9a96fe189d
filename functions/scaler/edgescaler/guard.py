"""The guard: may this cluster be scaled out now? Pure, over a snapshot of the activity log.

Rules, in order (the first that holds decides):

1. ``cooling_down`` — the last scale-out was requested less than ``cooldown`` ago;
2. ``in_flight`` — a scale-out is still open: claimed but unanswered, its task still running, or
   its outcome unknown (we never add nodes on top of capacity that may be on its way);
3. ``cooling_down`` — the last scale-out *ended* less than ``cooldown`` ago: new nodes need time
   to join and take load before the metrics mean anything again.

Otherwise the scale-out may go ahead. The verdict carries a one-line reason for the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from edgescaler.store.base import CLAIMED, SUBMITTED, Activity

COOLING_DOWN = "cooling_down"
IN_FLIGHT = "in_flight"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    outcome: str | None = None
    reason: str = ""
    blocking_seq: int | None = None


ALLOW = Verdict(True)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(a: Activity) -> str:
    task = f", task {a.task_id}" if a.task_id else ""
    return f"scale-out #{a.seq} (+{a.add}{task}, {a.status})"


def check(activities: Sequence[Activity], *, cooldown: timedelta, now: datetime) -> Verdict:
    """Apply the rules above to ``activities`` (one cluster, seq order) at ``now``."""
    if not activities:
        return ALLOW
    last = activities[-1]
    until = last.created_at + cooldown
    if now < until:
        return Verdict(
            False,
            COOLING_DOWN,
            f"{_describe(last)} requested at {_stamp(last.created_at)}; "
            f"cooldown until {_stamp(until)}",
            last.seq,
        )
    open_ = [a for a in activities if a.is_open]
    if open_:
        a = open_[-1]
        if a.status == SUBMITTED:
            why = "its task is still running"
        elif a.status == CLAIMED:
            why = "claimed by another invocation, not answered yet"
        else:
            why = "its outcome is unknown until the cluster's tasks are checked"
        return Verdict(False, IN_FLIGHT, f"{_describe(a)}: {why}", a.seq)
    if last.ended_at is not None:
        until = last.ended_at + cooldown
        if now < until:
            return Verdict(
                False,
                COOLING_DOWN,
                f"{_describe(last)} ended at {_stamp(last.ended_at)}; cooldown until {_stamp(until)}",
                last.seq,
            )
    return ALLOW

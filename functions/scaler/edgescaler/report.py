"""The run report (design.md §4): one outcome per policy, plus what triggered the run.

Outcome codes: ``scaled``, ``no_change``, ``cooling_down``, ``in_flight``, ``backoff``,
``budget``, ``capped``, ``metrics_unavailable``, ``duplicate_event``, ``dry_run``, ``deadline``
(the run's deadline passed before this policy's work could begin or finish), ``error``.
Nothing in a report is secret: it is logged, returned to FC and printed by the CLI. Every text
in it passes :func:`edgescaler.outside.message` on the way out (redacted, one line, short).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from edgescaler.codes import Code
from edgescaler.outside import MAX_REASON, message

if TYPE_CHECKING:  # the decision engine (and pydantic with it) is loaded by the run, not here
    from edgescaler.decision import Decision


class OutcomeCode(Code):
    SCALED = "scaled"
    NO_CHANGE = "no_change"
    COOLING_DOWN = "cooling_down"
    IN_FLIGHT = "in_flight"
    BACKOFF = "backoff"
    BUDGET = "budget"
    CAPPED = "capped"
    METRICS_UNAVAILABLE = "metrics_unavailable"
    DUPLICATE_EVENT = "duplicate_event"
    DRY_RUN = "dry_run"
    DEADLINE = "deadline"
    ERROR = "error"


@dataclass(frozen=True)
class Outcome:
    """What one policy's evaluation came to. Typed until :meth:`to_dict`."""

    policy: str
    cluster_id: str
    outcome: OutcomeCode
    reason: str
    add: int = 0
    task_id: str | None = None
    request_id: str | None = None
    activity_seq: int | None = None
    decision: Decision | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "cluster_id": self.cluster_id,
            "outcome": self.outcome.value,
            "add": self.add,
            "task_id": self.task_id,
            "request_id": self.request_id,
            "activity_seq": self.activity_seq,
            "reason": message(self.reason, MAX_REASON),
            "decision": self.decision.to_dict() if self.decision is not None else None,
        }

    def log_line(self) -> str:
        parts = [f"policy={self.policy}", f"cluster={self.cluster_id}", f"outcome={self.outcome}"]
        if self.add:
            parts.append(f"add={self.add}")
        if self.task_id:
            parts.append(f"task_id={self.task_id}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        parts.append(f"reason={message(self.reason, MAX_REASON)!r}")
        return " ".join(parts)


@dataclass
class RunReport:
    trigger: str
    event_key: str | None
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None
    note: str | None = None  # why nothing was evaluated, when that is the answer

    def counts(self) -> dict[str, int]:
        return dict(Counter(str(o.outcome) for o in self.outcomes))

    def summary_line(self) -> str:
        if self.error:
            return f"run failed: {message(self.error)}"
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts().items())) or (
            message(self.note) if self.note else "no policies"
        )
        added = sum(o.add for o in self.outcomes if o.outcome == OutcomeCode.SCALED)
        mode = " DRY-RUN" if self.dry_run else ""
        return (
            f"run{mode} trigger={self.trigger} policies={len(self.outcomes)} "
            f"nodes_added={added} {counts}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "event_key": message(self.event_key) if self.event_key else None,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": message(self.error) if self.error else None,
            "note": message(self.note) if self.note else None,
            "summary": self.summary_line(),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }

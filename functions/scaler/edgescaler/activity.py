"""A scale-out activity: the record of one scale-out attempt of one cluster, and its lifecycle.

An activity is created as a **claim** (a create-only write in the store, design.md §5: whoever
creates ``seq = last + 1`` owns the scale-out), then moves through these states. Every
transition is a pure function below; :mod:`edgescaler.actuator` and :mod:`edgescaler.pipeline`
do the I/O around them and write the result back to the store::

                         POST 2xx + task id
          ┌─────────┐ ───────────────────────▶ ┌───────────┐  task success     ┌───────────┐
          │ claimed │                          │ submitted │ ────────────────▶ │ succeeded │
          └─────────┘ ──┐                      └───────────┘ ──┐              └───────────┘
            │  │  │     │ read timeout, reset,    ▲   │          │ task failed   ┌────────┐
            │  │  │     │ 5xx, 2xx w/o task id    │   │          └─────────────▶ │ failed │
            │  │  │     ▼                         │   │ still running after     └────────┘
            │  │  │  ┌─────────┐  resolve: a new  │   │ timeout_mins            ┌───────────┐
            │  │  │  │ unknown │ ─────────────────┘   └───────────────────────▶ │ timed_out │
            │  │  │  └─────────┘  scale-out task                                └───────────┘
            │  │  │     │         appeared
            │  │  │     │ resolve: none RESOLVE_AFTER after the claim         ┌──────────┐
            │  │  └─────┴──────────────────────────────────────────────────▶ │ rejected │
            │  │   4xx, or the request never left (refused connection)       └──────────┘
            │  │                                                              ┌───────────┐
            │  └──── throttled (Throttling*, 429): nothing created ───────▶ │ throttled │
            │                                                                 └───────────┘
            └──── unanswered CLAIM_GRACE after the claim (its owner died): resolved like
                  ``unknown`` (to submitted or rejected)

``claimed``, ``submitted`` and ``unknown`` are **open**: they hold the cluster (in flight).
The others are **ended**. ``failed``, ``timed_out`` and ``rejected`` are provisioning failures
(they drive the guard's backoff); ``rejected`` and ``throttled`` certainly added nothing (no
cooldown, no budget used). A ``timed_out`` task may still bring nodes: the guard keeps holding
the cluster while the cloud shows it running, and its task is still tracked, so that when it
ends late the activity takes its real end (``succeeded`` or ``failed``, at the task's end time)
and the cooldown after it applies.

The record never holds a secret; its ``error`` is outside text and is redacted and cut when it
is written (:meth:`Activity.to_json`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from edgescaler.cloud.model import ScaleOutResult, TaskInfo, TaskPhase
from edgescaler.codes import Code
from edgescaler.outside import message


class Status(Code):
    CLAIMED = "claimed"  # we own the scale-out; the POST has not been answered (yet)
    SUBMITTED = "submitted"  # ScaleOutCluster accepted; its task is running
    UNKNOWN = "unknown"  # the POST may or may not have gone through (timeout, 5xx)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the task failed
    REJECTED = "rejected"  # the API refused the call (4xx), or it never left; nothing created
    TIMED_OUT = "timed_out"  # the task ran longer than the policy's provisioning timeout
    THROTTLED = "throttled"  # the API's rate limit refused the call; nothing was created


OPEN = frozenset({Status.CLAIMED, Status.SUBMITTED, Status.UNKNOWN})
ENDED = frozenset(set(Status) - OPEN)
FAILURES = frozenset({Status.FAILED, Status.TIMED_OUT, Status.REJECTED})
ADDED_NOTHING = frozenset({Status.REJECTED, Status.THROTTLED})

# A claim's owner answers within its CS timeouts (seconds); an older unanswered claim means the
# owner died between the claim and recording the answer.
CLAIM_GRACE = timedelta(minutes=2)
# A POST that went through shows up as a task at once; none after this long means it did not.
RESOLVE_AFTER = timedelta(minutes=5)
# A task created this long before a claim is not the claim's: resolve() never adopts one (a
# cluster's task listing reaches back weeks), so a claim's prior_tasks need only name the tasks
# created since. CS answers carry their time zone and CS and FC clocks agree to seconds: the
# hour is slack.
ADOPT_WINDOW = timedelta(hours=1)

_TIMES = ("created_at", "updated_at", "ended_at", "retry_at")


@dataclass(frozen=True)
class Activity:
    """One scale-out attempt of one cluster. Never holds a secret."""

    cluster_id: str
    seq: int
    policy: str
    add: int
    status: Status
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    task_id: str | None = None
    request_id: str | None = None
    event_key: str | None = None
    trigger: str | None = None
    ens_region_id: str | None = None
    instance_type: str | None = None
    timeout_mins: int | None = None
    error: str | None = None
    # The decision as it was recorded at the claim (serialised: a record for people to read).
    decision: dict[str, Any] = field(default_factory=dict)
    # Scale-out task ids the cluster already had when this activity was claimed: a task that is
    # not among them (nor any other activity's) after an ambiguous POST is this activity's.
    prior_tasks: tuple[str, ...] = ()
    # Throttled: no new scale-out of the cluster before this time (a short, jittered hold).
    retry_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def explanation(self) -> str:
        """Why it happened: the error of a failed attempt, else the decision's explanation."""
        return self.error or str(self.decision.get("explanation", ""))

    def with_status(self, status: Status, now: datetime, **changes: Any) -> Activity:
        """A copy in ``status``; entering an ended status stamps ``ended_at`` (unless given).

        The primitive under the transitions below (and for tests that set a state up); product
        code moves an activity only through those transitions.
        """
        ended = changes.pop("ended_at", None) or (now if status in ENDED else None)
        return replace(self, status=status, updated_at=now, ended_at=ended, **changes)

    # -- serialisation (the store's record) --------------------------------------------------

    def to_json(self) -> bytes:
        # Shallow: the fields are JSON-ready already (the decision a plain dict, prior_tasks a
        # tuple json writes as a list); dataclasses.asdict would deep-copy every one of them.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in _TIMES:
            data[k] = _iso(data[k])
        if data["error"]:  # outside text (API messages): redacted and short in the store too
            data["error"] = message(data["error"])
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Activity:
        """Raises ValueError for a record that is not an activity, or one whose fields do not
        hold together (see :func:`_problem`): read leniently, a record missing its ``ended_at``
        would lift a cooldown, a negative ``add`` a budget."""
        try:
            data = json.loads(raw)
            for k in _TIMES:
                data[k] = _parse(data.get(k))
            data["status"] = Status(data["status"])
            data["prior_tasks"] = tuple(data.get("prior_tasks") or ())
            act = cls(**data)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise ValueError(f"corrupt activity record: {type(exc).__name__}") from None
        problem = _problem(act)
        if problem:
            raise ValueError(f"corrupt activity record: {problem}")
        return act

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.to_json())
        return out


def _problem(act: Activity) -> str | None:
    """What makes a record read from the store unusable, or None. The guard, the budget and the
    backoff read these fields; a record that does not hold together fails the read (the store
    is then unusable for that cluster: no scale-out), never weakens a hold."""
    if not (isinstance(act.cluster_id, str) and isinstance(act.policy, str)):
        return "cluster_id and policy must be strings"
    for name in ("seq", "add"):
        value = getattr(act, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name} must be a whole number of at least 1"
    for name in _TIMES:
        t = getattr(act, name)
        if t is not None and (not isinstance(t, datetime) or t.utcoffset() is None):
            return f"{name} has no time zone"
    if act.created_at is None or act.updated_at is None:
        return "created_at and updated_at are required"
    if act.status in ENDED and act.ended_at is None:
        return f"a {act.status} activity without ended_at"
    if act.status == Status.THROTTLED and act.retry_at is None:
        return "a throttled activity without retry_at"
    if act.status in FAILURES and not (
        isinstance(act.ens_region_id, str) and isinstance(act.instance_type, str)
    ):
        return f"a {act.status} activity without its ens_region_id and instance_type"
    return None


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(timezone.utc).isoformat() if t is not None else None


def _parse(t: str | None) -> datetime | None:
    return datetime.fromisoformat(t) if t else None


# -- transitions (pure) ----------------------------------------------------------------------


def after_post(claim: Activity, result: ScaleOutResult, now: datetime) -> Activity:
    """claimed → submitted: ScaleOutCluster accepted, its task is running."""
    return claim.with_status(
        Status.SUBMITTED, now, task_id=result.task_id, request_id=result.request_id
    )


def post_failed(
    claim: Activity,
    now: datetime,
    *,
    error: str,
    request_id: str | None,
    may_have_acted: bool,
) -> Activity:
    """claimed → unknown (the POST may have gone through) or rejected (it certainly did not)."""
    status = Status.UNKNOWN if may_have_acted else Status.REJECTED
    return claim.with_status(status, now, error=error, request_id=request_id)


def post_throttled(
    claim: Activity, now: datetime, *, error: str, request_id: str | None, retry_at: datetime
) -> Activity:
    """claimed → throttled: the rate limit refused the call; hold until ``retry_at``."""
    return claim.with_status(
        Status.THROTTLED, now, error=error, request_id=request_id, retry_at=retry_at
    )


def needs_resolution(act: Activity, now: datetime) -> bool:
    """An ``unknown`` activity, or a claim unanswered past CLAIM_GRACE (its owner died)."""
    return act.status == Status.UNKNOWN or (
        act.status == Status.CLAIMED and now - act.created_at > CLAIM_GRACE
    )


def adoptable(task: TaskInfo, claimed_at: datetime) -> bool:
    """Whether ``task`` may be the task of a claim made at ``claimed_at``: not created more than
    :data:`ADOPT_WINDOW` before it (a task without a creation time may be)."""
    return task.created is None or task.created >= claimed_at - ADOPT_WINDOW


def resolve(
    act: Activity, scale_out_tasks: Sequence[TaskInfo], log: Sequence[Activity], now: datetime
) -> Activity | None:
    """Did an ambiguous scale-out go through? The new state, or None while undecided.

    A scale-out task of the cluster, :func:`adoptable` by the claim, that is neither in the
    activity's ``prior_tasks`` nor any other activity's is its task → ``submitted`` (the oldest
    such). No such task RESOLVE_AFTER after the claim → ``rejected`` (it did not go through).
    """
    taken = {a.task_id for a in log if a.task_id} | set(act.prior_tasks)
    mine = [t for t in scale_out_tasks if t.task_id not in taken and adoptable(t, act.created_at)]
    if mine:
        task = min(mine, key=lambda t: (t.created or now, t.task_id))
        return act.with_status(
            Status.SUBMITTED,
            now,
            task_id=task.task_id,
            error=f"resolved: task {task.task_id} appeared after the claim ({act.status} before)",
        )
    if now - act.created_at > RESOLVE_AFTER:
        return act.with_status(
            Status.REJECTED,
            now,
            error=f"resolved: no new scale-out task appeared within "
            f"{int(RESOLVE_AFTER.total_seconds() // 60)} min; the call did not go through"
            + (f" ({act.error})" if act.error else ""),
        )
    return None


def tracked(act: Activity) -> bool:
    """Whether :func:`track` follows ``act``'s task: a submitted one, or a timed-out one (its
    task may still end, and bring nodes)."""
    return act.status in (Status.SUBMITTED, Status.TIMED_OUT) and bool(act.task_id)


def track(act: Activity, task: TaskInfo, now: datetime) -> Activity | None:
    """A :func:`tracked` activity against its task: the new state, or None while it runs.

    Success or failure ends it at the task's own end time — but never later than ``now``: a time
    zone misread by the API must not stretch the cooldown into the future. A submitted one still
    running after the policy's ``timeout_mins`` → ``timed_out``; a timed-out one changes only
    when its task ends.
    """
    ended = min(task.updated, now) if task.updated else now
    if task.phase == TaskPhase.SUCCESS:
        # A timed-out one's "still running" no longer holds; a resolved one keeps its note.
        error = None if act.status == Status.TIMED_OUT else act.error
        return act.with_status(Status.SUCCEEDED, now, ended_at=ended, error=error)
    if task.phase == TaskPhase.FAILED:
        return act.with_status(
            Status.FAILED, now, ended_at=ended, error=f"task {task.state}: {task.failure}"
        )
    if act.status == Status.TIMED_OUT:
        return None
    if act.timeout_mins and now - act.created_at > timedelta(minutes=act.timeout_mins):
        return act.with_status(
            Status.TIMED_OUT, now, error=f"task still {task.state} after {act.timeout_mins} min"
        )
    return None

"""The drift report behind ``edgescaler reconcile``: the activity log against what the cloud
says. Read-only: it changes neither the log nor the cloud.

For every cluster a policy names, it reports drift of these kinds:

* ``status_mismatch`` — the log says one thing about a scale-out, its task says another
  (e.g. ``submitted`` in the log, ``success`` in the cloud: no run has polled it since);
* ``unresolved`` — an activity whose outcome is still unknown (ambiguous POST or dead claim);
* ``task_missing`` — the cloud does not know a task id the log recorded (``unreadable_task``:
  it could not be asked, an error other than 404 or no answer);
* ``untracked_task`` — a ``cluster_scaleout`` task that no activity accounts for (started from
  the console or another tool, or a record lost);
* ``never_joined`` — an ENS worker still joining long after it was created (past the policy's
  ``timeout_mins``), and ``failed_node`` — an ENS worker in a failed state;
* ``above_max_nodes`` / ``below_min_nodes`` — active ENS workers outside the policy's limits.

Nothing is written: fixing is what the next scaler run (or an operator) does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edgescaler.activity import ENDED, OPEN, Activity, Status
from edgescaler.cloud.model import Capacity, CloudAPI, Node, TaskInfo, TaskPhase, scale_out_tasks
from edgescaler.errors import CloudError, CSApiError, StoreError
from edgescaler.policy import Policy
from edgescaler.store.base import Store

# Log status -> the task phase that agrees with it.
_AGREES = {Status.SUBMITTED: TaskPhase.RUNNING, Status.SUCCEEDED: TaskPhase.SUCCESS}


@dataclass(frozen=True)
class Drift:
    cluster_id: str
    kind: str
    detail: str
    seq: int | None = None
    task_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "kind": self.kind,
            "seq": self.seq,
            "task_id": self.task_id,
            "detail": self.detail,
        }


@dataclass
class ClusterView:
    cluster_id: str
    policy: str
    activities: int = 0
    edge_workers: int | None = None
    drift: list[Drift] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "policy": self.policy,
            "activities": self.activities,
            "edge_workers": self.edge_workers,
            "error": self.error,
            "drift": [d.to_dict() for d in self.drift],
        }


def report(
    policies: Sequence[Policy],
    store: Store,
    cloud_for: Callable[[str], CloudAPI],
    *,
    now: datetime,
    limit: int = 100,
) -> list[ClusterView]:
    """One view per cluster named by ``policies`` (the first policy naming it wins)."""
    seen: dict[str, Policy] = {}
    for p in policies:
        seen.setdefault(p.cluster_id, p)
    return [_cluster(p, store, cloud_for, now, limit) for p in seen.values()]


def _cluster(
    policy: Policy,
    store: Store,
    cloud_for: Callable[[str], CloudAPI],
    now: datetime,
    limit: int,
) -> ClusterView:
    cid = policy.cluster_id
    view = ClusterView(cid, policy.name)
    try:
        log = store.log(cid, limit=limit)
    except StoreError as exc:
        view.error = f"store: {exc}"
        return view
    view.activities = len(log)
    try:
        cloud = cloud_for(policy.region)
        tasks = scale_out_tasks(cloud.list_tasks(cid))
        nodes = list(cloud.list_nodes(cid))
    except CloudError as exc:
        view.error = f"cloud: {exc}"
        return view
    view.drift.extend(_activity_drift(log, cloud))
    view.drift.extend(_untracked(cid, log, tasks))
    view.drift.extend(_node_drift(cid, nodes, policy, now))
    view.edge_workers = Capacity.of(nodes).count
    limits = policy.limits
    if view.edge_workers > limits.max_nodes:
        view.drift.append(
            Drift(cid, "above_max_nodes", f"{view.edge_workers} > max_nodes {limits.max_nodes}")
        )
    elif view.edge_workers < limits.min_nodes:
        view.drift.append(
            Drift(cid, "below_min_nodes", f"{view.edge_workers} < min_nodes {limits.min_nodes}")
        )
    return view


def _activity_drift(log: Sequence[Activity], cloud: CloudAPI) -> list[Drift]:
    out: list[Drift] = []
    for a in log:
        if a.status in OPEN and not a.task_id:
            out.append(
                Drift(
                    a.cluster_id,
                    "unresolved",
                    f"#{a.seq} is {a.status}: {a.error or 'no answer recorded'}",
                    a.seq,
                )
            )
            continue
        if not a.task_id:
            continue
        try:
            task = cloud.describe_task(a.task_id)
        except CSApiError as exc:
            if exc.status == 404:
                out.append(Drift(a.cluster_id, "task_missing", str(exc), a.seq, a.task_id))
            else:
                out.append(Drift(a.cluster_id, "unreadable_task", str(exc), a.seq, a.task_id))
            continue
        except CloudError as exc:
            out.append(Drift(a.cluster_id, "unreadable_task", str(exc), a.seq, a.task_id))
            continue
        want = _AGREES.get(a.status, TaskPhase.FAILED if a.status in ENDED else None)
        if want is not None and task.phase != want:
            out.append(
                Drift(
                    a.cluster_id,
                    "status_mismatch",
                    f"#{a.seq} is {a.status} in the log, task is {task.state} in the cloud",
                    a.seq,
                    a.task_id,
                )
            )
    return out


def _untracked(cid: str, log: Sequence[Activity], tasks: Sequence[TaskInfo]) -> list[Drift]:
    ours = {a.task_id for a in log if a.task_id}
    return [
        Drift(
            cid,
            "untracked_task",
            f"scale-out task {t.task_id} ({t.state}) is not in the log",
            task_id=t.task_id,
        )
        for t in tasks
        if t.task_id not in ours
    ]


def _node_drift(cid: str, nodes: Sequence[Node], policy: Policy, now: datetime) -> list[Drift]:
    deadline = timedelta(minutes=policy.scale_out.timeout_mins)
    out: list[Drift] = []
    for n in nodes:
        if not n.is_edge_worker:
            continue
        state = (n.state or "").lower()
        if state == "failed":
            out.append(Drift(cid, "failed_node", f"ENS worker {n.instance_id} is failed"))
        elif n.lifecycle == "joining" and n.creation_time and now - n.creation_time > deadline:
            age = int((now - n.creation_time).total_seconds() // 60)
            out.append(
                Drift(
                    cid, "never_joined", f"ENS worker {n.instance_id} still {state} after {age} min"
                )
            )
    return out


def format_views(views: Sequence[ClusterView]) -> str:
    lines = []
    for v in views:
        workers = "?" if v.edge_workers is None else str(v.edge_workers)
        lines.append(
            f"{v.cluster_id} (policy {v.policy}): {v.activities} activities, {workers} ENS workers"
        )
        if v.error:
            lines.append(f"    error: {v.error}")
        if not v.drift and not v.error:
            lines.append("    in sync")
        for d in v.drift:
            ref = " ".join(x for x in (f"#{d.seq}" if d.seq else "", d.task_id or "") if x)
            lines.append(f"    {d.kind:<16} {ref:<32} {d.detail}")
    total = sum(len(v.drift) for v in views)
    lines.append(f"{len(views)} cluster(s), {total} drift item(s)")
    return "\n".join(lines)

"""The cloud as the scaler sees it: nodes, tasks, capacity, and the interface that yields them.

Pure data and rules, no I/O. The CS client (:mod:`edgescaler.cloud.cs`) turns wire answers into
these types; the pipeline, the activity lifecycle and the drift report only ever see them. The
one place that says what counts as capacity is :meth:`Capacity.of` — in the manner of Nomad's
``target.Controller.Status → TargetStatus{Ready, Count}``, the core asks the target for its
status and never counts nodes itself.

What counts (and why):

* an **ENS edge worker** is a node whose role is ``worker`` and whose instance type is ``ens.*``
  — masters and cloud (ECS) workers are not what ScaleOutCluster adds;
* it is **active** while ``running``, or on its way in (``initial``/``starting``/``pending``);
  failed or leaving nodes carry no load and are not counted;
* **capacity** is the number of active ENS edge workers. Joining nodes count on purpose: they
  were paid for and will take load; counting only ready ones would order them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from edgescaler.codes import Code

# Task states CS reports for a task that ended badly (DescribeTaskInfo, cs-api.md §2.1).
_FAILED_STATES = frozenset({"fail", "failed", "timeout", "canceled", "cancelled"})
_READY_NODE_STATES = frozenset({"running"})
_JOINING_NODE_STATES = frozenset({"starting", "pending", "initial"})
# Node states (DescribeClusterNodes, cs-api.md §2.4) that add no capacity.
_INACTIVE_NODE_STATES = frozenset(
    {"stopping", "stopped", "removing", "failed", "deleting", "deleted", "released"}
)
# The task type of a ScaleOutCluster task (DescribeClusterTasks).
SCALE_OUT_TASK_TYPES = frozenset({"cluster_scaleout"})


class TaskPhase(Code):
    """What a caller should act on, whatever CS's exact word for the state."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


@dataclass(frozen=True)
class ScaleOutResult:
    """A ScaleOutCluster request the API accepted (any 2xx with a ``task_id``)."""

    cluster_id: str
    task_id: str
    request_id: str | None
    status: int


@dataclass(frozen=True)
class TaskInfo:
    """One CS task, from DescribeTaskInfo or an item of DescribeClusterTasks.

    ``state`` is the server's word, verbatim (``""`` when absent); :attr:`phase` is what a caller
    should act on. ``raw`` is the whole JSON object, kept out of ``repr``.
    """

    task_id: str
    cluster_id: str | None
    task_type: str | None
    state: str
    created: datetime | None
    updated: datetime | None
    error_code: str | None
    error_message: str | None
    task_result: tuple[dict[str, Any], ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def phase(self) -> TaskPhase:
        """``success``; ``failed`` for fail/failed/timeout/canceled/cancelled; else ``running``.

        Unknown states count as running on purpose: the caller keeps polling (and keeps treating
        the scale-out as in flight) rather than guessing an outcome.
        """
        state = self.state.strip().lower()
        if state == "success":
            return TaskPhase.SUCCESS
        if state in _FAILED_STATES:
            return TaskPhase.FAILED
        return TaskPhase.RUNNING

    @property
    def is_scale_out(self) -> bool:
        return self.task_type in SCALE_OUT_TASK_TYPES

    @property
    def failure(self) -> str:
        """The task's own account of its failure, for messages."""
        return ": ".join(x for x in (self.error_code, self.error_message) if x) or self.state


@dataclass(frozen=True)
class Node:
    """One node of DescribeClusterNodes, reduced to what counting and drift reports need."""

    instance_id: str
    node_name: str | None
    instance_role: str | None
    state: str | None
    node_status: str | None
    instance_type: str | None
    nodepool_id: str | None
    creation_time: datetime | None

    @property
    def is_edge_worker(self) -> bool:
        """A worker on an ENS instance type (not a master, not a cloud ECS worker)."""
        role = (self.instance_role or "").strip().lower()
        itype = (self.instance_type or "").strip().lower()
        return role == "worker" and itype.startswith("ens.")

    @property
    def known_state(self) -> bool:
        """Whether :attr:`lifecycle` comes from a state CS documents (an unknown one, or none,
        reads as ``inactive``: a client that counts must refuse it rather than count low)."""
        state = (self.state or "").strip().lower()
        return state in _READY_NODE_STATES | _JOINING_NODE_STATES | _INACTIVE_NODE_STATES

    @property
    def lifecycle(self) -> str:
        """``ready``, ``joining`` or ``inactive`` (failed, removing, unknown)."""
        state = (self.state or "").strip().lower()
        if state in _READY_NODE_STATES:
            return "ready"
        if state in _JOINING_NODE_STATES:
            return "joining"
        return "inactive"


@dataclass(frozen=True)
class Capacity:
    """A cluster's ENS edge capacity: ``count`` is what decisions build on (ready + joining)."""

    ready: int
    joining: int

    @property
    def count(self) -> int:
        return self.ready + self.joining

    @classmethod
    def of(cls, nodes: Iterable[Node]) -> Capacity:
        ready = joining = 0
        for n in nodes:
            if not n.is_edge_worker:
                continue
            if n.lifecycle == "ready":
                ready += 1
            elif n.lifecycle == "joining":
                joining += 1
        return cls(ready=ready, joining=joining)


class CloudAPI(Protocol):
    """The CS calls the scaler makes, typed with the model above (one client per region)."""

    def list_nodes(self, cluster_id: str) -> Sequence[Node]: ...

    def describe_task(self, task_id: str) -> TaskInfo: ...

    def list_tasks(self, cluster_id: str) -> Sequence[TaskInfo]: ...

    def scale_out(self, cluster_id: str, body: Mapping[str, Any]) -> ScaleOutResult: ...

    def close(self) -> None: ...


def scale_out_tasks(tasks: Iterable[TaskInfo]) -> list[TaskInfo]:
    return [t for t in tasks if t.is_scale_out]

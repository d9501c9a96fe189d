"""drift.report's kinds the emulator-backed tests (tests/functional/test_drift.py) do not reach:
a task the cloud does not know, a task it cannot read, a failed ENS worker, nodes outside the
policy's limits, and a store or cloud that cannot be read. The cloud is a fake at its edge."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from edgescaler import drift
from edgescaler.activity import Status
from edgescaler.cloud.model import Node, TaskInfo
from edgescaler.errors import CloudError, CSApiError, CSTransportError, StoreError
from edgescaler.store.memory import MemoryStore
from tests.support import builders

CLUSTER = "c0123456789abcdef"


def worker(i: int, state: str = "running") -> Node:
    return Node(f"i-{i}", None, "Worker", state, None, "ens.sn1.tiny", None, builders.NOW)


class Cloud:
    def __init__(self, nodes: Sequence[Node] = (), fail: CloudError | None = None) -> None:
        self.nodes, self.fail = list(nodes), fail

    def list_tasks(self, cluster_id: str) -> list[TaskInfo]:
        if self.fail is not None:
            raise self.fail
        return []

    def list_nodes(self, cluster_id: str) -> list[Node]:
        return self.nodes

    def describe_task(self, task_id: str) -> TaskInfo:
        answers = {"T-gone": (404, "ErrorTaskNotFound"), "T-500": (500, "InternalError")}
        if task_id in answers:
            status, code = answers[task_id]
            raise CSApiError(
                action="DescribeTaskInfo", status=status, code=code, message="", request_id=None
            )
        raise CSTransportError(action="DescribeTaskInfo", detail="timed out")


def kinds(views: list[drift.ClusterView]) -> list[tuple[str, str | None]]:
    (view,) = views
    return sorted((d.kind, d.task_id) for d in view.drift)


def submitted(seq: int, task_id: str) -> object:
    return dataclasses.replace(
        builders.claim(seq, cluster=CLUSTER), status=Status.SUBMITTED, task_id=task_id
    )


def test_tasks_the_cloud_does_not_know_or_cannot_read() -> None:
    store = MemoryStore()
    for seq, task in enumerate(("T-gone", "T-500", "T-slow"), start=1):
        store.append(submitted(seq, task))  # type: ignore[arg-type]
    policy = builders.policy(
        cluster_id=CLUSTER, limits={"min_nodes": 0, "max_nodes": 10, "max_step": 2}
    )
    views = drift.report([policy], store, lambda r: Cloud(), now=builders.NOW)
    assert kinds(views) == [
        ("task_missing", "T-gone"),
        ("unreadable_task", "T-500"),
        ("unreadable_task", "T-slow"),
    ]


def test_failed_workers_and_counts_outside_the_limits() -> None:
    few = builders.policy(
        cluster_id=CLUSTER, limits={"min_nodes": 3, "max_nodes": 10, "max_step": 2}
    )
    nodes = [worker(1), worker(2, "failed")]
    views = drift.report([few], MemoryStore(), lambda r: Cloud(nodes), now=builders.NOW)
    assert kinds(views) == [("below_min_nodes", None), ("failed_node", None)]
    many = builders.policy(
        cluster_id=CLUSTER, limits={"min_nodes": 0, "max_nodes": 1, "max_step": 1}
    )
    views = drift.report(
        [many], MemoryStore(), lambda r: Cloud([worker(1), worker(2)]), now=builders.NOW
    )
    assert kinds(views) == [("above_max_nodes", None)] and views[0].edge_workers == 2


class BrokenStore(MemoryStore):
    def log(self, cluster_id: str, *, limit: int | None = None) -> list:  # type: ignore[type-arg]
        raise StoreError("bucket unreachable")


def test_a_store_or_cloud_that_cannot_be_read_is_the_views_error_not_drift() -> None:
    policy = builders.policy(cluster_id=CLUSTER)
    (view,) = drift.report([policy], BrokenStore(), lambda r: Cloud(), now=builders.NOW)
    assert view.error == "store: bucket unreachable" and view.drift == []
    down = Cloud(fail=CSTransportError(action="DescribeClusterTasks", detail="refused"))
    (view,) = drift.report([policy], MemoryStore(), lambda r: down, now=builders.NOW)
    assert view.error == "cloud: DescribeClusterTasks: refused" and view.drift == []

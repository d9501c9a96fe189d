"""The emulated cloud: clusters, their nodes, scale-out tasks, queued faults and call records.

Task and node states are functions of the clock: a scale-out task is ``running`` until
``task_delay`` has passed, then ``success``; its nodes are ``initial`` until ``join_delay`` has
passed, then ``running``. Faults are deterministic queues consumed in order (see
:meth:`Emulator.inject`); the probabilistic variant draws from an RNG seeded with
:attr:`EmulatorConfig.seed`. Nothing here locks: the :class:`Emulator` calls every method under
its one lock.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edgescaler.emulator.api import ApiError
from edgescaler.emulator.config import ClusterSpec, EmulatorConfig
from edgescaler.emulator.verify import MAX_CLOCK_SKEW

FAULT_KINDS = ("server_error", "throttle", "slow", "error_after_commit", "echo")
TASK_FAULT_KINDS = ("task_fail", "never_join")
DEFAULT_TIMEOUT_MINS = 60


def _iso(ts: float) -> str:
    """``2025-01-02T03:04:05+00:00``: explicit offset, parseable by Python 3.10's fromisoformat."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


@dataclass
class Node:
    instance_id: str
    node_name: str
    role: str  # Master | Worker
    instance_type: str
    nodepool_id: str
    created_at: float
    ip: str
    image_id: str
    join_at: float | None  # None: never joins
    fail_at: float | None = None

    @property
    def edge(self) -> bool:
        return self.role == "Worker" and self.instance_type.startswith("ens.")

    def state(self, now: float) -> str:
        if self.fail_at is not None and now >= self.fail_at:
            return "failed"
        if self.join_at is not None and now >= self.join_at:
            return "running"
        return "initial"

    def view(self, now: float) -> dict[str, Any]:
        state = self.state(now)
        return {
            "instance_id": self.instance_id,
            "node_name": self.node_name,
            "host_name": self.node_name,
            "instance_role": self.role,
            "state": state,
            "node_status": {"running": "Ready", "initial": "Unknown"}.get(state, "NotReady"),
            "instance_status": {"running": "Running", "initial": "Pending"}.get(state, "Stopped"),
            "instance_type": self.instance_type,
            "instance_type_family": self.instance_type.rsplit(".", 1)[0],
            "instance_charge_type": "PrePaid" if self.edge else "PostPaid",
            "ip_address": [self.ip],
            "is_aliyun_node": True,
            "nodepool_id": self.nodepool_id,
            "source": "edge_scale_out" if self.edge else "ess",
            "creation_time": _iso(self.created_at),
            "expired_time": "",
            "error_message": "injected fault: instance failed" if state == "failed" else "",
            "image_id": self.image_id,
        }


@dataclass
class Task:
    task_id: str
    cluster_id: str
    created_at: float
    node_ids: list[str]
    end_at: float
    end_state: str  # success | failed | timeout
    error_code: str = ""
    error_message: str = ""

    def state(self, now: float) -> str:
        return self.end_state if now >= self.end_at else "running"

    def view(self, now: float) -> dict[str, Any]:
        state = self.state(now)
        item_status = {"running": "initial", "success": "success"}.get(state, "failed")
        failed = state not in ("running", "success")
        error = {"code": self.error_code, "message": self.error_message} if failed else {}
        return {
            "task_id": self.task_id,
            "cluster_id": self.cluster_id,
            "task_type": "cluster_scaleout",
            "state": state,
            "created": _iso(self.created_at),
            "updated": _iso(self.end_at if state != "running" else self.created_at),
            "current_stage": "ScaleOutNodes" if state == "running" else "",
            "stages": [],
            "events": [],
            "target": {"id": self.cluster_id, "type": "cluster"},
            "parameters": {"count": len(self.node_ids)},
            "error": error,
            "task_result": [{"data": iid, "status": item_status} for iid in self.node_ids],
        }


@dataclass
class Fault:
    action: str
    kind: str
    remaining: int
    seconds: float = 0.0
    rate: float | None = None

    def view(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.kind,
            "remaining": self.remaining,
            "seconds": self.seconds,
            "rate": self.rate,
        }


class World:
    """Clusters, nodes, tasks, faults and call records. Every method runs under the lock."""

    def __init__(self, config: EmulatorConfig, now: float, tag: str, seq: Iterator[int]) -> None:
        self.config = config
        self.tag = tag
        self.seq = seq
        self.rng = random.Random(config.seed)
        self.nodes: dict[str, list[Node]] = {}
        self.tasks: dict[str, Task] = {}
        self.calls: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()
        self.scale_outs: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.task_faults: list[list[Any]] = []  # [kind, remaining]
        self.nonces: dict[str, float] = {}
        for index, (cluster_id, spec) in enumerate(config.clusters.items()):
            self.nodes[cluster_id] = self._initial_nodes(index, cluster_id, spec, now - 86400.0)

    # -- ids

    def _instance_id(self, kind: str) -> str:
        return f"i-{kind}{self.tag}{next(self.seq):08x}"

    def _task_id(self, now: float) -> str:
        return f"T-{int(now) & 0xFFFFFFFF:08x}{self.tag}{next(self.seq):08x}"

    def _ip(self, cluster_index: int, n: int) -> str:
        return f"10.{cluster_index % 250}.{(n // 250) % 250}.{n % 250 + 1}"

    def _initial_nodes(
        self, index: int, cluster_id: str, spec: ClusterSpec, created: float
    ) -> list[Node]:
        nodes: list[Node] = []
        kinds = [("Master", "ecs.g6.large", "")] * spec.masters
        kinds += [("Worker", "ecs.g6.xlarge", f"np-cloud-{cluster_id}")] * spec.cloud_workers
        kinds += [("Worker", spec.instance_type, f"np-edge-{cluster_id}")] * spec.edge_workers
        for n, (role, itype, pool) in enumerate(kinds):
            edge = itype.startswith("ens.")
            iid = self._instance_id("ens" if edge else "ecs")
            ip = self._ip(index, n)
            name = f"{'edge' if edge else 'cn-emulator'}.{ip}"
            nodes.append(
                Node(iid, name, role, itype, pool, created, ip, "emulator-image", join_at=created)
            )
        return nodes

    # -- nonces and faults

    def use_nonce(self, nonce: str, now: float) -> None:
        # A nonce older than twice the skew window cannot come back with an acceptable date.
        if len(self.nonces) > 4096:
            horizon = now - 2 * MAX_CLOCK_SKEW
            self.nonces = {n: t for n, t in self.nonces.items() if t >= horizon}
        if nonce in self.nonces:
            raise ApiError(400, "SignatureNonceUsed", "the signature nonce has been used before")
        self.nonces[nonce] = now

    def take_fault(self, action: str) -> Fault | None:
        """The first queued fault for ``action`` covers this call; a rate fault may spare it."""
        for i, fault in enumerate(self.faults):
            if fault.action != action:
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self.faults[i]
            if fault.rate is not None and self.rng.random() >= fault.rate:
                return None
            self.fired[fault.kind] += 1
            return fault
        return None

    def take_task_fault(self) -> str | None:
        if not self.task_faults:
            return None
        entry = self.task_faults[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self.task_faults.pop(0)
        self.fired[entry[0]] += 1
        return str(entry[0])

    # -- actions

    def cluster_nodes(self, cluster_id: str) -> list[Node]:
        nodes = self.nodes.get(cluster_id)
        if nodes is None:
            raise ApiError(404, "ErrorClusterNotFound", f"cluster {cluster_id} not found")
        return nodes

    def scale_out(self, cluster_id: str, body: dict[str, Any], now: float) -> Task:
        nodes = self.cluster_nodes(cluster_id)
        fault = self.take_task_fault()
        count = int(body["count"])
        task_delay, join_delay = self.config.task_delay, self.config.join_delay
        task_id = self._task_id(now)
        index = list(self.nodes).index(cluster_id)
        new: list[Node] = []
        for _ in range(count):
            iid = self._instance_id("ens")
            ip = self._ip(index, len(nodes) + len(new))
            node = Node(
                instance_id=iid,
                node_name=f"{body['ens_region_id']}.{iid}",
                role="Worker",
                instance_type=str(body["worker_instance_type"]),
                nodepool_id=f"np-edge-{cluster_id}",
                created_at=now,
                ip=ip,
                image_id=str(body["worker_image_id"]),
                join_at=None if fault else now + join_delay,
                fail_at=now + task_delay if fault == "task_fail" else None,
            )
            new.append(node)
        nodes.extend(new)
        ids = [n.instance_id for n in new]
        if fault == "task_fail":
            task = Task(
                task_id,
                cluster_id,
                now,
                ids,
                now + task_delay,
                "failed",
                "ScaleOutFailed",
                "injected fault: the ENS instances could not be created",
            )
        elif fault == "never_join":
            minutes = int(body.get("timeout_mins", DEFAULT_TIMEOUT_MINS))
            task = Task(
                task_id,
                cluster_id,
                now,
                ids,
                now + minutes * 60.0,
                "timeout",
                "Timeout",
                f"injected fault: nodes did not join within {minutes} minutes",
            )
        else:
            task = Task(task_id, cluster_id, now, ids, now + task_delay, "success")
        self.tasks[task_id] = task
        return task

    def task(self, task_id: str) -> Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise ApiError(404, "ErrorTaskNotFound", f"task {task_id} not found")
        return task

    def node_counts(self, now: float) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for cluster_id, nodes in self.nodes.items():
            edge = [n.state(now) for n in nodes if n.edge]
            counts[cluster_id] = {
                "total": len(nodes),
                "masters": sum(1 for n in nodes if n.role == "Master"),
                "cloud_workers": sum(1 for n in nodes if n.role == "Worker" and not n.edge),
                "edge_workers": len(edge),
                "edge_initial": edge.count("initial"),
                "edge_running": edge.count("running"),
                "edge_failed": edge.count("failed"),
            }
        return counts

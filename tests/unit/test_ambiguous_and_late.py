"""Exactly once at the edges of time: which task an ambiguous POST may adopt, when the states
after a POST are stamped, and the time a metric's age is measured at.

The pipeline and the real actuator and guard run on a MemoryStore against a cloud that keeps
its scale-out tasks in a list, newest first, as DescribeClusterTasks answers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from edgescaler import activity as lifecycle
from edgescaler.activity import Activity, Status
from edgescaler.actuator import ScaleOutActuator
from edgescaler.cloud.model import Node, ScaleOutResult, TaskInfo
from edgescaler.errors import CSApiError, CSTransportError
from edgescaler.metrics.base import Reading
from edgescaler.passwords import Passwords
from edgescaler.pipeline import Deps, run
from edgescaler.report import Outcome, OutcomeCode
from edgescaler.store.memory import MemoryStore
from edgescaler.triggers import RunRequest
from tests.support import builders

NOW = builders.NOW


def task(
    task_id: str,
    state: str = "success",
    created: datetime | None = None,
    updated: datetime | None = None,
) -> TaskInfo:
    return TaskInfo(task_id, None, "cluster_scaleout", state, created, updated, None, None, ())


def old_tasks(n: int) -> list[TaskInfo]:
    """``n`` scale-out tasks that ended a month ago, newest first."""
    month = NOW - timedelta(days=30)
    return [task(f"T-old-{i:03d}", created=month - timedelta(hours=i)) for i in range(n)]


class Cloud:
    """Two running workers; ScaleOutCluster runs ``on_post`` if set, else creates a task."""

    def __init__(self) -> None:
        self.tasks: list[TaskInfo] = []
        self.posts = 0
        self.on_post: Callable[[], Any] | None = None
        self.nodes = [
            Node(f"i-{i}", None, "Worker", "running", "Ready", "ens.sn1.tiny", None, None)
            for i in (1, 2)
        ]

    def list_nodes(self, cluster_id: str) -> list[Node]:
        return list(self.nodes)

    def list_tasks(self, cluster_id: str) -> list[TaskInfo]:
        return list(self.tasks)

    def describe_task(self, task_id: str) -> TaskInfo:
        found = next((t for t in self.tasks if t.task_id == task_id), None)
        if found is None:
            raise CSApiError(
                action="DescribeTaskInfo", status=404, code="NotFound", message="", request_id=None
            )
        return found

    def scale_out(self, cluster_id: str, body: Any) -> ScaleOutResult:
        self.posts += 1
        if self.on_post is not None:
            result: ScaleOutResult = self.on_post()
            return result
        task_id = f"T-new-{self.posts}"
        self.tasks.insert(0, task(task_id, "running", created=NOW))
        return ScaleOutResult(cluster_id, task_id, "req", 200)

    def close(self) -> None:
        pass


class Busy:
    """A metric source that always reads a load asking for more nodes."""

    def read(self, name: str, query: str, *, now: datetime, **kw: Any) -> Reading:
        return Reading(name, 30.0, now)

    def close(self) -> None:
        pass


class Setup:
    def __init__(self, clock: Callable[[], datetime] | None = None, jitter: float = 1.0) -> None:
        self.store = MemoryStore()
        self.cloud = Cloud()
        self.policy = builders.policy()
        passwords = Passwords({"ENS_LOGIN_PASSWORD": "Secret-Pass-123"})
        actuator = ScaleOutActuator(
            self.store, lambda region: self.cloud, passwords, clock=clock, jitter=lambda: jitter
        )
        self.deps = Deps(
            store=self.store,
            cloud_for=lambda region: self.cloud,  # type: ignore[arg-type,return-value]
            metrics_for=lambda policy: Busy(),  # type: ignore[arg-type,return-value]
            actuator=actuator,
        )

    def run(self, now: datetime) -> Outcome:
        rep = run(RunRequest("timer"), [self.policy], self.deps, now=now, dry_run=False)
        return rep.outcomes[0]

    def first(self) -> Activity:
        act = self.store.get(self.policy.cluster_id, 1)
        assert act is not None
        return act


def lost_answer() -> ScaleOutResult:
    raise CSTransportError(action="ScaleOutCluster", detail="read timeout", may_have_acted=True)


# -- an ambiguous POST adopts only a task that can be its own ---------------------------------


def test_an_unknown_post_never_adopts_a_task_from_weeks_ago() -> None:
    """250 old tasks listed (more than a claim used to remember): none may pass for the POST's."""
    s = Setup()
    s.cloud.tasks = old_tasks(250)
    s.cloud.on_post = lost_answer  # and nothing was created
    assert s.run(NOW).outcome == OutcomeCode.ERROR
    s.run(NOW + timedelta(minutes=3))
    assert (s.first().status, s.first().task_id) == (Status.UNKNOWN, None)
    s.run(NOW + lifecycle.RESOLVE_AFTER + timedelta(minutes=1))
    assert s.first().status == Status.REJECTED
    assert s.cloud.posts == 1


def test_an_unknown_post_that_went_through_adopts_its_own_task_among_many_old_ones() -> None:
    s = Setup()
    s.cloud.tasks = old_tasks(250)

    def through_but_unanswered() -> ScaleOutResult:
        s.cloud.tasks.insert(0, task("T-real", "running", created=NOW))
        return lost_answer()

    s.cloud.on_post = through_but_unanswered
    s.run(NOW)
    assert s.run(NOW + timedelta(minutes=3)).outcome == OutcomeCode.COOLING_DOWN
    assert (s.first().status, s.first().task_id) == (Status.SUBMITTED, "T-real")
    s.cloud.on_post = None
    s.cloud.tasks[0] = task("T-real", created=NOW, updated=NOW + timedelta(minutes=13))
    held = s.run(NOW + timedelta(minutes=14))  # the cooldown (10 min) counts from its end
    assert held.outcome == OutcomeCode.COOLING_DOWN, held
    assert s.cloud.posts == 1


def test_the_claim_remembers_every_recent_task_and_no_old_one() -> None:
    s = Setup()
    recent = [task(f"T-recent-{i}", created=NOW - timedelta(minutes=i)) for i in range(3)]
    s.cloud.tasks = recent + old_tasks(250)
    s.cloud.on_post = lost_answer
    s.run(NOW)
    assert s.first().prior_tasks == ("T-recent-0", "T-recent-1", "T-recent-2")


def test_adoptable_is_bounded_by_the_window_before_the_claim() -> None:
    window = lifecycle.ADOPT_WINDOW
    assert lifecycle.adoptable(task("a", created=NOW - window), NOW)
    assert not lifecycle.adoptable(task("b", created=NOW - window - timedelta(seconds=1)), NOW)
    assert lifecycle.adoptable(task("c", created=None), NOW)


# -- states after the POST are stamped when its answer came, not when the run began ----------


def test_a_throttled_post_holds_from_its_answer_not_from_the_run_start() -> None:
    """The run began at NOW; its reads took 40 s; the 429 said retry after 30 s."""
    s = Setup(clock=lambda: NOW + timedelta(seconds=40))

    def throttled() -> ScaleOutResult:
        raise CSApiError(
            action="ScaleOutCluster",
            status=429,
            code="Throttling.User",
            message="slow down",
            request_id="r",
            retry_after=30.0,
        )

    s.cloud.on_post = throttled
    assert s.run(NOW).outcome == OutcomeCode.BACKOFF
    act = s.first()
    assert act.ended_at == NOW + timedelta(seconds=40)
    assert act.retry_at is not None and act.retry_at >= NOW + timedelta(seconds=70)
    s.cloud.on_post = None
    assert s.run(NOW + timedelta(seconds=45)).outcome == OutcomeCode.BACKOFF
    assert s.cloud.posts == 1


def test_a_refused_post_ends_when_it_was_answered() -> None:
    s = Setup(clock=lambda: NOW + timedelta(seconds=40))

    def refused() -> ScaleOutResult:
        raise CSApiError(
            action="ScaleOutCluster", status=400, code="Bad", message="no", request_id="r"
        )

    s.cloud.on_post = refused
    s.run(NOW)
    act = s.first()
    assert act.status == Status.REJECTED and act.ended_at == NOW + timedelta(seconds=40)
    assert act.ended_at >= act.created_at


# -- a metric's age is measured when it is read --------------------------------------------------


class Recording(Busy):
    def __init__(self) -> None:
        self.seen: list[datetime] = []

    def read(self, name: str, query: str, *, now: datetime, **kw: Any) -> Reading:
        self.seen.append(now)
        return Reading(name, 30.0, now)


def test_metrics_are_read_against_the_time_of_the_read_not_the_run_start() -> None:
    """A read 40 s into a run: a sample max_age old then was max_age + 40 s old at the run's
    start; measured from the start, an older sample would pass and a fresh one look future."""
    s = Setup()
    source = Recording()
    later = NOW + timedelta(seconds=40)
    deps = Deps(
        store=s.store,
        cloud_for=lambda region: s.cloud,  # type: ignore[arg-type,return-value]
        metrics_for=lambda policy: source,  # type: ignore[arg-type,return-value]
        actuator=s.deps.actuator,
        clock=lambda: later,
    )
    run(RunRequest("timer"), [s.policy], deps, now=NOW, dry_run=True)
    assert source.seen == [later]


def test_without_the_password_nothing_from_the_cloud_is_read_and_the_claim_holds() -> None:
    """Task errors may quote the password: when it cannot be resolved to be masked, open
    scale-outs are not refreshed this run, and they keep holding the cluster."""
    s = Setup()
    s.cloud.on_post = lost_answer
    s.run(NOW)
    asked: list[str] = []

    def unknown(policy: Any) -> bool:
        asked.append(policy.name)
        return False

    deps = Deps(
        store=s.store,
        cloud_for=lambda region: s.cloud,  # type: ignore[arg-type,return-value]
        metrics_for=lambda policy: Busy(),  # type: ignore[arg-type,return-value]
        actuator=s.deps.actuator,
        known=unknown,
    )
    later = NOW + timedelta(minutes=11)  # past the cooldown and RESOLVE_AFTER
    o = run(RunRequest("timer"), [s.policy], deps, now=later, dry_run=False).outcomes[0]
    assert asked == [s.policy.name]
    assert s.first().status == Status.UNKNOWN and o.outcome == OutcomeCode.IN_FLIGHT
    assert s.cloud.posts == 1

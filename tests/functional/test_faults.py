"""Faults: each one leads to its documented outcome, never to a second ScaleOutCluster, and
leaves the activity log accounting for every scale-out the emulator performed.

The FC handler runs in-process against the emulator and one SQLite store. One fake clock drives
both (float seconds for the emulator; the handler's ``now``, which also signs the CS requests),
so a test jumps minutes ahead without sleeping.

Policies here use a 1 minute cooldown. A refused, failed or timed-out scale-out added no
capacity, so the cooldown does not apply to it: the failure backoff (5 min, doubling) does, from
the run that records the failure on. (While the outcome is still open, the scale-out holds the
cluster as ``in_flight``; the cooldown runs from its request as for any scale-out.)

Every test ends with :meth:`World.check_invariant`: POSTs performed == activities that are not
``rejected``, and every task id in the log is an emulator task.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edgescaler.activity import CLAIM_GRACE, RESOLVE_AFTER, Activity, Status
from tests.support.prometheus import FaultServer, PrometheusLauncher
from tests.support.world import PASSWORD_ENV, FakeClock, World, build_world

MIN = 60.0
RUN = {"policies": ["edge-a"]}
SHORT: dict[str, Any] = {"cooldown": "1m"}


def calls(world: World, action: str) -> int:
    n: int = world.emulator.state()["calls"][action]
    return n


def only_activity(world: World) -> Activity:
    (act,) = world.activities(world.clusters["edge-a"])
    return act


# -- ScaleOutCluster answers that leave the outcome unknown ------------------------------------


def test_503_on_scale_out_is_unknown_then_held_then_resolved_rejected(tmp_path: Path) -> None:
    clock = FakeClock()
    with build_world(tmp_path, clock=clock, **SHORT) as w:
        w.emulator.inject("ScaleOutCluster", "server_error")
        first = w.outcome(RUN)
        assert first["outcome"] == "error" and "outcome unknown" in first["reason"], first
        assert "503" in first["reason"] and first["activity_seq"] == 1
        assert only_activity(w).status == Status.UNKNOWN
        assert w.posts() == [] and calls(w, "ScaleOutCluster") == 1  # 503: nothing was done

        clock.advance(2 * MIN)  # past the cooldown; within RESOLVE_AFTER
        held = w.outcome(RUN)
        assert held["outcome"] == "in_flight" and "outcome is unknown" in held["reason"]
        assert only_activity(w).status == Status.UNKNOWN

        clock.advance(RESOLVE_AFTER.total_seconds() - 2 * MIN + 1)
        resolving = w.outcome(RUN)
        act = only_activity(w)
        assert act.status == Status.REJECTED and act.task_id is None
        assert "no new scale-out task appeared" in (act.error or "")
        assert resolving["outcome"] == "backoff" and "rejected" in resolving["reason"]

        clock.advance(MIN)
        backing_off = w.outcome(RUN)
        assert backing_off["outcome"] == "backoff", backing_off
        assert "backing off 5 min" in backing_off["reason"]
        # never a second POST while the first one's outcome was open
        assert calls(w, "ScaleOutCluster") == 1 and w.posts() == []

        clock.advance(4 * MIN)  # 5 min after the rejection ended: allowed again
        assert w.outcome(RUN)["outcome"] == "scaled"
        assert calls(w, "ScaleOutCluster") == 2
        w.check_invariant()


@pytest.mark.parametrize("fault", ["error_after_commit", "slow"])
def test_a_scale_out_that_went_through_unseen_is_found_and_never_resent(
    tmp_path: Path, fault: str
) -> None:
    """500 after the work was done, or an answer later than the client's read timeout: the
    task exists, we do not know it; the next run finds it via DescribeClusterTasks."""
    clock = FakeClock()
    env = {"EDGESCALER_CS_READ_TIMEOUT": "0.5"}
    with build_world(tmp_path, clock=clock, task_delay=10 * MIN, extra_env=env, **SHORT) as w:
        if fault == "slow":
            w.emulator.inject("ScaleOutCluster", "slow", seconds=2.0)
        else:
            w.emulator.inject("ScaleOutCluster", "error_after_commit")
        first = w.outcome(RUN)
        assert first["outcome"] == "error" and "outcome unknown" in first["reason"], first
        assert ("timeout" if fault == "slow" else "500") in first["reason"]
        (post,) = w.posts()  # performed
        assert only_activity(w).status == Status.UNKNOWN and only_activity(w).task_id is None

        clock.advance(2 * MIN)
        found = w.outcome(RUN)
        act = only_activity(w)
        assert (act.status, act.task_id) == (Status.SUBMITTED, post["task_id"])
        assert "appeared after the claim" in (act.error or "")
        assert found["outcome"] == "in_flight" and post["task_id"] in found["reason"]

        clock.advance(9 * MIN)  # the task ends 10 min after the POST; cooldown 1 min after
        done = w.outcome(RUN)
        assert only_activity(w).status == Status.SUCCEEDED
        assert done["outcome"] == "no_change", done  # 2 + 3 nodes now carry the load
        assert len(w.posts()) == 1 and calls(w, "ScaleOutCluster") == 1
        w.check_invariant()


# -- ScaleOutCluster refused; GET failures --------------------------------------------------------


def test_throttled_scale_out_holds_seconds_not_minutes(tmp_path: Path) -> None:
    """Throttling is the API's rate limit, not a provisioning failure: a short jittered hold
    (seconds to a minute, at least the server's x-acs-retry-after), no 5-minute backoff."""
    clock = FakeClock()
    with build_world(tmp_path, clock=clock, **SHORT) as w:
        w.emulator.inject("ScaleOutCluster", "throttle", seconds=20)
        first = w.outcome(RUN)
        assert first["outcome"] == "backoff" and "throttled" in first["reason"], first
        assert "Throttling.User" in first["reason"]
        act = only_activity(w)
        assert act.status == Status.THROTTLED and "Throttling.User" in (act.error or "")
        assert act.retry_at is not None
        hold = (act.retry_at - act.created_at).total_seconds()
        assert 20 <= hold <= 60, hold  # the server asked for 20 s; never more than a minute

        clock.advance(hold / 2)
        second = w.outcome(RUN)
        assert second["outcome"] == "backoff" and "throttled" in second["reason"], second
        assert w.posts() == [] and calls(w, "ScaleOutCluster") == 1

        clock.advance(hold / 2 + 1)  # not 5 minutes: throttling added nothing, failed nothing
        assert w.outcome(RUN)["outcome"] == "scaled"
        assert calls(w, "ScaleOutCluster") == 2
        w.check_invariant()


@pytest.mark.parametrize("kind", ["throttle", "server_error"])
def test_failing_reads_of_capacity_are_retried(tmp_path: Path, kind: str) -> None:
    with build_world(tmp_path, clock=FakeClock(), **SHORT) as w:
        # x-acs-retry-after of 1 ms: the client still waits its own jittered backoff
        w.emulator.inject("DescribeClusterNodes", kind, count=2, seconds=0.001)
        o = w.outcome(RUN)
        assert o["outcome"] == "scaled", o
        assert calls(w, "DescribeClusterNodes") == 3
        assert w.emulator.state()["faults"]["fired"] == {kind: 2}
        assert len(w.posts()) == 1
        w.check_invariant()


def test_failing_reads_of_a_task_are_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    with build_world(tmp_path, clock=clock, task_delay=10 * MIN, **SHORT) as w:
        assert w.outcome(RUN)["outcome"] == "scaled"
        clock.advance(2 * MIN)
        w.emulator.inject("DescribeTaskInfo", "server_error", count=2)
        o = w.outcome(RUN)
        assert o["outcome"] == "in_flight" and "still running" in o["reason"]
        assert calls(w, "DescribeTaskInfo") == 3
        assert only_activity(w).status == Status.SUBMITTED
        assert len(w.posts()) == 1
        w.check_invariant()


def test_capacity_unreadable_on_every_attempt_is_an_error_without_post(tmp_path: Path) -> None:
    with build_world(tmp_path, clock=FakeClock(), **SHORT) as w:
        w.emulator.inject("DescribeClusterNodes", "server_error", count=10)
        o = w.outcome(RUN)
        assert o["outcome"] == "error" and "capacity unavailable" in o["reason"], o
        assert calls(w, "DescribeClusterNodes") == 4  # the first try and 3 retries
        assert calls(w, "ScaleOutCluster") == 0 and w.activities(w.clusters["edge-a"]) == []
        w.check_invariant()


# -- tasks that go wrong after the POST -------------------------------------------------------


def test_failed_task_backs_off_5_then_10_minutes(tmp_path: Path) -> None:
    clock = FakeClock()
    with build_world(tmp_path, clock=clock, task_delay=MIN, **SHORT) as w:
        w.emulator.inject_task_fault("task_fail", count=2)
        assert w.outcome(RUN)["outcome"] == "scaled"  # the task fails at +1 min

        clock.advance(2 * MIN)  # ended at +1, cooldown until +2: the backoff is what holds
        o = w.outcome(RUN)
        first = only_activity(w)
        assert first.status == Status.FAILED and "ScaleOutFailed" in (first.error or "")
        assert first.ended_at == w.now() - timedelta(minutes=1)
        assert o["outcome"] == "backoff" and "backing off 5 min" in o["reason"], o

        clock.advance(4 * MIN - 1)  # 1 s before the end of the backoff
        assert w.outcome(RUN)["outcome"] == "backoff"
        clock.advance(1)
        again = w.outcome(RUN)  # +6 min: allowed; the failed nodes do not count
        assert again["outcome"] == "scaled" and again["add"] == 3

        clock.advance(2 * MIN)
        o = w.outcome(RUN)
        assert o["outcome"] == "backoff" and "2 failed scale-outs" in o["reason"]
        assert "backing off 10 min" in o["reason"], o
        clock.advance(9 * MIN - 1)  # second task ended at +7 min: held until +17 min
        assert w.outcome(RUN)["outcome"] == "backoff"
        clock.advance(1)
        assert w.outcome(RUN)["outcome"] == "scaled"
        statuses = [a.status for a in w.activities(w.clusters["edge-a"])]
        assert statuses == [Status.FAILED, Status.FAILED, Status.SUBMITTED]
        assert len(w.posts()) == 3
        w.check_invariant()


def test_nodes_that_never_join_end_in_a_failed_task_and_backoff(tmp_path: Path) -> None:
    clock = FakeClock()
    with build_world(tmp_path, clock=clock, timeout_mins=15, **SHORT) as w:
        w.emulator.inject_task_fault("never_join")
        assert w.outcome(RUN)["outcome"] == "scaled"
        clock.advance(5 * MIN)
        assert w.outcome(RUN)["outcome"] == "in_flight"

        clock.advance(10 * MIN)  # the task times out 15 min after the POST
        ended = w.outcome(RUN)
        act = only_activity(w)
        assert act.status == Status.FAILED and "timeout" in (act.error or "").lower(), act.error
        assert ended["outcome"] == "backoff"  # it ended just now: a failure, so backoff
        clock.advance(MIN)
        o = w.outcome(RUN)
        assert o["outcome"] == "backoff" and "backing off 5 min" in o["reason"]

        cluster = w.clusters["edge-a"]
        counts = w.emulator.state()["nodes"][cluster]
        assert (counts["edge_workers"], counts["edge_initial"]) == (5, 3)
        assert len(w.posts()) == 1
        w.check_invariant()


# -- claims whose owner died --------------------------------------------------------------------


def _orphan_claim(w: World, prior: tuple[str, ...]) -> Activity:
    """A claim as a run writes it just before its POST, by a run that then died."""
    now = w.now()
    claim = Activity(
        cluster_id=w.clusters["edge-a"],
        seq=1,
        policy="edge-a",
        add=3,
        status=Status.CLAIMED,
        created_at=now,
        updated_at=now,
        trigger="manual",
        ens_region_id="cn-hangzhou-telecom",
        instance_type="ens.sn1.small",
        timeout_mins=60,
        prior_tasks=prior,
    )
    store = w.store()
    try:
        store.append(claim)
    finally:
        store.close()
    return claim


def test_dead_claim_whose_post_went_through_adopts_the_new_task(tmp_path: Path) -> None:
    clock = FakeClock()
    with build_world(tmp_path, clock=clock, **SHORT) as w:
        cluster = w.clusters["edge-a"]
        earlier = w.foreign_scale_out(cluster)  # an older scale-out, done before the claim
        clock.advance(MIN)
        _orphan_claim(w, prior=(earlier,))
        mine = w.foreign_scale_out(cluster, 3, foreign=False)  # the dead run's POST

        clock.advance(CLAIM_GRACE.total_seconds() - 1)
        held = w.outcome(RUN)
        assert held["outcome"] == "in_flight" and "claimed" in held["reason"]
        assert (
            only_activity(w).status == Status.CLAIMED
        )  # within the grace its owner may still answer

        clock.advance(2)
        o = w.outcome(RUN)
        act = only_activity(w)
        assert (act.status, act.task_id) == (Status.SUCCEEDED, mine)  # found, and its task is done
        assert "appeared after the claim (claimed before)" in (act.error or "")
        assert o["outcome"] == "no_change"  # 2 + 1 + 3 nodes carry the load
        assert [p["task_id"] for p in w.posts()] == [earlier, mine]  # edgescaler sent nothing
        w.check_invariant()


def test_dead_claim_whose_post_never_left_is_rejected_after_5_minutes(tmp_path: Path) -> None:
    clock = FakeClock()
    with build_world(tmp_path, clock=clock, **SHORT) as w:
        cluster = w.clusters["edge-a"]
        earlier = w.foreign_scale_out(cluster)
        clock.advance(MIN)
        _orphan_claim(w, prior=(earlier,))

        for minutes in (1, 3, 5):  # unanswered; past the grace nobody can tell yet
            clock.advance(2 * MIN if minutes > 1 else MIN)
            o = w.outcome(RUN)
            assert o["outcome"] == "in_flight", (minutes, o)
            assert only_activity(w).status == Status.CLAIMED
        clock.advance(1)
        o = w.outcome(RUN)
        act = only_activity(w)
        assert act.status == Status.REJECTED and act.task_id is None, act  # not the earlier task
        assert "no new scale-out task appeared" in (act.error or "")
        assert o["outcome"] == "backoff"
        clock.advance(MIN)
        assert w.outcome(RUN)["outcome"] == "backoff"
        assert [p["task_id"] for p in w.posts()] == [earlier]
        w.check_invariant()


def test_a_running_scale_out_edgescaler_did_not_start_holds_the_cluster(tmp_path: Path) -> None:
    clock = FakeClock()
    with build_world(tmp_path, clock=clock, task_delay=10 * MIN, **SHORT) as w:
        cluster = w.clusters["edge-a"]
        console = w.foreign_scale_out(cluster, 1)  # 3 nodes: +2 still wanted
        o = w.outcome(RUN)
        assert o["outcome"] == "in_flight" and console in o["reason"], o
        assert "not started by edgescaler" in o["reason"]
        assert o["decision"]["current"] == 3
        assert w.activities(cluster) == [] and len(w.posts()) == 1

        clock.advance(10 * MIN)  # the console's task is done: now edgescaler may add
        o = w.outcome(RUN)
        assert o["outcome"] == "scaled" and o["add"] == 2
        w.check_invariant()


# -- Prometheus, store and secrets unavailable ---------------------------------------------------


@pytest.mark.prometheus
def test_prometheus_stopped_is_metrics_unavailable(tmp_path: Path) -> None:
    with PrometheusLauncher(tmp_path / "prom") as launcher:
        prom = launcher.start()
        prom.stop()
        with build_world(tmp_path / "w", clock=FakeClock(), prometheus_url=prom.url) as w:
            o = w.outcome(RUN)
            assert o["outcome"] == "metrics_unavailable", o
            assert ": connection_error:" in o["reason"]
            assert calls(w, "ScaleOutCluster") == 0 and w.activities(w.clusters["edge-a"]) == []
            assert calls(w, "PrometheusQuery") == 0  # the policy's own server was asked
            w.check_invariant()


def test_prometheus_hanging_is_metrics_unavailable(tmp_path: Path) -> None:
    with FaultServer() as hung:
        hung.hang()
        with build_world(
            tmp_path, clock=FakeClock(), prometheus_url=hung.url, prometheus_timeout=0.5
        ) as w:
            o = w.outcome(RUN)
            assert o["outcome"] == "metrics_unavailable", o
            assert ": timeout:" in o["reason"]
            assert len(hung.requests) == 1  # asked once, not retried
            assert calls(w, "ScaleOutCluster") == 0 and w.activities(w.clusters["edge-a"]) == []
            w.check_invariant()


@pytest.mark.parametrize("broken", ["not-a-directory", "not-a-database"])
def test_unusable_store_fails_closed(tmp_path: Path, broken: str) -> None:
    if broken == "not-a-directory":
        (tmp_path / "file").write_text("a file where the store's directory should be\n")
        path = tmp_path / "file" / "state" / "edgescaler.db"
    else:
        path = tmp_path / "garbage.db"
        path.write_bytes(b"this is not an SQLite database\n" * 64)
    env = {"EDGESCALER_STORE": f"sqlite:///{path}"}
    with build_world(tmp_path / "w", clock=FakeClock(), extra_env=env) as w:
        for event in (RUN, {"triggerName": "t", "triggerTime": "2026-11-27T07:05:00Z"}):
            report = w.run(event)
            assert report["outcomes"] == [] and report["error"], report
            assert f"sqlite store {path}" in report["error"]
            assert ("Not a directory" if broken == "not-a-directory" else "not a database") in (
                report["error"]
            )
        # fail closed before anything else: not a single call to the cloud
        assert all(n == 0 for n in w.emulator.state()["calls"].values())


def test_missing_password_is_an_error_without_claim_or_post(tmp_path: Path) -> None:
    with build_world(tmp_path, clock=FakeClock(), **SHORT) as w:
        del w.env[PASSWORD_ENV]
        o = w.outcome(RUN)
        assert o["outcome"] == "error" and f"{PASSWORD_ENV} is not set" in o["reason"]
        assert w.activities(w.clusters["edge-a"]) == [] and calls(w, "ScaleOutCluster") == 0
        w.check_invariant()


def test_a_task_running_past_timeout_mins_is_recorded_timed_out(tmp_path: Path) -> None:
    clock = FakeClock()
    # the cloud's task would run for 2 h; the policy gives provisioning 15 min; the load keeps
    # asking for more nodes than the joining ones
    world = build_world(
        tmp_path, clock=clock, task_delay=120 * MIN, timeout_mins=15, load=100, max_step=3, **SHORT
    )
    with world as w:
        assert w.outcome(RUN)["outcome"] == "scaled"
        clock.advance(14 * MIN)
        assert w.outcome(RUN)["outcome"] == "in_flight"
        assert only_activity(w).status == Status.SUBMITTED
        clock.advance(2 * MIN)
        o = w.outcome(RUN)
        act = only_activity(w)
        assert act.status == Status.TIMED_OUT and "after 15 min" in (act.error or ""), act
        assert o["outcome"] == "backoff" and "timed_out" in o["reason"]
        clock.advance(6 * MIN)  # past the backoff, but the cloud still runs the task
        o = w.outcome(RUN)
        assert o["outcome"] == "in_flight" and "still running in the cloud" in o["reason"]
        assert len(w.posts()) == 1
        w.check_invariant()


def test_a_timed_out_task_that_ends_late_takes_its_end_and_the_cooldown_after_it(
    tmp_path: Path,
) -> None:
    """The nodes of a timed-out task may still come: when its task succeeds at last, the
    activity is tracked to that end, and the cooldown runs from it (not merely the backoff
    from the timeout)."""
    clock = FakeClock()
    world = build_world(
        tmp_path, clock=clock, task_delay=40 * MIN, timeout_mins=15, load=100, max_step=3, **SHORT
    )
    with world as w:
        assert w.outcome(RUN)["outcome"] == "scaled"
        clock.advance(16 * MIN)
        w.outcome(RUN)
        assert only_activity(w).status == Status.TIMED_OUT
        clock.advance(24.5 * MIN)  # the task ended at 40 min: now 40.5, within the cooldown
        o = w.outcome(RUN)
        act = only_activity(w)
        assert act.status == Status.SUCCEEDED and act.ended_at is not None, act
        assert act.error is None  # its "still running after 15 min" no longer holds
        assert o["outcome"] == "cooling_down" and "ended at" in o["reason"], o
        assert len(w.posts()) == 1
        clock.advance(MIN)  # the cooldown (1 min) after the task's end has passed
        assert w.outcome(RUN)["outcome"] == "scaled"
        assert len(w.posts()) == 2
        w.check_invariant()


def test_a_task_error_quoting_the_password_is_masked_on_a_cold_instance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cloud's task error quotes the request back, password included, and a fresh instance
    (nothing registered yet) tracks that task before it would fetch the password for a new
    scale-out: the password is resolved first, so the store, the report and the log lines mask
    it."""
    from edgescaler import sensitive
    from tests.support.world import PASSWORD

    clock = FakeClock()
    with build_world(tmp_path, clock=clock, task_delay=30.0, **SHORT) as w:
        w.emulator.inject_task_fault("task_fail")
        assert w.outcome(RUN)["outcome"] == "scaled"
        for task in w.emulator._world.tasks.values():
            task.error_message = f"InvalidPassword: Password '{PASSWORD}' is not allowed"
        sensitive.forget_all()  # a new FC instance
        capsys.readouterr()
        clock.advance(MIN)
        o = w.outcome(RUN)
        assert only_activity(w).status == Status.FAILED
        assert "InvalidPassword" in (only_activity(w).error or "")
        assert PASSWORD not in json.dumps(o)
        assert PASSWORD not in w.stored_text()
        assert PASSWORD not in capsys.readouterr().out

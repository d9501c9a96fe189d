"""The run deadline as a pure mechanism, and where the pipeline and actuator hold to it; the
throttle hold of the guard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from edgescaler import guard, pipeline
from edgescaler.activity import Activity, Status
from edgescaler.actuator import Context, DryRunActuator, ScaleOutActuator
from edgescaler.deadline import Deadline, DeadlineExceeded, budget
from edgescaler.decision import decide
from edgescaler.errors import ConfigError
from edgescaler.passwords import Passwords
from edgescaler.pipeline import Deps, run
from edgescaler.report import OutcomeCode
from edgescaler.store.memory import MemoryStore
from edgescaler.triggers import RunRequest
from tests.support import builders


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_budget_leaves_a_margin_under_the_function_timeout() -> None:
    assert budget(None) == 96.0  # template.yml's 120 s minus 20 %
    assert budget(120) == 96.0
    assert budget(30) == 15.0  # at least 15 s of margin
    assert budget(600) == 480.0
    assert budget(120, override=50) == 50
    assert budget(-1) == budget(None)


def test_deadline_counts_down_and_caps_timeouts() -> None:
    clock = Clock()
    d = Deadline(10, clock=clock)
    assert d.timeout(5) == 5 and d.allows(10) and not d.expired
    clock.t += 8
    assert d.timeout(5) == pytest.approx(2) and not d.allows(3) and d.allows(2)
    clock.t += 2
    assert d.expired and d.remaining() == 0
    with pytest.raises(DeadlineExceeded):
        d.timeout(5)
    with pytest.raises(ValueError):
        Deadline(float("nan"))


class NoCloud:
    """A CloudAPI that must not be reached."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} called after the deadline")


def test_policies_not_begun_by_the_deadline_are_reported_deadline() -> None:
    clock = Clock()
    deadline = Deadline(5, clock=clock)
    clock.t += 6
    deps = Deps(
        store=MemoryStore(),
        cloud_for=lambda region: NoCloud(),  # type: ignore[arg-type,return-value]
        metrics_for=lambda p: NoCloud(),  # type: ignore[arg-type,return-value]
        actuator=DryRunActuator(),
        deadline=deadline,
    )
    policies = [builders.policy(name=f"p{i}", cluster_id=f"c{i:09d}abc") for i in range(3)]
    rep = run(RunRequest("manual"), policies, deps, now=builders.NOW, dry_run=False)
    assert [o.outcome for o in rep.outcomes] == [OutcomeCode.DEADLINE] * 3
    assert all("deadline (5s) passed before this policy" in o.reason for o in rep.outcomes)


@pytest.mark.parametrize("first", [0, 1, 2])
def test_each_run_starts_at_another_policy_so_a_deadline_leaves_out_others(
    first: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker, and a deadline that passes during the first policy evaluated: the policy the
    run started with is the one evaluated, whichever it is; the report keeps the given order."""
    monkeypatch.setattr(pipeline, "MAX_POLICY_WORKERS", 1)
    clock = Clock()
    deadline = Deadline(5, clock=clock)
    started: list[str] = []

    def cloud_for(region: str) -> Any:
        clock.t += 6  # this policy took the run past its deadline
        raise ConfigError("no cloud in this test")

    def evaluated(policy: Any, *args: Any, **kwargs: Any) -> Any:
        started.append(policy.name)
        return real_evaluate(policy, *args, **kwargs)

    real_evaluate = pipeline.evaluate
    monkeypatch.setattr(pipeline, "evaluate", evaluated)
    deps = Deps(
        store=MemoryStore(),
        cloud_for=cloud_for,
        metrics_for=lambda p: NoCloud(),  # type: ignore[arg-type,return-value]
        actuator=DryRunActuator(),
        deadline=deadline,
        first=lambda n: first,
    )
    policies = [builders.policy(name=f"p{i}", cluster_id=f"c{i:09d}abc") for i in range(3)]
    rep = run(RunRequest("manual"), policies, deps, now=builders.NOW, dry_run=False)
    assert started == [f"p{(first + k) % 3}" for k in range(3)]
    assert [o.policy for o in rep.outcomes] == ["p0", "p1", "p2"]
    assert [o.outcome for o in rep.outcomes] == [
        OutcomeCode.ERROR if i == first else OutcomeCode.DEADLINE for i in range(3)
    ]


class RecordingCloud:
    def __init__(self) -> None:
        self.bodies: list[Mapping[str, Any]] = []

    def scale_out(self, cluster_id: str, body: Mapping[str, Any]) -> Any:
        self.bodies.append(body)
        raise AssertionError("no scale-out may start without the time to finish it")


def test_no_scale_out_starts_unless_it_can_finish_before_the_deadline() -> None:
    clock = Clock()
    deadline = Deadline(30, clock=clock)
    clock.t += 15  # 15 s left; a scale-out needs 20 s
    store, cloud = MemoryStore(), RecordingCloud()
    actuator = ScaleOutActuator(
        store,
        lambda region: cloud,
        Passwords({"ENS_LOGIN_PASSWORD": "Dead-L1ne-pw"}),
        deadline=deadline,
        scale_out_seconds=20,
    )
    policy = builders.policy()
    decision = decide(policy, 2, builders.readings(load=10))
    ctx = Context(now=builders.NOW, trigger="timer", event_key=None, lookback=builders.NOW)
    out = actuator.execute(policy, decision, [], ctx)
    assert out.outcome == OutcomeCode.DEADLINE and "15s of the run left" in out.reason
    assert cloud.bodies == [] and store.log(policy.cluster_id) == []  # nothing claimed


class CountingPasswords(Passwords):
    """Passwords from the environment, counting how often one was asked for (a KMS fetch
    costs up to 2 x 7 s)."""

    def __init__(self) -> None:
        super().__init__({"ENS_LOGIN_PASSWORD": "Dead-L1ne-pw"})
        self.asked = 0

    def get(self, policy: Any) -> Any:
        self.asked += 1
        return super().get(policy)


def test_no_password_is_fetched_for_a_scale_out_that_no_longer_fits() -> None:
    clock = Clock()
    deadline = Deadline(30, clock=clock)
    clock.t += 15  # 15 s left; a scale-out needs 20 s
    passwords = CountingPasswords()
    actuator = ScaleOutActuator(
        MemoryStore(),
        lambda region: RecordingCloud(),
        passwords,
        deadline=deadline,
        scale_out_seconds=20,
    )
    policy = builders.policy()
    decision = decide(policy, 2, builders.readings(load=10))
    ctx = Context(now=builders.NOW, trigger="timer", event_key=None, lookback=builders.NOW)
    assert actuator.execute(policy, decision, [], ctx).outcome == OutcomeCode.DEADLINE
    assert passwords.asked == 0


def throttled(seq: int, ago: timedelta) -> Activity:
    t = builders.NOW - ago
    return Activity(
        cluster_id="c0123456789",
        seq=seq,
        policy="p",
        add=2,
        status=Status.THROTTLED,
        created_at=t,
        updated_at=t,
        ended_at=t,
        retry_at=t + timedelta(seconds=30),
        error="ScaleOutCluster: HTTP 400 Throttling.User",
    )


def test_throttle_delay_is_seconds_to_a_minute_and_grows_with_the_streak() -> None:
    assert guard.throttle_delay([], None, 1.0) == timedelta(seconds=10)
    assert guard.throttle_delay([], None, 0.5) == timedelta(seconds=5)
    assert guard.throttle_delay([], None, 7.0) == timedelta(seconds=10)  # jitter clamped
    streak: Sequence[Activity] = [throttled(1, timedelta(minutes=2)), throttled(2, timedelta(1))]
    assert guard.throttle_delay(streak, None, 1.0) == timedelta(seconds=40)
    long_streak = [throttled(i, timedelta(minutes=10 - i)) for i in range(1, 9)]
    assert guard.throttle_delay(long_streak, None, 1.0) == timedelta(seconds=60)
    assert guard.throttle_delay([], 45.0, 0.5) == timedelta(seconds=45)  # the server's wish
    assert guard.throttle_delay([], 3600.0, 0.5) == timedelta(seconds=60)  # capped


def test_a_throttled_call_holds_until_retry_at_and_is_no_failure() -> None:
    policy = builders.policy(cooldown="10m")
    acts = [throttled(1, timedelta(seconds=10))]
    held = guard.check(policy, acts, now=builders.NOW)
    assert held.outcome == guard.BACKOFF and "throttled" in held.reason
    later = guard.check(policy, acts, now=builders.NOW + timedelta(seconds=21))
    assert later.allowed  # no cooldown (nothing was added), no provisioning backoff
    assert guard.nodes_added(acts, builders.NOW - timedelta(hours=1)) == 0


def test_within_is_the_earlier_of_two_deadlines_on_the_same_clock() -> None:
    clock = Clock()
    run = Deadline(10, clock=clock)
    call = run.within(30)
    assert call.remaining() == pytest.approx(10)  # the run's end comes first
    short = run.within(3)
    assert short.remaining() == pytest.approx(3)
    clock.t += 4
    assert short.expired and not run.expired


def test_a_claim_made_late_in_a_long_run_is_stamped_when_made() -> None:
    """A run with a long EDGESCALER_DEADLINE claims 290 s after it began. While its POST is in
    flight, a concurrent run 301 s after that start must see a live claim (11 s old), not one
    whose owner died: stamped with the run's start, it would be resolved and the cluster freed
    for a second scale-out."""
    from edgescaler import activity as lifecycle
    from edgescaler.cloud.model import ScaleOutResult

    store = MemoryStore()
    policy = builders.policy()
    claimed_at = builders.NOW + timedelta(seconds=290)
    seen: list[bool] = []

    class Cloud:
        def scale_out(self, cluster_id: str, body: Mapping[str, Any]) -> ScaleOutResult:
            (claim,) = store.log(cluster_id)  # what a concurrent run reads now
            later = builders.NOW + timedelta(seconds=301)
            seen.append(lifecycle.needs_resolution(claim, later))
            assert guard.check(policy, [claim], now=later).allowed is False
            return ScaleOutResult(cluster_id, "T-1", "R-1", 202)

    cloud = Cloud()
    actuator = ScaleOutActuator(
        store,
        lambda region: cloud,
        Passwords({"ENS_LOGIN_PASSWORD": "Long-Run-pw1"}),
        clock=lambda: claimed_at,
    )
    decision = decide(policy, 2, builders.readings(load=10))
    ctx = Context(now=builders.NOW, trigger="timer", event_key=None, lookback=builders.NOW)
    assert actuator.execute(policy, decision, [], ctx).outcome == OutcomeCode.SCALED
    assert seen == [False]
    assert store.log(policy.cluster_id)[0].created_at == claimed_at

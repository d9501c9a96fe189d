"""The ENS login password from KMS Secrets Manager, through the handler: fetched with the run's
credentials (the fake checks every signature), cached across the runs of a warm instance, never
shown; and the actuator's refetch-once when the API refuses a password."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from edgescaler import passwords
from edgescaler.activity import Status
from edgescaler.actuator import Context, ScaleOutActuator
from edgescaler.cloud.kms import SecretCache
from edgescaler.cloud.model import ScaleOutResult
from edgescaler.decision import decide
from edgescaler.errors import CSApiError
from edgescaler.report import OutcomeCode
from edgescaler.sensitive import Secret
from edgescaler.store.memory import MemoryStore
from tests.support import builders
from tests.support.kms import FakeKMS
from tests.support.loopback import serve
from tests.support.world import KEY_ID, KEY_SECRET, FakeClock, World, build_world

SECRET_NAME = "edgescaler/ens-login"
KMS_PASSWORD = "Kms-Rotated-Passw0rd"
RUN = {"policies": ["edge-a"]}


@pytest.fixture
def kms_world(tmp_path: Path) -> Iterator[tuple[World, FakeKMS, FakeClock]]:
    fake = FakeKMS(keys={KEY_ID: KEY_SECRET})
    fake.put(SECRET_NAME, KMS_PASSWORD)
    clock = FakeClock()
    passwords._kms_cache = None  # a fresh "instance"
    with (
        serve(fake) as url,
        build_world(
            tmp_path,
            ("edge-a", "edge-b"),
            clock=clock,
            kms_secret=SECRET_NAME,
            cooldown="1m",
            extra_env={"EDGESCALER_KMS_ENDPOINT": url},
        ) as w,
    ):
        yield w, fake, clock
    passwords._kms_cache = None


def test_the_password_comes_from_kms_and_is_cached_across_runs(
    kms_world: tuple[World, FakeKMS, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    w, fake, clock = kms_world
    caplog.set_level(logging.DEBUG)
    first = w.outcome(RUN)
    assert first["outcome"] == "scaled", first
    assert fake.fetches(SECRET_NAME) == 1 and all(not c.problems for c in fake.calls)
    clock.advance(120)
    assert w.outcome({"policies": ["edge-b"]})["outcome"] == "scaled"  # the next run
    assert fake.fetches(SECRET_NAME) == 1  # the warm instance's cache, not a second fetch
    shown = caplog.text + w.stored_text() + str(w.posts())
    assert KMS_PASSWORD not in shown and KMS_PASSWORD[:8] not in shown


def test_a_missing_kms_secret_is_an_error_naming_it_and_nothing_is_claimed(
    kms_world: tuple[World, FakeKMS, FakeClock],
) -> None:
    w, fake, _ = kms_world
    fake.secrets.clear()
    out = w.outcome(RUN)
    assert out["outcome"] == "error" and SECRET_NAME in out["reason"], out
    assert w.posts() == [] and w.activities(w.clusters["edge-a"]) == []


def test_a_kms_endpoint_with_a_path_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    """Settings take any URL; the KMS client refuses a path. That is this policy's error (its
    password is unavailable), said in one line, never an internal error."""
    passwords._kms_cache = None
    with build_world(
        tmp_path,
        ("edge-a",),
        kms_secret=SECRET_NAME,
        extra_env={"EDGESCALER_KMS_ENDPOINT": "https://kms.example.com/v1"},
    ) as w:
        out = w.outcome(RUN)
        assert out["outcome"] == "error", out
        assert "EDGESCALER_KMS_ENDPOINT" in out["reason"] and "internal" not in out["reason"]
        assert w.posts() == [] and w.activities(w.clusters["edge-a"]) == []
    passwords._kms_cache = None


class RefusingCloud:
    """Refuses the first password it sees (as the API does for one it will not take)."""

    def __init__(self) -> None:
        self.passwords: list[str] = []

    def scale_out(self, cluster_id: str, body: Mapping[str, Any]) -> ScaleOutResult:
        self.passwords.append(body["login_password"])
        if len(self.passwords) == 1:
            raise CSApiError(
                action="ScaleOutCluster",
                status=400,
                code="InvalidParameter.login_password",
                message="login_password: does not meet the requirements",
                request_id="R-1",
            )
        return ScaleOutResult(cluster_id, "T-2", "R-2", 202)


class RotatingKMS:
    def __init__(self, *values: str) -> None:
        self.values = list(values)
        self.fetched = 0

    def get_secret_value(self, name: str) -> Any:
        value = self.values[min(self.fetched, len(self.values) - 1)]
        self.fetched += 1
        return type("Value", (), {"value": Secret(value)})()

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("values", "outcome", "posts"),
    [
        (("Old-Passw0rd-1", "New-Passw0rd-2"), OutcomeCode.SCALED, 2),  # rotated: retried once
        (("Old-Passw0rd-1", "Old-Passw0rd-1"), OutcomeCode.ERROR, 1),  # same value: no retry
    ],
)
def test_a_refused_password_is_refetched_once(
    values: tuple[str, str], outcome: OutcomeCode, posts: int
) -> None:
    policy = builders.policy(
        scale_out={"login_password": {"kms_secret": SECRET_NAME}}, cluster_id="c0kms0000001abc"
    )
    kms = RotatingKMS(*values)
    pw = passwords.Passwords({}, kms_for=lambda region: kms, cache=SecretCache(ttl=300))  # type: ignore[arg-type,return-value]
    store, cloud = MemoryStore(), RefusingCloud()
    actuator = ScaleOutActuator(store, lambda region: cloud, pw)
    decision = decide(policy, 2, builders.readings(load=10))
    ctx = Context(now=builders.NOW, trigger="timer", event_key=None, lookback=builders.NOW)
    out = actuator.execute(policy, decision, [], ctx)
    assert out.outcome == outcome, out.reason
    assert kms.fetched == 2 and len(cloud.passwords) == posts
    log = store.log(policy.cluster_id)
    assert [a.status for a in log] == (
        [Status.REJECTED, Status.SUBMITTED] if posts == 2 else [Status.REJECTED]
    )

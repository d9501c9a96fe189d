"""Activity records read back from a store: one that does not hold together fails the read (a
StoreError: no scale-out for that cluster), never weakens the guard's hold."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from edgescaler.activity import Activity, Status
from edgescaler.errors import StoreError
from edgescaler.store.base import activity_key
from edgescaler.store.memory import MemoryStore
from tests.support.builders import NOW

CLUSTER = "c0123456789abcdef"


def record(**changes: Any) -> dict[str, Any]:
    """A well-formed record of a succeeded scale-out (#1 of CLUSTER), as the store holds it."""
    act = Activity(
        cluster_id=CLUSTER,
        seq=1,
        policy="p",
        add=3,
        status=Status.SUCCEEDED,
        created_at=NOW - timedelta(minutes=20),
        updated_at=NOW - timedelta(minutes=3),
        ended_at=NOW - timedelta(minutes=3),
        task_id="T-1",
        ens_region_id="cn-hangzhou-telecom",
        instance_type="ens.sn1.tiny",
    )
    data: dict[str, Any] = json.loads(act.to_json())
    data.update(changes)
    return data


def stored(data: dict[str, Any], seq: int = 1) -> MemoryStore:
    store = MemoryStore()
    store._put(activity_key(CLUSTER, seq), json.dumps(data).encode())
    return store


def test_a_well_formed_record_reads_back() -> None:
    act = stored(record()).get(CLUSTER, 1)
    assert act is not None and act.status == Status.SUCCEEDED and act.add == 3


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"ended_at": None}, "a succeeded activity without ended_at"),
        ({"status": "failed", "ens_region_id": None}, "without its ens_region_id"),
        ({"status": "throttled", "retry_at": None}, "a throttled activity without retry_at"),
        ({"add": -10}, "add must be a whole number of at least 1"),
        ({"add": True}, "add must be a whole number of at least 1"),
        ({"seq": 0}, "seq must be a whole number of at least 1"),
        ({"created_at": "2026-11-27T07:40:00"}, "created_at has no time zone"),
        ({"created_at": None}, "created_at and updated_at are required"),
        ({"status": "resting"}, "corrupt activity record: ValueError"),
    ],
    ids=[
        "no-ended-at",
        "failure-without-region",
        "throttled-without-retry",
        "negative-add",
        "bool-add",
        "seq-zero",
        "naive-time",
        "no-created-at",
        "unknown-status",
    ],
)
def test_a_record_that_does_not_hold_together_fails_the_read(
    changes: dict[str, Any], why: str
) -> None:
    with pytest.raises(StoreError) as info:
        stored(record(**changes)).get(CLUSTER, 1)
    assert why in str(info.value) and "\n" not in str(info.value)


def test_a_record_under_another_key_fails_the_read() -> None:
    """Its update would overwrite the activity its fields name."""
    with pytest.raises(StoreError, match="it says #1 of"):
        stored(record(), seq=2).get(CLUSTER, 2)


def test_recent_fails_closed_on_a_corrupt_record_instead_of_a_type_error() -> None:
    store = stored(record(created_at="2026-11-27T07:40:00"))
    with pytest.raises(StoreError):
        store.recent(CLUSTER, NOW - timedelta(days=1))

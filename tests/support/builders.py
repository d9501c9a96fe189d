"""Small builders shared by tests: a valid policy document and readings, without files."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

from edgescaler.metrics.base import Reading
from edgescaler.policy import Policy

NOW = datetime(2026, 11, 27, 8, 0, 0, tzinfo=timezone.utc)

BASE: dict[str, Any] = {
    "name": "test-edge",
    "cluster_id": "c0123456789abcdef0123456789abcdef",
    "region": "cn-hangzhou",
    "scale_out": {
        "worker_instance_type": "ens.sn1.tiny",
        "ens_region_id": "cn-hangzhou-telecom",
        "worker_image_id": "m-EXAMPLEIMAGE",
        "ens_internet_charge_type": "BandwidthByDay",
        "worker_period": 1,
        "login_password": {"from_env": "ENS_LOGIN_PASSWORD"},
        "worker_system_disk_size": 20,
        "is_edge_worker": True,
    },
    "limits": {"min_nodes": 0, "max_nodes": 40, "max_step": 10},
    "cooldown": "10m",
    "metrics": {"load": {"query": "sum(edge_load)"}},
    "rules": [{"type": "target_tracking", "metric": "load", "target_per_node": 2}],
}


def policy(**overrides: Any) -> Policy:
    """A valid policy with top-level keys replaced by ``overrides``."""
    doc = copy.deepcopy(BASE)
    doc.update(overrides)
    return Policy.model_validate(doc)


def readings(now: datetime = NOW, **values: float) -> dict[str, Reading]:
    return {k: Reading(k, float(v), now) for k, v in values.items()}

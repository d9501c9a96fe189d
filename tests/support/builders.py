"""The one policy builder every test uses: a valid policy document, as data, a Policy, or a
file; plus readings. Tests say only what differs from the base document."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from edgescaler.activity import Activity, Status
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


def document(
    *, scale_out: dict[str, Any] | None = None, password_env: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """The base document with top-level keys replaced by ``overrides`` (a None value removes
    the key), ``scale_out`` keys merged into the base's, and the password variable named."""
    doc = copy.deepcopy(BASE)
    doc["scale_out"].update(scale_out or {})
    if password_env is not None:
        doc["scale_out"]["login_password"] = {"from_env": password_env}
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def policy(**overrides: Any) -> Policy:
    """A valid policy (see :func:`document` for the overrides)."""
    return Policy.model_validate(document(**overrides))


def policy_yaml(**overrides: Any) -> str:
    return yaml.safe_dump(document(**overrides), sort_keys=False)


def write_policy(folder: Path, **overrides: Any) -> Path:
    """``folder/<name>.yaml`` holding the document; the folder is created if needed."""
    doc = document(**overrides)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def readings(now: datetime = NOW, **values: float) -> dict[str, Reading]:
    return {k: Reading(k, float(v), now) for k, v in values.items()}


def claim(
    seq: int = 1,
    *,
    cluster: str = "c0123456789abcdef",
    at: datetime = NOW,
    policy: str = "p",
    add: int = 1,
) -> Activity:
    """A fresh claim (activity ``seq`` of ``cluster``, created at ``at``): what the stores'
    tests write."""
    return Activity(
        cluster_id=cluster,
        seq=seq,
        policy=policy,
        add=add,
        status=Status.CLAIMED,
        created_at=at,
        updated_at=at,
    )

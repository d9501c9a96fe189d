"""The body rules of an ENS ``ScaleOutCluster`` (reference/cs-api.md §1.3), as CS applies them.

Deliberately a second implementation, for the field constraints and the password rule alike:
the product validates policies with pydantic (:mod:`edgescaler.policy`) and passwords with
:mod:`edgescaler.passwords`; the emulator checks what arrives on the wire against its own copy
of the documented rules, so a product rule that drifts from the API shows up as a 400 in the
end-to-end tests instead of passing silently. Do not import the product's rules here.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any

from edgescaler.emulator.api import ApiError, bad_parameter

REDACTED = "***"

_CHARGE_TYPES = ("BandwidthByDay", "95BandwidthByMonth")
_PERIODS = (1, 2, 3, 6, 12, 24, 36, 48, 60)
_REQUIRED_FIELDS = (
    "count",
    "worker_instance_type",
    "ens_region_id",
    "worker_image_id",
    "ens_internet_charge_type",
    "worker_period",
    "login_password",
    "worker_system_disk_size",
    "is_edge_worker",
)
_OPTIONAL_FIELDS = (
    "worker_data_disk_size",
    "worker_auto_renew",
    "worker_auto_renew_period",
    "timeout_mins",
)
_ALL_FIELDS = frozenset(_REQUIRED_FIELDS + _OPTIONAL_FIELDS)

# ENS instance passwords: 8 to 30 characters, at least three of upper case, lower case, digits and
# these special characters, and nothing else. Source: ENS CreateInstance, parameter Password
# ("可以设置以下特殊符号"), https://help.aliyun.com/document_detail/148919.html (the product's
# edgescaler/passwords.py cites the same page).
_PASSWORD_SPECIAL = frozenset("()`~!@#$%^&*-_+=|{}[]:;'<>,.?/")
_PASSWORD_ALLOWED = frozenset(string.ascii_letters + string.digits) | _PASSWORD_SPECIAL


def is_int(value: Any) -> bool:
    """An integer that is not a boolean (JSON ``true`` is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


_COMPLEXITY_RULE = (
    "must be 8-30 characters with at least 3 of: upper case, lower case, digit, special"
)


def password_problem(password: Any) -> str | None:
    """Why ENS would refuse ``password`` (a message that never holds it), or None."""
    if not isinstance(password, str):
        return _COMPLEXITY_RULE
    classes = (
        any(c in string.ascii_uppercase for c in password),
        any(c in string.ascii_lowercase for c in password),
        any(c in string.digits for c in password),
        any(c in _PASSWORD_SPECIAL for c in password),
    )
    if not 8 <= len(password) <= 30 or sum(classes) < 3:
        return _COMPLEXITY_RULE
    if any(c not in _PASSWORD_ALLOWED for c in password):
        return "contains a character ENS does not accept"
    return None


def validate_scale_out(body: Any) -> dict[str, Any]:
    """Validate an ENS ScaleOutCluster body like the real API (cs-api.md §1.3); return it.

    Raises :class:`ApiError` 400 ``InvalidParameter.<field>`` for the first problem found: unknown
    keys first, then missing required fields, then each field in documented order. Booleans are
    not integers. The password's value is never part of a message.
    """
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidParameter", "the request body must be a JSON object")
    for key in sorted(body):
        if key not in _ALL_FIELDS:
            raise bad_parameter(str(key), "unknown parameter")
    for name in _REQUIRED_FIELDS:
        if name not in body or body[name] is None:
            raise bad_parameter(name, "is required")

    count = body["count"]
    if not is_int(count) or not 1 <= count <= 500:
        raise bad_parameter("count", f"must be an integer in 1..500, got {_show(count)}")
    for name in ("worker_instance_type", "ens_region_id", "worker_image_id"):
        value = body[name]
        if not isinstance(value, str) or not value.strip():
            raise bad_parameter(name, f"must be a non-empty string, got {_show(value)}")
    if not body["worker_instance_type"].startswith("ens."):
        raise bad_parameter(
            "worker_instance_type",
            f"must be an ENS instance type (ens.*), got {_show(body['worker_instance_type'])}",
        )
    if body["ens_internet_charge_type"] not in _CHARGE_TYPES:
        raise bad_parameter(
            "ens_internet_charge_type",
            f"must be one of {', '.join(_CHARGE_TYPES)}, "
            f"got {_show(body['ens_internet_charge_type'])}",
        )
    period = body["worker_period"]
    if not is_int(period) or period not in _PERIODS:
        raise bad_parameter(
            "worker_period",
            f"must be one of {', '.join(map(str, _PERIODS))}, got {_show(period)}",
        )
    problem = password_problem(body["login_password"])
    if problem:
        raise bad_parameter("login_password", problem)
    disk = body["worker_system_disk_size"]
    if not is_int(disk) or disk % 10 or not 20 <= disk <= 100:
        raise bad_parameter(
            "worker_system_disk_size", f"must be a multiple of 10 in 20..100, got {_show(disk)}"
        )
    if body["is_edge_worker"] is not True:
        raise bad_parameter("is_edge_worker", f"must be true, got {_show(body['is_edge_worker'])}")

    if "worker_data_disk_size" in body:
        data = body["worker_data_disk_size"]
        if not is_int(data) or (data != 0 and (data % 10 or not 20 <= data <= 200)):
            raise bad_parameter(
                "worker_data_disk_size",
                f"must be 0 or a multiple of 10 in 20..200, got {_show(data)}",
            )
    auto_renew = body.get("worker_auto_renew", False)
    if not isinstance(auto_renew, bool):
        raise bad_parameter("worker_auto_renew", f"must be a boolean, got {_show(auto_renew)}")
    if "worker_auto_renew_period" in body:
        renew = body["worker_auto_renew_period"]
        if not is_int(renew) or not 1 <= renew <= 12:
            raise bad_parameter(
                "worker_auto_renew_period", f"must be an integer in 1..12, got {_show(renew)}"
            )
    elif auto_renew:
        raise bad_parameter(
            "worker_auto_renew_period", "is required when worker_auto_renew is true"
        )
    if "timeout_mins" in body:
        timeout = body["timeout_mins"]
        if not is_int(timeout) or timeout < 1:
            raise bad_parameter("timeout_mins", f"must be an integer >= 1, got {_show(timeout)}")
    return body


def redact_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a ScaleOutCluster body with ``login_password`` replaced by ``***``."""
    return {k: (REDACTED if k == "login_password" else v) for k, v in body.items()}

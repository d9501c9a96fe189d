"""A local CS (ACK 2015-12-15) API and a scripted Prometheus: the fake the scaler runs against.

This is shipped code, not a test mock: the demo, the end-to-end tests and the concurrency tests
run the real scaler against it. It keeps clusters, nodes and tasks in memory behind one lock,
checks ACS3-HMAC-SHA256 signatures with the same pure functions the client signs with
(:mod:`edgescaler.cloud.signing`), and can inject deterministic faults.

Signed CS routes (reference/cs-api.md §1, §2)::

    POST /api/v2/clusters/{cluster_id}   ScaleOutCluster       202 {cluster_id, request_id, task_id}
    GET  /tasks/{task_id}                DescribeTaskInfo
    GET  /clusters/{cluster_id}/nodes    DescribeClusterNodes  pageNumber, pageSize (10, max 100),
                                                               state, nodepool_id, instanceIds
    GET  /clusters/{cluster_id}/tasks    DescribeClusterTasks  page_number, page_size (10, max 100)

Unsigned routes::

    GET|POST /api/v1/query?query=Q[&time=T]   Prometheus instant query over the scenario
    GET  /-/ready, /-/healthy                 200
    GET  /_emulator/state                     call counts, scale-outs (redacted), tasks, nodes
    POST /_emulator/faults                    {"action", "kind", "count", "seconds", "rate"} or
                                              {"kind": "task_fail"|"never_join", "count"}, or a list
    POST /_emulator/reset                     back to the configured clusters, no tasks or faults

Errors are JSON ``{"code", "message", "requestId", "status"}``; every response carries a request
id in the ``x-acs-request-id`` header (and in the body of CS answers). Signature rejections, in
the order they are checked:

    400 MissingAuthorization              no Authorization header
    400 InvalidAuthorization              not ``ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,
                                          Signature=..``
    404 InvalidAccessKeyId.NotFound       unknown access key id
    400 MissingSecurityToken              emulator has an STS token, request carries none
    400 InvalidSecurityToken.Mismatch     token differs (or one is sent to an emulator without STS)
    400 IncompleteSignature               a required header is not signed or absent (host,
                                          x-acs-action, x-acs-content-sha256, x-acs-date,
                                          x-acs-signature-nonce, x-acs-version; with STS also
                                          x-acs-security-token), or an ``x-acs-*`` header is
                                          present but not signed
    400 ContentSha256Mismatch             x-acs-content-sha256 is not the sha256 of the body
    400 InvalidTimeStamp.Format/.Expired  x-acs-date malformed, or more than 15 min off the clock
    400 InvalidAction.Mismatch            x-acs-action is not the route's action
    400 InvalidVersion                    x-acs-version is not 2015-12-15
    400 SignatureDoesNotMatch             recomputed over the raw path and raw query received
    400 SignatureNonceUsed                the nonce was seen before (checked last, atomically)

Time comes from an injectable ``clock`` (wall seconds). Task and node states are functions of
that clock: a scale-out task is ``running`` until ``task_delay`` has passed, then ``success``;
its nodes are ``initial`` until ``join_delay`` has passed, then ``running``.

The Prometheus query must equal a metric key of the scenario (``timestamp(KEY)`` is answered
too); the value is that of the last step naming the metric whose ``at`` has passed, rendered as
Prometheus does (``"NaN"``, ``"+Inf"``); the sample timestamp is the evaluation time unless the
step marks the metric stale. Anything else is an empty vector.

Faults are deterministic queues, consumed in order by authenticated calls of one action (see
:meth:`Emulator.inject` and :meth:`Emulator.inject_task_fault`); the probabilistic variant uses a
RNG seeded from :attr:`EmulatorConfig.seed`.

The ENS ``login_password`` is never logged or kept: only a copy of the body with it replaced by
``"***"`` is recorded, and validation messages never echo it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import math
import os
import random
import re
import secrets
import signal
import socket
import string
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, unquote

from edgescaler.cloud import signing

log = logging.getLogger("edgescaler.emulator")

API_VERSION = "2015-12-15"
DEFAULT_CLUSTER_ID = "c82e6987e2961451182edacd74faf0000"
DEFAULT_ACCESS_KEY_ID = "LTAIemulatorKeyId0001"
DEFAULT_ACCESS_KEY_SECRET = "emulator-secret-0001"  # noqa: S105 - a well-known fake
ENV_PREFIX = "EDGESCALER_EMULATOR_"

ACTIONS = ("ScaleOutCluster", "DescribeTaskInfo", "DescribeClusterNodes", "DescribeClusterTasks")
FAULT_KINDS = ("server_error", "throttle", "slow", "error_after_commit", "echo")
TASK_FAULT_KINDS = ("task_fail", "never_join")

MAX_CLOCK_SKEW = 15 * 60.0
DEFAULT_TIMEOUT_MINS = 60
DEFAULT_RETRY_AFTER_MS = 1000
MAX_BODY_BYTES = 1 << 20
REDACTED = "***"

REQUIRED_SIGNED = frozenset(
    {
        "host",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-version",
    }
)

_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/api/v2/clusters/([^/]+)$"), "ScaleOutCluster"),
    ("GET", re.compile(r"^/tasks/([^/]+)$"), "DescribeTaskInfo"),
    ("GET", re.compile(r"^/clusters/([^/]+)/nodes$"), "DescribeClusterNodes"),
    ("GET", re.compile(r"^/clusters/([^/]+)/tasks$"), "DescribeClusterTasks"),
)

# --------------------------------------------------------------------------- configuration


@dataclass
class ClusterSpec:
    """The nodes a cluster starts with (all ``running``/``Ready``)."""

    edge_workers: int = 2
    masters: int = 3
    cloud_workers: int = 1
    instance_type: str = "ens.sn1.tiny"


@dataclass
class ScenarioStep:
    """From ``at`` seconds after the scenario start, ``values`` are in force.

    A metric keeps the value of the last step (``at`` ≤ elapsed) that names it; ``None`` makes it
    absent (empty result). ``stale`` maps a metric of this step to an age in seconds: its sample
    timestamp is then the step time minus that age instead of the evaluation time.
    """

    at: float
    values: dict[str, float | None]
    stale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.at = float(self.at)
        self.values = {k: None if v is None else float(v) for k, v in self.values.items()}
        self.stale = {k: float(v) for k, v in self.stale.items()}
        extra = sorted(set(self.stale) - set(self.values))
        if extra:
            raise ValueError(
                f"step at {self.at}: stale names metrics the step sets no value for: {extra}"
            )

    @classmethod
    def from_obj(cls, obj: Any, *, where: str = "step") -> ScenarioStep:
        """Parse ``{"at": s, "values": {m: v}, "stale": {m: age}}`` or ``[at, {m: v}]``.

        Values may be numbers, ``null`` (absent) or the strings ``NaN``, ``+Inf``, ``-Inf``.
        """
        if isinstance(obj, (list, tuple)) and len(obj) == 2:
            obj = {"at": obj[0], "values": obj[1]}
        if not isinstance(obj, Mapping):
            raise ValueError(f"{where}: expected a mapping with 'at' and 'values'")
        unknown = sorted(set(obj) - {"at", "values", "stale"})
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}")
        at = obj.get("at")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise ValueError(f"{where}: 'at' must be a number of seconds")
        raw_values = obj.get("values")
        if not isinstance(raw_values, Mapping):
            raise ValueError(f"{where}: 'values' must map metric to value")
        values = {str(k): _scenario_value(v, f"{where}: values.{k}") for k, v in raw_values.items()}
        raw_stale = obj.get("stale") or {}
        if not isinstance(raw_stale, Mapping):
            raise ValueError(f"{where}: 'stale' must map metric to an age in seconds")
        stale: dict[str, float] = {}
        for key, age in raw_stale.items():
            if isinstance(age, bool) or not isinstance(age, (int, float)) or age < 0:
                raise ValueError(f"{where}: stale.{key} must be a non-negative number of seconds")
            stale[str(key)] = float(age)
        try:
            return cls(float(at), values, stale)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None


def _scenario_value(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{where}: must be a number, NaN, +Inf, -Inf or null")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip() in {"NaN", "nan", "+Inf", "Inf", "-Inf"}:
        return float(value.strip())
    raise ValueError(f"{where}: must be a number, NaN, +Inf, -Inf or null")


def _default_clusters() -> dict[str, ClusterSpec]:
    return {DEFAULT_CLUSTER_ID: ClusterSpec()}


@dataclass
class EmulatorConfig:
    """Credentials the emulator accepts, its clusters, its delays and its Prometheus scenario.

    ``scenario_start`` (wall seconds) anchors the scenario; ``None`` means "when started".
    ``seed`` seeds the RNG of probabilistic faults.
    """

    access_key_id: str = DEFAULT_ACCESS_KEY_ID
    access_key_secret: str = field(default=DEFAULT_ACCESS_KEY_SECRET, repr=False)
    security_token: str | None = field(default=None, repr=False)
    clusters: dict[str, ClusterSpec] = field(default_factory=_default_clusters)
    task_delay: float = 0.0
    join_delay: float = 0.0
    scenario: list[ScenarioStep] = field(default_factory=list)
    scenario_start: float | None = None
    seed: int = 0


def load_scenario(path: str | Path) -> list[ScenarioStep]:
    """Read a scenario file: JSON (``.json``) or YAML; a list of steps or ``{"steps": [...]}``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data: Any = json.loads(text)
    else:
        import yaml  # lazily: only the CLI reads scenario files

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: {err}") from None
    if isinstance(data, Mapping) and "steps" in data:
        data = data["steps"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: a scenario is a list of steps")
    return [
        ScenarioStep.from_obj(item, where=f"{path}: step #{i + 1}") for i, item in enumerate(data)
    ]


# --------------------------------------------------------------------------- errors and responses


class _ApiError(Exception):
    """An answer other than success; becomes the JSON error shape."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class _Response:
    status: int
    payload: Any
    request_id: str
    action: str = "-"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json; charset=utf-8"

    def body(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        return json.dumps(self.payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _error_response(err: _ApiError, request_id: str, action: str) -> _Response:
    payload = {
        "code": err.code,
        "message": err.message,
        "requestId": request_id,
        "status": err.status,
    }
    return _Response(err.status, payload, request_id, action, err.headers)


def _new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def _iso(ts: float) -> str:
    """``2025-01-02T03:04:05+00:00``: explicit offset, parseable by Python 3.10's fromisoformat."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- signature check


def _merge_headers(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased names; repeated headers merged the way the signer merges them."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.lower(), []).append(value.strip())
    return {name: ",".join(sorted(values)) for name, values in merged.items()}


def _parse_authorization(value: str) -> tuple[str, list[str], str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != signing.ALGORITHM:
        raise _ApiError(
            400, "InvalidAuthorization", f"unsupported algorithm; use {signing.ALGORITHM}"
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or key in parts:
            raise _ApiError(400, "InvalidAuthorization", "malformed Authorization header")
        parts[key] = val.strip()
    if set(parts) != {"Credential", "SignedHeaders", "Signature"}:
        raise _ApiError(
            400,
            "InvalidAuthorization",
            "Authorization must hold exactly Credential, SignedHeaders and Signature",
        )
    names = parts["SignedHeaders"].split(";")
    if not parts["Credential"] or not parts["Signature"] or not all(names):
        raise _ApiError(400, "InvalidAuthorization", "empty Credential, SignedHeaders or Signature")
    if any(n != n.lower() for n in names) or len(set(names)) != len(names):
        raise _ApiError(
            400, "InvalidAuthorization", "SignedHeaders must be distinct lower-case names"
        )
    return parts["Credential"], names, parts["Signature"]


def verify_signature(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    action: str,
    access_key_id: str,
    access_key_secret: str,
    security_token: str | None,
    now: float,
) -> str:
    """Check an ACS3-HMAC-SHA256 request; return its nonce (the caller checks it for reuse).

    Raises ``_ApiError`` with the codes in the module docstring. ``raw_path`` and ``raw_query``
    must be exactly as received: they are what the client signed.
    """
    hdr = _merge_headers(headers)
    auth = hdr.get("authorization", "")
    if not auth:
        raise _ApiError(400, "MissingAuthorization", "the Authorization header is missing")
    key_id, names, sig = _parse_authorization(auth)
    if key_id != access_key_id:
        raise _ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")

    token = hdr.get("x-acs-security-token")
    if security_token is not None:
        if not token:
            raise _ApiError(
                400,
                "MissingSecurityToken",
                "x-acs-security-token is required for these STS credentials",
            )
        if not hmac.compare_digest(token.encode("utf-8"), security_token.encode("utf-8")):
            raise _ApiError(
                400,
                "InvalidSecurityToken.Mismatch",
                "the security token does not match the access key",
            )
    elif token is not None:
        raise _ApiError(
            400,
            "InvalidSecurityToken.Mismatch",
            "a security token was sent but this access key is not an STS credential",
        )

    required = set(REQUIRED_SIGNED)
    if security_token is not None:
        required.add("x-acs-security-token")
    missing = sorted(required - set(names))
    if missing:
        raise _ApiError(
            400, "IncompleteSignature", f"SignedHeaders must include {', '.join(missing)}"
        )
    unsigned = sorted(n for n in hdr if n.startswith("x-acs-") and n not in names)
    if unsigned:
        raise _ApiError(
            400, "IncompleteSignature", f"headers present but not signed: {', '.join(unsigned)}"
        )
    absent = [n for n in names if not hdr.get(n)]
    if absent:
        raise _ApiError(
            400,
            "IncompleteSignature",
            f"signed headers missing from the request: {', '.join(absent)}",
        )

    content_sha = hdr["x-acs-content-sha256"]
    if content_sha != hashlib.sha256(body).hexdigest():
        raise _ApiError(
            400,
            "ContentSha256Mismatch",
            "x-acs-content-sha256 is not the SHA-256 of the body received",
        )

    try:
        date = datetime.strptime(hdr["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc
        )
    except ValueError:
        raise _ApiError(
            400, "InvalidTimeStamp.Format", "x-acs-date must be UTC YYYY-MM-DDTHH:MM:SSZ"
        ) from None
    skew = date.timestamp() - now
    if abs(skew) > MAX_CLOCK_SKEW:
        raise _ApiError(
            400,
            "InvalidTimeStamp.Expired",
            f"x-acs-date is {skew:+.0f} s off the server clock (limit 15 minutes)",
        )

    if hdr["x-acs-action"] != action:
        raise _ApiError(
            400,
            "InvalidAction.Mismatch",
            f"x-acs-action {hdr['x-acs-action']!r} does not match this route ({action})",
        )
    if hdr["x-acs-version"] != API_VERSION:
        raise _ApiError(400, "InvalidVersion", f"x-acs-version must be {API_VERSION}")

    canonical = signing.canonical_request(
        method, raw_path, signing.canonical_query_from_raw(raw_query), hdr, names, content_sha
    )
    expected = signing.signature(access_key_secret, canonical)
    if not hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8", "replace")):
        string_to_sign = signing.string_to_sign(canonical).replace("\n", "\\n")
        raise _ApiError(
            400,
            "SignatureDoesNotMatch",
            f"the request signature does not match; server string to sign: {string_to_sign}",
        )
    return hdr["x-acs-signature-nonce"]


# --------------------------------------------------------------------------- ScaleOutCluster body

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


def _bad(name: str, message: str) -> _ApiError:
    return _ApiError(400, f"InvalidParameter.{name}", f"{name}: {message}")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _password_ok(password: str) -> bool:
    if not 8 <= len(password) <= 30:
        return False
    classes = (
        any(c in string.ascii_uppercase for c in password),
        any(c in string.ascii_lowercase for c in password),
        any(c in string.digits for c in password),
        any(c not in string.ascii_letters + string.digits for c in password),
    )
    return sum(classes) >= 3


def validate_scale_out(body: Any) -> dict[str, Any]:
    """Validate an ENS ScaleOutCluster body like the real API (cs-api.md §1.3); return it.

    Raises ``_ApiError`` 400 ``InvalidParameter.<field>`` for the first problem found: unknown
    keys first, then missing required fields, then each field in documented order. Booleans are
    not integers. The password's value is never part of a message.
    """
    if not isinstance(body, dict):
        raise _ApiError(400, "InvalidParameter", "the request body must be a JSON object")
    for key in sorted(body):
        if key not in _ALL_FIELDS:
            raise _bad(str(key), "unknown parameter")
    for name in _REQUIRED_FIELDS:
        if name not in body or body[name] is None:
            raise _bad(name, "is required")

    count = body["count"]
    if not _is_int(count) or not 1 <= count <= 500:
        raise _bad("count", f"must be an integer in 1..500, got {_show(count)}")
    for name in ("worker_instance_type", "ens_region_id", "worker_image_id"):
        value = body[name]
        if not isinstance(value, str) or not value.strip():
            raise _bad(name, f"must be a non-empty string, got {_show(value)}")
    if not body["worker_instance_type"].startswith("ens."):
        raise _bad(
            "worker_instance_type",
            f"must be an ENS instance type (ens.*), got {_show(body['worker_instance_type'])}",
        )
    if body["ens_internet_charge_type"] not in _CHARGE_TYPES:
        raise _bad(
            "ens_internet_charge_type",
            f"must be one of {', '.join(_CHARGE_TYPES)}, "
            f"got {_show(body['ens_internet_charge_type'])}",
        )
    period = body["worker_period"]
    if not _is_int(period) or period not in _PERIODS:
        raise _bad(
            "worker_period",
            f"must be one of {', '.join(map(str, _PERIODS))}, got {_show(period)}",
        )
    password = body["login_password"]
    if not isinstance(password, str) or not _password_ok(password):
        raise _bad(
            "login_password",
            "must be 8-30 characters with at least 3 of: upper case, lower case, digit, special",
        )
    disk = body["worker_system_disk_size"]
    if not _is_int(disk) or disk % 10 or not 20 <= disk <= 100:
        raise _bad(
            "worker_system_disk_size", f"must be a multiple of 10 in 20..100, got {_show(disk)}"
        )
    if body["is_edge_worker"] is not True:
        raise _bad("is_edge_worker", f"must be true, got {_show(body['is_edge_worker'])}")

    if "worker_data_disk_size" in body:
        data = body["worker_data_disk_size"]
        if not _is_int(data) or (data != 0 and (data % 10 or not 20 <= data <= 200)):
            raise _bad(
                "worker_data_disk_size",
                f"must be 0 or a multiple of 10 in 20..200, got {_show(data)}",
            )
    auto_renew = body.get("worker_auto_renew", False)
    if not isinstance(auto_renew, bool):
        raise _bad("worker_auto_renew", f"must be a boolean, got {_show(auto_renew)}")
    if "worker_auto_renew_period" in body:
        renew = body["worker_auto_renew_period"]
        if not _is_int(renew) or not 1 <= renew <= 12:
            raise _bad(
                "worker_auto_renew_period", f"must be an integer in 1..12, got {_show(renew)}"
            )
    elif auto_renew:
        raise _bad("worker_auto_renew_period", "is required when worker_auto_renew is true")
    if "timeout_mins" in body:
        timeout = body["timeout_mins"]
        if not _is_int(timeout) or timeout < 1:
            raise _bad("timeout_mins", f"must be an integer >= 1, got {_show(timeout)}")
    return body


def redact_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a ScaleOutCluster body with ``login_password`` replaced by ``***``."""
    return {k: (REDACTED if k == "login_password" else v) for k, v in body.items()}


# --------------------------------------------------------------------------- the world


@dataclass
class _Node:
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
class _Task:
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
class _Fault:
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


class _World:
    """Clusters, nodes, tasks, faults and call records. Every method runs under the lock."""

    def __init__(self, config: EmulatorConfig, now: float, tag: str, seq: Iterator[int]) -> None:
        self.config = config
        self.tag = tag
        self.seq = seq
        self.rng = random.Random(config.seed)
        self.nodes: dict[str, list[_Node]] = {}
        self.tasks: dict[str, _Task] = {}
        self.calls: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()
        self.scale_outs: list[dict[str, Any]] = []
        self.faults: list[_Fault] = []
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
    ) -> list[_Node]:
        nodes: list[_Node] = []
        kinds = [("Master", "ecs.g6.large", "")] * spec.masters
        kinds += [("Worker", "ecs.g6.xlarge", f"np-cloud-{cluster_id}")] * spec.cloud_workers
        kinds += [("Worker", spec.instance_type, f"np-edge-{cluster_id}")] * spec.edge_workers
        for n, (role, itype, pool) in enumerate(kinds):
            edge = itype.startswith("ens.")
            iid = self._instance_id("ens" if edge else "ecs")
            ip = self._ip(index, n)
            name = f"{'edge' if edge else 'cn-emulator'}.{ip}"
            nodes.append(
                _Node(iid, name, role, itype, pool, created, ip, "emulator-image", join_at=created)
            )
        return nodes

    # -- nonces and faults

    def use_nonce(self, nonce: str, now: float) -> None:
        # A nonce older than twice the skew window cannot come back with an acceptable date.
        if len(self.nonces) > 4096:
            horizon = now - 2 * MAX_CLOCK_SKEW
            self.nonces = {n: t for n, t in self.nonces.items() if t >= horizon}
        if nonce in self.nonces:
            raise _ApiError(400, "SignatureNonceUsed", "the signature nonce has been used before")
        self.nonces[nonce] = now

    def take_fault(self, action: str) -> _Fault | None:
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

    def cluster_nodes(self, cluster_id: str) -> list[_Node]:
        nodes = self.nodes.get(cluster_id)
        if nodes is None:
            raise _ApiError(404, "ErrorClusterNotFound", f"cluster {cluster_id} not found")
        return nodes

    def scale_out(self, cluster_id: str, body: dict[str, Any], now: float) -> _Task:
        nodes = self.cluster_nodes(cluster_id)
        fault = self.take_task_fault()
        count = int(body["count"])
        task_delay, join_delay = self.config.task_delay, self.config.join_delay
        task_id = self._task_id(now)
        index = list(self.nodes).index(cluster_id)
        new: list[_Node] = []
        for _ in range(count):
            iid = self._instance_id("ens")
            ip = self._ip(index, len(nodes) + len(new))
            node = _Node(
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
            task = _Task(
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
            task = _Task(
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
            task = _Task(task_id, cluster_id, now, ids, now + task_delay, "success")
        self.tasks[task_id] = task
        return task

    def task(self, task_id: str) -> _Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise _ApiError(404, "ErrorTaskNotFound", f"task {task_id} not found")
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


# --------------------------------------------------------------------------- query helpers


def _int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(name, f"must be an integer in {lo}..{hi}") from None
    if not lo <= value <= hi:
        raise _bad(name, f"must be an integer in {lo}..{hi}, got {value}")
    return value


def _page(items: list[Any], number: int, size: int) -> list[Any]:
    start = (number - 1) * size
    return items[start : start + size]


def _prom_value(value: float) -> str:
    """Prometheus renders samples as strings: ``NaN``, ``+Inf``, ``-Inf``, shortest decimal."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _prom_time(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"cannot parse {raw!r} to a valid timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


_TIMESTAMP_QUERY = re.compile(r"^timestamp\((.+)\)$")


# --------------------------------------------------------------------------- the emulator


class Emulator:
    """The CS API emulator and scripted Prometheus, served on ``host:port`` once started.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``clock`` returns wall
    seconds; tests pass a fake one and advance it instead of sleeping. All state sits behind one
    lock, so any number of client threads or processes may call it at once.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._host = host
        self._port = port
        self._clock = clock
        self._lock = threading.Lock()
        self._tag = secrets.token_hex(4)  # keeps ids unique across emulator instances
        self._seq = itertools.count(1)
        self._world = _World(config, clock(), self._tag, self._seq)
        self._scenario = sorted(config.scenario, key=lambda s: s.at)
        self._scenario_start = (
            config.scenario_start if config.scenario_start is not None else clock()
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not started"
        return f"Emulator({where}, clusters={list(self.config.clusters)})"

    # -- lifecycle

    def start(self) -> Emulator:
        """Bind and serve in a background thread; raises OSError when the port is taken."""
        if self._server is not None:
            return self
        self._stopping.clear()
        if self.config.scenario_start is None:
            self._scenario_start = self._clock()
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # bounds how long stop() waits
            name="edgescaler-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping on a "slow" fault
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        host = str(host)
        if host in ("0.0.0.0", ""):  # noqa: S104 - only to print a reachable address
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    # -- faults, state, reset

    def inject(
        self,
        action: str,
        kind: str,
        *,
        count: int = 1,
        seconds: float = 0,
        rate: float | None = None,
    ) -> None:
        """Queue a fault for the next ``count`` authenticated calls of ``action``.

        ``server_error``: 503 ServiceUnavailable, nothing done. ``throttle``: 400
        Throttling.User with ``x-acs-retry-after`` = ``seconds`` in ms (1000 ms when 0), nothing
        done. ``slow``: answer after ``seconds``; a ScaleOutCluster is performed first, so a
        client that times out does not know. ``error_after_commit`` (ScaleOutCluster only): the
        scale-out is performed, then 500 InternalError. ``echo``: 400 with a text/plain body
        that names the body's ``login_password`` and echoes the raw request body (a misbehaving
        gateway), nothing done. With ``rate`` each covered call is hit
        with that probability (seeded RNG) instead of always. Faults of one action are used in
        the order they were queued; a call consumes one unit of the first matching fault.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        if kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}"
            )
        if kind == "error_after_commit" and action != "ScaleOutCluster":
            raise ValueError("error_after_commit applies to ScaleOutCluster only")
        if not _is_int(count) or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
        if kind == "slow" and seconds <= 0:
            raise ValueError("a slow fault needs seconds > 0")
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1
        ):
            raise ValueError(f"rate must be in (0, 1], got {rate!r}")
        with self._lock:
            self._world.faults.append(
                _Fault(action, kind, count, float(seconds), None if rate is None else float(rate))
            )

    def inject_task_fault(
        self, kind: Literal["task_fail", "never_join"], *, count: int = 1
    ) -> None:
        """Make the next ``count`` scale-outs go wrong after they are accepted.

        ``task_fail``: the task ends ``failed`` after ``task_delay`` with ``error{code,message}``
        and failed ``task_result`` entries; its nodes end ``failed``. ``never_join``: the nodes
        stay ``initial``; the task ends ``timeout`` after the body's ``timeout_mins`` (60).
        """
        if kind not in TASK_FAULT_KINDS:
            raise ValueError(
                f"unknown task fault {kind!r}; expected one of {', '.join(TASK_FAULT_KINDS)}"
            )
        if not _is_int(count) or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        with self._lock:
            self._world.task_faults.append([kind, count])

    def reset(self) -> None:
        """Back to the configured clusters: no tasks, calls, faults or remembered nonces."""
        with self._lock:
            self._world = _World(self.config, self._clock(), self._tag, self._seq)

    def state(self) -> dict[str, Any]:
        """Everything a test wants to assert on, as JSON-ready data (same as /_emulator/state)."""
        with self._lock:
            now = self._clock()
            world = self._world
            data = {
                "now": now,
                "config": {
                    "access_key_id": self.config.access_key_id,
                    "sts": self.config.security_token is not None,
                    "clusters": list(self.config.clusters),
                    "task_delay": self.config.task_delay,
                    "join_delay": self.config.join_delay,
                },
                "calls": {action: world.calls[action] for action in (*ACTIONS, "PrometheusQuery")},
                "rejected": dict(world.rejected),
                "scale_out_calls": world.scale_outs,
                "tasks": [task.view(now) for task in world.tasks.values()],
                "nodes": world.node_counts(now),
                "faults": {
                    "pending": [f.view() for f in world.faults],
                    "task_pending": [{"kind": k, "remaining": r} for k, r in world.task_faults],
                    "fired": dict(world.fired),
                },
            }
            # A deep copy that is guaranteed JSON-clean.
            result: dict[str, Any] = json.loads(json.dumps(data))
            return result

    def scale_out_calls(self) -> list[dict[str, Any]]:
        """Every ScaleOutCluster that was performed (also those answered with an error), in order.

        Each: ``cluster_id``, ``count``, ``task_id``, ``request_id``, ``status`` (HTTP status
        answered), ``fault`` (kind or None), ``time``, ``body`` (``login_password`` = ``***``).
        """
        calls: list[dict[str, Any]] = self.state()["scale_out_calls"]
        return calls

    # -- request handling (called by the HTTP handler threads)

    def _handle(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> _Response:
        raw_path, _, raw_query = target.partition("?")
        request_id = _new_request_id()
        action = "-"
        try:
            if raw_path.startswith("/_emulator/"):
                return self._admin(method, raw_path, body, request_id)
            if raw_path == "/api/v1/query":
                action = "PrometheusQuery"
                return self._prometheus(method, raw_query, headers, body, request_id)
            if raw_path in ("/-/ready", "/-/healthy") and method == "GET":
                return _Response(200, b"ready\n", request_id, content_type="text/plain")
            for route_method, pattern, route_action in _ROUTES:
                match = pattern.match(raw_path)
                if match and method == route_method:
                    action = route_action
                    return self._cs(
                        action,
                        unquote(match.group(1)),
                        method,
                        raw_path,
                        raw_query,
                        headers,
                        body,
                        request_id,
                    )
            raise _ApiError(404, "InvalidAction.NotFound", f"no route for {method} {raw_path}")
        except _ApiError as err:
            return _error_response(err, request_id, action)

    def _cs(
        self,
        action: str,
        param: str,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        request_id: str,
    ) -> _Response:
        config = self.config
        try:
            nonce = verify_signature(
                method=method,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=headers,
                body=body,
                action=action,
                access_key_id=config.access_key_id,
                access_key_secret=config.access_key_secret,
                security_token=config.security_token,
                now=self._clock(),
            )
            with self._lock:
                now = self._clock()
                self._world.use_nonce(nonce, now)
        except _ApiError as err:
            with self._lock:
                self._world.rejected[err.code] += 1
            raise

        with self._lock:
            now = self._clock()
            world = self._world
            world.calls[action] += 1
            fault = world.take_fault(action)
            kind = fault.kind if fault else None
            if fault is not None and kind == "server_error":
                raise _ApiError(
                    503, "ServiceUnavailable", "The request has failed due to a temporary failure."
                )
            if fault is not None and kind == "throttle":
                retry_ms = round(fault.seconds * 1000) or DEFAULT_RETRY_AFTER_MS
                raise _ApiError(
                    400,
                    "Throttling.User",
                    "Request was denied due to user flow control.",
                    {"x-acs-retry-after": str(max(1, retry_ms))},
                )
            if fault is not None and kind == "echo":
                # Like a gateway that names the value it choked on, then dumps the request.
                echo = b"400 Bad Request: the gateway could not forward this request"
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    value = json.loads(body).get("login_password")
                    echo += f" (bad login_password={value})".encode()
                echo += b": " + body
                return _Response(
                    400, echo, request_id, action, content_type="text/plain; charset=utf-8"
                )
            if action == "ScaleOutCluster":
                payload = self._scale_out(param, body, now, request_id, kind)
            elif action == "DescribeTaskInfo":
                payload = {**world.task(param).view(now), "request_id": request_id}
            elif action == "DescribeClusterNodes":
                payload = self._describe_nodes(param, raw_query, now, request_id)
            else:
                payload = self._describe_tasks(param, raw_query, now, request_id)
        if kind == "error_after_commit":
            raise _ApiError(
                500, "InternalError", "The request processing has failed due to some unknown error."
            )
        status = 202 if action == "ScaleOutCluster" else 200
        delay = fault.seconds if fault is not None and kind == "slow" else 0.0
        return _Response(status, payload, request_id, action, delay=delay)

    def _scale_out(
        self, cluster_id: str, raw_body: bytes, now: float, request_id: str, fault: str | None
    ) -> dict[str, Any]:
        world = self._world
        world.cluster_nodes(cluster_id)  # 404 before looking at the body
        try:
            body = json.loads(raw_body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _ApiError(400, "InvalidParameter", "the request body is not valid JSON") from None
        validate_scale_out(body)
        task = world.scale_out(cluster_id, body, now)
        world.scale_outs.append(
            {
                "cluster_id": cluster_id,
                "count": body["count"],
                "task_id": task.task_id,
                "request_id": request_id,
                "status": 500 if fault == "error_after_commit" else 202,
                "fault": fault,
                "time": now,
                "body": redact_body(body),
            }
        )
        return {"cluster_id": cluster_id, "request_id": request_id, "task_id": task.task_id}

    def _describe_nodes(
        self, cluster_id: str, raw_query: str, now: float, request_id: str
    ) -> dict[str, Any]:
        nodes = self._world.cluster_nodes(cluster_id)
        params = dict(signing.parse_query(raw_query))
        number = _int_param(params, "pageNumber", 1, 1, 1_000_000)
        size = _int_param(params, "pageSize", 10, 1, 100)
        wanted_state = params.get("state") or "all"
        if wanted_state not in ("all", "running", "initial", "failed", "removing"):
            raise _bad("state", "must be one of all, running, initial, failed, removing")
        pool = params.get("nodepool_id") or None
        ids = {i for i in (params.get("instanceIds") or "").split(",") if i}
        selected = [
            n
            for n in nodes
            if (wanted_state == "all" or n.state(now) == wanted_state)
            and (pool is None or n.nodepool_id == pool)
            and (not ids or n.instance_id in ids)
        ]
        return {
            "nodes": [n.view(now) for n in _page(selected, number, size)],
            "page": {"page_number": number, "page_size": size, "total_count": len(selected)},
            "request_id": request_id,
        }

    def _describe_tasks(
        self, cluster_id: str, raw_query: str, now: float, request_id: str
    ) -> dict[str, Any]:
        world = self._world
        world.cluster_nodes(cluster_id)
        params = dict(signing.parse_query(raw_query))
        number = _int_param(params, "page_number", 1, 1, 1_000_000)
        size = _int_param(params, "page_size", 10, 1, 100)
        tasks = [t for t in reversed(world.tasks.values()) if t.cluster_id == cluster_id]
        items = []
        for task in _page(tasks, number, size):
            view = task.view(now)
            items.append(
                {
                    k: view[k]
                    for k in ("task_id", "task_type", "state", "created", "updated", "error")
                }
            )
        return {
            "tasks": items,
            "page_info": {"page_number": number, "page_size": size, "total_count": len(tasks)},
            "requestId": request_id,
        }

    def _prometheus(
        self,
        method: str,
        raw_query: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        request_id: str,
    ) -> _Response:
        # Prometheus decodes queries like Go's url.ParseQuery: "+" is a space, unlike signing.
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        if method == "POST":
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        elif method != "GET":
            raise _ApiError(405, "MethodNotAllowed", "use GET or POST")
        query = params.get("query", "").strip()
        try:
            if not query:
                raise ValueError('invalid parameter "query": missing')
            at = _prom_time(params["time"]) if params.get("time") else None
        except ValueError as err:
            bad = {"status": "error", "errorType": "bad_data", "error": str(err)}
            return _Response(400, bad, request_id, "PrometheusQuery")
        with self._lock:
            self._world.calls["PrometheusQuery"] += 1
            now = self._clock()
        result = self.evaluate(query, now if at is None else at)
        payload = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return _Response(200, payload, request_id, "PrometheusQuery")

    def evaluate(self, query: str, at: float) -> list[dict[str, Any]]:
        """The instant-vector result of ``query`` at wall time ``at`` (the scenario is immutable).

        ``query`` must equal a metric key of the scenario; ``timestamp(KEY)`` gives the sample
        timestamp of KEY as its value. Anything else, or a metric with no value yet, is empty.
        """
        wrapped = _TIMESTAMP_QUERY.match(query)
        key = wrapped.group(1).strip() if wrapped else query
        found: tuple[float, float] | None = None  # (value, sample timestamp)
        elapsed = at - self._scenario_start
        for step in self._scenario:
            if step.at > elapsed:
                break
            if key in step.values:
                value = step.values[key]
                if value is None:
                    found = None
                    continue
                stamp = (
                    self._scenario_start + step.at - step.stale[key] if key in step.stale else at
                )
                found = (value, stamp)
        if found is None:
            return []
        value, stamp = found
        if wrapped:
            return [{"metric": {}, "value": [round(at, 3), _prom_value(round(stamp, 3))]}]
        return [{"metric": {"__name__": key}, "value": [round(stamp, 3), _prom_value(value)]}]

    def _admin(self, method: str, raw_path: str, body: bytes, request_id: str) -> _Response:
        if raw_path == "/_emulator/state" and method == "GET":
            return _Response(200, self.state(), request_id, "admin")
        if raw_path == "/_emulator/reset" and method == "POST":
            self.reset()
            return _Response(200, {"ok": True, "request_id": request_id}, request_id, "admin")
        if raw_path == "/_emulator/faults" and method == "POST":
            try:
                spec = json.loads(body.decode("utf-8") or "null")
                for item in spec if isinstance(spec, list) else [spec]:
                    self._inject_from_json(item)
            except (ValueError, TypeError, UnicodeDecodeError) as err:
                raise _ApiError(400, "InvalidFault", str(err)) from None
            pending = self.state()["faults"]
            return _Response(200, {"ok": True, "faults": pending}, request_id, "admin")
        raise _ApiError(404, "InvalidAction.NotFound", f"no route for {method} {raw_path}")

    def _inject_from_json(self, item: Any) -> None:
        if not isinstance(item, dict):
            raise ValueError("a fault is a JSON object with at least 'kind'")
        unknown = sorted(set(item) - {"action", "kind", "count", "seconds", "rate"})
        if unknown:
            raise ValueError(f"unknown fault keys {unknown}")
        kind = item.get("kind")
        count = item.get("count", 1)
        if kind in TASK_FAULT_KINDS:
            if "action" in item:
                raise ValueError("task faults take no action")
            self.inject_task_fault(cast(Literal["task_fail", "never_join"], kind), count=count)
        else:
            self.inject(
                str(item.get("action")),
                str(kind),
                count=count,
                seconds=item.get("seconds", 0),
                rate=item.get("rate"),
            )


# --------------------------------------------------------------------------- HTTP plumbing


class _BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 16 processes connecting at once must not overflow the backlog

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """Kept-alive connections outlive ``shutdown()``; cut them so no handler keeps serving."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgescaler-emulator/0.1"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped after this

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this Nagle + delayed ACK add ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cast(_Server, self.server).track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            cast(_Server, self.server).track(self.connection, add=False)

    def do_GET(self) -> None:  # http.server's naming
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's own stderr lines; we log one line per request instead."""

    def _serve(self) -> None:
        server = cast(_Server, self.server)
        emulator = server.emulator
        raw_path = self.path.partition("?")[0]
        try:
            body = self._read_body()
        except _BodyError as err:
            self.close_connection = True
            request_id = _new_request_id()
            response = _error_response(
                _ApiError(err.status, "InvalidRequest", err.message), request_id, "-"
            )
        else:
            try:
                response = emulator._handle(
                    self.command, self.path, list(self.headers.items()), body
                )
            except Exception:  # a bug here must not leave the client hanging
                log.exception("%s %s failed", self.command, raw_path)
                response = _error_response(
                    _ApiError(500, "InternalError", "emulator error"), _new_request_id(), "-"
                )
        if response.delay > 0:
            emulator._stopping.wait(response.delay)
        # Logged before writing, so the line exists by the time the client has its answer.
        log.info(
            "%s %s action=%s status=%d", self.command, raw_path, response.action, response.status
        )
        self._write(response)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise _BodyError(400, "invalid Content-Length") from None
        if size < 0 or size > MAX_BODY_BYTES:
            raise _BodyError(413, f"body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(size)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(65537).strip():
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyError(413, f"body larger than {MAX_BODY_BYTES} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65537)

    def _write(self, response: _Response) -> None:
        data = response.body()
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-acs-request-id", response.request_id)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            # The client gave up (e.g. timed out on a slow fault); the work is done anyway.
            self.close_connection = True


# --------------------------------------------------------------------------- command line


def _cluster_arg(text: str) -> tuple[str, int]:
    cluster_id, sep, count = text.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", cluster_id):
        raise argparse.ArgumentTypeError(f"invalid cluster id {cluster_id!r}")
    if not sep:
        return cluster_id, ClusterSpec().edge_workers
    if not count.isdigit():
        raise argparse.ArgumentTypeError(f"EDGE_WORKERS must be a number >= 0, got {count!r}")
    return cluster_id, int(count)


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edgescaler emulator`` (and ``python -m edgescaler.cloud.emulator``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    parser.add_argument(
        "--task-delay",
        type=_seconds_arg,
        default=0.0,
        help="seconds until a scale-out task succeeds",
    )
    parser.add_argument(
        "--join-delay", type=_seconds_arg, default=0.0, help="seconds until new nodes are running"
    )
    parser.add_argument(
        "--cluster",
        dest="clusters",
        action="append",
        type=_cluster_arg,
        metavar="ID[:EDGE_WORKERS]",
        help=f"a cluster to serve (repeatable; default {DEFAULT_CLUSTER_ID} with 2 edge workers)",
    )
    parser.add_argument(
        "--access-key-id",
        default=None,
        help=f"accepted access key id "
        f"(default ${ENV_PREFIX}ACCESS_KEY_ID or {DEFAULT_ACCESS_KEY_ID})",
    )
    parser.add_argument(
        "--access-key-secret",
        default=None,
        help=f"accepted secret (default ${ENV_PREFIX}ACCESS_KEY_SECRET or the built-in fake; "
        "prefer the variable: command lines are visible to other users)",
    )
    parser.add_argument(
        "--security-token",
        default=None,
        help=f"require this STS token (default ${ENV_PREFIX}SECURITY_TOKEN; none)",
    )
    parser.add_argument(
        "--scenario", metavar="FILE", help="Prometheus load scenario, YAML or JSON list of steps"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of probabilistic faults")
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> EmulatorConfig:
    """Build the configuration from parsed options, falling back to ``EDGESCALER_EMULATOR_*``."""
    clusters = {
        cluster_id: ClusterSpec(edge_workers=edge)
        for cluster_id, edge in (
            args.clusters or [(DEFAULT_CLUSTER_ID, ClusterSpec().edge_workers)]
        )
    }
    return EmulatorConfig(
        access_key_id=args.access_key_id
        or env.get(f"{ENV_PREFIX}ACCESS_KEY_ID")
        or DEFAULT_ACCESS_KEY_ID,
        access_key_secret=args.access_key_secret
        or env.get(f"{ENV_PREFIX}ACCESS_KEY_SECRET")
        or DEFAULT_ACCESS_KEY_SECRET,
        security_token=args.security_token or env.get(f"{ENV_PREFIX}SECURITY_TOKEN") or None,
        clusters=clusters,
        task_delay=args.task_delay,
        join_delay=args.join_delay,
        scenario=load_scenario(args.scenario) if args.scenario else [],
        seed=args.seed,
    )


def run_cli(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM. The first stdout line is ``emulator listening on URL``."""
    try:
        config = config_from_args(args, os.environ)
    except (OSError, ValueError) as err:
        print(f"emulator: {err}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=getattr(logging, args.log_level, logging.INFO),
            stream=sys.stderr,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    emulator = Emulator(config, host=args.host, port=args.port)
    try:
        emulator.start()
    except OSError as err:
        print(f"emulator: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not possible outside the main thread; the caller handles signals there.
        with contextlib.suppress(ValueError):
            previous[signum] = signal.signal(signum, _on_signal)
    print(f"emulator listening on {emulator.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgescaler.cloud.emulator",
        description="Serve a local CS API emulator and scripted Prometheus.",
    )
    add_cli_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

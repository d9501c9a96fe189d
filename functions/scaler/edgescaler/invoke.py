"""``edgescaler invoke``: run the deployed function once from a terminal and return its report.

Settings (environment, read by the CLI only):

    EDGESCALER_FC_API         2023-03-30 (FC 3.0, default) or 2016-08-15 (FC 2.0 through fc2)
    EDGESCALER_FC_FUNCTION    function name (default: edgescaler, as in template.yml and s.yaml)
    EDGESCALER_FC_SERVICE     FC 2.0 service name (required with 2016-08-15, refused otherwise)
    EDGESCALER_FC_REGION      region id, e.g. cn-hangzhou     } both required unless
    EDGESCALER_FC_ACCOUNT_ID  the numeric account id          } EDGESCALER_FC_ENDPOINT is set
    EDGESCALER_FC_ENDPOINT    override of https://{account}.{region}.fc.aliyuncs.com
    EDGESCALER_FC_QUALIFIER   version or alias (default: FC's LATEST)
    EDGESCALER_FC_TIMEOUT     seconds to wait for a sync answer (default 130: the function's
                              Timeout is 120)

Credentials: ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` / ``ALIBABA_CLOUD_SECURITY_TOKEN`` of a
principal allowed ``fc:InvokeFunction`` on the function.

The event is the manual shape of :mod:`edgescaler.triggers`:
``{"policies": [...], "dry_run": true, "request_id": "invoke-..."}``. ``request_id`` is fresh
for each ``invoke`` and the function records it create-only, so an FC retry of the same
invocation (async delivery is at least once) does nothing the second time.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edgescaler import safejson
from edgescaler.cloud.credentials import Credentials
from edgescaler.cloud.fc_invoke import (
    FC2_API_VERSION,
    FC3_API_VERSION,
    Invocation,
    Invoker,
    endpoint_for,
)
from edgescaler.errors import ConfigError, InvokeError
from edgescaler.outside import message as outside_message

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
_QUALIFIER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
APIS = (FC3_API_VERSION, FC2_API_VERSION)
DEFAULT_FUNCTION = "edgescaler"


def _name(env: Mapping[str, str], var: str, default: str | None, limit: int) -> str | None:
    raw = env.get(var, "").strip() or default
    if raw is None:
        return None
    if not _NAME_RE.match(raw) or len(raw) > limit:
        raise ConfigError(
            f"{var}: {raw[:80]!r} is not a valid name (letters, digits, _ and -, starting with a "
            f"letter or _, at most {limit} characters)"
        )
    return raw


@dataclass(frozen=True)
class InvokeSettings:
    api: str
    function: str
    endpoint: str
    service: str | None = None
    qualifier: str | None = None
    timeout: float = 130.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InvokeSettings:
        """Read and check the ``EDGESCALER_FC_*`` variables; a ConfigError names the first bad."""
        api = env.get("EDGESCALER_FC_API", "").strip() or FC3_API_VERSION
        if api not in APIS:
            raise ConfigError(
                f"EDGESCALER_FC_API: expected {FC3_API_VERSION} (FC 3.0) or {FC2_API_VERSION} "
                f"(FC 2.0), got {api[:40]!r}"
            )
        # FC 3.0 function names: 1..64 characters; FC 2.0 service and function names: 1..128.
        function = _name(
            env, "EDGESCALER_FC_FUNCTION", DEFAULT_FUNCTION, 64 if api == FC3_API_VERSION else 128
        )
        assert function is not None
        service = _name(env, "EDGESCALER_FC_SERVICE", None, 128)
        if api == FC2_API_VERSION and service is None:
            raise ConfigError(
                f"EDGESCALER_FC_SERVICE: required with EDGESCALER_FC_API={FC2_API_VERSION} "
                "(an FC 2.0 function lives in a service)"
            )
        if api == FC3_API_VERSION and service is not None:
            raise ConfigError(
                f"EDGESCALER_FC_SERVICE: FC 3.0 has no services; unset it, or set "
                f"EDGESCALER_FC_API={FC2_API_VERSION} for an FC 2.0 function"
            )
        qualifier = env.get("EDGESCALER_FC_QUALIFIER", "").strip() or None
        if qualifier is not None and not _QUALIFIER_RE.match(qualifier):
            raise ConfigError(
                f"EDGESCALER_FC_QUALIFIER: {qualifier[:60]!r} is not a version number or alias"
            )
        raw_timeout = env.get("EDGESCALER_FC_TIMEOUT", "").strip()
        try:
            timeout = float(raw_timeout) if raw_timeout else 130.0
        except ValueError:
            raise ConfigError(
                f"EDGESCALER_FC_TIMEOUT: expected a number of seconds, got {raw_timeout[:20]!r}"
            ) from None
        if not 1 <= timeout <= 86400:
            raise ConfigError("EDGESCALER_FC_TIMEOUT: must be between 1 and 86400 seconds")
        endpoint = endpoint_for(
            env.get("EDGESCALER_FC_REGION", "").strip() or None,
            env.get("EDGESCALER_FC_ACCOUNT_ID", "").strip() or None,
            env.get("EDGESCALER_FC_ENDPOINT", "").strip() or None,
        )
        return cls(api, function, endpoint, service, qualifier, timeout)

    @property
    def target(self) -> str:
        """The function as FC names it in messages (``service/function`` for FC 2.0)."""
        return f"{self.service}/{self.function}" if self.service else self.function


def new_request_id(now: datetime) -> str:
    """A fresh, sortable id for one ``invoke``: ``invoke-20261127T070500Z-1a2b3c4d``."""
    return f"invoke-{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def manual_event(policies: Sequence[str] | None, dry_run: bool, request_id: str) -> bytes:
    """The manual event :func:`edgescaler.triggers.parse_event` accepts. Without ``dry_run`` the
    key is left out, so the function's own ``EDGESCALER_DRY_RUN`` decides."""
    event: dict[str, Any] = {}
    if policies:
        event["policies"] = list(dict.fromkeys(policies))
    if dry_run:
        event["dry_run"] = True
    event["request_id"] = request_id
    return json.dumps(event, separators=(",", ":")).encode()


def build_invoker(settings: InvokeSettings, credentials: Credentials) -> Invoker:
    """The FC 3.0 client, or (FC 2.0) the fc2-based one; fc2 is imported only then."""
    if settings.api == FC2_API_VERSION:
        from edgescaler.cloud.fc_invoke import FC2Invoker

        assert settings.service is not None
        return FC2Invoker(
            settings.service,
            settings.function,
            credentials,
            endpoint=settings.endpoint,
            qualifier=settings.qualifier,
            timeout=settings.timeout,
        )
    from edgescaler.cloud.fc_invoke import FC3Invoker

    return FC3Invoker(
        settings.function,
        lambda: credentials,
        endpoint=settings.endpoint,
        qualifier=settings.qualifier,
        read_timeout=settings.timeout,
    )


def report_from(invocation: Invocation, target: str) -> dict[str, Any]:
    """The run report a sync invocation returned (the handler's return value, as JSON)."""
    try:
        report = safejson.loads(invocation.body)
    except safejson.JSONError:
        report = None
    if not isinstance(report, dict) or "summary" not in report or "outcomes" not in report:
        preview = outside_message(invocation.body[:16384].decode("utf-8", "replace"), 120)
        raise InvokeError(
            f"function {target} answered something that is not an edgescaler run report: "
            f"{preview!r}",
            code="bad_response",
            status=invocation.status,
            request_id=invocation.request_id,
        )
    return report

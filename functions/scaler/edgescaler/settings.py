"""Settings: every ``EDGESCALER_*`` environment variable, read once and validated.

Built by the handler or the CLI and passed down; nothing else reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgescaler.errors import ConfigError
from edgescaler.outside import quote
from edgescaler.sensitive import Secret

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
DEFAULT_STORE = "sqlite:///.edgescaler/edgescaler.db"


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false, got {quote(raw, 20)}")


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {quote(raw, 20)}") from None
    if not low <= value <= high:  # also false for NaN
        raise ConfigError(f"{name}: must be between {low} and {high} seconds")
    return value


def _optional_float(env: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    return _float(env, name, low, low, high)


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: expected an http:// or https:// URL, got {quote(raw, 60)}")
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise ConfigError(f"{name}: the URL contains spaces or control characters")
    return raw.rstrip("/")


def _token(env: Mapping[str, str], name: str) -> Secret | None:
    raw = env.get(name, "")
    if not raw:
        return None
    printable = raw.isascii() and raw.isprintable() and not any(c.isspace() for c in raw)
    if not 16 <= len(raw) <= 256 or not printable:
        raise ConfigError(f"{name}: must be 16 to 256 printable ASCII characters without spaces")
    return Secret(raw)


@dataclass(frozen=True)
class Settings:
    """Every setting. Timeouts are bounded so that no single wait can outlast a run.

    ``deadline``: seconds a run may take (``EDGESCALER_DEADLINE``); None means "the function's
    timeout minus a safety margin" (:func:`edgescaler.deadline.budget`).
    """

    policy_dir: Path
    store: str
    prometheus_url: str | None
    cs_endpoint: str | None
    dry_run: bool
    s3_endpoint: str | None = None
    oss_endpoint: str | None = None
    oss_region: str | None = None  # EDGESCALER_OSS_REGION, else FC's own FC_REGION
    cs_connect_timeout: float = 5.0
    cs_read_timeout: float = 10.0
    deadline: float | None = None
    callback_token: Secret | None = None
    prometheus_timeout: float = 5.0  # for policies whose prometheus section names none
    # Override of https://kms.{region}.aliyuncs.com (a local fake, or kms-vpc.{region}...).
    kms_endpoint: str | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, default_policy_dir: Path | None = None
    ) -> Settings:
        """Read the settings; a ConfigError names the first bad variable."""
        policy_dir = env.get("EDGESCALER_POLICY_DIR", "").strip()
        store = env.get("EDGESCALER_STORE", "").strip() or DEFAULT_STORE
        return cls(
            policy_dir=Path(policy_dir) if policy_dir else (default_policy_dir or Path("policies")),
            store=store,
            prometheus_url=_url(env, "EDGESCALER_PROMETHEUS_URL"),
            cs_endpoint=_url(env, "EDGESCALER_CS_ENDPOINT"),
            dry_run=_bool(env, "EDGESCALER_DRY_RUN", False),
            s3_endpoint=_url(env, "EDGESCALER_S3_ENDPOINT"),
            oss_endpoint=_url(env, "EDGESCALER_OSS_ENDPOINT"),
            oss_region=(
                env.get("EDGESCALER_OSS_REGION", "").strip()
                or env.get("FC_REGION", "").strip()
                or None
            ),
            cs_connect_timeout=_float(env, "EDGESCALER_CS_CONNECT_TIMEOUT", 5.0, 0.1, 30),
            cs_read_timeout=_float(env, "EDGESCALER_CS_READ_TIMEOUT", 10.0, 0.1, 60),
            deadline=_optional_float(env, "EDGESCALER_DEADLINE", 1, 86400),
            callback_token=_token(env, "EDGESCALER_CALLBACK_TOKEN"),
            prometheus_timeout=_float(env, "EDGESCALER_PROMETHEUS_TIMEOUT", 5.0, 0.1, 60),
            kms_endpoint=_url(env, "EDGESCALER_KMS_ENDPOINT"),
        )

    @property
    def scale_out_seconds(self) -> float:
        """The time one scale-out needs in the worst case: the POST's full timeouts plus the
        store writes around it. A scale-out starts only with this much of the run left."""
        return self.cs_connect_timeout + self.cs_read_timeout + 5.0

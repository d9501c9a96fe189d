"""Settings: every ``EDGESCALER_*`` environment variable, read once and validated.

Built by the handler or the CLI and passed down; nothing else reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgescaler.errors import ConfigError

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
    raise ConfigError(f"{name}: expected true or false, got {raw[:20]!r}")


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {raw[:20]!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high} seconds")
    return value


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: expected an http:// or https:// URL, got {raw[:60]!r}")
    return raw.rstrip("/")


@dataclass(frozen=True)
class Settings:
    policy_dir: Path
    store: str
    prometheus_url: str | None
    cs_endpoint: str | None
    dry_run: bool
    s3_endpoint: str | None = None
    cs_connect_timeout: float = 5.0
    cs_read_timeout: float = 10.0
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
            cs_connect_timeout=_float(env, "EDGESCALER_CS_CONNECT_TIMEOUT", 5.0, 0.1, 60),
            cs_read_timeout=_float(env, "EDGESCALER_CS_READ_TIMEOUT", 10.0, 0.1, 120),
            kms_endpoint=_url(env, "EDGESCALER_KMS_ENDPOINT"),
        )

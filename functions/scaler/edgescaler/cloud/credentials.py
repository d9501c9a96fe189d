"""Access credentials for the CS API: where they come from and how they are held.

Order (design.md §4): the FC ``context.credentials`` (the service role's STS credentials, fresh
per invocation) first, then ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` /
``ALIBABA_CLOUD_SECURITY_TOKEN``. The secret and the token are :class:`Secret` values.

Malformed values are refused here, up front, with a message that names where they came from and
never the value: a credential goes into an HTTP header, and a line break or control character
there makes the HTTP library fail with a message that quotes the whole header value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgescaler.errors import ConfigError
from edgescaler.sensitive import Secret


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: Secret
    security_token: Secret | None = None

    @property
    def is_sts(self) -> bool:
        return self.security_token is not None and bool(self.security_token)


_MAX_LENGTH = 4096  # STS tokens are ~1-2 kB


def checked(value: str, where: str) -> str:
    """``value`` if it can travel in an HTTP header; ConfigError naming ``where`` otherwise."""
    if len(value) > _MAX_LENGTH:
        raise ConfigError(f"{where}: longer than {_MAX_LENGTH} characters")
    if not (value.isascii() and value.isprintable()) or any(c.isspace() for c in value):
        raise ConfigError(
            f"{where}: contains a space, a line break, a control or a non-ASCII character"
        )
    return value


def _attr(obj: Any, *names: str) -> str:
    for name in names:
        value = getattr(obj, name, None)
        if value:
            return value if isinstance(value, str) else ""
    return ""


def from_fc_context(context: Any) -> Credentials | None:
    """The STS credentials FC passes in ``context.credentials``; None when absent or empty."""
    creds = getattr(context, "credentials", None)
    if creds is None:
        return None
    key_id = _attr(creds, "access_key_id", "accessKeyId")
    secret = _attr(creds, "access_key_secret", "accessKeySecret")
    token = _attr(creds, "security_token", "securityToken")
    if not key_id or not secret:
        return None
    where = "FC context.credentials"
    return Credentials(
        checked(key_id, f"{where}.access_key_id"),
        Secret(checked(secret, f"{where}.access_key_secret")),
        Secret(checked(token, f"{where}.security_token")) if token else None,
    )


def from_env(env: Mapping[str, str]) -> Credentials | None:
    """Credentials from the ``ALIBABA_CLOUD_*`` variables; None when the key pair is not set."""
    key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "").strip()
    secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "").strip()
    token = env.get("ALIBABA_CLOUD_SECURITY_TOKEN", "").strip()
    if not key_id and not secret:
        return None
    if not key_id or not secret:
        missing = "ALIBABA_CLOUD_ACCESS_KEY_ID" if not key_id else "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
        raise ConfigError(f"{missing} is not set but its partner is; set both or neither")
    return Credentials(
        checked(key_id, "ALIBABA_CLOUD_ACCESS_KEY_ID"),
        Secret(checked(secret, "ALIBABA_CLOUD_ACCESS_KEY_SECRET")),
        Secret(checked(token, "ALIBABA_CLOUD_SECURITY_TOKEN")) if token else None,
    )


def resolve(context: Any, env: Mapping[str, str]) -> Credentials:
    """FC context first, then the environment; a clear :class:`ConfigError` when neither has any."""
    creds = from_fc_context(context) if context is not None else None
    if creds is None:
        creds = from_env(env)
    if creds is None:
        raise ConfigError(
            "no credentials: give the FC service a role, or set ALIBABA_CLOUD_ACCESS_KEY_ID "
            "and ALIBABA_CLOUD_ACCESS_KEY_SECRET"
        )
    return creds
